"""Heal time of a group of EC2 instances: terminate one of 3 out of band, time until replaced.

Runs a local ``moto_server`` (127.0.0.1 only, dummy credentials) and ``infrakit plugin start
group aws vanilla`` against it, commits examples/aws.json (3 instances), then per trial terminates
one instance with boto3 and waits until the group again has 3 live instances without it. EC2
publishes no events here, so detection waits for the group's next poll: the heal time is bounded
by the poll interval (uniform wait of 0..P, P/2 on average) plus one DescribeInstances and one
RunInstances round trip. The bench sets Provisioning.CrashLoopWindow to 0s, since every trial kills
a young instance, which the group would otherwise count as a crash loop and stop replacing.

    .venv/bin/python -m bench.heal_aws --trials 7 --poll-interval 200ms --poll-interval 1s
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tests.plugins.test_aws import PROXY_VARIABLES, MotoServer, offline_aws_env

from infrakit._utils.duration import parse_duration
from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, isolated_env, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aws.json"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def live(ec2: Any) -> set[str]:
    reply = ec2.describe_instances(
        Filters=[
            {"Name": "tag:infrakit.group", "Values": ["workers"]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
    )
    return {i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]}


def replaced(ec2: Any, victim: str) -> bool:
    members = live(ec2)
    return len(members) == 3 and victim not in members


def controller_sees(env: dict[str, str], expected: set[str]) -> bool:
    described = run_cli(["group", "describe", "workers", "-o", "json"], env)
    doc = json.loads(described.stdout)
    status = doc.get("Status") or {}
    return {i["ID"] for i in doc["Instances"]} == expected and status.get("Pending") == 0


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def heal_times(moto: MotoServer, poll_interval: str, trials: int) -> list[float]:
    moto.reset()
    ec2 = moto.ec2()
    home = short_tempdir("ikbaws")
    env = {**isolated_env(home), **offline_aws_env(moto.url)}
    argv = [
        "infrakit", "plugin", "start", "group", "aws", "vanilla",
        "-o", f"group.poll-interval={poll_interval}",
        "-o", "group.store=memory",
        "-o", f"aws.endpoint-url={moto.url}",
        "--log-level", "warning",
    ]  # fmt: skip
    times: list[float] = []
    period = parse_duration(poll_interval)
    with Daemon(argv, env, sockets=["group", "aws", "flavor-vanilla"]):
        # Every trial kills a young instance; that is the point here, not a crash loop.
        spec = json.loads(EXAMPLE.read_text())
        spec["Properties"]["Provisioning"] = {"CrashLoopWindow": "0s"}
        spec_file = home / "aws.json"
        spec_file.write_text(json.dumps(spec))
        committed = run_cli(["group", "commit", str(spec_file)], env)
        if committed.returncode != 0:
            raise SystemExit(committed.stderr)
        wait_until(lambda: len(live(ec2)) == 3, 30, "3 instances")
        for _ in range(trials):
            # Only kill what the controller has seen: an instance it never saw counts as a
            # pending create until the group's VisibilityTimeout (EC2 is eventually consistent).
            wait_until(lambda: controller_sees(env, live(ec2)), 30, "the controller to converge")
            # ... at a random phase of the poll cycle (the wait above ends just after a poll).
            time.sleep(random.uniform(0, period))
            victim = sorted(live(ec2))[0]
            started = time.perf_counter()
            ec2.terminate_instances(InstanceIds=[victim])
            wait_until(lambda v=victim: replaced(ec2, v), 30, "a heal")
            times.append(time.perf_counter() - started)
            print(f"  heal {len(times)}: {times[-1] * 1000:.0f} ms", file=sys.stderr)
        run_cli(["group", "destroy", "workers"], env)
    shutil.rmtree(home, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--poll-interval", action="append", dest="intervals")
    args = parser.parse_args()
    intervals = args.intervals or ["200ms", "1s"]
    log_dir = short_tempdir("ikmoto")
    moto = MotoServer(log_dir / "moto_server.log").start()
    # This process and its children talk to moto on 127.0.0.1 only, with dummy credentials.
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(offline_aws_env(moto.url))
    results = []
    try:
        for interval in intervals:
            times = heal_times(moto, interval, args.trials)
            row = {
                "poll_interval": interval,
                "trials": len(times),
                "median_ms": round(statistics.median(times) * 1000, 1),
                "min_ms": round(min(times) * 1000, 1),
                "max_ms": round(max(times) * 1000, 1),
            }
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        moto.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
