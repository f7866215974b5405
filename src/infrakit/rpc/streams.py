"""The async client's default transport: HTTP/1.1 on asyncio streams, no third-party code.

:class:`StreamTransport` moves :class:`~infrakit.rpc.client.Client`'s bytes to a UNIX socket or a
TCP address (TLS for ``https://`` and whenever the client has an ``SSLContext``): connections are
kept alive and reused (at most :data:`MAX_CONNECTIONS` at a time, idle ones dropped after
:data:`IDLE_SECONDS`, before the server's own 60 s idle timeout can close them under a request),
and every failure is the core's message (``core.unreachable``, ``core.timeout`` ...), the same
words :class:`~infrakit.rpc.sync.SocketTransport` and the memory transport use. A kept-alive
connection the peer closed meanwhile (it answered nothing) is retried once on a new one.

Replies are read by ``Content-Length``, chunked, or to the end of the connection; event streams
(``GET /events``) get a connection of their own, read chunk by chunk as the frames arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as _ssl
import time
from collections.abc import AsyncGenerator
from typing import Any

from infrakit import errors
from infrakit.rpc.core import ClientCore, parse_response_head, request_head

__all__ = ["IDLE_SECONDS", "MAX_CONNECTIONS", "StreamTransport", "connect_unix"]

#: Connections one client keeps open at most (calls beyond wait for one).
MAX_CONNECTIONS = 64
#: An idle kept-alive connection older than this is closed rather than reused.
IDLE_SECONDS = 15.0
#: Bytes read from the socket at a time.
READ_SIZE = 1 << 18


class _EmptyReply(ConnectionError):
    """The peer closed a kept-alive connection before answering (safe to retry once)."""


class _NotHttp(Exception):
    """The peer's reply is not HTTP (its first line is the message)."""


class _Conn:
    """One connection: its streams, its peer, when it was last used."""

    __slots__ = ("peer", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.used = time.monotonic()

    def usable(self) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and time.monotonic() - self.used < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()

    async def head(self) -> tuple[int, dict[str, str]]:
        try:
            data = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _EmptyReply("empty reply") from exc
            raise ConnectionResetError("truncated HTTP reply") from exc
        except asyncio.LimitOverrunError as exc:
            raise _NotHttp("reply headers too long") from exc
        try:
            return parse_response_head(data[:-4])
        except ValueError as exc:
            raise _NotHttp(str(exc)) from exc

    async def body(self, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The body of a reply with ``headers``; and whether the connection can be reused."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = [chunk async for chunk in self.chunks()]
            return b"".join(chunks), headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
            return body, headers.get("connection", "").lower() != "close"
        return await self.reader.read(), False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """A chunked body, chunk by chunk (the trailer read and dropped)."""
        reader = self.reader
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]


async def connect_unix(path: str, timeout: float | None) -> socket.socket:
    """Async twin of :func:`infrakit.rpc.sync._connect_unix_blocking`: a connected non-blocking
    UNIX socket, retrying EAGAIN until ``timeout``.

    (asyncio's own ``sock_connect`` mistakes a UNIX EAGAIN for a connection in progress and hands
    back an unconnected socket.) Raises :class:`TimeoutError` when the queue stays full.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.002
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"accept queue of {path} stayed full") from None
                await asyncio.sleep(delay if remaining is None else min(delay, remaining))
                delay = min(delay * 2, 0.05)
    except BaseException:
        sock.close()
        raise


class StreamTransport:
    """HTTP/1.1 over asyncio streams to one plugin (module docstring); safe to share across
    tasks."""

    def __init__(self) -> None:
        self._idle: list[_Conn] = []
        self._slots: asyncio.Semaphore | None = None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- connections ---------------------------------------------------------------------------

    async def _connect(self, core: ClientCore, what: str) -> _Conn:
        address = core.address
        try:
            async with asyncio.timeout(core.connect_timeout):
                if address.path is not None:
                    sock = await connect_unix(address.path, core.connect_timeout)
                    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=READ_SIZE)
                else:
                    reader, writer = await asyncio.open_connection(
                        address.host, address.port, ssl=_tls(core), limit=READ_SIZE
                    )
        except TimeoutError as exc:
            raise core.timeout(what, core.connect_timeout, "connection") from exc
        except (_ssl.SSLError, _ssl.CertificateError) as exc:
            raise core.tls_failed(what, exc) from exc
        except OSError as exc:
            raise core.unreachable(what, exc) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    def _take_idle(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Conn) -> None:
        conn.used = time.monotonic()
        self._idle.append(conn)

    # --- the transport -------------------------------------------------------------------------

    async def post(
        self,
        core: ClientCore,
        path: str,
        data: bytes,
        headers: dict[str, str],
        method: str,
        timeout: float,
    ) -> tuple[int, bytes, Any]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        request = request_head("POST", path, headers, len(data)) + data
        async with self._slots:
            for attempt in (0, 1):
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(core, method)
                try:
                    return await self._exchange(conn, request, method, timeout, core)
                except _EmptyReply as exc:
                    if reused and attempt == 0:
                        continue
                    raise core.dropped(method, exc) from exc
        raise AssertionError("unreachable")

    async def _exchange(
        self, conn: _Conn, request: bytes, method: str, timeout: float, core: ClientCore
    ) -> tuple[int, bytes, Any]:
        keep = answered = False
        try:
            async with asyncio.timeout(timeout):
                conn.writer.write(request)
                status, headers = await conn.head()
                answered = True
                body, keep = await conn.body(headers)
        except _EmptyReply:
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:
            if not answered:  # the peer had closed it: nothing was served
                raise _EmptyReply(str(exc)) from exc
            raise core.dropped(method, exc) from exc
        except TimeoutError as exc:
            raise core.timeout(method, timeout, "answer") from exc
        except _NotHttp as exc:
            raise core.not_http(method, str(exc)) from exc
        except (_ssl.SSLError, _ssl.CertificateError) as exc:
            raise core.tls_failed(method, exc) from exc
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError) as exc:
            raise core.dropped(method, exc) from exc
        finally:
            if keep:
                self._give_back(conn)
            else:
                conn.close()
        return status, body, conn.peer

    async def open_stream(self, core: ClientCore, path: str, headers: dict[str, str]) -> _Stream:
        """Open ``GET /events`` on a connection of its own (answered at once; the stream may
        then stay quiet for long)."""
        what = "GET /events"
        conn = await self._connect(core, what)
        try:
            async with asyncio.timeout(core.handshake_timeout):
                conn.writer.write(request_head("GET", path, headers, None))
                status, got = await conn.head()
        except TimeoutError as exc:
            conn.close()
            raise core.timeout(what, core.handshake_timeout, "answer") from exc
        except _NotHttp as exc:
            conn.close()
            raise core.not_http(what, str(exc)) from exc
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            conn.close()
            raise errors.ProtocolError(
                f"{core.what(what)}: event stream closed before it started ({exc!s}); "
                "the plugin may have crashed - check its log"
            ) from exc
        return _Stream(core, conn, status, got)


def _tls(core: ClientCore) -> _ssl.SSLContext | None:
    """The context to dial ``https://`` with (the core makes every TCP address with a context
    ``https://``); None: plain TCP."""
    if not core.address.tls:
        return None
    return core.ssl or _ssl.create_default_context()


class _Stream:
    """An event stream's connection: its status and content type, then its bytes."""

    def __init__(self, core: ClientCore, conn: _Conn, status: int, headers: dict[str, str]) -> None:
        self._core = core
        self._conn = conn
        self._headers = headers
        self.status = status
        self.content_type = headers.get("content-type", "")

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        conn = self._conn
        try:
            if self._headers.get("transfer-encoding", "").lower() == "chunked":
                async for chunk in conn.chunks():
                    yield chunk
                return
            while data := await conn.reader.read(READ_SIZE):
                yield data
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError) as exc:
            raise errors.PluginUnreachableError(
                f"plugin {self._core.name} at {self._core.address}: event stream ended ({exc!s})"
            ) from exc

    async def read(self) -> bytes:
        try:
            body, _ = await self._conn.body(self._headers)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError):
            return b""
        return body

    async def aclose(self) -> None:
        self._conn.close()
