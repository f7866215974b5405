"""RPC figures of the file instance plugin over its UNIX socket, with 1000 instances in the group.

* ``Instance.DescribeInstances`` latency (p50 of 200 calls per trial, tags = the group) with a
  raw keep-alive HTTP/1.1 client (:class:`bench.rig.RawClient`: prebuilt request bytes, reply read
  by Content-Length);
* ``Instance.Validate`` round trips per second over one connection, sequential, for 3 s - with the
  raw client, with stdlib ``http.client`` (which turns out to be the bottleneck, ~4000/s), and
  with infrakit's own async ``rpc.client.Client`` (aiohttp, on uvloop like the daemons);
* ``Instance.Validate`` round trips per second from 8 client processes at once (raw clients), 3 s.

The stack is ``infrakit up`` by default (the group controller idles in the same process once
converged), or the separate console scripts with ``--stack daemons``. Run::

    .venv/bin/python -m bench.rpc [--trials 3] [--stack up|daemons] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.report import Metric, bench_main, load_now
from bench.rig import RawClient, StdlibClient, commit_and_wait, group_spec, running

SIZE = 1000
SECONDS = 3.0
VALIDATE = json.dumps(
    {
        "jsonrpc": "2.0",
        "method": "Instance.Validate",
        "params": {"Type": "", "Properties": {"Note": "Instance properties version 1.0"}},
        "id": 1,
    }
).encode()


def describe_p50(path: str, gid: str, calls: int = 200) -> float:
    """Median milliseconds of ``calls`` DescribeInstances round trips (after 20 warm-up calls)."""
    client = RawClient(path)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "Instance.DescribeInstances",
            "params": {"Type": "", "Tags": {"infrakit.group": gid}, "Properties": False},
            "id": 1,
        }
    ).encode()
    try:
        reply = json.loads(client.post(body))
        count = len(reply["result"]["Descriptions"] or [])
        if count != SIZE:
            raise RuntimeError(f"DescribeInstances returned {count} instances, expected {SIZE}")
        for _ in range(20):
            client.post(body)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            client.post(body)
            times.append(time.perf_counter() - started)
    finally:
        client.close()
    return statistics.median(times) * 1000


def validate_raw(path: str, seconds: float, start_at: float = 0.0, stdlib: bool = False) -> int:
    """Sequential Validate round trips on one connection for ``seconds``; returns the count."""
    client: RawClient | StdlibClient = StdlibClient(path) if stdlib else RawClient(path)
    try:
        reply = json.loads(client.post(VALIDATE))
        if reply.get("result", {}).get("OK") is not True:
            raise RuntimeError(f"Instance.Validate answered {reply}")
        for _ in range(200):
            client.post(VALIDATE)
        if start_at:
            while time.time() < start_at:
                time.sleep(0.001)
        count = 0
        deadline = time.perf_counter() + seconds
        post = client.post
        while time.perf_counter() < deadline:
            post(VALIDATE)
            count += 1
    finally:
        client.close()
    return count


def _worker(path: str, seconds: float, start_at: float, out: Any) -> None:
    out.put(validate_raw(path, seconds, start_at))


def validate_parallel(path: str, clients: int, seconds: float) -> float:
    """Validate round trips per second summed over ``clients`` processes running together."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0 + 0.3 * clients  # all spawned and warmed up by then
    procs = [
        ctx.Process(target=_worker, args=(path, seconds, start_at, out)) for _ in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        counts = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    return sum(counts) / seconds


def validate_async_client(path: str, seconds: float) -> float:
    """Sequential Validate calls per second through infrakit's async ``Client``."""
    from infrakit.rpc.client import Client

    async def go() -> float:
        client = Client("instance-file", path)
        params = {"Type": "", "Properties": {"Note": "Instance properties version 1.0"}}
        try:
            for _ in range(200):
                await client.call("Instance.Validate", params)
            count = 0
            started = time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                await client.call("Instance.Validate", params)
                count += 1
            return count / (time.perf_counter() - started)
        finally:
            await client.close()

    try:
        import uvloop
    except ImportError:
        return asyncio.run(go())
    return uvloop.run(go())


def measure(trials: int, layout: str, clients: int) -> list[Metric]:
    describe = Metric(
        "describe_p50",
        f"DescribeInstances p50, {SIZE} instances",
        "ms",
        target=3.0,
        infrakit="13.7 / 18.4 ms",
        load=load_now(),
    )
    raw = Metric(
        "validate_rps_1",
        "Validate round trips/s, 1 connection (raw client)",
        "/s",
        target=5000,
        kind="min",
        infrakit="6740 / 6414 /s",
    )
    stdlib = Metric(
        "validate_rps_1_stdlib",
        "Validate round trips/s, 1 connection (http.client)",
        "/s",
        note="stdlib http.client as the load generator: it is the bottleneck (~200 us/call)",
    )
    ours = Metric(
        "validate_rps_1_client",
        "Validate round trips/s, 1 connection (infrakit Client)",
        "/s",
        note="infrakit's async rpc.client.Client (aiohttp) as the load generator",
    )
    parallel = Metric(
        f"validate_rps_{clients}",
        f"Validate round trips/s, {clients} client processes",
        "/s",
        infrakit="17361 / 12845 /s",
        note="raw stdlib clients; on 2 cores the clients compete with the server for CPU",
    )
    with running(layout) as stack:
        commit_and_wait(stack, group_spec("cattle", SIZE))
        path = str(stack.socket("instance-file"))
        time.sleep(1.0)  # let the controller's post-convergence work finish
        for trial in range(trials):
            describe.samples.append(describe_p50(path, "cattle"))
            raw.samples.append(validate_raw(path, SECONDS) / SECONDS)
            stdlib.samples.append(validate_raw(path, SECONDS, stdlib=True) / SECONDS)
            ours.samples.append(validate_async_client(path, SECONDS))
            parallel.samples.append(validate_parallel(path, clients, SECONDS))
            print(
                f"  trial {trial + 1}: describe p50 {describe.samples[-1]:.2f} ms, validate "
                f"{raw.samples[-1]:.0f}/s raw, {stdlib.samples[-1]:.0f}/s http.client, {ours.samples[-1]:.0f}/s Client, "
                f"{parallel.samples[-1]:.0f}/s x{clients}",
                flush=True,
            )
    describe.load += load_now()
    for m in (raw, stdlib, ours, parallel):
        m.load = describe.load
    return [describe, raw, stdlib, ours, parallel]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=8, help="client processes (default 8)")


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials, args.stack, args.clients)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("rpc", __doc__ or "", run, add_arguments=_arguments, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
