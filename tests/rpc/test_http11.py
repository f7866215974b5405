"""The HTTP/1.1 server under every listener (rpc/http11.py), over a real UNIX socket with raw bytes
as the client: what real clients send (curl's Expect: 100-continue, HTTP/1.0, pipelining, HEAD,
gzip, bare LF) is served; what is not HTTP is refused at once, not at a deadline."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from pathlib import Path

import pytest

from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeInstancePlugin
from tests.rpc.wire import HELLO, parse_reply, raw

pytestmark = pytest.mark.timeout(30)


def request(body: bytes = HELLO, *headers: str, version: str = "1.1", close: bool = True) -> bytes:
    lines = [f"POST / HTTP/{version}", "Host: x", f"Content-Length: {len(body)}", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def talk(path: Path, data: bytes, *, until_close: bool = True, timeout: float = 5) -> bytes:
    """Send ``data`` and read until the server closes (or ``timeout``)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


async def test_pipelined_requests_are_answered_in_order(sock: Path) -> None:
    calls = [
        json.dumps({"jsonrpc": "2.0", "method": "Handshake.Hello", "params": {}, "id": i}).encode()
        for i in range(5)
    ]
    data = b"".join(request(c, close=False) for c in calls[:-1]) + request(calls[-1])
    received = await asyncio.to_thread(talk, sock, data)
    ids = [json.loads(part.split(b"\r\n\r\n", 1)[1])["id"] for part in _replies(received)]
    assert ids == [0, 1, 2, 3, 4]


def _replies(data: bytes) -> list[bytes]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        out.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return out


async def test_expect_100_continue_gets_continue_before_the_answer(sock: Path) -> None:
    """curl sends Expect: 100-continue for bodies over 1 KiB and waits for the interim reply."""

    def exchange() -> tuple[bytes, bytes]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(sock))
            head = request(HELLO, "Expect: 100-continue")
            s.sendall(head[: -len(HELLO)])
            interim = s.recv(65536)
            s.sendall(HELLO)
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            return interim, rest

    interim, rest = await asyncio.to_thread(exchange)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert parse_reply(rest).json()["result"]["Objects"]


async def test_http_1_0_is_answered_and_closed(sock: Path) -> None:
    received = await asyncio.to_thread(talk, sock, request(version="1.0", close=False))
    reply = parse_reply(received)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert reply.json()["id"] == 1


async def test_bare_lf_line_ends_are_accepted(sock: Path) -> None:
    data = b"POST / HTTP/1.1\nHost: x\nContent-Length: %d\nConnection: close\n\n" % len(HELLO)
    reply = parse_reply(await asyncio.to_thread(talk, sock, data + HELLO))
    assert reply.status == 200 and reply.json()["id"] == 1


async def test_a_gzip_body_is_inflated(sock: Path) -> None:
    data = request(gzip.compress(HELLO), "Content-Encoding: gzip")
    reply = await asyncio.to_thread(raw, sock, data)
    assert reply.json()["result"]["Objects"]


async def test_a_chunked_body_is_served(sock: Path) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"%x\r\n%s\r\n" % (10, HELLO[:10])
        + b"%x;ext=1\r\n%s\r\n" % (len(HELLO) - 10, HELLO[10:])
        + b"0\r\nX-Trailer: y\r\n\r\n"
    )
    reply = await asyncio.to_thread(raw, sock, data)
    assert reply.json()["id"] == 1


async def test_head_gets_headers_and_no_body(sock: Path) -> None:
    received = await asyncio.to_thread(
        talk, sock, b"HEAD /info/api.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = received.partition(b"\r\n\r\n")
    assert (
        head.startswith(b"HTTP/1.1 200")
        and int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) > 0
    )
    assert body == b""


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, id="tls-hello"
        ),
        pytest.param(bytes(range(14, 256)), id="binary-noise"),
        pytest.param(b"A" * 40, id="endless-method"),
    ],
)
async def test_bytes_that_cannot_begin_a_request_are_refused_at_once(
    sock: Path, garbage: bytes
) -> None:
    """Not at the 10 s admission deadline: the first bytes tell already."""
    started = time.monotonic()
    received = await asyncio.to_thread(talk, sock, garbage)
    assert time.monotonic() - started < 3
    reply = parse_reply(received)
    assert reply.status == 400 and "not an HTTP request line" in reply.json()["error"]["message"]


async def test_a_declared_body_far_over_the_cap_is_refused_without_reading_it(sock: Path) -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % 10**30
    started = time.monotonic()
    reply = parse_reply(await asyncio.to_thread(talk, sock, data))
    assert time.monotonic() - started < 3
    assert reply.headers["connection"] == "close"
    assert "request body too large" in reply.json()["error"]["message"]


async def test_an_event_stream_is_sent_chunked_as_server_sent_events() -> None:
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:

        def subscribe() -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(h.socket))
                s.sendall(b"GET /events?topic=instance/ HTTP/1.1\r\nHost: x\r\n\r\n")
                received = b""
                while b": subscribed" not in received:
                    received += s.recv(65536)
                return received

        received = await asyncio.to_thread(subscribe)
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert b"transfer-encoding: chunked" in head and b"text/event-stream" in head


async def test_a_burst_of_events_reaches_a_subscriber_whole_and_in_order() -> None:
    """1000 events published at once (a scale-up's creates) are written as few chunks, but every
    one arrives, in order, as its own SSE event."""
    from infrakit._utils.aio import Broker
    from infrakit.rpc.client import Client
    from infrakit.rpc.server import PluginServer
    from infrakit.spi.event import Event
    from infrakit.testing import short_tempdir

    broker: Broker[Event] = Broker()
    directory = short_tempdir()
    server = PluginServer("ev", [], events=broker)
    await server.start(directory / "ev")
    client = Client("ev", directory / "ev")
    got: list[str] = []
    try:
        stream = client.subscribe("instance/")
        first = await anext(stream)
        assert first.type == "subscribed"
        for i in range(1000):
            broker.publish("instance/created", Event(topic="instance/created", type="c", id=str(i)))
        async with asyncio.timeout(20):
            async for event in stream:
                got.append(event.id)
                if len(got) == 1000:
                    break
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await client.close()
        await server.stop()
    assert got == [str(i) for i in range(1000)]
