"""The async plugin client (daemons, the controller's lookups, the manager) and its transports.

:class:`Client` is the :class:`~infrakit.rpc.core.ClientCore` (handshake, envelopes of both eras,
error messages, the event stream's frames) over an :class:`~infrakit.rpc.core.AsyncTransport`:

* :class:`AiohttpTransport` (the default): aiohttp on the plugin's UNIX socket or TCP address,
  connections reused, safe to share across tasks;
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
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from infrakit import errors
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
    import aiohttp

    from infrakit.spi import event as spi_event

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Address",
    "AiohttpTransport",
    "Client",
    "SyncClient",
    "default_call_timeout",
    "parse_address",
]


class Client(ClientCore):
    """Async client of one plugin; ``transport`` moves its bytes (default: aiohttp)."""

    def __init__(self, *args: Any, transport: AsyncTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transport: AsyncTransport = transport or AiohttpTransport()
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


class AiohttpTransport:
    """aiohttp on a UNIX socket or TCP: one session (64 connections) per client, made on first use
    (so importing this module does not import aiohttp)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self, address: Address) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if address.path is not None:
                connector = _unix_connector_class()(path=address.path, limit=64)
            else:
                connector = aiohttp.TCPConnector(limit=64)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _ssl(core: ClientCore) -> Any:
        return core.ssl if core.address.tls and core.ssl is not None else True

    async def post(
        self,
        core: ClientCore,
        path: str,
        data: bytes,
        headers: dict[str, str],
        method: str,
        timeout: float,
    ) -> tuple[int, bytes, Any]:
        import asyncio

        import aiohttp

        session = self._get_session(core.address)
        try:
            async with session.post(
                core.address.base_url + path,
                data=data,
                headers=headers,
                ssl=self._ssl(core),
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=core.connect_timeout),
            ) as response:
                peer = _peername(response)
                return response.status, await response.read(), peer
        except aiohttp.ClientSSLError as exc:
            raise core.tls_failed(method, exc) from exc
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise core.unreachable(method, getattr(exc, "os_error", exc)) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise core.timeout(method, core.connect_timeout, "connection") from exc
        except TimeoutError as exc:
            raise core.timeout(method, timeout, "answer") from exc
        except aiohttp.ClientResponseError as exc:
            raise core.not_http(method, " ".join(exc.message.split())[:100]) from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise core.dropped(method, exc) from exc

    async def open_stream(
        self, core: ClientCore, path: str, headers: dict[str, str]
    ) -> AsyncStream:
        """Open ``GET /events`` (answered at once; the stream may then stay quiet for long)."""
        import asyncio

        import aiohttp
        from yarl import URL

        session = self._get_session(core.address)
        what = "GET /events"
        try:
            async with asyncio.timeout(core.handshake_timeout):
                response = await session.get(
                    URL(core.address.base_url + path, encoded=True),
                    headers=headers,
                    ssl=self._ssl(core),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=core.connect_timeout, sock_read=None
                    ),
                )
        except TimeoutError as exc:
            raise core.timeout(what, core.handshake_timeout, "answer") from exc
        except aiohttp.ClientSSLError as exc:
            raise core.tls_failed(what, exc) from exc
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise core.unreachable(what, getattr(exc, "os_error", exc)) from exc
        return _AiohttpStream(core, response)


class _AiohttpStream:
    """An aiohttp response read as an event stream."""

    def __init__(self, core: ClientCore, response: aiohttp.ClientResponse) -> None:
        self._core = core
        self._response = response
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "")

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        import aiohttp

        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise errors.PluginUnreachableError(
                f"plugin {self._core.name} at {self._core.address}: event stream ended ({exc!s})"
            ) from exc

    async def read(self) -> bytes:
        return await self._response.read()

    async def aclose(self) -> None:
        self._response.release()


def _peername(response: Any) -> Any:
    """The peer address of the connection an aiohttp response came on (None if unknown).

    aiohttp hands the connection back to its pool as soon as a small body is read, so it is taken
    from the response's protocol (private, hence the care: without it, the challenge is checked
    against the dialled address alone, which is the one that matters).
    """
    transport = getattr(getattr(response, "_protocol", None), "transport", None)
    if transport is None and response.connection is not None:
        transport = response.connection.transport
    return transport.get_extra_info("peername") if transport is not None else None


async def _connect_unix(path: str, timeout: float | None) -> socket.socket:
    """Async twin of :func:`_connect_unix_blocking`: retry EAGAIN until ``timeout``.

    (asyncio's own ``sock_connect`` mistakes a UNIX EAGAIN for a connection in progress and hands
    back an unconnected socket.) Raises :class:`TimeoutError` when the queue stays full.
    """
    import asyncio

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


_UNIX_CONNECTOR: Any = None


def _unix_connector_class() -> Any:
    """aiohttp's UnixConnector, connecting through :func:`_connect_unix` (built on first use, so
    the CLI never imports aiohttp).

    The override uses aiohttp's private ``_create_connection(req, traces, timeout)`` (3.10-3.14).
    Should a future aiohttp change it, the plain connector is used instead: calls still work, only
    a full accept queue is reported as "not running" rather than as a timeout
    (tests/rpc/test_client.py tells).
    """
    global _UNIX_CONNECTOR
    if _UNIX_CONNECTOR is None:
        import inspect

        import aiohttp
        from aiohttp.client_exceptions import UnixClientConnectorError

        private = getattr(aiohttp.UnixConnector, "_create_connection", None)
        try:
            params = list(inspect.signature(private).parameters) if private else []
        except (TypeError, ValueError):
            params = []
        if params != ["self", "req", "traces", "timeout"]:
            _UNIX_CONNECTOR = aiohttp.UnixConnector
            return _UNIX_CONNECTOR

        class UnixConnector(aiohttp.UnixConnector):
            async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
                try:
                    sock = await _connect_unix(self.path, timeout.sock_connect)
                    _, proto = await self._loop.create_unix_connection(self._factory, sock=sock)
                except TimeoutError:
                    raise
                except OSError as exc:
                    raise UnixClientConnectorError(self.path, req.connection_key, exc) from exc
                return proto

        _UNIX_CONNECTOR = UnixConnector
    return _UNIX_CONNECTOR
