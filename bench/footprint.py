"""Footprint with 1000 instances: memory of the stack, and the CLI's wall time.

Per trial a fresh ``infrakit up`` converges a group of 1000, then:

* **RSS**: resident memory of every stack process and its children (psutil), 1 s after
  convergence;
* **CLI wall time**: ``infrakit instance --name instance-file describe`` (prints the 1000-row
  table), timed by hyperfine (``-N --warmup 3 --runs 15``) when it is installed, else by
  subprocess timing of 15 runs; the median per trial.

Run::

    .venv/bin/python -m bench.footprint [--trials 3] [--runs 15] [--stack up|daemons]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import Metric, bench_main, load_now
from bench.rig import commit_and_wait, group_spec, running
from infrakit.testing.processes import bin_path

SIZE = 1000


def cli_wall_ms(
    env: dict[str, str], command: list[str], runs: int, *, rows: int | None = SIZE
) -> tuple[float, float, str]:
    """Median wall ms of ``command`` (an infrakit command line, program path first), its mean
    user+sys CPU ms, and the tool; it must print ``rows`` instance rows (None: not checked)."""
    argv = command
    check = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {check.stderr}")
    printed = [line for line in check.stdout.splitlines() if line.startswith("instance-")]
    if rows is not None and len(printed) != rows:
        raise RuntimeError(
            f"{' '.join(argv)} printed {len(printed)} instance rows, expected {rows}"
        )
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [
                    hyperfine,
                    "-N",
                    "--warmup",
                    "3",
                    "--runs",
                    str(runs),
                    "--style",
                    "none",
                    "--export-json",
                    out.name,
                    " ".join(command),
                ],
                env=env,
                capture_output=True,
                check=True,
            )
            result = json.loads(Path(out.name).read_text())["results"][0]
        return result["median"] * 1000, (result["user"] + result["system"]) * 1000, "hyperfine"
    times, cpu = [], []
    for i in range(runs + 3):
        before = os.times()
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        elapsed = time.perf_counter() - started
        after = os.times()
        if i >= 3:
            times.append(elapsed)
            cpu.append(
                after.children_user
                + after.children_system
                - before.children_user
                - before.children_system
            )
    return statistics.median(times) * 1000, statistics.mean(cpu) * 1000, "subprocess"


def measure(trials: int, layout: str, runs: int) -> list[Metric]:
    rss = Metric(
        "rss_1000",
        f"RSS of the stack holding {SIZE} instances",
        "MB",
        target=60.0,
        infrakit="48 / 161 MB",
        load=load_now(),
        note="all stack processes and their children (psutil RSS)",
    )
    cli = Metric(
        "cli_describe_1000",
        f"`infrakit instance describe`, {SIZE} instances",
        "ms",
        target=80.0,
        infrakit="25 / 84 ms",
    )
    cli_cpu = Metric(
        "cli_describe_1000_cpu",
        "  its CPU time (user+sys)",
        "ms",
        note="less sensitive to other load on the machine than wall time",
    )
    for trial in range(trials):
        with running(layout) as stack:
            commit_and_wait(stack, group_spec("cattle", SIZE))
            time.sleep(1.0)
            rss.samples.append(stack.rss_bytes() / 1e6)
            command = [bin_path("infrakit"), "instance", "--name", "instance-file", "describe"]
            ms, cpu_ms, tool = cli_wall_ms(stack.env, command, runs)
            cli.samples.append(ms)
            cli_cpu.samples.append(cpu_ms)
            cli.note = f"median of {runs} runs per trial, timed with {tool}"
        print(
            f"  trial {trial + 1}: RSS {rss.samples[-1]:.1f} MB, CLI {cli.samples[-1]:.1f} ms "
            f"wall, {cli_cpu.samples[-1]:.1f} ms CPU",
            flush=True,
        )
    rss.load += load_now()
    cli.load = cli_cpu.load = rss.load
    return [rss, cli, cli_cpu]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=15, help="CLI runs per trial (default 15)")


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials, args.stack, args.runs)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("footprint", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
