"""Many groups at once: N groups of 10 committed together -> all converged (``infrakit up``).

Each trial starts a fresh stack, follows ``group/`` events, commits N groups of 10 (the
tutorial's cattle spec, one ID each) through the group socket as fast as it answers, and stops the
clock when every group has reported ``converged`` and the file plugin lists 10 instances for each.
It reports the wall time, the stack's CPU seconds, and the reconcile passes per group
(``Group.Status`` -> ``Passes``, median over the groups). The wanted shape is linear: 10x the
groups must cost at most 11x the time. Run::

    .venv/bin/python -m bench.groups [--trials 3] [--counts 10,100,1000] [--stack up|daemons]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from bench.report import Metric, bench_main, load_now
from bench.rig import Stack, group_spec, running

SIZE = 10
#: count -> target seconds for all converged
TARGETS: dict[int, float | None] = {10: None, 100: None, 1000: 10.0}


def one_trial(stack: Stack, count: int, timeout: float) -> tuple[float, float, float]:
    """(seconds until all converged, CPU seconds of the stack, median passes per group)."""
    ids = [f"g{i:04d}" for i in range(count)]
    cpu_before = stack.cpu_seconds()
    with stack.events("group/") as events:
        started = time.perf_counter()
        for gid in ids:
            stack.commit(group_spec(gid, SIZE))
        pending = set(ids)
        seen = 0
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {count} groups not converged in {timeout}s")
            with events._cond:
                new = events.events[seen:]
                seen = len(events.events)
                if not new:
                    events._cond.wait(0.2)
            for _, doc in new:
                if doc.get("Type") == "converged":
                    pending.discard(str(doc.get("Topic", "")).removeprefix("group/"))
            if not pending:
                # Check the provider really holds them (a premature event would lie).
                short = [gid for gid in ids if len(stack.describe(gid)) != SIZE]
                pending.update(short)
                if short:
                    time.sleep(0.05)
        took = time.perf_counter() - started
    cpu = stack.cpu_seconds() - cpu_before
    client = stack.client("group")
    passes = [client.call("Group.Status", {"Name": "", "ID": gid}).get("Passes", 0) for gid in ids]
    return took, cpu, statistics.median(passes)


def measure(counts: Sequence[int], trials: int, layout: str) -> list[Metric]:
    metrics = []
    for count in counts:
        wall = Metric(
            key=f"groups_{count}",
            label=f"{count} groups x {SIZE} -> all converged",
            unit="s",
            target=TARGETS.get(count),
            load=load_now(),
        )
        cpu = Metric(key=f"groups_{count}_cpu", label="  CPU seconds of the stack", unit="s")
        passes = Metric(
            key=f"groups_{count}_passes",
            label="  reconcile passes per group (median)",
            unit="",
            target=15.0 if count >= 300 else None,
        )
        for trial in range(trials):
            with running(layout) as stack:
                took, used, per_group = one_trial(stack, count, timeout=max(60.0, count * 1.0))
            wall.samples.append(took)
            cpu.samples.append(used)
            passes.samples.append(per_group)
            print(
                f"  {count:>5} groups, trial {trial + 1}: {took:.2f} s, {used:.1f} CPU-s, "
                f"{per_group:g} passes/group",
                flush=True,
            )
        wall.load += load_now()
        metrics += [wall, cpu, passes]
    return metrics


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--counts", default="10,100,1000", help="comma-separated group counts")


def run(args: argparse.Namespace) -> list[Metric]:
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    return measure(counts, args.trials, args.stack)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("groups", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
