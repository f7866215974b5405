"""Start-up and the CLI's big reads: how long until infrakit answers, and what it holds in memory.

* **start**: from ``Popen`` of ``infrakit up`` (no spec) until every one of its sockets accepts a
  connection and answers ``Plugin.Implements`` (polled every 2 ms), and the same for each separate console-script daemon
  (``infrakit-instance-file``, ``infrakit-flavor-vanilla``, ``infrakit-flavor-combo``,
  ``infrakit-group-default``). A fresh ``INFRAKIT_HOME`` per trial; bytecode cached as a user's
  install has it.
* **CLI**: ``infrakit plugin kinds``; with 1000 instances committed through ``infrakit up``:
  ``infrakit instance --name instance-file describe`` and ``infrakit group describe cattle`` (each
  must print 1000 instance rows), median wall time of ``--runs`` runs after 3 warm-ups.
  ``--big 100000`` adds ``group describe`` at that size (one commit of 100 000: a minute or so).
* **RSS**: resident memory of ``infrakit up`` holding 0, 1000 and 10 000 instances
  (``--rss-sizes``), 1 s after convergence, with the target ``50 MB + 1.5 KB per instance``.
* **daemons**: InfraKit SEED's layout of three processes (file instance, vanilla flavor, group):
  start until all answer (wall time from the first ``Popen``), a commit of 1000 until converged
  (after a ``Pretend`` commit of the same spec, so the stack is warm: see ``bench.scale``),
  and their RSS summed 1 s later (targets 0.3 s / 0.5 s / 63 MB, SEED's own RSS), with the PSS
  sum beside it (shared libraries counted once).

``--compare DIR`` runs every figure also with the commands of another venv's ``bin`` (e.g.
``/work/main/.venv/bin``), alternating the two builds trial by trial, so a before/after is taken
side by side under the same load. Run::

    .venv/bin/python -m bench.startup [--trials 7] [--runs 15] [--compare /work/main/.venv/bin]
        [--rss-sizes 0,1000,10000] [--big 100000] [--only start,cli,rss,daemons]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

from bench import rig
from bench.footprint import cli_wall_ms
from bench.report import Metric, bench_main, load_now
from bench.rig import RawClient, commit_and_wait, group_spec, running, user_env

#: Command -> the sockets it serves, for the start figures; the target of each (seconds).
STARTS: dict[str, tuple[list[str], list[str], float]] = {
    "up": (["infrakit", "up"], ["instance-file", "flavor-vanilla", "flavor-combo", "group"], 0.25),
    "instance-file": (["infrakit-instance-file"], ["instance-file"], 0.3),
    "flavor-vanilla": (["infrakit-flavor-vanilla"], ["flavor-vanilla"], 0.3),
    "flavor-combo": (["infrakit-flavor-combo"], ["flavor-combo"], 0.3),
    "group-default": (["infrakit-group-default"], ["group"], 0.3),
}
CLI_SIZE = 1000


def _answers(path: Path) -> bool:
    """True once the plugin at ``path`` answers a JSON-RPC call (a listening socket whose server
    is not serving yet does not count)."""
    try:
        client = RawClient(path, timeout=2.0)
    except OSError:
        return False
    try:
        client.call("Plugin.Implements", {})
    except (OSError, RuntimeError):
        return False
    finally:
        client.close()
    return True


def start_seconds(
    bin_dir: Path, argv: list[str], sockets: list[str], timeout: float = 30.0
) -> tuple[float, float]:
    """Seconds from starting ``argv`` in a fresh home until every socket answers, and the CPU
    seconds (user+sys) the process used by then (less sensitive to the machine's load); then
    the process is stopped."""
    home = Path(tempfile.mkdtemp(prefix="iks", dir="/tmp"))
    rig.remove_later(home)
    env = user_env(home)
    if argv[0].startswith("infrakit-instance-file"):
        argv = [*argv, "--dir", str(home / "instances")]
    plugins = home / "plugins"
    with (home / "log").open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(bin_dir / argv[0]), *argv[1:]],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = started + timeout
        while not all(_answers(plugins / s) for s in sockets):
            if proc.poll() is not None or time.perf_counter() > deadline:
                out = (home / "log").read_text(errors="replace")
                raise RuntimeError(f"{' '.join(argv)} did not listen (rc {proc.poll()}):\n{out}")
            time.sleep(0.002)
        wall = time.perf_counter() - started
        cpu = psutil.Process(proc.pid).cpu_times()
        return wall, cpu.user + cpu.system
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _builds(compare: str | None) -> list[tuple[str, Path]]:
    """(label, bin dir) of this venv and, with ``--compare``, the other one."""
    builds = [("this", Path(sys.executable).parent)]
    if compare:
        other = Path(compare)
        if not (other / "infrakit").exists():
            raise SystemExit(f"--compare {compare}: no infrakit there; give a venv's bin directory")
        builds.append(("compare", other))
    return builds


def _label(text: str, build: str, builds: Sequence[tuple[str, Path]]) -> str:
    return text if len(builds) == 1 else f"{text} [{build}]"


@contextlib.contextmanager
def _using(bin_dir: Path) -> Iterator[None]:
    rig.BIN_DIR = bin_dir
    try:
        yield
    finally:
        rig.BIN_DIR = None


def measure_starts(builds: Sequence[tuple[str, Path]], trials: int) -> list[Metric]:
    metrics: dict[tuple[str, str], Metric] = {}
    cpus: dict[tuple[str, str], Metric] = {}
    for name, (argv, _, target) in STARTS.items():
        for build, _dir in builds:
            metrics[name, build] = Metric(
                key=f"start_{name}_{build}",
                label=_label(f"start: `{' '.join(argv)}` until its sockets answer", build, builds),
                unit="s",
                target=target,
                load=load_now(),
            )
            cpus[name, build] = Metric(
                key=f"start_{name}_{build}_cpu", label="  its CPU by then (user+sys)", unit="s"
            )
    for trial in range(trials):
        for name, (argv, sockets, _) in STARTS.items():
            for build, bin_dir in builds:
                wall, cpu = start_seconds(bin_dir, argv, sockets)
                metrics[name, build].samples.append(wall)
                cpus[name, build].samples.append(cpu)
        row = ", ".join(f"{n}/{b} {m.samples[-1] * 1000:.0f}" for (n, b), m in metrics.items())
        print(f"  start trial {trial + 1} (ms): {row}", flush=True)
    for metric in metrics.values():
        metric.load += load_now()
    return [m for key in metrics for m in (metrics[key], cpus[key])]


def measure_cli(
    builds: Sequence[tuple[str, Path]], trials: int, runs: int, big: int | None
) -> list[Metric]:
    out: list[Metric] = []
    for build, bin_dir in builds:
        home = Path(tempfile.mkdtemp(prefix="iks", dir="/tmp"))
        rig.remove_later(home)
        kinds = Metric(
            f"cli_plugin_kinds_{build}",
            _label("`infrakit plugin kinds`", build, builds),
            "ms",
            target=300.0,
            load=load_now(),
        )
        for _ in range(trials):
            ms, _cpu, _tool = cli_wall_ms(
                user_env(home), [str(bin_dir / "infrakit"), "plugin", "kinds"], runs, rows=None
            )
            kinds.samples.append(ms)
        out.append(kinds)
    for build, bin_dir in builds:
        out += _cli_reads(build, bin_dir, builds, trials, runs, CLI_SIZE)
        if big:
            out += _cli_reads(build, bin_dir, builds, 1, 3, big, only_group=True)
    return out


def _cli_reads(
    build: str,
    bin_dir: Path,
    builds: Sequence[tuple[str, Path]],
    trials: int,
    runs: int,
    size: int,
    *,
    only_group: bool = False,
) -> list[Metric]:
    infrakit = str(bin_dir / "infrakit")
    commands = {
        "instance": (
            [infrakit, "instance", "--name", "instance-file", "describe"],
            100.0 if size <= CLI_SIZE else None,
        ),
        "group": (
            [infrakit, "group", "describe", "cattle"],  # the ID table, then the status table
            120.0 if size <= CLI_SIZE else 2000.0 if size <= 100_000 else None,
        ),
    }
    if only_group:
        del commands["instance"]
    metrics = {
        what: Metric(
            f"cli_{what}_describe_{size}_{build}",
            _label(f"`infrakit {what} describe`, {size} instances", build, builds),
            "ms",
            target=target,
            load=load_now(),
            note=f"median of {runs} runs per trial",
        )
        for what, (_, target) in commands.items()
    }
    with _using(bin_dir), running("up") as stack:
        commit_and_wait(stack, group_spec("cattle", size), timeout=max(120.0, size / 200))
        for _ in range(trials):
            for what, (command, _) in commands.items():
                rows = size * 2 if what == "group" else size
                ms, _cpu, _tool = cli_wall_ms(stack.env, command, runs, rows=rows)
                metrics[what].samples.append(ms)
        print(
            f"  CLI at {size} [{build}]: "
            + ", ".join(f"{w} {m.samples[-1]:.0f} ms" for w, m in metrics.items()),
            flush=True,
        )
    for metric in metrics.values():
        metric.load += load_now()
    return list(metrics.values())


def measure_rss(builds: Sequence[tuple[str, Path]], sizes: Sequence[int]) -> list[Metric]:
    out: list[Metric] = []
    for size in sizes:
        for build, bin_dir in builds:
            metric = Metric(
                f"rss_up_{size}_{build}",
                _label(f"RSS of `infrakit up` holding {size} instances", build, builds),
                "MB",
                target=50 + 1.5 * size / 1000,
                load=load_now(),
                note="target 50 MB + 1.5 KB per instance",
            )
            with _using(bin_dir), running("up") as stack:
                if size:
                    commit_and_wait(
                        stack, group_spec("cattle", size), timeout=max(120.0, size / 200)
                    )
                time.sleep(1.0)
                metric.samples.append(stack.rss_bytes() / 1e6)
            rig.remove_deferred()
            print(f"  RSS at {size} [{build}]: {metric.samples[-1]:.1f} MB", flush=True)
            out.append(metric)
    return out


def measure_daemons(builds: Sequence[tuple[str, Path]], trials: int) -> list[Metric]:
    """InfraKit SEED's layout: three daemons (file instance, vanilla flavor, group), each its own
    process. Start until all three answer; commit of 1000 until converged; their RSS summed."""
    out: dict[tuple[str, str], Metric] = {}
    figures = {
        "start": ("three daemons: started one after another until all answer", "s", 0.3),
        "commit": ("three daemons: commit of 1000 until converged", "s", 0.5),
        "rss": ("three daemons: RSS summed, holding 1000", "MB", 63.0),
        "pss": ("three daemons: PSS summed (shared pages counted once), holding 1000", "MB", 63.0),
    }
    for build, _ in builds:
        for key, (label, unit, target) in figures.items():
            out[(key, build)] = Metric(
                f"daemons_{key}_{build}", _label(label, build, builds), unit, target=target
            )
    for _ in range(trials):
        for build, bin_dir in builds:
            with _using(bin_dir):
                started = time.monotonic()
                with running("daemons") as stack:
                    out[("start", build)].samples.append(time.monotonic() - started)
                    doc = group_spec("cattle", CLI_SIZE)
                    seconds = commit_and_wait(stack, doc, timeout=120, warm=True)
                    out[("commit", build)].samples.append(seconds)
                    time.sleep(1.0)
                    out[("rss", build)].samples.append(stack.rss_bytes() / 1e6)
                    out[("pss", build)].samples.append(_pss_bytes(stack) / 1e6)
            rig.remove_deferred()
            print(
                f"  daemons [{build}]: start {out[('start', build)].samples[-1]:.3f} s, commit "
                f"{out[('commit', build)].samples[-1]:.3f} s, RSS "
                f"{out[('rss', build)].samples[-1]:.1f} MB",
                flush=True,
            )
    for metric in out.values():
        metric.load += load_now()
    return list(out.values())


def _pss_bytes(stack: rig.Stack) -> int:
    """Proportional set size of the stack's processes: a shared library's pages (libpython,
    libssl ...) divided among the processes mapping them, so three daemons are not charged three
    times for them as an RSS sum does."""
    total = 0
    for proc in stack.processes():
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=15, help="runs of each CLI command per trial")
    parser.add_argument("--compare", metavar="BIN", help="also measure this venv's bin directory")
    parser.add_argument("--rss-sizes", default="0,1000,10000", help="sizes for the RSS figure")
    parser.add_argument("--big", type=int, help="also time `group describe` at this size")
    parser.add_argument(
        "--only", default="start,cli,rss,daemons", help="start, cli, rss, daemons (comma-separated)"
    )


def run(args: argparse.Namespace) -> list[Metric]:
    builds = _builds(args.compare)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    metrics: list[Metric] = []
    if "start" in parts:
        metrics += measure_starts(builds, args.trials)
    if "cli" in parts:
        metrics += measure_cli(builds, max(1, args.trials // 3), args.runs, args.big)
    if "rss" in parts:
        sizes = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
        metrics += measure_rss(builds, sizes)
    if "daemons" in parts:
        metrics += measure_daemons(builds, max(1, args.trials // 2))
    return metrics


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main(
        "startup", __doc__ or "", run, default_trials=7, add_arguments=_arguments, argv=argv
    )


if __name__ == "__main__":
    main(sys.argv[1:])
