"""The async Client's HTTP/1.1 transport (rpc/streams.py): connections kept and reused, a stale
kept-alive connection retried once, chunked and read-to-close replies, against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.rpc.client import Client
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin

pytestmark = pytest.mark.timeout(30)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[Path]]]:
    """A UNIX socket served by a scripted handler; yields a function starting one."""
    directory = short_tempdir()
    servers: list[asyncio.AbstractServer] = []

    async def start(script: Script) -> Path:
        path = directory / f"s{len(servers)}"

        async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await script(reader, writer)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        servers.append(await asyncio.start_unix_server(closing, path=str(path)))
        return path

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    shutil.rmtree(directory, ignore_errors=True)


async def read_request(reader: asyncio.StreamReader) -> dict[str, object]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return json.loads(await reader.readexactly(length))  # type: ignore[no-any-return]


def answer(doc: dict[str, object], request_id: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": doc, "id": request_id}).encode()


HELLO = {"Objects": {"Instance/0.6.1": [{"Name": ".", "ProxyFor": ""}]}}


async def test_calls_reuse_one_kept_alive_connection(scripted) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                doc = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            result = HELLO if doc["method"] == "Handshake.Hello" else {"n": connections}
            body = answer(result, doc["id"])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    path = await scripted(script)
    client = Client("inst", path)
    try:
        for _ in range(20):
            assert await client.call("Instance.Validate", {}) == {"n": 1}
    finally:
        await client.close()
    assert connections == 1


async def test_a_connection_the_server_closed_while_idle_is_retried_once(scripted) -> None:  # type: ignore[no-untyped-def]
    """The server answers one request per connection and closes it without saying so: the next
    call finds the kept connection dead and goes through on a new one."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        doc = await read_request(reader)
        result = HELLO if doc["method"] == "Handshake.Hello" else {"ok": True}
        body = answer(result, doc["id"])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    path = await scripted(script)
    client = Client("inst", path)
    try:
        for _ in range(3):
            assert await client.call("Instance.Validate", {}) == {"ok": True}
    finally:
        await client.close()


@pytest.mark.parametrize("framing", ["chunked", "read-to-close"])
async def test_chunked_and_unsized_replies_are_read(scripted, framing: str) -> None:  # type: ignore[no-untyped-def]
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        doc = await read_request(reader)
        result = HELLO if doc["method"] == "Handshake.Hello" else {"framing": framing}
        body = answer(result, doc["id"])
        if framing == "chunked":
            half = len(body) // 2
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (half, body[:half], len(body) - half, body[half:])
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    path = await scripted(script)
    client = Client("inst", path)
    try:
        assert await client.call("Instance.Validate", {}) == {"framing": framing}
    finally:
        await client.close()


async def test_a_reply_that_is_not_http_is_a_protocol_error(scripted) -> None:  # type: ignore[no-untyped-def]
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    path = await scripted(script)
    client = Client("inst", path)
    try:
        with pytest.raises(errors.ProtocolError, match=r"SSH-2\.0"):
            await client.call("Instance.Validate", {})
    finally:
        await client.close()


async def test_many_concurrent_calls_to_a_real_plugin() -> None:
    async with serve_plugin(FakeInstancePlugin(), "inst") as h:
        client = Client("inst", h.socket)
        try:
            results = await asyncio.gather(
                *(client.call("Instance.Validate", {"Properties": {"n": i}}) for i in range(200))
            )
        finally:
            await client.close()
    assert all(r == {"Type": "", "OK": True} for r in results)
