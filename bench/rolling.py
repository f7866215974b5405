"""Rolling update of 10 instances with the health gate on.

Per trial a fresh stack converges a group of 10 whose spec has a ``Health`` section (defaults
written out: ``CheckInterval 10s``, ``StartupTimeout 10m``, ``UnhealthyTimeout 5m``,
``MaxUnhealthy 100%``; see src/infrakit/controller/group/spec.py) and default ``Updating``
(``MaxSurge 1``, ``MaxUnavailable 0``), then commits the same spec with another flavor ``Init``
line, so the config hash changes and every instance must be replaced one by one, each new
instance passing ``Flavor.Healthy`` before the next old one goes. The clock runs from just before
the commit to the group's ``converged`` event, after which DescribeInstances must show exactly 10
instances, all at the new config hash. Run::

    .venv/bin/python -m bench.rolling [--trials 3] [--stack up|daemons]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.report import Metric, bench_main, load_now
from bench.rig import commit_and_wait, group_spec, running

SIZE = 10
HEALTH = {
    "CheckInterval": "10s",
    "StartupTimeout": "10m",
    "UnhealthyTimeout": "5m",
    "MaxUnhealthy": "100%",
}
OLD_INIT = ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"]
NEW_INIT = ["docker pull nginx:1.27-alpine", "docker run -d -p 80:80 nginx:1.27-alpine"]


def measure(trials: int, layout: str) -> list[Metric]:
    rolling = Metric(
        "rolling_update_10",
        f"rolling update of {SIZE}, health gate on",
        "s",
        target=1.0,
        infrakit="110 s",
        load=load_now(),
    )
    for trial in range(trials):
        with running(layout) as stack:
            commit_and_wait(stack, group_spec("web", SIZE, init=OLD_INIT, health=HEALTH))
            seconds = commit_and_wait(
                stack, group_spec("web", SIZE, init=NEW_INIT, health=HEALTH), timeout=300
            )
        rolling.samples.append(seconds)
        print(f"  trial {trial + 1}: {seconds:.3f} s", flush=True)
    rolling.load += load_now()
    return [rolling]


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials, args.stack)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("rolling", __doc__ or "", run, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
