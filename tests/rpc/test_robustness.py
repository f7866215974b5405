"""Bad requests never cost the connection or the server: each one gets a JSON-RPC error naming what
was wrong, and the next request is served as usual."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.launch.host import services_for
from infrakit.launch.serving import detect
from infrakit.rpc.connections import ConnectionLimits
from infrakit.rpc.envelope import MAX_BODY_DEPTH
from infrakit.rpc.server import PluginServer
from infrakit.spi.types import Health
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin
from tests.rpc.wire import HELLO, head_call, http, raw, seed_call

pytestmark = pytest.mark.timeout(30)


async def still_serving(path: Path) -> None:
    reply = await asyncio.to_thread(http, path, HELLO)
    assert reply.status == 200 and "Instance/0.6.1" in reply.json()["result"]["Objects"]


def rpc(method: str, params: Any = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 3, **extra}
    if params is not ...:
        doc["params"] = params
    return json.dumps(doc).encode()


BAD_HEAD_REQUESTS = [
    # (what, body, code, words the message must contain)
    ("malformed JSON", b'{"jsonrpc":"2.0",', -32700, "not valid JSON"),
    ("not UTF-8", b"\xff\xfe{}", -32700, "not valid JSON"),
    ("empty body", b"", -32700, "not valid JSON"),
    ("JSON null body", b"null", -32600, "expected a JSON-RPC object"),
    ("a bare number", b"42", -32600, "got a number"),
    ("batch array", b"[" + HELLO + b"]", -32600, "batch requests"),
    ("empty batch", b"[]", -32600, "batch requests"),
    ("wrong jsonrpc", rpc("Instance.DescribeInstances", {}, jsonrpc="1.0"), -32600, "2.0"),
    ("method not a string", b'{"jsonrpc":"2.0","method":5,"params":{},"id":3}', -32600, "method must be a string"),
    ("params a string", rpc("Instance.Provision", "spec"), -32602, "got a string"),
    ("params a 2-element array", rpc("Instance.Provision", [{}, {}]), -32602, "array of 2"),
    ("null params", rpc("Instance.Provision", None), -32000, "Spec must be set"),
    ("missing params", rpc("Instance.Provision", ...), -32000, "Spec must be set"),
    ("Spec a number", rpc("Instance.Provision", {"Spec": 5}), -32000, "Spec: expected a JSON object"),
    ("Tags an array", rpc("Instance.DescribeInstances", {"Tags": ["a"]}), -32000, "Tags"),
    ("tag value a number", rpc("Instance.DescribeInstances", {"Tags": {"a": 1}}), -32000, "Tags.a"),
    ("Type a number", rpc("Instance.DescribeInstances", {"Type": 1}), -32000, "Type: expected a string"),
    ("unknown method", rpc("Instance.Nope", {}), -32000, 'can\'t find method "Instance.Nope"'),
    ("unknown service", rpc("Nope.Do", {}), -32000, 'can\'t find service "Nope"'),
    ("no dot in method", rpc("Provision", {}), -32600, "like Instance.Provision"),
    ("unknown Type", rpc("Instance.DescribeInstances", {"Type": "gpu"}), -32000, "no-plugin:gpu"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [pytest.param(b, c, w, id=what) for what, b, c, w in BAD_HEAD_REQUESTS],
)
async def test_bad_head_requests_get_json_rpc_errors(
    sock: Path, body: bytes, code: int, words: str
) -> None:
    reply = await asyncio.to_thread(http, sock, body)
    assert reply.status == 200
    doc = reply.json()
    assert list(doc) == ["jsonrpc", "error", "id"]
    assert doc["error"]["code"] == code
    assert words in doc["error"]["message"]
    await still_serving(sock)


async def test_bad_seed_requests_get_seed_errors(sock: Path) -> None:
    for body, words in [
        (b"{oops", "not valid JSON"),
        (b'{"method":"Instance.DescribeInstances","id":1}', "missing params field"),
        (b'{"method":"Instance.DescribeInstances","params":{},"id":1}', "missing params field"),
        (b'{"method":"Instance.Nope","params":[{}],"id":1}', 'can\'t find method "Instance.Nope"'),
    ]:
        reply = await asyncio.to_thread(http, sock, body, "/rpc")
        assert reply.status == 400
        doc = reply.json()
        assert list(doc) == ["result", "error", "id"] and doc["result"] is None
        assert words in doc["error"]
    await still_serving(sock)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_non_post_methods_get_405_with_a_json_rpc_error(sock: Path, method: str) -> None:
    reply = await asyncio.to_thread(http, sock, b"", "/", method)
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    doc = reply.json()
    assert doc["error"]["message"] == f"rpc: POST method required, received {method}"
    reply = await asyncio.to_thread(http, sock, b"", "/rpc", method)  # SEED path: SEED shape
    assert reply.status == 405
    assert reply.json()["error"] == f"rpc: POST method required, received {method}"
    await still_serving(sock)


async def test_oversize_bodies_are_refused_with_an_error_not_a_dropped_connection(
    sock: Path,
) -> None:
    big = b'{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":"'
    big += b"x" * (16 * 1024 * 1024) + b'"},"id":7}'
    reply = await asyncio.to_thread(http, sock, big)
    assert reply.status == 200
    assert "request body too large" in reply.json()["error"]["message"]

    def chunked_upload() -> bytes:
        """The same without Content-Length (chunked): counted as it arrives."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock))
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n"
            )
            piece = b"y" * (1 << 20)
            for _ in range(17):
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    data = await asyncio.to_thread(chunked_upload)
    assert data.startswith(b"HTTP/1.1 200") and b"request body too large" in data

    # Just under the cap is served.
    ok = b'{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":"'
    ok += b"x" * (15 * 1024 * 1024) + b'"},"id":8}'
    reply = await asyncio.to_thread(http, sock, ok)
    assert reply.json()["result"] == {"Type": "", "OK": True}
    await still_serving(sock)


async def test_null_properties_are_accepted_everywhere() -> None:
    """Go leaves a field unset on JSON null; InfraKit's SEED flavors crashed on it (EOF)."""
    flav = FakeFlavorPlugin(default_health=Health.HEALTHY)
    async with serve_plugin(flav, "flav") as h:
        desc = {"ID": "i-1", "LogicalID": None, "Tags": {}}
        spec = {"Properties": None, "Tags": None, "Init": "", "LogicalID": None}
        for method, params in [
            ("Flavor.Validate", {"Properties": None, "Allocation": {"Size": 1}}),
            ("Flavor.Prepare", {"Properties": None, "Spec": spec, "Allocation": None}),
            ("Flavor.Healthy", {"Properties": None, "Instance": desc}),
            ("Flavor.Drain", {"Properties": None, "Instance": desc}),
        ]:
            reply = await head_call(h.socket, method, params)
            assert "result" in reply, (method, reply)
            status, seed = await seed_call(h.socket, method, params)
            assert status == 200 and seed["error"] is None, (method, seed)
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:
        reply = await head_call(h.socket, "Instance.Validate", {"Properties": None})
        assert reply["result"] == {"Type": "", "OK": True}
        reply = await head_call(
            h.socket, "Instance.Provision", {"Spec": {"Properties": None, "Tags": None}}
        )
        assert reply["result"]["ID"] in plugin.instances
        reply = await head_call(
            h.socket, "Instance.DescribeInstances", {"Tags": None, "Properties": None}
        )
        assert len(reply["result"]["Descriptions"]) == 1


async def test_a_plugin_bug_is_an_error_reply_and_the_plugin_keeps_serving() -> None:
    def explode(spec: object) -> None:
        raise KeyError("boom")

    plugin = FakeInstancePlugin(on_provision=explode)
    async with serve_plugin(plugin, "inst") as h:
        reply = await head_call(h.socket, "Instance.Provision", {"Spec": {"Tags": {}}}, 4)
        assert reply["id"] == 4 and reply["error"]["message"] == "KeyError: 'boom'"
        await still_serving(h.socket)


async def test_head_notification_runs_and_gets_an_empty_body(sock: Path) -> None:
    body = b'{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Spec":{"Tags":{"n":"1"}}}}'
    reply = await asyncio.to_thread(http, sock, body)
    assert (reply.status, reply.body) == (200, b"")
    reply = await asyncio.to_thread(
        http, sock, b'{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{},"id":2}'
    )
    assert len(reply.json()["result"]["Descriptions"]) == 1


@pytest.mark.parametrize(
    "request_id", [9223372036854775807, 18446744073709551615, 0, "abc", None, 1.5]
)
async def test_ids_are_echoed_exactly(sock: Path, request_id: Any) -> None:
    body = b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":'
    body += json.dumps(request_id).encode() + b"}"
    reply = await asyncio.to_thread(http, sock, body)
    assert f'"id":{json.dumps(request_id, separators=(",", ":"))}}}'.encode() in reply.body


# --- bodies HTTP or JSON cannot make sense of ------------------------------------------------


@pytest.fixture
async def quick_sock() -> AsyncIterator[Path]:
    """A real plugin server whose body timeout is half a second (the default is 30 s)."""
    directory = short_tempdir()
    plugin = FakeInstancePlugin()
    server = PluginServer(
        "inst",
        services_for("inst", detect(plugin, "inst")).services,
        limits=ConnectionLimits(body_timeout=0.5),
    )
    await server.start(directory / "inst")
    try:
        yield directory / "inst"
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def post(body: bytes, *headers: str, url: str = "/", length: int | None = None) -> bytes:
    """The bytes of one POST; ``length`` overrides the Content-Length (a lying client)."""
    lines = [f"POST {url} HTTP/1.1", "Host: d", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode() + body


def validate_nested(levels: int) -> bytes:
    """Instance.Validate whose Properties nest ``levels`` deep (the body: 2 levels more)."""
    return (
        b'{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":'
        + b"[" * levels
        + b"]" * levels
        + b'},"id":1}'.replace(b"\\", b"")
    )


CHUNKED = "Transfer-Encoding: chunked"
MALFORMED_BODIES = [
    # (what, request bytes, HTTP status, JSON-RPC code, words the message must contain)
    ("nested 5000 levels", post(b"[" * 5000 + b"]" * 5000), 200, -32600, f"nested deeper than {MAX_BODY_DEPTH} levels"),
    ("objects nested 1200 levels", post(b'{"a":' * 1200 + b"1" + b"}" * 1200), 200, -32600, "nested deeper than"),
    ("one level over the limit", post(validate_nested(MAX_BODY_DEPTH - 1)), 200, -32600, "a spec may nest at most 256"),
    ("gzip that is not gzip", post(b"not gzip", "Content-Encoding: gzip"), 200, -32700, "cannot be decoded (Content-Encoding gzip)"),
    ("gzip cut short", post(gzip.compress(HELLO)[:-12], "Content-Encoding: gzip"), 200, -32700, "parse error"),
    ("deflate that is not deflate", post(b"\x00\x01junk", "Content-Encoding: deflate"), 200, -32700, "cannot be decoded (Content-Encoding deflate)"),
    ("gzip inflating past 16 MiB", post(gzip.compress(b" " * (17 << 20)), "Content-Encoding: gzip"), 200, -32600, "request body too large"),
    ("invalid UTF-8 in a string", post(HELLO.replace(b"{}", b'{"a":"\xff"}')), 200, -32700, "not valid JSON"),
    ("Content-Length longer than the body", post(HELLO, length=len(HELLO) + 40), 200, -32700, f"did not arrive in time ({len(HELLO)} of {len(HELLO) + 40} bytes"),
    ("Content-Length shorter than the body", post(HELLO, length=10), 400, -32700, "bad HTTP request"),
    ("Content-Length not a number", post(HELLO, length=-1), 400, -32700, "Content-Length"),
    ("Content-Length with chunked", post(b"0\r\n\r\n", CHUNKED, f"Content-Length: {len(HELLO)}"), 400, -32700, "Transfer-Encoding"),
    ("chunk size garbage", post(b"zz\r\nabc\r\n0\r\n\r\n", CHUNKED), 400, -32700, "chunk size"),
    ("chunks cut short", post(b"40\r\n" + HELLO[:20], CHUNKED), 200, -32700, "did not arrive in time"),
    ("a header line over 8 KiB", post(HELLO, "X-Big: " + "a" * 9000), 400, -32700, "bad HTTP request"),
    ("not HTTP at all", b"GARBAGE\r\n\r\n", 400, -32700, "bad HTTP request"),
    ("a header without a colon", b"POST / HTTP/1.1\r\nHost d\r\n\r\n", 400, -32700, "bad HTTP request"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "status", "code", "words"),
    [pytest.param(d, st, c, w, id=what) for what, d, st, c, w in MALFORMED_BODIES],
)
async def test_malformed_bodies_get_json_rpc_errors_over_a_real_socket(
    quick_sock: Path,
    data: bytes,
    status: int,
    code: int,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Never aiohttp's HTTP 500 or 400 text/plain: a JSON-RPC error document naming the
    problem, no traceback in the log, and the server goes on serving."""
    reply = await asyncio.to_thread(raw, quick_sock, data)
    assert reply.status == status, reply
    assert reply.headers["content-type"].startswith("application/json"), reply
    doc = reply.json()
    assert list(doc) == ["jsonrpc", "error", "id"], doc
    assert doc["error"]["code"] == code and words in doc["error"]["message"], doc
    assert "\n" not in doc["error"]["message"]
    await still_serving(quick_sock)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_malformed_seed_bodies_get_seed_errors(quick_sock: Path) -> None:
    for data, words in [
        (post(b"not gzip", "Content-Encoding: gzip", url="/rpc"), "cannot be decoded"),
        (post(b"[" * 3000 + b"]" * 3000, url="/rpc"), "nested deeper than"),
        (post(b'{"method":"x.y",', url="/rpc", length=40), "did not arrive in time"),
    ]:
        reply = await asyncio.to_thread(raw, quick_sock, data)
        assert reply.status == 400 and reply.headers["content-type"].startswith("application/json")
        doc = reply.json()
        assert list(doc) == ["result", "error", "id"] and words in doc["error"], doc
    await still_serving(quick_sock)


async def test_a_body_at_the_depth_limit_is_served(quick_sock: Path) -> None:
    reply = await asyncio.to_thread(raw, quick_sock, post(validate_nested(MAX_BODY_DEPTH - 2)))
    assert reply.json()["result"] == {"Type": "", "OK": True}
