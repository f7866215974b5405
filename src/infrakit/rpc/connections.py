"""What a listener does with connections before and between requests: the rules
:mod:`infrakit.rpc.http11` serves every connection by.

A server that keeps a connection which sent half a request open (aiohttp did, for an hour: its
keep-alive timeout, 3630 s, and no separate header-read timeout) lets 3000 connections that each
sent ``POST / HTTP/1.1`` hold 3000 file descriptors of the plugin process - past a ``ulimit -n`` of
1024 that takes down every plugin of the process. Each listener (the UNIX socket and the TCP port)
of a :class:`~infrakit.rpc.server.PluginServer`, and the ``--http`` listener, therefore serves its
connections with these rules (:class:`ConnectionLimits`):

* **Admission** (``header_timeout``, 10 s): a new connection must deliver a request that is
  *admitted* - past the bearer-token check on TCP, any complete request on the UNIX socket -
  within 10 s of being accepted, or it is closed. Silent connections, half-sent headers
  (slowloris) and connections that only ever get HTTP 401 are all closed at that deadline.
* **Idle keep-alive** (``idle_timeout``, 60 s): an admitted connection that sends no next request
  for 60 s is closed (the timer also covers a half-sent next request).
  Longer than clients keep idle connections (infrakit's pool: 15 s), so a client never sends a
  request on a connection the server is closing at that moment.
* **Body** (``body_timeout``, 30 s): once a request is admitted, its body must arrive within 30 s,
  else the reply is a JSON-RPC parse error naming how much arrived, and the connection is closed.
* **Cap** (``max_pending``, 128 per listener): at most 128 connections of a listener may wait for
  admission. A new connection beyond that closes the *oldest* waiting one: a real client sends
  its request at once, so it is the newest and gets through, while a flood only evicts itself.
  At most one warning a minute says how many were closed.

Admitted requests in progress - a long call, an SSE ``GET /events`` stream - are never timed out
here. Every HTTP-level error (a request line or header that is not HTTP, chunked encoding
garbage, a Content-Length that is not a number, an internal error) is answered with a JSON-RPC
error document, and logged as one debug line rather than a traceback (only a 5xx, an infrakit
bug, is logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from infrakit.rpc import envelope

__all__ = ["BodyError", "ConnectionLimits", "Listener", "too_large"]

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


class Closable(Protocol):
    """A connection as the listener sees it."""

    def force_close(self) -> None: ...


class Listener:
    """The connections of one listening socket that have not been admitted yet."""

    def __init__(self, label: str, limits: ConnectionLimits) -> None:
        self.label = label
        self.limits = limits
        #: Waiting connections, oldest first, each with its admission deadline.
        self._pending: dict[Closable, asyncio.TimerHandle] = {}
        self._evicted = 0
        self._warned_at = -CAP_WARNING_INTERVAL

    @property
    def pending(self) -> int:
        return len(self._pending)

    def opened(self, conn: Closable) -> None:
        if len(self._pending) >= self.limits.max_pending:
            oldest = next(iter(self._pending))
            self._forget(oldest)
            oldest.force_close()
            self._note_eviction()
        loop = asyncio.get_running_loop()
        self._pending[conn] = loop.call_later(self.limits.header_timeout, self._expire, conn)

    def admitted(self, conn: Closable) -> None:
        self._forget(conn)

    def closed(self, conn: Closable) -> None:
        self._forget(conn)

    def close(self) -> None:
        """Stop every admission timer (the server is stopping)."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def _forget(self, conn: Closable) -> None:
        handle = self._pending.pop(conn, None)
        if handle is not None:
            handle.cancel()

    def _expire(self, conn: Closable) -> None:
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


@dataclass(frozen=True, slots=True)
class BodyError:
    """A request body that cannot be used, and the JSON-RPC error that says why."""

    code: int
    message: str
    #: Close the connection after the reply (the rest of the body was not read).
    close: bool = False


def too_large(*, close: bool) -> BodyError:
    """The error of a body over :data:`~infrakit.rpc.envelope.MAX_BODY_BYTES`."""
    return BodyError(
        envelope.INVALID_REQUEST,
        f"request body too large: over {envelope.MAX_BODY_BYTES} bytes (16 MiB); send smaller "
        "Properties",
        close=close,
    )
