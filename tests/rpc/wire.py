"""Raw HTTP/1.1 on a UNIX socket for the wire tests: the bytes a Go client would send, no client
library in between, and the reply decoded exactly (status, headers, de-chunked body, JSON)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The smallest valid JSON-RPC request body: a Handshake.Hello any plugin answers.
HELLO = b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1}'


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def http(
    path: Path,
    body: bytes = b"",
    url: str = "/",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection (``Connection: close``), read to the end."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    if "content-type" not in {k.lower() for k in headers or {}}:
        extra += "Content-Type: application/json\r\n"
    return raw(
        path,
        f"{method} {url} HTTP/1.1\r\nHost: d\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )


def raw(path: Path | tuple[str, int], data: bytes, timeout: float = 10) -> Reply:
    """Send ``data`` as it is (any bytes, well-formed HTTP or not) on a fresh connection to a UNIX
    socket or a TCP (host, port), read until the server closes it; the first reply, decoded."""
    family = socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect(path if isinstance(path, tuple) else str(path))
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return parse_reply(received)


def parse_reply(data: bytes) -> Reply:
    """The first HTTP/1.x reply in ``data`` (de-chunked; the body up to its Content-Length)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    found = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if found.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        rest = out
    elif "content-length" in found:
        rest = rest[: int(found["content-length"])]
    return Reply(status, found, rest)


def exchange(path: Path, body: bytes, url: str = "/", method: str = "POST") -> tuple[int, Any]:
    """One raw request; the HTTP status and the decoded JSON answer (None for an empty body)."""
    reply = http(path, body, url, method)
    return reply.status, reply.json()


async def call(path: Path, doc: Any, url: str = "/") -> tuple[int, Any]:
    """POST ``doc`` as JSON without blocking the event loop the server runs on."""
    return await asyncio.to_thread(exchange, path, json.dumps(doc).encode(), url)


async def head_call(path: Path, method: str, params: Any, request_id: Any = 1) -> Any:
    """A HEAD JSON-RPC 2.0 call at ``POST /``; the whole reply document (HTTP 200 asserted)."""
    status, reply = await call(
        path, {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
    )
    assert status == 200, reply
    return reply


async def seed_call(path: Path, method: str, params: Any, request_id: Any = 1) -> tuple[int, Any]:
    """A SEED-era call as the Go SEED client makes it: ``POST /rpc``, params in a 1-element array."""
    return await call(path, {"method": method, "params": [params], "id": request_id}, "/rpc")
