"""The async plugin client (daemons, the controller's lookups, the manager) and its transports.

:class:`Client` is the :class:`~infrakit.rpc.core.ClientCore` (handshake, envelopes of both eras,
error messages, the event stream's frames) over an :class:`~infrakit.rpc.core.AsyncTransport`:

* :class:`~infrakit.rpc.streams.StreamTransport` (the default): HTTP/1.1 on asyncio streams to
  the plugin's UNIX socket or TCP address, connections reused, safe to share across tasks;
* :class:`infrakit.rpc.memory.MemoryTransport`: straight into a
  :class:`~infrakit.rpc.server.PluginServer` of this process, no socket - the same bytes,
  envelopes and errors (tests of the manager and the CLI run on it).

Every error names the plugin, the method and the address, e.g.::

    plugin instance-file (Instance.Provision) at ~/.infrakit/plugins/instance-file: not running
    (connection refused); start it with `infrakit plugin start file:instance-file`

A UNIX socket whose accept queue is full (the plugin stopped accepting) is retried until
``connect_timeout``; then the error is a timeout, not "not running".

Addresses are a UNIX socket path, or ``tcp://host:port`` / ``http://host:port`` (``.listen`` files),
or ``https://host:port`` for TLS.

TCP options (both clients, :class:`~infrakit.rpc.sync.SyncClient` too), for plugins started with
a token (see :mod:`infrakit.rpc.server`)::

    Client("group", "tcp://10.0.0.5:24864", token=secret)
    Client("group", "https://10.0.0.5:24864", token=secret,
           ssl=ssl.create_default_context(cafile="ca.pem"))
    SyncClient("group", "tcp://10.0.0.5:24864")      # token from $INFRAKIT_TOKEN

* ``token``: proves this client holds it to TCP targets only, never on a UNIX socket. Default:
  ``$INFRAKIT_TOKEN_FILE`` / ``$INFRAKIT_TOKEN``. The token itself is never sent: before its first
  request the client challenges the peer to prove it holds the same token, for the address
  dialled (a rogue listener, or a relay to the real plugin, fails:
  :class:`~infrakit.errors.PeerNotVerifiedError`, and nothing is sent to it); then every request
  is signed (:mod:`infrakit.rpc.auth`). A refusal by the server raises
  :class:`~infrakit.errors.PluginError` carrying its message.
* ``ssl``: an :class:`ssl.SSLContext` to verify the server with. TLS is used for ``https://``
  addresses and for any TCP address when ``ssl`` is given; ``https://`` without ``ssl`` verifies
  against the CA bundle in ``$INFRAKIT_TLS_CA``, and without that is refused with one line (a
  client never trusts a certificate it has no CA for). ``tls_hint`` replaces the next step named
  when the handshake fails (the manager names its ``--tls-ca`` flag there).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from infrakit.rpc.core import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    Address,
    AsyncStream,
    AsyncTransport,
    ClientCore,
    SseDecoder,
    Subscribed,
    default_call_timeout,
    parse_address,
)
from infrakit.rpc.sync import SyncClient
from infrakit.spi.types import InterfaceSpec

if TYPE_CHECKING:
    from infrakit.spi import event as spi_event

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Address",
    "Client",
    "SyncClient",
    "default_call_timeout",
    "parse_address",
]


class Client(ClientCore):
    """Async client of one plugin; ``transport`` moves its bytes (default: asyncio streams)."""

    def __init__(self, *args: Any, transport: AsyncTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if transport is None:
            from infrakit.rpc.streams import StreamTransport

            transport = StreamTransport()
        self.transport: AsyncTransport = transport
        self._handshake_lock: Any = None
        self._auth_lock: Any = None

    async def close(self) -> None:
        await self.transport.close()

    async def _post(
        self, path: str, doc: Any, method: str, timeout: float | None = None
    ) -> tuple[int, Any]:
        from infrakit.rpc import codec

        data = codec.dumps(doc)
        await self._prove()
        status, reply = await self._exchange(path, data, method, timeout)
        if self.stale_proof(status, reply):  # the plugin restarted: one new session, once
            await self._prove()
            status, reply = await self._exchange(path, data, method, timeout)
        return status, reply

    async def _exchange(
        self, path: str, data: bytes, method: str, timeout: float | None
    ) -> tuple[int, Any]:
        from infrakit.rpc import codec

        total = timeout if timeout is not None else self.call_timeout
        headers = self.headers("POST", path, data)
        status, body, _ = await self.transport.post(self, path, data, headers, method, total)
        return status, self.reply_doc(status, body, method, codec.loads, strict=True)

    async def _prove(self) -> None:
        """Before the first request to a TCP target (with a token): the peer proves it holds it."""
        import asyncio

        if not self.must_prove:
            return
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if not self.must_prove:
                return
            from infrakit.rpc import auth, codec

            challenger = self.challenger()
            status, body, peer = await self.transport.post(
                self,
                auth.AUTH_PATH,
                codec.dumps(challenger.challenge()),
                {"Content-Type": "application/json"},
                "challenge",
                self.handshake_timeout,
            )
            doc = self.reply_doc(status, body, "challenge", codec.loads, strict=False)
            self.verify_peer(challenger, status, doc, peer)

    async def handshake(self, interface: InterfaceSpec | None = None) -> None:
        import asyncio

        if self.era is None:
            if self._handshake_lock is None:
                self._handshake_lock = asyncio.Lock()
            async with self._handshake_lock:
                if self.era is None:
                    status, doc = await self._post(
                        "/", self.hello(), "Handshake.Hello", self.handshake_timeout
                    )
                    self.decide_handshake(status, doc)
        self.check_interface(interface)

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        interface: InterfaceSpec | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method``; return the wire ``result`` or raise an :mod:`infrakit.errors` error."""
        await self.handshake(interface)
        path, doc = self.encode_call(method, params)
        status, reply = await self._post(path, doc, method, timeout)
        return self.result(method, status, reply)

    async def _open_stream(self, path: str) -> AsyncStream:
        """``GET /events``, with one new session if the plugin restarted since the last."""
        from infrakit.rpc import codec

        await self._prove()
        for attempt in (0, 1):
            stream = await self.transport.open_stream(self, path, self.headers("GET", path, b""))
            if stream.status != 401:
                return stream
            try:
                doc = self.reply_doc(401, await stream.read(), "GET /events", codec.loads, False)
            finally:
                await stream.aclose()
            if attempt == 0 and self.stale_proof(401, doc):
                await self._prove()
                continue
            raise self.stream_refused(doc)
        raise AssertionError("unreachable")

    async def subscribe(
        self, topic: str, since: str | None = None
    ) -> AsyncIterator[spi_event.Event]:
        """Yield events from the plugin's ``/events`` stream until the stream ends.

        Raises :class:`~infrakit.errors.NotFoundError` if the plugin publishes no events (Go
        plugins): the caller then falls back to polling. The first item is yielded only after the
        subscription is live on the server: an ``Event(type="subscribed")`` marker.
        """
        from infrakit.rpc import codec
        from infrakit.spi import event as spi_event

        stream = await self._open_stream(self.events_path(topic, since))
        try:
            self.check_stream(stream.status, stream.content_type)
            decoder = SseDecoder(codec.loads)
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    for item in decoder.feed(chunk):
                        if isinstance(item, spi_event.Event):
                            yield item
                        elif isinstance(item, Subscribed):
                            yield spi_event.Event(topic="", type="subscribed")
        finally:
            await stream.aclose()
