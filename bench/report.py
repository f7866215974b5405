"""Results of a benchmark run: metrics against targets, the printed table, the JSON file, the machine.

Every bench module builds a list of :class:`Metric` (one per figure, holding every sample it took)
and hands it to :func:`bench_main`, which gives all benches the same command line::

    .venv/bin/python -m bench.<name> [--trials N] [--json results.json] [--stack up|daemons]

and prints ``metric | value | target | met? | InfraKit SEED / HEAD | samples`` plus the machine
(cores, Python, load average before and after, because the machine is shared and results are
noisy). The value of a metric is the median of its samples.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Metric", "bench_main", "machine_info", "print_table", "write_json"]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Metric:
    """One measured figure: its samples, its target and InfraKit's figure for comparison."""

    key: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    #: Target value, or None when the figure is only reported.
    target: float | None = None
    #: "max": value must be <= target; "min": value must be >= target.
    kind: str = "max"
    #: Go InfraKit's figure on this machine, as text (``"0.38 / 0.49"`` = SEED / HEAD).
    infrakit: str = ""
    note: str = ""
    #: Load averages (1, 5, 15 min) when the figure was taken.
    load: list[float] = field(default_factory=list)

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def met(self) -> bool | None:
        value = self.value
        if value is None or self.target is None:
            return None
        return value <= self.target if self.kind == "max" else value >= self.target

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["value"] = self.value
        doc["met"] = self.met
        return doc


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def print_table(metrics: Sequence[Metric], out: Any = None) -> None:
    """The result table: one row per metric (median of its samples)."""
    out = out or sys.stdout
    rows = [("metric", "value", "target", "met?", "InfraKit SEED / HEAD", "samples")]
    for m in metrics:
        target = "-" if m.target is None else ("<= " if m.kind == "max" else ">= ")
        if m.target is not None:
            target += _fmt(m.target, m.unit)
        met = {None: "-", True: "yes", False: "NO"}[m.met]
        samples = ", ".join(_fmt(s, "") for s in m.samples[:12])
        if len(m.samples) > 12:
            samples += f", ... ({len(m.samples)})"
        rows.append((m.label, _fmt(m.value, m.unit), target, met, m.infrakit or "-", samples))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for m in metrics:
        if m.note:
            print(f"  * {m.label}: {m.note}", file=out)


def machine_info() -> dict[str, Any]:
    """Cores, CPU, Python, date, load and the commit measured."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loop": loop,
        "commit": commit,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(
    path: str | Path, bench: str, metrics: Sequence[Metric], info: dict[str, Any]
) -> None:
    """Write (or add to) a results file: ``{"machine": ..., "benches": {name: [metric, ...]}}``."""
    target = Path(path)
    doc: dict[str, Any] = {}
    if target.exists():
        try:
            doc = json.loads(target.read_text())
        except ValueError:
            doc = {}
    doc.setdefault("benches", {})[bench] = {
        "machine": info,
        "metrics": [m.to_json() for m in metrics],
    }
    target.write_text(json.dumps(doc, indent=2) + "\n")


def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_main(
    name: str,
    description: str,
    run: Callable[[argparse.Namespace], list[Metric]],
    *,
    default_trials: int = 3,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> list[Metric]:
    """Parse the common options, run ``run(args)``, print the table, write JSON if asked."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument(
        "--trials", type=int, default=default_trials, help=f"repetitions (default {default_trials})"
    )
    parser.add_argument("--json", metavar="FILE", help="write (or add to) a JSON results file")
    parser.add_argument(
        "--stack",
        choices=["up", "daemons"],
        default="up",
        help="`infrakit up` (one process) or the separate console-script daemons",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="run every stack process under pyinstrument, reports in DIR (slows it down)",
    )
    parser.add_argument(
        "--instance-dir-base",
        metavar="DIR",
        help="put instance files under DIR (e.g. /dev/shm) instead of the stack's home in /tmp",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    from bench import rig

    if args.profile:
        rig.PROFILE_DIR = Path(args.profile)
    if args.instance_dir_base:
        rig.INSTANCE_BASE = Path(args.instance_dir_base)
    info = machine_info()
    started = time.monotonic()
    print(
        f"bench {name} ({args.stack}): {info['cores']} cores, Python {info['python']}, "
        f"{info['loop']}, commit {info['commit']}, load {info['loadavg']}"
        + (f", instance files under {args.instance_dir_base}" if args.instance_dir_base else ""),
        flush=True,
    )
    try:
        metrics = run(args)
    finally:
        rig.remove_deferred()
    info["loadavg_after"] = load_now()
    info["seconds"] = round(time.monotonic() - started, 1)
    info["stack"] = args.stack
    info["instance_dir_base"] = args.instance_dir_base or "/tmp (stack home)"
    print()
    print_table(metrics)
    print(f"\nload before {info['loadavg']} after {info['loadavg_after']}; {info['seconds']} s")
    if args.json:
        write_json(args.json, name, metrics, info)
        print(f"results added to {args.json}")
    return metrics
