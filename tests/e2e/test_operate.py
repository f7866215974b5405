"""Running infrakit as a service, seen from outside: systemd's notify protocol and JSON logs."""

from __future__ import annotations

import json
import secrets
import signal
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]


@pytest.fixture
def notify() -> Iterator[tuple[str, socket.socket]]:
    """A fake systemd: an abstract datagram socket to pass as NOTIFY_SOCKET."""
    name = f"infrakit-e2e-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(20)
    yield "@" + name, sock
    sock.close()


def test_up_tells_systemd_it_is_ready_pings_the_watchdog_and_says_it_stops(
    e2e: E2E, notify: tuple[str, socket.socket]
) -> None:
    address, sock = notify
    daemon = e2e.start(
        "infrakit", "up", str(EXAMPLES / "cattle.json"),
        sockets=[], NOTIFY_SOCKET=address, WATCHDOG_USEC="400000",
    )  # fmt: skip
    ready = sock.recv(4096).decode()
    assert ready.startswith("READY=1\nSTATUS=serving ") and "group" in ready
    # READY comes once every socket answers and the specs are committed.
    for name in UP_SOCKETS:
        assert (e2e.plugins / name).is_socket(), name
    assert "Committed cattle" in daemon.output()
    pings = [sock.recv(64) for _ in range(2)]
    assert pings == [b"WATCHDOG=1", b"WATCHDOG=1"]
    daemon.signal(signal.SIGTERM)
    while (message := sock.recv(64)) == b"WATCHDOG=1":
        pass
    assert message == b"STOPPING=1"
    assert daemon.wait(timeout=20) == 0


def test_up_with_json_logs_writes_one_object_per_line_with_the_group_fields(e2e: E2E) -> None:
    daemon = e2e.start(
        "infrakit", "up", "--log-format", "json", str(EXAMPLES / "cattle.json"),
        sockets=UP_SOCKETS,
    )  # fmt: skip
    wait_for(lambda: "converged" in daemon.output(), what="the group to converge")
    daemon.signal(signal.SIGTERM)
    daemon.wait(timeout=20)
    records = []
    for line in daemon.output().splitlines():
        if not line.strip() or line.startswith("Committed "):  # stdout: the CLI's own output
            continue
        records.append(json.loads(line))  # every log line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    converged = next(r for r in records if r.get("event") == "converged")
    assert converged["group"] == "cattle" and converged["level"] == "INFO"


def test_a_bad_log_format_is_one_line(e2e: E2E) -> None:
    err = e2e.fails("up", INFRAKIT_LOG_FORMAT="xml")
    assert err.strip() == (
        "Error: log format 'xml': expected one of auto, text, json "
        "(--log-format or INFRAKIT_LOG_FORMAT)"
    )
