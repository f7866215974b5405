"""One group from 1 000 to 100 000 instances (``infrakit up``, file plugin): is everything linear?

For each size, on disk (the stack's INFRAKIT_HOME) and on tmpfs (``/dev/shm``), a fresh stack
commits the tutorial's cattle spec and the clock stops at the group's ``converged`` event (the
file plugin then lists exactly Size instances at the spec's hash). The stack is warm, as a
running site's is (``commit_and_wait(warm=True)``: a ``Pretend`` commit of the same spec before
the clock starts), so the one-time load of the spec models is not charged to the commit; that
load is its own figure at the smallest size: the *cold* commit, sent the moment ``up`` answers.
Beside each trial the bench times writing as many files with no infrakit at all (the
*file-writing floor*), and reports the ratio. At the largest size it then measures the stack's idle CPU (events live, nothing changing)
and its RSS; and, in this process, the CPU of one reconcile pass per instance at 10 000. The
growth fit is the exponent ``k`` of ``time ~ size**k`` between the smallest and largest size
(1.0 is linear). Run::

    .venv/bin/python -m bench.scale [--trials 1] [--sizes 1000,10000,100000] [--where disk,tmpfs]
        [--idle 30] [--compare OTHER/.venv/bin] [--no-pass]

``--compare`` runs another venv's build beside this one, alternating trial by trial.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import rig
from bench.converge import file_floor
from bench.report import Metric, bench_main, load_now
from bench.rig import commit_and_wait, group_spec, running
from bench.startup import _builds, _label, _using

PASS_SIZE = 10_000


def _where(place: str) -> Path | None:
    if place == "disk":
        return None
    if place == "tmpfs":
        return Path("/dev/shm")
    raise SystemExit(f"--where {place}: expected disk or tmpfs")


def measure_sizes(
    sizes: Sequence[int],
    places: Sequence[str],
    trials: int,
    idle_seconds: float,
    builds: Sequence[tuple[str, Path]] = (),
) -> list[Metric]:
    """Each size and place; with two ``builds`` (``--compare``) both, alternating trial by trial
    (which goes first swaps each trial), beside one floor per trial."""
    builds = list(builds) or _builds(None)
    metrics: list[Metric] = []
    for place in places:
        rig.INSTANCE_BASE = _where(place)
        medians: dict[tuple[int, str], float] = {}
        for size in sizes:
            pairs = {build: _size_metrics(place, size, build, builds) for build, _ in builds}
            for trial in range(trials):
                floor = file_floor(size)
                order = builds if trial % 2 == 0 else builds[::-1]
                for build, bin_dir in order:
                    metric, ratio = pairs[build]
                    with _using(bin_dir), running("up") as stack:
                        took = commit_and_wait(
                            stack,
                            group_spec("cattle", size),
                            timeout=max(120.0, size / 200),
                            warm=True,
                        )
                        if size == max(sizes) and trial == 0:
                            suffix = "" if len(builds) == 1 else f"_{build}"
                            metrics += _idle_and_rss(stack, place, size, idle_seconds, suffix)
                    metric.samples.append(took)
                    ratio.samples.append(took / floor if floor > 0 else math.inf)
                    print(
                        f"  {size:>7} ({place}) [{build}], trial {trial + 1}: {took:.2f} s; "
                        f"files alone {floor:.2f} s ({took / floor:.1f}x)",
                        flush=True,
                    )
                rig.remove_deferred()  # before the next size: keep its disk fresh
            if size == min(sizes):
                metrics += _cold_commits(place, size, trials, builds)
            for build, (metric, ratio) in pairs.items():
                metric.load += load_now()
                medians[size, build] = metric.value or 0.0
                metrics += [metric, ratio]
        low, high = min(sizes), max(sizes)
        for build, _ in builds:
            if high > low and medians.get((low, build)) and medians.get((high, build)):
                k = math.log(medians[high, build] / medians[low, build]) / math.log(high / low)
                fit = Metric(
                    key=f"scale_{place}_growth" + ("" if len(builds) == 1 else f"_{build}"),
                    label=_label(
                        f"  growth fit time ~ size^k, {low}..{high} ({place})", build, builds
                    ),
                    unit="",
                    target=1.1,
                )
                fit.samples.append(k)
                metrics.append(fit)
    rig.INSTANCE_BASE = None
    return metrics


def _cold_commits(
    place: str, size: int, trials: int, builds: Sequence[tuple[str, Path]]
) -> list[Metric]:
    """The first commit sent the moment ``up`` answers: it also waits for the spec models to load
    (no target of its own; the start figure's and the warm ratio's cover its two halves)."""
    metrics = {
        build: Metric(
            key=f"scale_{place}_{size}_cold" + ("" if len(builds) == 1 else f"_{build}"),
            label=_label(
                f"  cold: committed the moment `up` answers ({size}, {place})", build, builds
            ),
            unit="s",
            load=load_now(),
        )
        for build, _ in builds
    }
    for trial in range(trials):
        for build, bin_dir in builds if trial % 2 == 0 else builds[::-1]:
            with _using(bin_dir), running("up") as stack:
                took = commit_and_wait(stack, group_spec("cattle", size), timeout=120.0)
            metrics[build].samples.append(took)
            print(f"  {size:>7} ({place}) [{build}], cold trial {trial + 1}: {took:.2f} s")
    for metric in metrics.values():
        metric.load += load_now()
    return list(metrics.values())


def _size_metrics(
    place: str, size: int, build: str, builds: Sequence[tuple[str, Path]]
) -> tuple[Metric, Metric]:
    suffix = "" if len(builds) == 1 else f"_{build}"
    metric = Metric(
        key=f"scale_{place}_{size}{suffix}",
        label=_label(f"commit -> converged, {size} instances ({place})", build, builds),
        unit="s",
        target=20.0 if (place == "tmpfs" and size == 100_000) else None,
        load=load_now(),
    )
    ratio = Metric(
        key=f"scale_{place}_{size}_floor_ratio{suffix}",
        label=_label("  ratio to writing the files alone", build, builds),
        unit="x",
        target=3.0,
    )
    return metric, ratio


def _idle_and_rss(
    stack: rig.Stack, place: str, size: int, seconds: float, suffix: str = ""
) -> list[Metric]:
    time.sleep(2.0)  # let the converge's last writes and events drain
    rss = stack.rss_bytes()
    before = stack.cpu_seconds()
    time.sleep(seconds)
    idle = (stack.cpu_seconds() - before) * 60.0 / seconds
    per_instance = Metric(
        key=f"rss_{place}_{size}{suffix}",
        label=f"  RSS of `infrakit up` at {size} instances{suffix.replace('_', ' ')}",
        unit="MB",
        target=50 + 1.5 * size / 1024,
    )
    per_instance.samples.append(rss / 1e6)
    cpu = Metric(
        key=f"idle_{place}_{size}{suffix}",
        label=f"  idle CPU per 60 s at {size} instances{suffix.replace('_', ' ')}",
        unit="s",
        target=1.0 if size >= 100_000 else None,
        note=f"measured over {seconds:g} s, scaled to 60",
    )
    cpu.samples.append(idle)
    print(f"  idle at {size}: {idle:.2f} CPU-s per 60 s, RSS {rss / 1e6:.1f} MB", flush=True)
    return [per_instance, cpu]


def pass_cpu_per_instance(size: int = PASS_SIZE, trials: int = 5) -> Metric:
    """CPU of one reconcile pass per instance, in this process: the real controller over the
    real file plugin (on tmpfs) and the vanilla flavor, through the in-process adapters."""
    from infrakit.controller.group.controller import GroupController
    from infrakit.plugins.file.plugin import FileInstancePlugin
    from infrakit.plugins.vanilla.plugin import VanillaFlavor
    from infrakit.spi import group
    from infrakit.spi.adapt import AsyncFlavor, AsyncInstance

    async def run() -> list[float]:
        directory = Path(tempfile.mkdtemp(prefix="ikp", dir="/dev/shm"))
        rig.remove_later(directory)
        files = FileInstancePlugin(directory)
        await files.start()
        inst = AsyncInstance(files, "instance-file")
        flav = AsyncFlavor(VanillaFlavor(), "flavor-vanilla")
        controller = GroupController(lambda n: inst, lambda n: flav, poll_interval=3600)
        await controller.start()
        try:
            doc = group_spec("cattle", size)
            await controller.commit_group(group.Spec("cattle", doc["Properties"]), False)
            g = controller.groups["cattle"]
            while not (g.converged and not g.state.creating):
                await asyncio.sleep(0.05)
            samples = []
            for _ in range(trials):
                started = time.process_time()
                await controller._reconcile("cattle")
                samples.append((time.process_time() - started) / size * 1e6)
            return samples
        finally:
            await controller.stop()
            await files.stop()

    metric = Metric(
        key=f"pass_cpu_{size}",
        label=f"one reconcile pass, CPU per instance at {size}",
        unit="us",
        target=5.0,
        load=load_now(),
    )
    metric.samples = asyncio.run(run())
    metric.load += load_now()
    return metric


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated sizes")
    parser.add_argument("--where", default="disk,tmpfs", help="disk, tmpfs or both")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds to measure idle CPU")
    parser.add_argument("--compare", metavar="BIN", help="also measure this venv's bin directory")
    parser.add_argument("--no-pass", action="store_true", help="skip the in-process pass figure")


def run(args: argparse.Namespace) -> list[Metric]:
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    places = [p.strip() for p in args.where.split(",") if p.strip()]
    metrics = [] if args.no_pass else [pass_cpu_per_instance()]
    builds = _builds(args.compare)
    return metrics + measure_sizes(sizes, places, args.trials, args.idle, builds)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("scale", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
