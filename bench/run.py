"""Run several benches and collect their results: ``bench/run.py [NAME ...] [--json FILE]``.

With no names it runs the quick set (:data:`QUICK`, ~4 minutes on 2 shared cores); ``all`` adds
the long ones (:data:`LONG`: the 60 s idle windows and 10 000 instances, ~6 minutes more). Every
bench prints its own table; a summary table of every figure follows at the end, and ``--json``
collects everything into one file. Other options (``--trials``, ``--stack``) are passed to each
bench. Any other ``bench/<name>.py`` (e.g. ``heal_process``) can be named too: it runs as
``python -m bench.<name>`` with no options and only prints its own output. Examples::

    .venv/bin/python bench/run.py                       # quick set
    .venv/bin/python bench/run.py all --json /tmp/ikb.json
    .venv/bin/python bench/run.py heal rpc --trials 5 --stack daemons
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import Metric, machine_info, print_table

QUICK = ("converge", "heal", "rpc", "footprint", "rolling")
LONG = ("idle", "converge10k")
HERE = Path(__file__).resolve().parent
#: Modules of bench/ that are not benches.
HELPERS = {"report", "rig", "run", "__init__"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"benches (default {' '.join(QUICK)}; 'all')")
    parser.add_argument("--json", metavar="FILE", help="write every bench's results to FILE")
    parser.add_argument("--trials", type=int, help="repetitions for every bench")
    parser.add_argument("--stack", choices=["up", "daemons"], help="stack layout for every bench")
    args = parser.parse_args(argv)
    names = args.names or list(QUICK)
    if "all" in names:
        names = [*QUICK, *LONG, *(n for n in names if n != "all" and n not in QUICK + LONG)]
    unknown = [n for n in names if n in HELPERS or not (HERE / f"{n}.py").exists()]
    if unknown:
        parser.error(f"no bench named {', '.join(unknown)}; see bench/*.py")
    common: list[str] = []
    if args.trials:
        common += ["--trials", str(args.trials)]
    if args.stack:
        common += ["--stack", args.stack]
    if args.json:
        common += ["--json", args.json]
    collected: list[Metric] = []
    failed: list[str] = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        if name in QUICK + LONG:
            module = importlib.import_module(f"bench.{name}")
            try:
                collected += module.main(common)
            except Exception as exc:  # one broken bench must not hide the others' results
                print(f"bench {name} failed: {exc!r}", flush=True)
                failed.append(name)
        else:
            rc = subprocess.run(
                [sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent, check=False
            ).returncode
            if rc != 0:
                failed.append(name)
    if collected:
        info = machine_info()
        print(
            f"\n=== summary: {info['cores']} cores, Python {info['python']}, load now "
            f"{info['loadavg']} ==="
        )
        print_table(collected)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
