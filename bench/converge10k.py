"""Commit -> converged for 10 000 instances with ``infrakit up`` (file plugin, vanilla).

The same measurement as :mod:`bench.converge` (fresh stack per trial, clock stopped at the
group's ``converged`` event, then DescribeInstances must show 10 000 instances at the spec's
config hash), kept separate because each trial writes 10 000 files. Run::

    .venv/bin/python -m bench.converge10k [--trials 3] [--stack up|daemons]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.converge import measure
from bench.report import Metric, bench_main

SIZE = 10_000


def run(args: argparse.Namespace) -> list[Metric]:
    return measure([SIZE], args.trials, args.stack)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("converge10k", __doc__ or "", run, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
