"""Idle CPU of the whole stack holding 1000 converged instances, per 60 s (default settings).

A fresh stack (``infrakit up`` by default, or the separate daemons with ``--stack daemons``)
converges a group of 1000, settles for 5 s, then the CPU time (user + system, psutil, every stack
process and its children) is read before and after each of ``--trials`` consecutive windows of
``--window`` seconds. Nothing talks to the stack meanwhile: what it spends is its resync timer
(10 s), health sweeps, event plumbing and the file plugin's watcher. Run::

    .venv/bin/python -m bench.idle [--trials 3] [--window 60] [--stack up|daemons]
                                   [--compare OTHER_VENV/bin] [--scrape SECONDS]

The default run takes a little over 3 minutes (three 60 s windows). ``--compare`` measures another
build side by side (e.g. a worktree of a commit before a change, its own venv): each trial starts a
fresh stack of each build in turn, one window each, alternating, so both see the same load.
``--scrape N`` also GETs the group socket's ``/metrics`` every N seconds during this build's
windows, as a Prometheus would (the other build may have no metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import rig
from bench.report import Metric, bench_main, load_now
from bench.rig import Stack, commit_and_wait, group_spec, running
from infrakit.testing.processes import http_get

SIZE = 1000


def measure(
    trials: int,
    layout: str,
    window: float,
    *,
    compare: Path | None = None,
    scrape: float | None = None,
) -> list[Metric]:
    builds: list[tuple[str, Path | None]] = [("this", None)]
    if compare is not None:
        if not (compare / "infrakit").exists():
            raise SystemExit(f"--compare {compare}: no infrakit there; give a venv's bin directory")
        builds.insert(0, ("compare", compare))
    figures = {label: _metric(label, len(builds), window, scrape) for label, _ in builds}
    for trial in range(trials):
        for label, bin_dir in builds:
            with _using(bin_dir), running(layout) as stack:
                commit_and_wait(stack, group_spec("cattle", SIZE))
                time.sleep(5.0)
                every = scrape if label == "this" else None
                used = _window(stack, window, every)
            figures[label].samples.append(used)
            print(f"  window {trial + 1} [{label}]: {used:.3f} CPU-s per 60 s", flush=True)
    for metric in figures.values():
        metric.load += load_now()
    return list(figures.values())


def _metric(label: str, builds: int, window: float, scrape: float | None) -> Metric:
    key, text = "idle_cpu_1000", f"idle CPU, {SIZE} instances, per 60 s"
    if builds > 1:
        key, text = f"{key}_{label}", f"{text} [{label}]"
    note = f"user+sys of all stack processes over {window:g} s windows, scaled to 60 s"
    if scrape and label == "this":
        note += f"; /metrics scraped every {scrape:g} s"
    return Metric(
        key, text, "CPU-s", target=0.2, infrakit="0.22 / 0.64 CPU-s", load=load_now(), note=note
    )


def _window(stack: Stack, window: float, scrape: float | None) -> float:
    """CPU-s the stack spends in ``window`` seconds, per 60 s (scraping ``/metrics`` meanwhile
    every ``scrape`` seconds when given)."""
    before = stack.cpu_seconds()
    end = time.monotonic() + window
    while scrape and time.monotonic() + scrape < end:
        answer = http_get(stack.socket("group"), "/metrics")
        if answer.status != 200:
            raise SystemExit(f"GET /metrics on the group socket: {answer.status}")
        time.sleep(scrape)
    time.sleep(max(0.0, end - time.monotonic()))
    return (stack.cpu_seconds() - before) * 60.0 / window


@contextlib.contextmanager
def _using(bin_dir: Path | None) -> Iterator[None]:
    rig.BIN_DIR = bin_dir
    try:
        yield
    finally:
        rig.BIN_DIR = None


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=float, default=60.0, help="seconds per window (60)")
    parser.add_argument("--compare", metavar="BIN", help="also measure this venv's bin directory")
    parser.add_argument(
        "--scrape", type=float, metavar="SECONDS", help="GET /metrics this often (this build)"
    )


def run(args: argparse.Namespace) -> list[Metric]:
    compare = Path(args.compare) if args.compare else None
    return measure(args.trials, args.stack, args.window, compare=compare, scrape=args.scrape)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("idle", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
