"""A flood of connections that never finish a request cannot exhaust a real daemon's descriptors.

Before, 3000 connections that sent only ``POST / HTTP/1.1\\r\\nHost: x\\r\\n`` to a token-protected
port stayed open for an hour (fds 26 -> 3026): past a ``ulimit -n`` of 1024 every plugin of the
process dies. Now each listener holds at most 128 such connections (the oldest go first) and closes
every one 10 s after it was accepted.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import E2E, wait_for
from tests.rpc.wire import parse_reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TOKEN = "flood-test-token"
FLOOD = 1000
HELLO = b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1}'


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Room for the flood in this test process (the daemon keeps its own limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 256
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def real_request(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: {len(HELLO)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + HELLO
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    reply = parse_reply(data)
    assert reply.status == 200, reply
    return reply.json()  # type: ignore[no-any-return]


def test_a_thousand_half_open_connections_are_all_closed_and_a_real_request_still_served(
    e2e: E2E, many_descriptors: None
) -> None:
    daemon = e2e.start(
        "infrakit",
        "plugin",
        "start",
        "file",
        "--listen-tcp",
        "127.0.0.1",
        sockets=["instance-file"],
        INFRAKIT_TOKEN=TOKEN,
    )
    listen = e2e.plugins / "instance-file.listen"
    url = wait_for(lambda: listen.exists() and listen.read_text(), what="the .listen file")
    port = int(url.rsplit(":", 1)[1])
    assert "Objects" in real_request(port)["result"]
    baseline = descriptors(daemon.pid)

    flood: set[socket.socket] = set()
    try:
        for _ in range(FLOOD):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            flood.add(sock)
        held = time.monotonic()
        assert "Objects" in real_request(port)["result"]  # served while the flood is held

        deadline = held + 15
        while flood and time.monotonic() < deadline:
            readable, _, _ = select.select(list(flood), [], [], 0.2)
            for sock in readable:
                with contextlib.suppress(OSError):
                    if sock.recv(1024):
                        continue  # the server answered something: not closed yet
                flood.discard(sock)
                sock.close()
        assert not flood, f"{len(flood)} of {FLOOD} connections still open 15 s after the flood"
    finally:
        for sock in flood:
            sock.close()

    wait_for(
        lambda: descriptors(daemon.pid) <= baseline, timeout=5, what="fds back to the baseline"
    )
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Objects" in real_request(port)["result"]
    log = daemon.output()
    assert log.count("waiting to send a request; closing the oldest") == 1, log
    assert "Traceback" not in log
