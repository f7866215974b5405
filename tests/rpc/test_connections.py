"""Slow, silent and surplus connections are closed; admitted ones and event streams are not.

A real PluginServer with short limits, real UNIX and TCP sockets (the TCP one token-protected),
and raw sockets as the clients: no HTTP library between the test and the server's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from infrakit.launch.host import services_for
from infrakit.launch.serving import detect
from infrakit.rpc.client import Client
from infrakit.rpc.connections import ConnectionLimits
from infrakit.rpc.instance import InstanceClient
from infrakit.rpc.server import PluginServer
from infrakit.spi.instance import Spec
from infrakit.testing import short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin
from tests.rpc.wire import HELLO, parse_reply

pytestmark = pytest.mark.timeout(60)

TOKEN = "sekrit-token"
HALF = b"POST / HTTP/1.1\r\nHost: x\r\n"


def request(token: str | None = TOKEN, close: bool = False) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    connection = "Connection: close\r\n" if close else ""
    return (
        f"POST / HTTP/1.1\r\nHost: x\r\n{auth}{connection}Content-Length: {len(HELLO)}\r\n\r\n"
    ).encode() + HELLO


@dataclass
class Served:
    server: PluginServer
    unix: Path

    @property
    def tcp(self) -> tuple[str, int]:
        assert self.server.tcp_address is not None
        return self.server.tcp_address

    def connect(self, where: str = "tcp") -> socket.socket:
        if where == "tcp":
            sock = socket.create_connection(self.tcp, timeout=5)
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(str(self.unix))
        return sock


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ConnectionLimits], asyncio.Future[Served]]]:
    """Start a plugin server with the given limits on a UNIX socket and a token-protected TCP
    port (stopped and removed afterwards)."""
    started: list[tuple[PluginServer, Path]] = []

    async def start(limits: ConnectionLimits) -> Served:
        directory = short_tempdir()
        plugin = FakeInstancePlugin()
        served = detect(plugin, "inst")
        server = PluginServer(
            "inst", services_for("inst", served).services, events=served.events, limits=limits
        )
        await server.start(directory / "inst", tcp=("127.0.0.1", 0), token=TOKEN)
        started.append((server, directory))
        return Served(server, directory / "inst")

    yield start  # type: ignore[misc]
    for server, directory in started:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False while it is open and quiet."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def answer(sock: socket.socket, data: bytes) -> int:
    """Send one request on ``sock`` (kept alive) and return the reply's HTTP status."""
    sock.sendall(data)
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return parse_reply(received).status


async def test_connections_without_an_admitted_request_are_closed_at_the_deadline(serve) -> None:
    """Silent, half-sent (also trickled byte by byte) and only-401 connections are closed once
    the admission deadline passes; an admitted connection opened at the same time stays."""
    served = await serve(ConnectionLimits(header_timeout=0.5))
    silent = served.connect()
    half = served.connect()
    half.sendall(HALF)
    trickle = served.connect()
    refused = served.connect()
    assert await asyncio.to_thread(answer, refused, request(token="wrong")) == 401
    unix_half = served.connect("unix")
    unix_half.sendall(HALF)
    admitted = served.connect()
    assert await asyncio.to_thread(answer, admitted, request()) == 200
    waiting = [silent, half, refused, unix_half]

    def all_closed() -> bool:
        with contextlib.suppress(OSError):
            trickle.send(b"P")  # slowloris: a byte now and then never earns more time
        return all(closed_by_server(s) for s in [*waiting, trickle])

    await wait_until(all_closed, "the unadmitted connections to be closed")
    assert not closed_by_server(admitted)
    assert await asyncio.to_thread(answer, admitted, request()) == 200
    for sock in [*waiting, trickle, admitted]:
        sock.close()


@pytest.mark.parametrize("where", ["tcp", "unix"])
async def test_idle_admitted_connections_are_closed_after_the_idle_timeout(
    serve, where: str
) -> None:
    served = await serve(ConnectionLimits(header_timeout=30, idle_timeout=0.5))
    sock = served.connect(where)
    assert await asyncio.to_thread(answer, sock, request()) == 200
    await wait_until(lambda: closed_by_server(sock), "the idle connection to be closed")
    sock.close()


@pytest.mark.parametrize("where", ["tcp", "unix"])
async def test_the_cap_closes_the_oldest_waiting_connections_and_real_requests_get_through(
    serve, where: str
) -> None:
    served = await serve(ConnectionLimits(header_timeout=30, max_pending=4))
    flood = []
    for _ in range(10):
        sock = served.connect(where)
        sock.sendall(HALF)
        flood.append(sock)
    await wait_until(
        lambda: all(closed_by_server(s) for s in flood[:6]), "the 6 oldest to be closed"
    )
    assert not any(closed_by_server(s) for s in flood[6:])
    real = served.connect(where)
    assert await asyncio.to_thread(answer, real, request(close=True)) == 200
    await wait_until(lambda: closed_by_server(flood[6]), "the oldest waiting one to make room")
    for sock in [*flood, real]:
        sock.close()


async def test_event_streams_outlive_every_timeout(serve) -> None:
    """A subscriber's GET /events is an admitted request in progress: neither the admission nor
    the idle timeout ends it, on either socket."""
    served = await serve(ConnectionLimits(header_timeout=0.2, idle_timeout=0.2, body_timeout=0.2))
    clients = [
        Client("inst", served.unix),
        Client("inst", f"tcp://{served.tcp[0]}:{served.tcp[1]}", token=TOKEN),
    ]
    streams = [c.subscribe("instance/") for c in clients]
    try:
        for events in streams:
            assert (await asyncio.wait_for(anext(events), 5)).type == "subscribed"
        await asyncio.sleep(1.0)  # five times every timeout: the streams must still be there
        instance_id = await InstanceClient(clients[0]).provision(Spec(tags={"a": "1"}))
        for events in streams:
            event = await asyncio.wait_for(anext(events), 5)
            assert (event.type, event.id) == ("created", instance_id)
    finally:
        for events in streams:
            await events.aclose()  # type: ignore[attr-defined]
        for client in clients:
            await client.close()
