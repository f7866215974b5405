"""Commit -> converged for 5, 100 and 1000 instances with ``infrakit up`` (file plugin, vanilla).

Each trial starts a fresh stack in its own INFRAKIT_HOME, commits the tutorial's cattle spec with
the given Size through the group socket, and stops the clock at the group's ``converged`` event
(``GET /events?topic=group/<id>``); the file plugin is then checked to hold exactly Size instances
at the spec's config hash. For 1000 instances and more, each trial also times writing as many
files with no infrakit at all (the disk's floor; it varies a lot on this shared VM). Run::

    .venv/bin/python -m bench.converge [--trials 3] [--sizes 5,100,1000] [--stack up|daemons]

The 10 000-instance figure is ``bench.converge10k`` (separate: it takes longer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import rig
from bench.report import Metric, bench_main, load_now
from bench.rig import commit_and_wait, group_spec, running

#: size -> (target seconds, InfraKit SEED / HEAD on this machine)
TARGETS: dict[int, tuple[float | None, str]] = {
    5: (None, ""),
    100: (None, ""),
    1000: (0.3, "0.38 / 0.49 s"),
    10_000: (3.0, ""),
}


def file_floor(count: int) -> float:
    """Seconds this machine needs to write ``count`` small files the way the file plugin does
    (temp file + rename, one directory), with no infrakit involved: the floor under any
    commit -> converged figure of the file plugin."""
    directory = Path(tempfile.mkdtemp(prefix="ikf", dir=rig.INSTANCE_BASE or "/tmp"))
    data = json.dumps(group_spec("cattle", count), indent=0).encode()
    try:
        started = time.perf_counter()
        for i in range(count):
            temp = directory / f".instance-{i}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temp, directory / f"instance-{i}")
        return time.perf_counter() - started
    finally:
        rig.remove_later(directory)


def measure(
    sizes: Sequence[int], trials: int, layout: str, prefix: str = "converge"
) -> list[Metric]:
    metrics = []
    for size in sizes:
        target, infrakit = TARGETS.get(size, (None, ""))
        metric = Metric(
            key=f"{prefix}_{size}",
            label=f"commit -> converged, {size} instances",
            unit="s",
            target=target,
            infrakit=infrakit,
            load=load_now(),
        )
        floor = Metric(
            key=f"file_floor_{size}",
            label=f"  floor: write {size} files, no infrakit",
            unit="s",
            note="temp file + rename per instance, as the file plugin does; this machine's disk",
        )
        for trial in range(trials):
            if size >= 1000:
                floor.samples.append(file_floor(size))
            with running(layout) as stack:
                seconds = commit_and_wait(
                    stack, group_spec("cattle", size), timeout=max(60.0, size / 50)
                )
            metric.samples.append(seconds)
            extra = (
                f" (writing {size} files alone: {floor.samples[-1]:.3f} s)" if floor.samples else ""
            )
            print(f"  {size:>6} instances, trial {trial + 1}: {seconds:.3f} s{extra}", flush=True)
        metric.load += load_now()
        metrics.append(metric)
        if floor.samples:
            floor.load = metric.load
            metrics.append(floor)
    return metrics


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="5,100,1000", help="comma-separated group sizes")


def run(args: argparse.Namespace) -> list[Metric]:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    return measure(sizes, args.trials, args.stack)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("converge", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
