"""Manager failover and forwarding: SIGKILL the leader -> the follower leads and acts, and commit
latency through a follower vs the leader, for the file lock and for etcd (ttl 2 s).

Two managers (``infrakit plugin start file vanilla manager:group``) share a store and an election,
each in its own plugin directory (as two hosts would), and listen on loopback TCP with a token.
Per trial the leader is SIGKILLed at a random moment; the clock runs from the kill until the
follower's ``manager status`` says it leads *and* its group controller has resumed the group
(``Groups`` lists it) - "acting", not merely "elected". Run::

    .venv/bin/python -m bench.failover [--trials 10] [--backends file,etcd]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.report import Metric, bench_main, load_now
from bench.rig import EXAMPLES
from infrakit.rpc.client import SyncClient
from infrakit.testing import short_tempdir
from infrakit.testing.etcd import EtcdServer
from infrakit.testing.processes import Daemon, isolated_env
from infrakit.testing.processes import free_port as _free_port


class Manager:
    def __init__(self, home: Path, name: str, store: str, leader: str) -> None:
        self.name = name
        self.plugins = home / f"p-{name}"
        self.env = isolated_env(home, INFRAKIT_PLUGINS_DIR=str(self.plugins))
        self.port = _free_port()
        argv = [
            "infrakit", "plugin", "start", "file:instance-file", "vanilla:flavor-vanilla",
            "manager:group", "--log-level", "warning",
            "-o", f"file.dir={home / 'instances'}", "-o", f"manager.store={store}",
            "-o", f"manager.leader={leader}", "-o", f"manager.id={name}",
            "-o", f"manager.listen=127.0.0.1:{self.port}", "-o", "manager.token=bench",
        ]  # fmt: skip
        self.daemon = Daemon(argv, self.env, sockets=["group"])

    def call(self, method: str, params: dict[str, Any]) -> Any:
        with SyncClient("group", self.plugins / "group", call_timeout=10) as client:
            return client.call(method, {"Name": "", **params})

    def status(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.call("Manager.Status", {"ID": ""})
            return result
        except Exception:
            return {}


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


def trial(
    home: Path, backend: str, endpoint: str | None, spec: dict[str, Any]
) -> tuple[float, float, float]:
    store = f"etcd://{endpoint}/b{time.monotonic_ns()}" if endpoint else str(home / "store.json")
    a, b = Manager(home, "a", store, backend), Manager(home, "b", store, backend)
    try:
        a.daemon.start()
        _wait(lambda: a.status().get("Leading"), 20)
        b.daemon.start()
        _wait(lambda: (b.status().get("Leader") or {}).get("ID") == "a", 20)
        started = time.perf_counter()
        a.call("Group.CommitGroup", {"Spec": spec, "Pretend": False})
        via_leader = time.perf_counter() - started
        spec2 = json.loads(json.dumps(spec))
        spec2["Properties"]["Allocation"]["Size"] = 4
        started = time.perf_counter()
        b.call("Group.CommitGroup", {"Spec": spec2, "Pretend": False})
        via_follower = time.perf_counter() - started
        time.sleep(random.uniform(0.0, 0.7))  # a random phase of the lease renewal
        a.daemon.kill()
        killed = time.perf_counter()
        _wait(lambda: b.status().get("Leading") and b.status().get("Groups") == ["cattle"], 30)
        return time.perf_counter() - killed, via_leader, via_follower
    finally:
        b.daemon.stop()
        a.daemon.stop()


def run(args: argparse.Namespace) -> list[Metric]:
    spec = json.loads((EXAMPLES / "cattle.json").read_text())
    spec["Properties"]["Allocation"]["Size"] = 3
    metrics: list[Metric] = []
    for backend in args.backends.split(","):
        etcd = EtcdServer().start() if backend == "etcd" else None
        failover = Metric(
            f"failover_{backend}", f"failover ({backend}): SIGKILL leader -> follower acting", "s",
            target=2.5 if backend == "etcd" else None, infrakit="5 s leader poll; etcd broken",
        )  # fmt: skip
        leader_commit = Metric(
            f"commit_leader_{backend}", f"commit via the leader ({backend})", "ms"
        )
        follower_commit = Metric(
            f"commit_follower_{backend}", f"commit via a follower ({backend}, forwarded)", "ms"
        )
        try:
            for i in range(args.trials):
                home = short_tempdir("ikfo")
                try:
                    took, lead, follow = trial(home, backend, etcd.endpoint if etcd else None, spec)
                finally:
                    shutil.rmtree(home, ignore_errors=True)
                print(f"  {backend} trial {i + 1}: failover {took:.3f} s", flush=True)
                failover.samples.append(round(took, 4))
                leader_commit.samples.append(round(lead * 1000, 2))
                follower_commit.samples.append(round(follow * 1000, 2))
        finally:
            if etcd is not None:
                etcd.close()
        for m in (failover, leader_commit, follower_commit):
            m.load = load_now()
            metrics.append(m)
        print(
            f"  {backend}: median failover {statistics.median(failover.samples):.3f} s", flush=True
        )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default="file,etcd", help="comma list: file, etcd")


if __name__ == "__main__":
    bench_main("failover", __doc__ or "", run, default_trials=10, add_arguments=add_arguments)
