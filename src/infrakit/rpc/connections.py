"""What a plugin server does with connections before and between requests, and with bodies HTTP
itself cannot parse.

aiohttp on its own keeps a connection that sent half a request open for an hour (its keep-alive
timeout, 3630 s, and it has no separate header-read timeout), so 3000 connections that each sent
``POST / HTTP/1.1`` held 3000 file descriptors of the plugin process - past a ``ulimit -n`` of 1024
that takes down every plugin of the process. Each listener (the UNIX socket and the TCP port) of a
:class:`~infrakit.rpc.server.PluginServer` therefore serves its connections with these rules
(:class:`ConnectionLimits`):

* **Admission** (``header_timeout``, 10 s): a new connection must deliver a request that is
  *admitted* - past the bearer-token check on TCP, any complete request on the UNIX socket -
  within 10 s of being accepted, or it is closed. Silent connections, half-sent headers
  (slowloris) and connections that only ever get HTTP 401 are all closed at that deadline.
* **Idle keep-alive** (``idle_timeout``, 60 s): an admitted connection that sends no next request
  for 60 s is closed (aiohttp's keep-alive timer, which also covers a half-sent next request).
  Longer than clients keep idle connections (aiohttp's pool: 15 s), so a client never sends a
  request on a connection the server is closing at that moment.
* **Body** (``body_timeout``, 30 s): once a request is admitted, its body must arrive within 30 s,
  else the reply is a JSON-RPC parse error naming how much arrived, and the connection is closed.
* **Cap** (``max_pending``, 128 per listener): at most 128 connections of a listener may wait for
  admission. A new connection beyond that closes the *oldest* waiting one: a real client sends
  its request at once, so it is the newest and gets through, while a flood only evicts itself.
  At most one warning a minute says how many were closed.

Admitted requests in progress - a long call, an SSE ``GET /events`` stream - are never timed out
here. Every HTTP-level error (a request line or header aiohttp cannot parse, chunked encoding
garbage, a Content-Length that is not a number, an internal error) is answered with a JSON-RPC
error document instead of aiohttp's ``text/plain`` page, and logged as one debug line rather than
a traceback (only a 5xx, an infrakit bug, is logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from infrakit.rpc import codec, envelope

__all__ = [
    "BodyError",
    "ConnectionLimits",
    "GuardedSite",
    "Listener",
    "admission",
    "read_body",
    "send_and_close",
]

log = logging.getLogger(__name__)

#: Seconds between two warnings of one listener that its cap closed connections.
CAP_WARNING_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Timeouts and the cap of one plugin server's listeners (see the module docstring)."""

    #: Seconds a new connection has to deliver an admitted request.
    header_timeout: float = 10.0
    #: Seconds an admitted connection may sit idle between requests.
    idle_timeout: float = 60.0
    #: Seconds an admitted request's body may take to arrive.
    body_timeout: float = 30.0
    #: Connections per listener that may wait for admission at the same time.
    max_pending: int = 128


class Listener:
    """The connections of one listening socket that have not been admitted yet."""

    def __init__(self, label: str, limits: ConnectionLimits) -> None:
        self.label = label
        self.limits = limits
        #: Waiting connections, oldest first, each with its admission deadline.
        self._pending: dict[Connection, asyncio.TimerHandle] = {}
        self._evicted = 0
        self._warned_at = -CAP_WARNING_INTERVAL

    @property
    def pending(self) -> int:
        return len(self._pending)

    def opened(self, conn: Connection) -> None:
        if len(self._pending) >= self.limits.max_pending:
            oldest = next(iter(self._pending))
            self._forget(oldest)
            oldest.force_close()
            self._note_eviction()
        loop = asyncio.get_running_loop()
        self._pending[conn] = loop.call_later(self.limits.header_timeout, self._expire, conn)

    def admitted(self, conn: Connection) -> None:
        self._forget(conn)

    def closed(self, conn: Connection) -> None:
        self._forget(conn)

    def close(self) -> None:
        """Stop every admission timer (the server is stopping)."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def _forget(self, conn: Connection) -> None:
        handle = self._pending.pop(conn, None)
        if handle is not None:
            handle.cancel()

    def _expire(self, conn: Connection) -> None:
        if self._pending.pop(conn, None) is not None:
            log.debug(
                "%s: closing a connection that sent no admitted request within %gs",
                self.label,
                self.limits.header_timeout,
            )
            conn.force_close()

    def _note_eviction(self) -> None:
        self._evicted += 1
        now = time.monotonic()
        if now - self._warned_at >= CAP_WARNING_INTERVAL:
            log.warning(
                "%s: more than %d connections are waiting to send a request; closing the oldest "
                "(%d in the last minute) - a slow or hostile client? Each must send its request "
                "within %gs",
                self.label,
                self.limits.max_pending,
                self._evicted,
                self.limits.header_timeout,
            )
            self._warned_at = now
            self._evicted = 0


class Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol with admission bookkeeping and JSON error pages."""

    def __init__(self, manager: web.Server, listener: Listener, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.listener = listener
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.listener.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.listener.closed(self)
        super().connection_lost(exc)

    def admit(self) -> None:
        if not self.admitted:
            self.admitted = True
            self.listener.admitted(self)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON-RPC error document for a request aiohttp could not parse or serve."""
        if status >= 500:
            self.log_exception("%s: error serving a request", self.listener.label, exc_info=exc)
        else:
            log.debug("%s: bad HTTP request (%s)", self.listener.label, _first_line(exc, message))
        if request.writer.output_size > 0:  # as aiohttp: the reply has begun, nothing to add
            raise ConnectionError("the response was sent already; closing the connection")
        if status >= 500:
            code = envelope.INTERNAL_ERROR
            text = "internal error serving the request; see the plugin's log"
        else:
            code = envelope.PARSE_ERROR
            text = (
                f"bad HTTP request: {_first_line(exc, message)}; send an HTTP/1.1 POST "
                "with a JSON-RPC body"
            )
        doc = {"jsonrpc": "2.0", "error": {"code": code, "message": text, "data": None}, "id": None}
        response = web.Response(
            status=status, body=codec.dumps(doc) + b"\n", content_type="application/json"
        )
        response.force_close()
        return response


def _first_line(exc: BaseException | None, message: str | None) -> str:
    text = message or (getattr(exc, "message", None) if exc is not None else None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "unreadable").rstrip(":")[:200]


class GuardedSite(web.BaseSite):
    """A listening socket whose connections are :class:`Connection` objects of one
    :class:`Listener`. ``bind(factory)`` creates the asyncio server (UNIX or TCP); ``owner``
    (``plugin NAME``) and the bound address name the listener in log lines."""

    def __init__(
        self,
        runner: web.BaseRunner,
        owner: str,
        limits: ConnectionLimits,
        bind: Callable[[Callable[[], Connection]], Awaitable[asyncio.AbstractServer]],
    ) -> None:
        super().__init__(runner)
        self._bind = bind
        self.listener = Listener(owner, limits)

    @property
    def name(self) -> str:
        return self.listener.label

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        limits = self.listener.limits

        def factory() -> Connection:
            return Connection(
                server,
                self.listener,
                loop=loop,
                keepalive_timeout=limits.idle_timeout,
                access_log=None,
            )

        self._server = await self._bind(factory)
        for sock in getattr(self._server, "sockets", None) or ():
            where = sock.getsockname()
            if isinstance(where, tuple):
                host = f"[{where[0]}]" if ":" in where[0] else where[0]
                where = f"TCP {host}:{where[1]}"
            self.listener.label += f" on {where}"
            break

    async def stop(self) -> None:
        self.listener.close()
        await super().stop()


def admission(open_paths: Collection[str] = ()) -> Middleware:
    """The middleware that admits a connection, placed after the token check so that it runs
    only for requests that passed it. Requests to ``open_paths`` - routes the token check lets
    through unauthenticated, such as a challenge - do not admit their connection."""

    @web.middleware
    async def admit(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = request.protocol
        if isinstance(conn, Connection) and request.path not in open_paths:
            conn.admit()
        return await handler(request)

    return admit


@dataclass(frozen=True, slots=True)
class BodyError:
    """A request body that cannot be used, and the JSON-RPC error that says why."""

    code: int
    message: str
    #: Close the connection after the reply (the rest of the body was not read).
    close: bool = False


async def read_body(
    request: web.Request, limits: ConnectionLimits, preread: bytes | None = None
) -> bytes | BodyError:
    """The request body (decoded per Content-Encoding), or why it cannot be had.

    ``preread`` is the body when something before the handler (a signature check) read it.

    Over :data:`~infrakit.rpc.envelope.MAX_BODY_BYTES` (counted after decompression), the rest of
    an uncompressed body is read and dropped so the client receives the error; a compressed one
    is not inflated further. A body that does not arrive within ``body_timeout`` or cannot be
    decoded (broken gzip/deflate, chunked encoding garbage, cut short) is an error too.
    """
    cap = envelope.MAX_BODY_BYTES
    if preread is not None:
        return preread if len(preread) <= cap else _too_large(cap, close=False)
    compressed = bool(request.headers.get("Content-Encoding", "").strip())
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size <= cap:
                    chunks.append(chunk)
                elif compressed:
                    break
    except TimeoutError:
        expected = request.content_length
        of = f" of {expected}" if expected is not None else ""
        return BodyError(
            envelope.PARSE_ERROR,
            f"parse error: the request body did not arrive in time ({size}{of} bytes within "
            f"{limits.body_timeout:g}s); send the whole body with a correct Content-Length",
            close=True,
        )
    except ConnectionError:
        # The client went away mid-body (a half-close, a reset): nobody waits for an answer.
        return BodyError(
            envelope.PARSE_ERROR, "parse error: the client closed mid-body", close=True
        )
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        cause = exc.__cause__ if isinstance(exc, web.RequestPayloadError) else None
        encoding = request.headers.get("Content-Encoding")
        what = f" (Content-Encoding {encoding})" if encoding else ""
        return BodyError(
            envelope.PARSE_ERROR,
            f"parse error: the request body cannot be decoded{what}: "
            f"{_first_line(cause or exc, None)}; send it plain or correctly encoded",
            close=True,
        )
    if size > cap:
        return _too_large(cap, close=compressed)
    return b"".join(chunks)


def _too_large(cap: int, *, close: bool) -> BodyError:
    return BodyError(
        envelope.INVALID_REQUEST,
        f"request body too large: over {cap} bytes (16 MiB); send smaller Properties",
        close=close,
    )


async def send_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` now and close the connection, without waiting for (or inflating) the rest
    of a body that will not come or cannot be decoded."""
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass  # the client is gone already (it hung up mid-body): nobody to tell
    request.protocol.force_close()  # flushes the reply, then closes; no lingering read
