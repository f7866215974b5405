"""Benchmark: how fast a group of 3 local processes heals when one of them is killed.

Runs what a user runs - ``infrakit plugin start group process vanilla`` as a daemon (resync poll
one hour, so only the process plugin's exit events can explain a heal), commits
``examples/process.json`` (3 x ``sleep 1000``, vanilla Init ``echo ...``), then, per trial, sends
SIGKILL to one instance's process and measures, from just before the kill:

* ``exit seen``: the plugin's ``deleted`` event for the killed instance reaches a subscriber;
* ``replaced``: the ``created`` event of the replacement (its Init ran and its process started).

Events are read over the plugin's socket (``GET /events``), the way the group controller of
another process would. The trials kill instances seconds after they were created, which the group
controller rightly counts as a crash loop (``Provisioning.CrashLoopWindow``) and backs off from; the
bench's copy of the spec sets that window to 0 to measure the heal itself. Usage::

    .venv/bin/python -m bench.heal_process [--trials 20]

Target: median ``replaced`` <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

from infrakit.rpc.client import Client
from infrakit.spi.event import Event
from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, isolated_env, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "process.json"
SIZE = 3


def records(state_dir: Path) -> dict[str, int]:
    """Instance ID -> pid, from the plugin's records."""
    found = {}
    for path in state_dir.glob("*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())["Pid"]
        except (OSError, ValueError, KeyError):
            continue
    return found


async def next_event(events: AsyncIterator[Event], kind: str, timeout: float = 10.0) -> Event:
    async def wait() -> Event:
        async for event in events:
            if event.type == kind:
                return event
        raise RuntimeError("event stream ended")

    return await asyncio.wait_for(wait(), timeout)


async def settle(state_dir: Path) -> dict[str, int]:
    """Wait until the group has SIZE running processes and nothing else happens for a moment."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = records(state_dir)
        if len(found) == SIZE:
            await asyncio.sleep(0.2)
            if records(state_dir) == found:
                return found
        await asyncio.sleep(0.01)
    raise RuntimeError(f"the group did not settle at {SIZE} processes: {records(state_dir)}")


async def trials(plugin_dir: Path, state_dir: Path, count: int) -> list[tuple[float, float]]:
    client = Client("instance-process", plugin_dir / "instance-process")
    events = client.subscribe("instance/")
    results = []
    try:
        await next_event(events, "subscribed")
        for _ in range(count):
            before = await settle(state_dir)
            victim_id, victim_pid = sorted(before.items())[0]
            start = time.perf_counter()
            os.kill(victim_pid, signal.SIGKILL)
            deleted = await next_event(events, "deleted")
            seen = time.perf_counter()
            created = await next_event(events, "created")
            replaced = time.perf_counter()
            assert deleted.id == victim_id, (deleted, victim_id)
            assert created.id not in before, created
            results.append(((seen - start) * 1000, (replaced - start) * 1000))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await client.close()
    return results


def table(results: list[tuple[float, float]]) -> str:
    rows = [f"{'trial':>5}  {'exit seen ms':>12}  {'replaced ms':>11}"]
    rows += [f"{i:>5}  {seen:>12.2f}  {done:>11.2f}" for i, (seen, done) in enumerate(results, 1)]
    for name, fn in (("median", statistics.median), ("min", min), ("max", max)):
        rows.append(
            f"{name:>5}  {fn(r[0] for r in results):>12.2f}  {fn(r[1] for r in results):>11.2f}"
        )
    ordered = sorted(r[1] for r in results)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    rows.append(f"{'p90':>5}  {'':>12}  {p90:>11.2f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials: expected at least 1")

    home = short_tempdir("ikbench")
    env = isolated_env(home)
    state_dir = home / "processes"
    env["INFRAKIT_INSTANCE_PROCESS_DIR"] = str(state_dir)
    daemon = Daemon(
        [
            "infrakit",
            "plugin",
            "start",
            "group",
            "process",
            "vanilla",
            "-o",
            "group.poll-interval=1h",
            "-o",
            "group.store=memory",
            "-o",
            "process.grace=2s",
            "--log-level",
            "warning",
        ],
        env,
        sockets=["group", "instance-process", "flavor-vanilla"],
    )
    daemon.start()
    try:
        spec = json.loads(EXAMPLE.read_text())
        spec["Properties"]["Provisioning"] = {"CrashLoopWindow": "0s"}
        spec_path = home / "process.json"
        spec_path.write_text(json.dumps(spec))
        committed = run_cli(["group", "commit", str(spec_path)], env)
        if committed.returncode != 0:
            raise SystemExit(f"commit failed: {committed.stderr.strip()}")
        results = asyncio.run(trials(home / "plugins", state_dir, args.trials))
        print(f"heal of 1 killed process in a group of {SIZE} ({args.trials} trials)")
        print(table(results))
    finally:
        run_cli(["group", "destroy", "workers"], env)
        deadline = time.monotonic() + 15
        while records(state_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in records(state_dir).values():  # destroy did not finish: kill what is left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)  # let the daemon reap them before it stops
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
