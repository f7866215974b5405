"""Heal: delete 3 of 10 instance files and time until there are 10 again (3 new IDs).

This is the tutorial's "simulate a disaster" step at default settings (resync every 10 s; the
file plugin's change events are what trigger the heal). Each trial starts a fresh stack holding a
group of 10, deletes 3 random instance files at once and records two times from the deletion:

* **files back**: the instance directory holds 10 ``instance-*`` files again and none of the
  deleted names (the directory is listed every 0.5 ms);
* **group converged**: the group's ``converged`` event arrived (``GET /events``).

Run::

    .venv/bin/python -m bench.heal [--trials 15] [--stack up|daemons]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence

from bench.report import Metric, bench_main, load_now
from bench.rig import Stack, commit_and_wait, group_spec, instance_files, running

SIZE = 10
DELETE = 3


def measure(trials: int, layout: str) -> list[Metric]:
    files_back = Metric(
        key="heal_files",
        label=f"heal: {DELETE} of {SIZE} files deleted -> {SIZE} files",
        unit="ms",
        target=30.0,
        infrakit="8300 / 3300 ms",
        load=load_now(),
    )
    converged = Metric(
        key="heal_converged",
        label=f"heal: {DELETE} of {SIZE} deleted -> group converged",
        unit="ms",
        target=30.0,
        infrakit="8300 / 3300 ms",
    )
    rng = random.Random(7)
    for trial in range(trials):
        # A fresh stack per trial: the controller counts an instance that vanishes within
        # Provisioning.CrashLoopWindow (5 min) of its creation as a failed create, so deleting
        # 3 young instances again and again would (rightly) open the crash-loop breaker after
        # 5 deaths. Every trial is therefore the user's first "disaster", at default settings.
        with running(layout) as stack:
            commit_and_wait(stack, group_spec("cattle", SIZE))
            time.sleep(0.2 + rng.random() * 0.3)  # settle; do not phase-lock with timers
            back, conv = _one_heal(stack, rng)
        files_back.samples.append(back * 1000)
        converged.samples.append(conv * 1000)
        print(
            f"  trial {trial + 1}: files back {back * 1000:.1f} ms, converged {conv * 1000:.1f} ms",
            flush=True,
        )
    files_back.load += load_now()
    converged.load = files_back.load
    return [files_back, converged]


def _one_heal(stack: Stack, rng: random.Random) -> tuple[float, float]:
    """Delete DELETE random instance files; seconds until files are back, and until converged."""
    names = instance_files(stack.instances)
    if len(names) != SIZE:
        raise RuntimeError(f"expected {SIZE} instance files before the trial, got {names}")
    victims = set(rng.sample(names, DELETE))
    with stack.events("group/cattle") as events:
        started = time.perf_counter()
        for name in victims:
            os.unlink(stack.instances / name)
        deadline = time.monotonic() + 60
        while True:
            now = instance_files(stack.instances)
            if len(now) == SIZE and not victims.intersection(now):
                back = time.perf_counter() - started
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healed within 60 s: {sorted(now)}")
            time.sleep(0.0005)
        stamp, _ = events.wait_for("converged", after=started, timeout=60)
    return back, stamp - started


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials, args.stack)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("heal", __doc__ or "", run, default_trials=15, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
