"""A real etcd cluster kept as pets: `infrakit plugin start group process etcd-member`, the
example spec on free ports, 3 etcd 3.4 members as processes on 127.0.0.1.

While a client writes and reads a key every 50 ms (through whichever member answers) and a
sampler asks every member's /health, one member is `kill -9`ed (it comes back under the same
logical ID, joined through the member API as a new member) and then all three are rolled to a
changed flag. No acknowledged write may be lost, never more than one member may be down, and at
the end three healthy members follow one leader.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("etcd") is None,
        reason="no etcd binary; scripts/system-deps installs etcd-server",
    ),
]

IDS = ["etcd1", "etcd2", "etcd3"]
PREFIX = "/e2e/"


# --- the etcd v3 JSON gateway, as a client sees it ------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(port: int, path: str, body: dict[str, Any] | None = None, timeout: float = 1.0) -> Any:
    """POST (or GET without a body) to a member; the decoded JSON, or an exception."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data}")
        return data
    finally:
        conn.close()


def health(port: int, timeout: float = 3.0) -> bool | None:
    """True/False as the member says; None when it does not answer (down)."""
    try:
        return bool(call(port, "/health", timeout=timeout).get("health") == "true")
    except RuntimeError:
        return False  # answered, with an error status
    except (OSError, http.client.HTTPException, ValueError):
        return None


def leaders(ports: list[int]) -> set[str]:
    """The leader each member names (empty strings for members that do not answer)."""
    out = set()
    for port in ports:
        try:
            out.add(str(call(port, "/v3/maintenance/status", {})["leader"]))
        except Exception:
            out.add("")
    return out


def members(port: int) -> list[dict[str, Any]]:
    return list(call(port, "/v3/cluster/member/list", {}, timeout=2.0)["members"])


def cluster_ok(ports: list[int]) -> bool:
    """Every member healthy, all name the same leader, and the member list has 3 started members."""
    if not all(health(p) for p in ports):
        return False
    named = leaders(ports)
    if len(named) != 1 or "" in named or "0" in named:
        return False
    try:
        listed = members(ports[0])
    except Exception:
        return False
    return len(listed) == 3 and all(m.get("clientURLs") and m.get("name") for m in listed)


# --- the client and the sampler ------------------------------------------------------------------


@dataclass
class Writer:
    """Puts /e2e/kNNNNNN every 50 ms and reads it back, trying the members in turn (1 s timeout)."""

    ports: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    acked: dict[str, str] = field(default_factory=dict)
    failed_puts: int = 0
    read_errors: int = 0
    wrong_reads: list[str] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)

    def run(self) -> None:
        preferred, i = 0, 0
        while not self.stop.is_set():
            started = time.monotonic()
            key, value = f"{PREFIX}k{i:06d}", f"v{i}"
            for attempt in range(len(self.ports)):
                port = self.ports[(preferred + attempt) % len(self.ports)]
                try:
                    call(port, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
                except Exception:
                    continue
                preferred = (preferred + attempt) % len(self.ports)
                self.acked[key] = value
                self.ack_times.append(time.monotonic())
                self.read_back(port, key, value)
                break
            else:
                self.failed_puts += 1
            i += 1
            self.stop.wait(max(0.0, 0.05 - (time.monotonic() - started)))

    def read_back(self, port: int, key: str, value: str) -> None:
        try:
            kvs = call(port, "/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        except Exception:
            self.read_errors += 1
            return
        got = [base64.b64decode(kv["value"]).decode() for kv in kvs]
        if got != [value]:
            self.wrong_reads.append(f"{key}: {got}")

    def acks(self) -> int:
        return len(self.acked)

    def largest_gap(self) -> float:
        times = self.ack_times
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Sampler:
    """Asks every member's /health at once, every 100 ms: how many did not answer at all."""

    ports: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    max_down: int = 0
    max_unhealthy: int = 0
    samples: int = 0
    worst: list[bool | None] = field(default_factory=list)

    def run(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(len(self.ports)) as pool:
            while not self.stop.is_set():
                answers = list(pool.map(health, self.ports))
                down = sum(1 for a in answers if a is None)
                if down > self.max_down:
                    self.worst = answers
                self.max_down = max(self.max_down, down)
                self.max_unhealthy = max(self.max_unhealthy, sum(1 for a in answers if not a))
                self.samples += 1
                self.stop.wait(0.1)


# --- the stack -----------------------------------------------------------------------------------


def free_bases(count: int = 3) -> tuple[int, int]:
    """Client and peer port bases with ``count`` free ports each, apart."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = rng.randrange(20000, 40000, 10)
        ports = [base + i for i in range(count)] + [base + 5 + i for i in range(count)]
        try:
            with contextlib.ExitStack() as stack:
                for port in ports:
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base, base + 5
    raise AssertionError("no free port range found")


@pytest.fixture
def stack(e2e: E2E, state_dir: Path) -> Iterator[Path]:
    """group + process + etcd-member in one daemon; yields the members' data directory (inside
    the test's INFRAKIT_HOME, removed after every member is gone)."""
    e2e.start(
        "infrakit", "plugin", "start", "group", "process", "etcd-member",
        "-o", "group.store=memory", "-o", "group.poll-interval=1h", "-o", "process.grace=10s",
        sockets=["group", "instance-process", "flavor-etcd-member"],
        INFRAKIT_INSTANCE_PROCESS_DIR=str(state_dir),
    )  # fmt: skip
    data = e2e.home / "etcd-data"
    data.mkdir()
    yield data
    # A failed test leaves the group managed: stop the controller from recreating members while
    # state_dir kills what is left (one created in between would outlive the daemon).
    e2e.run("group", "destroy", "etcd", check=False, timeout=30)


def cluster_spec(e2e: E2E, data: Path, client: int, peer: int, heartbeat: int) -> Path:
    doc = json.loads((EXAMPLES / "etcd-cluster.json").read_text())
    flavor = doc["Properties"]["Flavor"]["Properties"]
    flavor.update(DataDir=str(data), ClientPortBase=client, PeerPortBase=peer)
    flavor["Flags"] = [
        f"--heartbeat-interval={heartbeat}" if f.startswith("--heartbeat-interval") else f
        for f in flavor["Flags"]
    ]
    path = e2e.home / f"etcd-{heartbeat}.json"
    path.write_text(json.dumps(doc))
    return path


def instances(e2e: E2E) -> dict[str, dict[str, Any]]:
    """Logical ID -> described process instance (with Properties: Pid, Command)."""
    out = e2e.run("instance", "--name", "instance-process", "describe", "-p", "-o", "json").stdout
    return {d["LogicalID"]: d for d in json.loads(out)}


def test_an_etcd_cluster_survives_a_kill_and_a_rolling_update_losing_no_write(
    e2e: E2E, stack: Path
) -> None:
    client, peer = free_bases()
    ports = [client + i for i in range(3)]
    e2e.run("group", "commit", str(cluster_spec(e2e, stack, client, peer, heartbeat=100)))
    wait_for(lambda: cluster_ok(ports), timeout=60, what="3 healthy members and one leader")
    first = instances(e2e)
    assert sorted(first) == IDS
    assert {d["Tags"]["infrakit.etcd.join"] for d in first.values()} == {"new"}

    writer, sampler = Writer(ports), Sampler(ports)
    threads = [threading.Thread(target=t.run, daemon=True) for t in (writer, sampler)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: writer.acks() >= 20, timeout=30, what="writes before the kill")

        # kill -9 the leader: its logical ID comes back as a new member, joined via the API.
        leader_id = leaders(ports).pop()
        before = {m["ID"]: m["name"] for m in members(ports[0])}
        victim = before[leader_id]
        os.kill(first[victim]["Properties"]["Pid"], signal.SIGKILL)
        killed_at = time.monotonic()

        def rejoined() -> bool:
            now = instances(e2e)
            back = now.get(victim)
            return (
                back is not None
                and back["ID"] != first[victim]["ID"]
                and cluster_ok(ports)
                and leader_id not in {m["ID"] for m in members(ports[0])}
            )

        wait_for(rejoined, timeout=90, what=f"{victim} replaced and rejoined")
        heal = time.monotonic() - killed_at
        healed = instances(e2e)
        assert healed[victim]["Tags"]["infrakit.etcd.join"] == "existing"
        marks = writer.acks()
        wait_for(lambda: writer.acks() >= marks + 20, timeout=30, what="writes after the heal")

        # Roll all three to a changed flag.
        rolled_at = time.monotonic()
        e2e.run("group", "commit", str(cluster_spec(e2e, stack, client, peer, heartbeat=150)))

        def rolled() -> bool:
            now = instances(e2e)
            return (
                sorted(now) == IDS
                and all(now[lid]["ID"] != healed[lid]["ID"] for lid in IDS)
                and all(
                    "--heartbeat-interval=150" in now[lid]["Properties"]["Properties"]["Command"]
                    for lid in IDS
                )
                and cluster_ok(ports)
            )

        wait_for(rolled, timeout=150, what="all three members rolled and healthy")
        roll = time.monotonic() - rolled_at
        marks = writer.acks()
        wait_for(lambda: writer.acks() >= marks + 20, timeout=30, what="writes after the roll")
    finally:
        writer.stop.set()
        sampler.stop.set()
        for t in threads:
            t.join(10)

    # Every acknowledged write is there, read through one member (a linearizable range).
    kvs = call(
        ports[0],
        "/v3/kv/range",
        {"key": _b64(PREFIX), "range_end": _b64(PREFIX[:-1] + "0")},
        timeout=10,
    ).get("kvs", [])
    stored = {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs
    }
    lost = [k for k, v in writer.acked.items() if stored.get(k) != v]
    print(
        f"\netcd e2e: {writer.acks()} acknowledged puts, {writer.failed_puts} unacknowledged, "
        f"{len(lost)} lost; largest gap between acks {writer.largest_gap():.2f}s; "
        f"{writer.read_errors} read errors; heal {heal:.1f}s, roll {roll:.1f}s; "
        f"{sampler.samples} health samples, at most {sampler.max_down} down, "
        f"{sampler.max_unhealthy} not healthy"
    )
    assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    assert writer.wrong_reads == []
    assert sampler.samples > 50
    assert sampler.max_down <= 1, f"more than one member down at once: {sampler.worst}"
    assert cluster_ok(ports)
    assert len(leaders(ports)) == 1

    e2e.run("group", "destroy", "etcd")
    wait_for(lambda: not instances(e2e), timeout=30, what="every member destroyed")


def test_a_cluster_without_logical_ids_is_refused_at_commit(e2e: E2E, stack: Path) -> None:
    doc = json.loads((EXAMPLES / "etcd-cluster.json").read_text())
    doc["Properties"]["Allocation"] = {"Size": 3}
    doc["Properties"]["Flavor"]["Properties"]["DataDir"] = str(stack)
    path = e2e.home / "cattle-etcd.json"
    path.write_text(json.dumps(doc))
    err = e2e.fails("group", "commit", str(path))
    assert "LogicalIDs" in err and "etcd-member" in err, err
    assert e2e.run("group", "ls", "-q").stdout == ""
