"""The HTTP/1.1 server under every infrakit listener: plugin sockets, TCP ports and ``--http``.

Small on purpose - plugins speak a handful of routes, one request at a time per connection - and
built on asyncio alone: a daemon that answers on its socket imports no HTTP library (aiohttp's
import was 40 % of a daemon's start and ~8 MB of its memory; its request path cost more than
infrakit's dispatch). What it does:

* **Requests**: ``METHOD target HTTP/1.0|1.1``, headers (each line at most 8 KiB, 100 of them),
  bodies by ``Content-Length`` or ``Transfer-Encoding: chunked``, ``Content-Encoding`` gzip or
  deflate, ``Expect: 100-continue`` (curl's, for bodies over 1 KiB). Keep-alive by default on
  HTTP/1.1, pipelined requests served in order.
* **Replies**: :class:`Response` (a whole body, ``Content-Length``) or :class:`Streaming` (frames
  as they come, chunked: Server-Sent Events).
* **Connections** follow :mod:`infrakit.rpc.connections`: an admission deadline, an idle
  keep-alive timeout, a body timeout and a cap of waiting connections per listener.
* **Anything HTTP cannot parse** (a request line or header that is not HTTP, a Content-Length
  that is not a number, both Content-Length and chunked, chunk sizes that are not hex, data past
  the end of a request that closes the connection) is answered with HTTP 400 and a JSON-RPC error
  document, then the connection is closed; a handler that raises (an infrakit bug) gets HTTP 500
  with its traceback in the log. Nothing a client sends ends the server.

Handlers are ``async (Request) -> Response | Streaming``; :class:`HttpServer` binds them to UNIX
sockets and TCP ports (TLS when given an ``SSLContext``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from infrakit.rpc import codec, envelope
from infrakit.rpc.connections import BodyError, ConnectionLimits, Listener, too_large

__all__ = ["BadRequest", "HttpServer", "Request", "Response", "Streaming"]

log = logging.getLogger(__name__)

#: Longest request line or header line (as aiohttp and Go: 8 KiB).
MAX_LINE = 8190
#: Longest method name (``OPTIONS`` is 7).
MAX_METHOD = 32
#: Most header lines in one request.
MAX_HEADERS = 100
#: An over-size body up to this size is read and dropped (the connection stays usable); beyond,
#: or declared beyond, the answer comes at once and the connection is closed.
MAX_DROPPED = 4 * envelope.MAX_BODY_BYTES
#: Replies shorter than this go out as one buffer with their head (one send); longer ones are
#: written as they are, not copied.
SMALL_REPLY = 1 << 16
#: Bytes read from the socket before the reader pauses (a request is parsed from these).
READ_HIGH_WATER = 1 << 18

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request (answered with 400 and the connection closed)."""


@dataclass(slots=True)
class Response:
    """A whole reply: status, body and headers (``Content-Length`` is added)."""

    status: int = 200
    body: bytes | bytearray = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Close the connection once it is sent.
    close: bool = False


@dataclass(slots=True)
class Streaming:
    """A reply whose body is ``frames`` as they come (chunked), ended when they end, the client
    goes away, or the server stops. ``frames`` is closed in every case."""

    frames: AsyncIterator[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Request"], Awaitable["Response | Streaming"]]


class _Reader:
    """Bytes a connection received and not yet parsed, and a way to wait for more."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.buffer = bytearray()
        self.eof = False
        self._transport = transport
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait for the next bytes; :class:`ConnectionError` at end of stream."""
        if self.eof:
            raise ConnectionResetError("the client closed the connection")
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def line(self) -> bytes:
        """One line (without its CRLF, or a bare LF as RFC 9112 lets a server accept), at most
        :data:`MAX_LINE` bytes."""
        start = 0
        while (end := self.buffer.find(b"\n", start)) < 0:
            if len(self.buffer) > MAX_LINE:
                raise BadRequest(f"a line longer than {MAX_LINE} bytes")
            start = len(self.buffer)
            await self.more()
        if end > MAX_LINE:
            raise BadRequest(f"a line longer than {MAX_LINE} bytes")
        data = bytes(self.buffer[: end - 1 if end and self.buffer[end - 1] == 0x0D else end])
        del self.buffer[: end + 1]
        return data

    async def request_line(self) -> bytes:
        """The request line; bytes that cannot begin one (a TLS hello, binary noise) are refused
        as they arrive rather than at the admission deadline."""
        if b"\n" in self.buffer:  # the whole line is here: parsing it will judge it
            return await self.line()
        while self.buffer.find(b"\n") < 0:
            if _cannot_begin_request(self.buffer):
                break
            if len(self.buffer) > MAX_LINE:
                raise BadRequest(f"a line longer than {MAX_LINE} bytes")
            await self.more()
        if _cannot_begin_request(self.buffer):
            raise BadRequest(f"not an HTTP request line: {_shown(self.buffer)}")
        return await self.line()

    async def some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, at least one."""
        while not self.buffer:
            await self.more()
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data


class Request:
    """One parsed request: its line and headers; the body is read with :meth:`body`."""

    __slots__ = (
        "_body",
        "_body_state",
        "_conn",
        "headers",
        "method",
        "path",
        "query_string",
        "target",
        "version",
    )

    def __init__(
        self, conn: _Connection, method: str, target: str, version: str, headers: dict[str, str]
    ) -> None:
        self._conn = conn
        self.method = method
        #: The request target as sent (path and query, still %-encoded).
        self.target = target
        path, _, self.query_string = target.partition("?")
        self.path = _unquote(path)
        self.version = version
        #: Header names in lower case; repeated headers joined with ", ".
        self.headers = headers
        #: "unread" or "read"; the body (or why there is none) once read.
        self._body_state = "unread"
        self._body: bytes | BodyError = b""

    @property
    def query(self) -> dict[str, str]:
        """The query's parameters (the first of each name)."""
        if not self.query_string:
            return {}
        from urllib.parse import parse_qsl

        found: dict[str, str] = {}
        for key, value in parse_qsl(self.query_string, keep_blank_values=True):
            found.setdefault(key, value)
        return found

    @property
    def sockname(self) -> Any:
        """The local address the request arrived at: a tuple on TCP, a path on a UNIX socket."""
        return self._conn.transport.get_extra_info("sockname")

    @property
    def peername(self) -> Any:
        return self._conn.transport.get_extra_info("peername")

    @property
    def on_unix_socket(self) -> bool:
        sock = self._conn.transport.get_extra_info("socket")
        return getattr(sock, "family", None) == socket.AF_UNIX

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    def admit(self) -> None:
        """This request passed the listener's checks: its connection is no longer waiting."""
        self._conn.admit()

    async def body(self, limits: ConnectionLimits) -> bytes | BodyError:
        """The body, decoded per Content-Encoding, or why it cannot be had (see
        :func:`read_body`; read once, the same answer after). Raises :class:`BadRequest` for
        chunked framing that is not HTTP."""
        if self._body_state != "unread":
            return self._body
        self._body_state = "read"
        if self.headers.get("expect", "").lower() == "100-continue":
            self._conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        result = await read_body(self, self._conn.reader, limits)
        if isinstance(result, BodyError) and result.close:
            self._conn.keep_alive = False
        elif not self._conn.keep_alive and self._conn.reader.buffer:
            # More bytes after the last request of the connection: its Content-Length lied.
            raise BadRequest(
                f"{len(self._conn.reader.buffer)} bytes after the end of the body "
                "(is the Content-Length shorter than the body?)"
            )
        self._body = result
        return result


def _unquote(path: str) -> str:
    if "%" not in path:
        return path
    from urllib.parse import unquote

    return unquote(path)


async def read_body(
    request: Request, reader: _Reader, limits: ConnectionLimits
) -> bytes | BodyError:
    """The request body (decoded per Content-Encoding), or why it cannot be had.

    Over :data:`~infrakit.rpc.envelope.MAX_BODY_BYTES` (counted after decompression), the rest of
    an uncompressed body is read and dropped so the client receives the error (the connection
    stays usable); a compressed one is not inflated further (the connection is closed). A body
    that does not arrive within ``body_timeout`` or cannot be decoded (broken gzip/deflate, cut
    short) is an error too.
    """
    sink = _BodySink(request.headers.get("content-encoding", ""))
    declared = request.content_length or 0
    if declared > MAX_DROPPED:
        return too_large(close=True)  # not worth reading to drop: answer now
    if sink.unsupported:
        return BodyError(
            envelope.PARSE_ERROR,
            f"parse error: the request body cannot be decoded (Content-Encoding "
            f"{sink.encoding}): not supported; send it plain, gzip or deflate",
            close=True,
        )
    if sink.plain and "transfer-encoding" not in request.headers and len(reader.buffer) >= declared:
        data = bytes(reader.buffer[:declared])  # all here already: no timer needed
        del reader.buffer[:declared]
        sink.add(data)
        return sink.result()
    try:
        async with asyncio.timeout(limits.body_timeout):
            if "transfer-encoding" in request.headers:
                await _read_chunked(reader, sink)
            else:
                await _read_sized(reader, request.content_length or 0, sink)
    except TimeoutError:
        expected = request.content_length
        of = f" of {expected}" if expected is not None else ""
        return BodyError(
            envelope.PARSE_ERROR,
            f"parse error: the request body did not arrive in time ({sink.received}{of} bytes "
            f"within {limits.body_timeout:g}s); send the whole body with a correct "
            "Content-Length",
            close=True,
        )
    except ConnectionError:
        # The client went away mid-body (a half-close, a reset): nobody waits for an answer.
        return BodyError(
            envelope.PARSE_ERROR, "parse error: the client closed mid-body", close=True
        )
    except _Stop:
        pass
    return sink.result()


class _Stop(Exception):
    """The body need not be read further (a compressed body over the cap, or one that cannot be
    decoded)."""


class _BodySink:
    """Collects a body as it arrives: counts it, inflates it, and keeps it under the cap."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding.strip().lower()
        self.unsupported = self.encoding not in ("", "identity", "gzip", "x-gzip", "deflate")
        #: Neither compressed nor unsupported: the bytes are the body.
        self.plain = self.encoding in ("", "identity")
        self.received = 0
        self.size = 0
        self.chunks: list[bytes] = []
        self.error: BodyError | None = None
        #: Reading stopped before the end (the connection is closed after the answer).
        self.abandoned = False
        self._inflate: Any = None
        if self.encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)

    def add(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > MAX_DROPPED:
            self.abandoned = True  # answered at once, then closed: no more reading
            self.size = envelope.MAX_BODY_BYTES + 1
            raise _Stop
        if self._inflate is None:
            self.size += len(data)
            if self.size <= envelope.MAX_BODY_BYTES:
                self.chunks.append(data)
            return
        try:
            room = envelope.MAX_BODY_BYTES + 1 - self.size
            plain = self._inflate.decompress(data, room)
        except zlib.error as exc:
            self.error = self._undecodable(str(exc))
            raise _Stop from exc
        self.size += len(plain)
        self.chunks.append(plain)
        if self.size > envelope.MAX_BODY_BYTES:
            raise _Stop

    def _undecodable(self, why: str) -> BodyError:
        return BodyError(
            envelope.PARSE_ERROR,
            f"parse error: the request body cannot be decoded (Content-Encoding "
            f"{self.encoding}): {why}; send it plain or correctly encoded",
            close=True,
        )

    def result(self) -> bytes | BodyError:
        if self.error is not None:
            return self.error
        if self.size > envelope.MAX_BODY_BYTES:
            return too_large(close=self._inflate is not None or self.abandoned)
        if self._inflate is not None and not self._inflate.eof:
            return self._undecodable("the compressed data ends early")
        return b"".join(self.chunks)


async def _read_sized(reader: _Reader, length: int, sink: _BodySink) -> None:
    while length > 0:
        data = await reader.some(min(length, 1 << 16))
        length -= len(data)
        sink.add(data)


async def _read_chunked(reader: _Reader, sink: _BodySink) -> None:
    while True:
        line = await reader.line()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            size = -1
        if size < 0 or not size_text or size_text.startswith((b"-", b"+", b"0x", b"0X")):
            raise BadRequest(f"invalid chunk size {bytes(size_text[:20])!r}")
        if size > MAX_DROPPED:
            raise BadRequest(f"a chunk size of {size} bytes (at most {MAX_DROPPED})")
        if size == 0:
            while await reader.line():  # trailers, then the empty line
                pass
            return
        await _read_sized(reader, size, sink)
        if await reader.line() != b"":
            raise BadRequest("a chunk longer than its size")


def _is_token(data: bytes) -> bool:
    """Only RFC 9110 token characters (what a method or a header name may be made of)."""
    return not data.translate(None, _TOKEN_BYTES)


def _cannot_begin_request(buffer: bytearray) -> bool:
    """True when ``buffer`` does not start with an HTTP method (a token, then a space)."""
    head = bytes(buffer[: MAX_METHOD + 1])
    space = head.find(b" ")
    method = head if space < 0 else head[:space]
    method = method.split(b"\n", 1)[0].rstrip(b"\r")
    return (space < 0 and len(head) > MAX_METHOD) or not _is_token(method)


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not _is_token(parts[0]):
        raise BadRequest(f"not an HTTP request line: {_shown(line)}")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest(f"unsupported HTTP version {_shown(version)}")
    if not target or any(c <= 0x20 or c == 0x7F for c in target):
        raise BadRequest(f"bad request target {_shown(target)}")
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii")


def _add_header(headers: dict[str, str], line: bytes) -> None:
    name, colon, value = line.partition(b":")
    if not colon or not name or not _is_token(name):
        raise BadRequest(f"not a header line: {_shown(line)}")
    key = name.decode("ascii").lower()
    text = value.strip(b" \t").decode("latin-1")
    if key in headers:
        if key == "content-length" and headers[key] != text:
            raise BadRequest("two different Content-Length headers")
        if key != "content-length":
            headers[key] = f"{headers[key]}, {text}"
        return
    headers[key] = text


def _check_framing(headers: dict[str, str]) -> None:
    """Refuse what would let two parsers disagree on where a body ends (request smuggling)."""
    length = headers.get("content-length")
    chunked = headers.get("transfer-encoding")
    if chunked is not None:
        if length is not None:
            raise BadRequest("both Transfer-Encoding and Content-Length are set")
        if chunked.strip().lower() != "chunked":
            raise BadRequest(f"Transfer-Encoding {chunked!r} is not supported (only chunked)")
    if length is not None and not (length.isdigit() and length.isascii()):
        raise BadRequest(f"Content-Length {length!r} is not a number")


def _shown(data: bytes | bytearray) -> str:
    return repr(bytes(data[:60]))[2:-1]


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_document(code: int, message: str) -> bytes:
    doc = {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": None}, "id": None}
    return codec.dumps(doc) + b"\n"


class _Connection(asyncio.Protocol):
    """One accepted connection: its bytes, its admission, and the task serving its requests."""

    def __init__(self, server: HttpServer, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.reader: _Reader = None  # type: ignore[assignment]
        self.admitted = False
        self.keep_alive = True
        #: A request is being answered (stopping the server waits for it, briefly).
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        #: The streaming reply in progress (cancelled when the client goes away).
        self.streaming: asyncio.Task[Any] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are transports.
        self.transport = cast(asyncio.Transport, transport)
        self.reader = _Reader(self.transport)
        self.listener.opened(self)
        self.server.connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        return True  # keep the write side open: a half-closed client still gets its answer

    def connection_lost(self, exc: BaseException | None) -> None:
        self.listener.closed(self)
        self.server.connections.discard(self)
        self.reader.feed_eof()
        self._cancel_idle()
        if self.streaming is not None:
            self.streaming.cancel()
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_exception(ConnectionResetError("the client went away"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # --- what the listener and requests call ---------------------------------------------------

    def admit(self) -> None:
        if not self.admitted:
            self.admitted = True
            self.listener.admitted(self)

    def force_close(self) -> None:
        """Close now (flushing what was written): the listener's deadline or cap."""
        self.transport.close()

    async def drain(self) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self._paused:
            self._write_ready = asyncio.get_running_loop().create_future()
            await self._write_ready

    # --- serving -------------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self.admitted:
            timeout = self.listener.limits.idle_timeout
            self._idle = asyncio.get_running_loop().call_later(timeout, self.transport.close)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    async def _serve(self) -> None:
        try:
            while self.keep_alive and not self.transport.is_closing():
                self._arm_idle()
                try:
                    request = await self._read_request()
                finally:
                    self._cancel_idle()
                if request is None:
                    break
                self.busy = True
                try:
                    await self._answer(request)
                finally:
                    self.busy = False
        except BadRequest as exc:
            self._refuse(exc)
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.transport.close()

    async def _read_request(self) -> Request | None:
        reader = self.reader
        while True:
            while reader.buffer[:2] == b"\r\n":  # stray CRLFs between requests (RFC 9112)
                del reader.buffer[:2]
            if reader.buffer:
                break
            if reader.eof:
                return None
            await reader.more()
        method, target, version = _parse_request_line(await reader.request_line())
        headers: dict[str, str] = {}
        while line := await reader.line():
            if len(headers) >= MAX_HEADERS:
                raise BadRequest(f"more than {MAX_HEADERS} header lines")
            if line[:1] in (b" ", b"\t"):
                raise BadRequest("a folded header line (obsolete line folding)")
            _add_header(headers, line)
        _check_framing(headers)
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        elif "close" in connection:
            self.keep_alive = False
        return Request(self, method, target, version, headers)

    async def _answer(self, request: Request) -> None:
        try:
            reply = await self.server.handler(request)
        except BadRequest:
            raise
        except Exception:
            log.exception(
                "%s: error serving %s %s", self.listener.label, request.method, request.path
            )
            message = "internal error serving the request; see the plugin's log"
            reply = Response(500, error_document(envelope.INTERNAL_ERROR, message), close=True)
        if request._body_state == "unread" and _has_body(request.headers):
            self.keep_alive = False  # the body was never read: it cannot be skipped safely
        if isinstance(reply, Streaming):
            await self._stream(request, reply)
            return
        self._send(request, reply)

    def _send(self, request: Request, reply: Response) -> None:
        if reply.close:
            self.keep_alive = False
        headers = dict(reply.headers)
        if reply.content_type is not None:
            headers.setdefault("Content-Type", reply.content_type)
        headers["Content-Length"] = str(len(reply.body))
        if not self.keep_alive:
            headers["Connection"] = "close"
        elif request.version == "HTTP/1.0":
            headers["Connection"] = "keep-alive"
        head = _head(reply.status, headers)
        if request.method == "HEAD" or not reply.body:
            self.transport.write(head)
        elif len(reply.body) < SMALL_REPLY:
            self.transport.write(head + reply.body)  # one send
        else:
            self.transport.writelines((head, reply.body))  # a big body is not copied

    async def _stream(self, request: Request, reply: Streaming) -> None:
        chunked = request.version == "HTTP/1.1"
        headers = dict(reply.headers)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            self.keep_alive = False
        self.transport.write(_head(reply.status, headers))
        self.streaming = asyncio.current_task()
        try:
            async for frame in reply.frames:
                if chunked:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(frame), frame))
                else:
                    self.transport.write(frame)
                await self.drain()
            if chunked and not self.transport.is_closing():
                self.transport.write(b"0\r\n\r\n")
        except (ConnectionError, asyncio.CancelledError):
            self.keep_alive = False
        finally:
            self.streaming = None
            aclose = getattr(reply.frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _refuse(self, exc: BadRequest) -> None:
        """HTTP 400 with a JSON-RPC error for bytes that are not an HTTP request; then close."""
        log.debug("%s: bad HTTP request (%s)", self.listener.label, exc)
        if self.transport.is_closing():
            return
        text = f"bad HTTP request: {exc}; send an HTTP/1.1 POST with a JSON-RPC body"
        body = error_document(envelope.PARSE_ERROR, text)
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        self.transport.write(_head(400, headers) + body)


def _has_body(headers: dict[str, str]) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


class HttpServer:
    """Serves ``handler`` on any number of listeners (each with its own :class:`Listener`)."""

    def __init__(self, handler: Handler, limits: ConnectionLimits, owner: str) -> None:
        self.handler = handler
        self.limits = limits
        #: ``plugin NAME``: names the listeners in log lines.
        self.owner = owner
        self.connections: set[_Connection] = set()
        self._servers: list[tuple[asyncio.AbstractServer, Listener]] = []

    async def listen_unix(self, sock: socket.socket) -> None:
        """Serve on a bound UNIX socket."""
        listener = Listener(self.owner, self.limits)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: _Connection(self, listener), sock=sock, backlog=128
        )
        self._add(server, listener)

    async def listen_tcp(self, host: str, port: int, ssl: Any = None) -> tuple[str, int]:
        """Serve on TCP ``host:port`` (port 0: a free one); the bound address."""
        listener = Listener(self.owner, self.limits)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self, listener),
            host,
            port,
            ssl=ssl,
            backlog=128,
            ssl_handshake_timeout=self.limits.header_timeout if ssl is not None else None,
        )
        self._add(server, listener)
        where = server.sockets[0].getsockname()
        return where[0], where[1]

    def _add(self, server: asyncio.AbstractServer, listener: Listener) -> None:
        for sock in getattr(server, "sockets", None) or ():
            where = sock.getsockname()
            if isinstance(where, tuple):
                host = f"[{where[0]}]" if ":" in where[0] else where[0]
                where = f"TCP {host}:{where[1]}"
            listener.label += f" on {where}"
            break
        self._servers.append((server, listener))

    async def close(self, grace: float = 0.5) -> None:
        """Stop listening, end streams, and close every connection (requests in progress get
        ``grace`` seconds to finish)."""
        for server, listener in self._servers:
            server.close()
            listener.close()
        tasks = [c.task for c in self.connections if c.task is not None and c.busy]
        for conn in list(self.connections):
            conn.keep_alive = False
            if conn.streaming is not None:
                conn.streaming.cancel()
            elif not conn.busy:
                conn.transport.close()  # waiting for a next request that will not be served
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for conn in list(self.connections):
            conn.transport.abort()
            if conn.task is not None:
                conn.task.cancel()
        for server, _ in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), grace)
        self._servers.clear()
