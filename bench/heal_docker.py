"""Heal time of a docker group: one of 3 containers is killed and removed -> a replacement runs.

The stack is what a user runs: ``infrakit plugin start group docker vanilla`` (one process) against
a private podman API service (tests/podman_fixture.py: runc, lowered ulimits, a local busybox
image), the group committed from examples/docker.json (3 ``sleep 1000`` containers). The group's
resync timer is set to 60 s, so every heal measured here is driven by the engine's events, and its
crash-loop window to 0 s (the bench kills young containers on purpose; with the default 30 s window
the fifth quick kill would, rightly, trip the group's breaker).

Each trial kills one running container (SIGKILL, then remove - what ``podman rm -f -t 0`` does) and
reads the engine's own event stream (docker-py, in a thread) for timestamps:

* ``heal``    - from just before the kill request to the engine's ``start`` of the replacement
                (the event's own ``timeNano``, so the stream's delivery delay is not counted);
* ``die``     - kill request -> the engine's ``die`` timestamp;
* ``deliver`` - the engine's ``die`` timestamp -> the event reaching a subscriber (this process;
                the plugin reads the same stream the same way);
* ``replace`` - ``die`` -> replacement ``start`` (delivery to the plugin + reconcile pass +
                create + start).

Run::

    .venv/bin/python -m bench.heal_docker [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.podman_fixture import Podman, PodmanUnavailable

from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, isolated_env, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "docker.json"
GROUP_LABEL = "infrakit.group=workers"


class EngineEvents:
    """The engine's container events of the group, stamped on arrival, in a thread."""

    def __init__(self, podman: Podman) -> None:
        self.api = podman.client()
        self.stream = self.api.events(decode=True, filters={"type": "container"})
        self.queue: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for event in self.stream:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                if attributes.get("infrakit.group") == "workers":
                    self.queue.put((time.time_ns(), event))
        except Exception:  # closed by close()
            return

    def wait_for(self, action: str, deadline: float, not_id: str = "") -> tuple[int, int, str]:
        """(engine timeNano, arrival ns, container id) of the next ``action`` event."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {action} event in time")
            arrived, event = self.queue.get(timeout=left)
            if event.get("Action") == action and event.get("id") != not_id:
                return int(event["timeNano"]), arrived, str(event["id"])

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def close(self) -> None:
        self.stream.close()
        self.api.close()


def running(podman: Podman) -> list[str]:
    return [c["Id"] for c in podman.containers(label=GROUP_LABEL) if c["State"] == "running"]


def wait_running(podman: Podman, count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = running(podman)
        if len(ids) == count:
            return ids
        time.sleep(0.05)
    raise TimeoutError(f"{count} running containers not reached")


def measure(trials: int) -> dict[str, list[float]]:
    podman = Podman()
    home = short_tempdir("ikbh")
    env = isolated_env(home, DOCKER_HOST=podman.host)
    samples: dict[str, list[float]] = {"heal": [], "die": [], "deliver": [], "replace": []}
    stack: Daemon | None = None
    try:
        podman.start()
        stack = Daemon(
            [
                "infrakit",
                "plugin",
                "start",
                "group",
                "docker",
                "vanilla",
                "-o",
                "group.poll-interval=60s",
            ],
            env,
            sockets=["group", "instance-docker", "flavor-vanilla"],
        ).start()
        # The bench kills young containers on purpose: keep the crash-loop breaker out of it.
        doc = json.loads(EXAMPLE.read_text())
        doc["Properties"]["Provisioning"] = {"CrashLoopWindow": "0s"}
        spec = home / "docker.json"
        spec.write_text(json.dumps(doc))
        done = run_cli(["group", "commit", str(spec)], env)
        assert done.returncode == 0, done.stderr
        wait_running(podman, 3)
        events = EngineEvents(podman)
        api = podman.client()
        try:
            for trial in range(trials):
                time.sleep(0.5)  # quiet between trials
                events.drain()
                victim = running(podman)[0]
                t0 = time.time_ns()
                api.kill(victim, "SIGKILL")
                api.remove_container(victim, force=True)
                deadline = time.monotonic() + 20
                died, arrived, _ = events.wait_for("die", deadline)
                try:
                    started, _, new = events.wait_for("start", deadline, not_id=victim)
                except (TimeoutError, queue.Empty):
                    rows = podman.containers(all=True, label=GROUP_LABEL)
                    print(
                        "no replacement started; group containers:",
                        [(r["Id"][:12], r["State"]) for r in rows],
                    )
                    print(stack.output()[-3000:])
                    raise
                samples["heal"].append((started - t0) / 1e9)
                samples["die"].append((died - t0) / 1e9)
                samples["deliver"].append((arrived - died) / 1e9)
                samples["replace"].append((started - died) / 1e9)
                print(
                    f"  trial {trial + 1}: heal {samples['heal'][-1] * 1000:.0f} ms "
                    f"(die {samples['die'][-1] * 1000:.0f}, event delivery "
                    f"{samples['deliver'][-1] * 1000:.0f}, die->start {samples['replace'][-1] * 1000:.0f}) "
                    f"new {new[:12]}",
                    flush=True,
                )
                wait_running(podman, 3)
        finally:
            api.close()
            events.close()
        run_cli(["group", "destroy", "workers"], env)
    finally:
        if stack is not None:
            stack.stop()
        podman.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        samples = measure(args.trials)
    except PodmanUnavailable as exc:
        print(f"blocked: podman cannot run containers here: {exc}", file=sys.stderr)
        return 2
    summary = {
        name: {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }
        for name, values in samples.items()
    }
    print(json.dumps({"bench": "heal_docker", "trials": args.trials, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
