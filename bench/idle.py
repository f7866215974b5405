"""Idle CPU of the whole stack holding 1000 converged instances, per 60 s (default settings).

A fresh stack (``infrakit up`` by default, or the separate daemons with ``--stack daemons``)
converges a group of 1000, settles for 5 s, then the CPU time (user + system, psutil, every stack
process and its children) is read before and after each of ``--trials`` consecutive windows of
``--window`` seconds. Nothing talks to the stack meanwhile: what it spends is its resync timer
(10 s), health sweeps, event plumbing and the file plugin's watcher. Run::

    .venv/bin/python -m bench.idle [--trials 3] [--window 60] [--stack up|daemons]

The default run takes a little over 3 minutes (three 60 s windows).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from bench.report import Metric, bench_main, load_now
from bench.rig import commit_and_wait, group_spec, running

SIZE = 1000


def measure(trials: int, layout: str, window: float) -> list[Metric]:
    idle = Metric(
        "idle_cpu_1000",
        f"idle CPU, {SIZE} instances, per 60 s",
        "CPU-s",
        target=0.2,
        infrakit="0.22 / 0.64 CPU-s",
        load=load_now(),
        note=f"user+sys of all stack processes over {window:g} s windows, scaled to 60 s",
    )
    with running(layout) as stack:
        commit_and_wait(stack, group_spec("cattle", SIZE))
        time.sleep(5.0)
        for trial in range(trials):
            before = stack.cpu_seconds()
            time.sleep(window)
            used = (stack.cpu_seconds() - before) * 60.0 / window
            idle.samples.append(used)
            print(f"  window {trial + 1}: {used:.3f} CPU-s per 60 s", flush=True)
    idle.load += load_now()
    return [idle]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=float, default=60.0, help="seconds per window (60)")


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials, args.stack, args.window)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("idle", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
