"""The long attack: hostile bodies against every daemon kind, and kill -9 rounds of ``infrakit up``.

    .venv/bin/python -m bench.attack --bodies 10000 --kills 100 --seed 1 [--kinds group,combo]

The generators, the daemons, the judge and the invariant checker are those of the CI suites
(``tests/adversarial/kit.py``; the suites run a few hundred bodies and six kills). For each kind:
``--bodies`` hypothesis bodies (both eras), then the HTTP garbage corpus, each judged as in the
tests (an answer within the deadline, a JSON-RPC reply to a JSON-RPC body, no traceback logged),
then a real request and the sentinel state. ``--kills`` rounds are spread over the commit, heal and
rolling-update scenarios. Prints tried / survived / lost per kind and per scenario, with the
commonest reasons for the losses. Known holes (issue 8) count as lost: this is a measurement.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import random
import sys
import time
from collections.abc import Sequence

from tests.adversarial.kit import (
    KINDS,
    SCENARIOS,
    draw_bodies,
    garbage_for,
    judge,
    kill_round,
    raw_exchange,
)

from bench.report import machine_info


def _reason(problem: str) -> str:
    """The first words of a problem, to count alike losses together."""
    return problem.split("\n", 1)[0].split(": ", 1)[0][:60]


def attack_kind(
    name: str, count: int, seed: int
) -> tuple[int, int, collections.Counter[str], str | None]:
    """(tried, survived, reasons of losses, the state check's problem) for one kind."""
    target = KINDS[name]
    reasons: collections.Counter[str] = collections.Counter()
    tried = survived = 0
    requests = [(b.raw, b.era, b.body, False, False) for b in draw_bodies(target, count, seed)]
    requests += [(g.raw, g.era, g.body, g.half_close, g.head_only) for g in garbage_for(name)]
    with target.running() as running:
        for raw, era, body, half_close, head_only in requests:
            tried += 1
            answer = raw_exchange(running.address, raw, half_close=half_close, head_only=head_only)
            problem = judge(answer, era=era, request_body=body)
            if problem is None and not running.alive():
                problem = "the daemon died"
            traceback = running.new_tracebacks()
            if problem is None and traceback:
                errors = [
                    ln
                    for ln in traceback.splitlines()
                    if ln and not ln[0].isspace() and "Error" in ln.split(":")[0]
                ]
                problem = f"traceback logged ({errors[-1].split(':')[0] if errors else '?'})"
            if problem is None:
                survived += 1
            else:
                reasons[_reason(problem)] += 1
            if not running.alive():
                break
        state = running.check()
    return tried, survived, reasons, state


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bodies", type=int, default=10_000, help="hypothesis bodies per kind")
    parser.add_argument("--kills", type=int, default=100, help="kill -9 rounds, over 3 scenarios")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(sorted(KINDS)), help="comma-separated kinds")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine_info()
    print(
        f"attack of {info.get('commit', '?')} on {dt.date.today()}, seed {args.seed}, "
        f"{args.bodies} bodies per kind, {args.kills} kills; {os.cpu_count()} cores"
    )
    rows = [("target", "tried", "survived", "lost", "state after", "commonest losses")]
    for name in [k for k in args.kinds.split(",") if k]:
        t0 = time.monotonic()
        tried, survived, reasons, state = attack_kind(name, args.bodies, args.seed)
        common = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3)) or "-"
        rows.append(
            (
                name,
                str(tried),
                str(survived),
                str(tried - survived),
                "intact" if state is None else "BROKEN",
                common,
            )
        )
        print(f"  {name}: {tried} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        if state is not None:
            print(f"  {name} state after the attack: {state[:2000]}", file=sys.stderr)
    rng = random.Random(args.seed)
    per = collections.Counter(SCENARIOS[i % len(SCENARIOS)] for i in range(args.kills))
    for scenario in SCENARIOS:
        t0 = time.monotonic()
        reasons = collections.Counter()
        survived = most = 0
        for _ in range(per[scenario]):
            result = kill_round(scenario, rng)
            most = max(most, result.most)
            if result.problem is None:
                survived += 1
            else:
                reasons[_reason(result.problem)] += 1
                print(
                    f"  kill -9 {scenario} {result.kill_point}: {result.problem[:1500]}",
                    file=sys.stderr,
                )
        common = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3)) or "-"
        rows.append(
            (
                f"kill -9 {scenario}",
                str(per[scenario]),
                str(survived),
                str(per[scenario] - survived),
                f"most {most} (limit 6)",
                common,
            )
        )
        print(
            f"  kill -9 {scenario}: {per[scenario]} in {time.monotonic() - t0:.0f}s",
            file=sys.stderr,
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
