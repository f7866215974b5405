"""The seed's web tier for real: five HTTP servers (process instances, examples/web_server.py on
their allocated $PORT) behind a real HAProxy (the loadbalancer plugin), kept in its pool by the
group's Ingress. A client sends requests through HAProxy without pause while two instances are
``kill -9``ed and the whole group is rolled to a new version: not one request may fail, and after
the roll every answer comes from the new version.

Everything runs as a user runs it: `infrakit plugin start group process vanilla loadbalancer`,
`infrakit group commit examples/web-tier.json`.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from infrakit.testing.processes import free_port
from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]


def processes(e2e: E2E) -> dict[str, dict[str, Any]]:
    out = e2e.run("instance", "--name", "instance-process", "describe", "-p", "-o", "json").stdout
    return {d["ID"]: d for d in json.loads(out)}


def web_spec(e2e: E2E, version: str, port: int) -> Path:
    """examples/web-tier.json with an absolute interpreter and script, and a free port."""
    doc = json.loads((EXAMPLES / "web-tier.json").read_text())
    props = doc["Properties"]
    props["Instance"]["Properties"]["Command"] = [
        sys.executable,
        str(EXAMPLES / "web_server.py"),
        version,
    ]
    props["Ingress"]["Route"]["LoadBalancerPort"] = port
    path = e2e.home / f"web-{version}.json"
    path.write_text(json.dumps(doc))
    return path


@dataclass
class Client:
    """Requests through HAProxy in a loop, one new connection each, no pause."""

    port: int
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                if response.status == 200:
                    self.answers.append((time.monotonic(), body.split()[0]))
                else:
                    self.failures.append((time.monotonic(), f"HTTP {response.status}"))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append((time.monotonic(), repr(exc)))
            finally:
                conn.close()

    def versions_since(self, moment: float) -> set[str]:
        return {v for t, v in list(self.answers) if t >= moment}


@contextlib.contextmanager
def running(client: Client) -> Iterator[Client]:
    thread = threading.Thread(target=client.run, name="web client", daemon=True)
    thread.start()
    try:
        yield client
    finally:
        client.stop.set()
        thread.join(15)


@pytest.fixture
def state_dir(e2e: E2E) -> Iterator[Path]:
    """The process plugin's records. After a failed test the group is destroyed through the
    still-running daemons (killing its instances first would only get them healed), and what is
    left is killed by its recorded PID while the plugin daemon can still reap it."""
    directory = e2e.home / "processes"
    yield directory
    if any(directory.glob("*.json")) and e2e.daemons:
        e2e.run("group", "destroy", "web", check=False)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not any(directory.glob("*.json")), timeout=30, what="no records")
    leftover = []
    for record in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            leftover.append(json.loads(record.read_text())["Pid"])
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def haproxy_retries(admin: Path, lb_port: int) -> tuple[int, int]:
    """HAProxy's own count of retried and redispatched requests on the route's backend."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(admin))
        sock.sendall(b"show stat\n")
        text = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    row = next(r for r in rows if r["pxname"] == f"be_{lb_port}" and r["svname"] == "BACKEND")
    return int(row["wretr"] or 0), int(row["wredis"] or 0)


def rolled_to(e2e: E2E, version: str, size: int) -> dict[str, dict[str, Any]] | None:
    found = processes(e2e)
    commands = {d["Properties"]["Properties"]["Command"][-1] for d in found.values()}
    return found if len(found) == size and commands == {version} else None


def test_web_tier_serves_every_request_through_kills_and_a_rolling_update(
    e2e: E2E, state_dir: Path
) -> None:
    lb_port = free_port()
    e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "process",
        "vanilla",
        "loadbalancer",
        "-o",
        "group.store=memory",
        "-o",
        "process.grace=5s",
        sockets=["group", "instance-process", "flavor-vanilla", "loadbalancer"],
        INFRAKIT_INSTANCE_PROCESS_DIR=str(state_dir),
    )
    out = e2e.run("group", "commit", str(web_spec(e2e, "v1", lb_port))).stdout
    assert out == "Committed web: Managing 5 instances\n"
    first = wait_for(lambda: rolled_to(e2e, "v1", 5), timeout=60, what="5 v1 servers")
    for described in first.values():
        assert described["Tags"]["infrakit.address"].startswith("127.0.0.1:")
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "web").stdout,
        timeout=60,
        what="the group converged",
    )
    balancer = e2e.home / "loadbalancer" / "loadbalancer"
    assert (balancer / "admin.sock").stat().st_mode & 0o777 == 0o600
    haproxy_pid = int((balancer / "haproxy.pid").read_text())
    assert psutil.Process(haproxy_pid).name() == "haproxy"

    # The balancer routes to all five once their health checks passed.
    serving: set[str] = set()

    def all_five_answer() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", lb_port, timeout=5)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                if response.status == 200:
                    serving.add(response.read().decode().split()[1])
            finally:
                conn.close()
        return serving == set(first)

    wait_for(all_five_answer, timeout=30, what="HAProxy routing to the 5 servers")

    with running(Client(lb_port)) as client:
        wait_for(
            lambda: len(client.versions_since(0)) == 1 and len(client.answers) > 20,
            timeout=30,
            what="the client served through HAProxy",
        )

        # kill -9 two servers behind everyone's back.
        for victim in sorted(first)[:2]:
            pid = first[victim]["Properties"]["Pid"]
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda v=victim: (f := processes(e2e)) and v not in f and len(f) == 5,
                timeout=60,
                what=f"a replacement for {victim}",
            )
        served_before_roll = len(client.answers)

        # Roll the whole group to v2.
        roll_started = time.monotonic()
        e2e.run("group", "commit", str(web_spec(e2e, "v2", lb_port)))
        wait_for(lambda: rolled_to(e2e, "v2", 5), timeout=150, what="5 v2 servers")
        wait_for(
            lambda: "converged" in e2e.run("group", "describe", "web").stdout,
            timeout=60,
            what="the group converged on v2",
        )
        rolled_at = time.monotonic()
        roll_took = rolled_at - roll_started
        wait_for(
            lambda: len([t for t, _ in client.answers if t > rolled_at]) >= 50,
            timeout=30,
            what="50 answers after the roll",
        )
    retried = haproxy_retries(balancer / "admin.sock", lb_port)
    print(
        f"web tier: {len(client.answers)} requests served ({served_before_roll} before the "
        f"roll), {len(client.failures)} failed; HAProxy retried {retried[0]} connection(s), "
        f"redispatched {retried[1]}; the roll of 5 took {roll_took:.1f}s"
    )
    assert client.failures == [], (client.failures[:5], e2e.daemons[0].output()[-5000:])
    assert client.versions_since(rolled_at) == {"v2"}
    assert {"v1", "v2"} <= client.versions_since(0)

    e2e.run("group", "destroy", "web")
    wait_for(lambda: not processes(e2e), timeout=60, what="no instance left")
    e2e.stop_all()
    wait_for(lambda: not psutil.pid_exists(haproxy_pid), what="haproxy stopped and reaped")
