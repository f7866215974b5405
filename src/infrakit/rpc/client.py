"""Clients for plugins: async (aiohttp, for daemons) and sync (plain sockets, for the fast CLI).

Both speak InfraKit HEAD first and fall back to SEED per plugin:

1. Before the first call to a target, ``Handshake.Hello`` is posted to ``/``.
2. A HEAD plugin answers with the objects it serves per interface; the client checks the interface
   it needs (name and version, exactly as Go does) and caches the answer.
3. A SEED plugin answers 404 (HEAD router without Hello) or a SEED-shaped error: the client then
   speaks SEED to it (``POST /rpc``, ``params`` as a one-element array) for the rest of its life.
4. A transport failure during the handshake is not cached: the next call tries again.

Timeouts are split: ``connect_timeout`` (5 s) bounds reaching the socket, ``handshake_timeout``
(5 s) bounds the tiny ``Handshake.Hello`` call and the answer to an ``/events`` subscription, and
``call_timeout`` (``$INFRAKIT_CLIENT_TIMEOUT``, 60 s) bounds every other call. Neither the connect
nor the handshake ever waits longer than the call timeout, so a plugin that accepts connections but
never answers is named within seconds. Every error names the plugin, the method and the address,
e.g.::

    plugin instance-file (Instance.Provision) at ~/.infrakit/plugins/instance-file: not running
    (connection refused); start it with `infrakit plugin start file:instance-file`

A UNIX socket whose accept queue is full (the plugin stopped accepting) is retried until
``connect_timeout``; then the error is a timeout, not "not running".

Addresses are a UNIX socket path, or ``tcp://host:port`` / ``http://host:port`` (``.listen`` files),
or ``https://host:port`` for TLS.

TCP options (both clients), for plugins started with a token (see :mod:`infrakit.rpc.server`)::

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
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrakit import errors
from infrakit.rpc import auth, envelope
from infrakit.spi.types import Era, InterfaceSpec

if TYPE_CHECKING:
    import ssl as _ssl

    import aiohttp

    from infrakit.spi import event as spi_event

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Address",
    "Client",
    "SyncClient",
    "parse_address",
]

#: Seconds allowed to reach a plugin's socket.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds allowed for ``Handshake.Hello`` (and for a subscription's answer): a tiny call that
#: every live plugin answers at once. Never more than the call timeout.
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: Seconds allowed for a whole call; ``INFRAKIT_CLIENT_TIMEOUT`` (Go syntax, e.g. ``15s``) overrides.
DEFAULT_CALL_TIMEOUT = 60.0
#: The longest ``INFRAKIT_CLIENT_TIMEOUT`` accepted (a socket cannot wait much longer).
MAX_CALL_TIMEOUT = 365 * 24 * 3600.0


def default_call_timeout() -> float:
    """``$INFRAKIT_CLIENT_TIMEOUT`` in seconds (default 60 s); a bad value is a SpecError."""
    raw = os.environ.get("INFRAKIT_CLIENT_TIMEOUT")
    if not raw:
        return DEFAULT_CALL_TIMEOUT
    import math

    from infrakit._utils.duration import parse_duration

    try:
        seconds = parse_duration(raw)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_CALL_TIMEOUT):
        raise errors.SpecError(
            f"INFRAKIT_CLIENT_TIMEOUT={raw!r}: expected a Go duration like 15s, more than 0 and "
            "at most 8760h; fix or unset the variable"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Address:
    """Where a plugin listens: a UNIX socket path or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    #: ``https://`` addresses: TLS over TCP.
    tls: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            home = str(Path.home())
            return "~" + self.path[len(home) :] if self.path.startswith(home + "/") else self.path
        return f"{'https' if self.tls else 'tcp'}://{self._hostport}"

    @property
    def _hostport(self) -> str:
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        if self.path is not None:
            return "http://plugin"
        return f"{'https' if self.tls else 'http'}://{self._hostport}"


def parse_address(address: str | Path | Address) -> Address:
    if isinstance(address, Address):
        return address
    text = str(address)
    for scheme in ("tcp://", "http://", "https://"):
        if text.startswith(scheme):
            hostport = text[len(scheme) :].rstrip("/")
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise errors.SpecError(f"address {text!r}: expected {scheme}HOST:PORT")
            return Address(host=host.strip("[]"), port=int(port), tls=scheme == "https://")
    if text.startswith("unix://"):
        text = text[len("unix://") :]
    return Address(path=text)


class _Base:
    """Handshake state and message formatting shared by both clients."""

    def __init__(
        self,
        name: str,
        address: str | Path | Address,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        call_timeout: float | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        era: Era | None = None,
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        tls_hint: str | None = None,
    ) -> None:
        self.name = name
        self.address = parse_address(address)
        if ssl is not None and self.address.path is None and not self.address.tls:
            self.address = Address(host=self.address.host, port=self.address.port, tls=True)
        tcp = self.address.path is None
        #: Shared token proven to TCP targets (default: ``$INFRAKIT_TOKEN_FILE`` /
        #: ``$INFRAKIT_TOKEN``); never used on UNIX sockets, never sent itself.
        self.token = (
            token if token is not None else (auth.resolve_token(None, None) if tcp else None)
        )
        if ssl is None and self.address.tls:
            from infrakit.rpc.tls import tls_client_context

            ssl = tls_client_context(None, f"plugin {name} at {self.address}")
        #: ``ssl.SSLContext`` that verifies ``https://`` targets.
        self.ssl = ssl
        #: The verified peer's signing session (None: not challenged yet).
        self._proof: auth.Session | None = None
        #: The next step a failed TLS handshake suggests (a CLI flag rather than the API's ssl=).
        self.tls_hint = tls_hint or (
            "pass ssl= an SSLContext that trusts the plugin's certificate "
            "(ssl.create_default_context(cafile=...))"
        )
        self.call_timeout = call_timeout if call_timeout is not None else default_call_timeout()
        #: Reaching the socket and the handshake never take longer than a call may.
        self.connect_timeout = min(connect_timeout, self.call_timeout)
        self.handshake_timeout = min(handshake_timeout, self.call_timeout)
        #: Era in use; ``None`` until the handshake ran.
        self.era: Era | None = era
        #: ``Handshake.Hello`` objects (``{"Instance/0.6.1": [{"Name": "."}]}``), None for SEED.
        self.objects: dict[str, Any] | None = None

    def _headers(self, http_method: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._proof is not None:
            headers["Authorization"] = self._proof.authorization(http_method, path, body)
        return headers

    @property
    def _must_prove(self) -> bool:
        """A TCP target and a token: the peer proves it holds the token before any request."""
        return bool(self.token) and self.address.path is None

    def _verify_peer(self, challenger: auth.ClientAuth, status: int, doc: Any, peer: Any) -> None:
        """Accept the peer's proofs for the address dialled (or the socket's peer) or raise."""
        dialled = [self.address._hostport]
        if isinstance(peer, tuple) and len(peer) >= 2:
            dialled.append(auth.format_address(str(peer[0]), int(peer[1])))
        try:
            self._proof = challenger.accept(status, doc, dialled)
        except auth.PeerNotProven as why:
            raise errors.PeerNotVerifiedError(
                f"{self.address} (plugin {self.name}) could not prove it holds the shared token: "
                f"{why}; nothing was sent to it - check that this address (and the .listen file "
                "or leader record that named it) belongs to a process started with the same "
                "token"
            ) from None

    def _stale_proof(self, status: int, doc: Any) -> bool:
        """The server asks for a new session (it restarted, or the session aged out)."""
        if status != 401 or self._proof is None or not isinstance(doc, dict):
            return False
        error = doc.get("error")
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, dict) and data.get("reason") == auth.STALE_SESSION:
            self._proof = None
            return True
        return False

    def what(self, method: str) -> str:
        return f"plugin {self.name} ({method}) at {self.address}"

    def _decide_handshake(self, status: int, doc: Any) -> None:
        if status == 404 or envelope.looks_seed_reply(status, doc):
            self.era, self.objects = Era.SEED, None
            return
        if status == 200 and isinstance(doc, dict):
            result = doc.get("result")
            if isinstance(result, dict) and isinstance(result.get("Objects"), dict):
                self.era, self.objects = Era.HEAD, result["Objects"]
                return
            err = doc.get("error")
            if isinstance(err, dict):
                # A 2017-era HEAD plugin without Handshake.Hello: speak HEAD, skip the check.
                self.era, self.objects = Era.HEAD, None
                return
        if status == 401 and isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            # Refused by the TCP token check: say so, not "is this a plugin?".
            raise errors.PluginError(
                f"{self.what('Handshake.Hello')}: {doc['error'].get('message')}"
            )
        raise errors.ProtocolError(
            f"{self.what('Handshake.Hello')}: unexpected reply (HTTP {status}); "
            "is this an InfraKit plugin socket?"
        )

    def check_interface(self, interface: InterfaceSpec | None) -> None:
        if interface is None or self.objects is None:
            return
        if str(interface) in self.objects:
            return
        for key in self.objects:
            name, _, version = key.partition("/")
            if name == interface.name:
                raise errors.VersionMismatchError(
                    f"plugin {self.name} at {self.address} supports {name} interface version "
                    f"{version.split('/')[0]}, client requires {interface.version}; "
                    "run matching versions of infrakit and the plugin"
                )
        offered = ", ".join(sorted(self.objects)) or "nothing"
        raise errors.VersionMismatchError(
            f"plugin {self.name} at {self.address} does not support interface {interface} "
            f"(it implements {offered}); check the plugin name"
        )

    def _path(self) -> str:
        return "/rpc" if self.era is Era.SEED else "/"

    def _unreachable(self, method: str, exc: BaseException) -> errors.InfrakitError:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = "socket file is missing"
        hint = (
            f"start it (infrakit plugin start ...:{self.name}) or check INFRAKIT_PLUGINS_DIR"
            if self.address.path is not None
            else "check that it runs and the address in its .listen file"
        )
        return errors.PluginUnreachableError(f"{self.what(method)}: not running ({reason}); {hint}")

    def _tls_failed(self, method: str, exc: BaseException) -> errors.ProtocolError:
        reason = " ".join(str(getattr(exc, "os_error", None) or exc).split())[:160]
        return errors.ProtocolError(
            f"{self.what(method)}: TLS handshake failed ({reason}); {self.tls_hint}"
        )

    def _timeout(self, method: str, seconds: float, phase: str) -> errors.PluginTimeoutError:
        if phase == "answer" and method in ("Handshake.Hello", "GET /events", "stop"):
            hint = (
                "it accepts connections but does not answer (hung, or not an InfraKit plugin) "
                "- check its log"
            )
        elif phase == "answer":
            hint = "the plugin may be hung - check its log, or raise INFRAKIT_CLIENT_TIMEOUT"
        else:
            hint = "the plugin accepts no connections (hung or overloaded) - check its log"
        return errors.PluginTimeoutError(
            f"{self.what(method)}: no {phase} within {seconds:g}s; {hint}"
        )


class Client(_Base):
    """Async client (aiohttp). One per plugin; reuses connections; safe to share across tasks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self._handshake_lock: Any = None
        self._auth_lock: Any = None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.address.path is not None:
                connector = _unix_connector_class()(path=self.address.path, limit=64)
            else:
                connector = aiohttp.TCPConnector(limit=64)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(
        self, path: str, doc: Any, method: str, timeout: float | None = None
    ) -> tuple[int, Any]:
        from infrakit.rpc import codec

        data = codec.dumps(doc)
        await self._prove()
        status, reply, _ = await self._exchange(path, data, method, timeout)
        if self._stale_proof(status, reply):  # the plugin restarted: one new session, once
            await self._prove()
            status, reply, _ = await self._exchange(path, data, method, timeout)
        return status, reply

    async def _prove(self) -> None:
        """Before the first request to a TCP target (with a token): the peer proves it holds it."""
        import asyncio

        if not self._must_prove or self._proof is not None:
            return
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if self._proof is not None:
                return
            from infrakit.rpc import codec

            challenger = auth.ClientAuth(str(self.token))
            status, doc, peer = await self._exchange(
                auth.AUTH_PATH,
                codec.dumps(challenger.challenge()),
                "challenge",
                self.handshake_timeout,
                sign=False,
            )
            self._verify_peer(challenger, status, doc, peer)

    async def _exchange(
        self, path: str, data: bytes, method: str, timeout: float | None, *, sign: bool = True
    ) -> tuple[int, Any, Any]:
        """One POST: (status, decoded reply or None, the socket's peer address)."""
        import asyncio

        import aiohttp

        from infrakit.rpc import codec

        total = timeout if timeout is not None else self.call_timeout
        session = self._get_session()
        headers = (
            self._headers("POST", path, data) if sign else {"Content-Type": "application/json"}
        )
        try:
            async with session.post(
                self.address.base_url + path,
                data=data,
                headers=headers,
                ssl=self.ssl if self.address.tls and self.ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=total, sock_connect=self.connect_timeout),
            ) as response:
                peer = _peername(response)
                body = await response.read()
                status = response.status
        except aiohttp.ClientSSLError as exc:
            raise self._tls_failed(method, exc) from exc
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise self._unreachable(method, getattr(exc, "os_error", exc)) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise self._timeout(method, self.connect_timeout, "connection") from exc
        except TimeoutError as exc:
            raise self._timeout(method, total, "answer") from exc
        except aiohttp.ClientResponseError as exc:
            said = " ".join(exc.message.split())[:100]
            raise errors.ProtocolError(
                f"{self.what(method)}: not an HTTP reply ({said}); "
                "is this an InfraKit plugin socket?"
            ) from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise errors.ProtocolError(
                f"{self.what(method)}: connection dropped before a reply ({exc!s}); "
                "the plugin may have crashed - check its log"
            ) from exc
        if not body.strip():
            return status, None, peer
        try:
            return status, codec.loads(body), peer
        except ValueError as exc:
            if status == 404 or not sign:
                return status, None, peer
            raise errors.ProtocolError(
                f"{self.what(method)}: reply is not JSON (HTTP {status}): {body[:80]!r}"
            ) from exc

    async def handshake(self, interface: InterfaceSpec | None = None) -> None:
        import asyncio

        if self.era is None:
            if self._handshake_lock is None:
                self._handshake_lock = asyncio.Lock()
            async with self._handshake_lock:
                if self.era is None:
                    hello = envelope.encode_request(
                        "Handshake.Hello", {}, envelope.new_id(), Era.HEAD
                    )
                    status, doc = await self._post(
                        "/", hello, "Handshake.Hello", self.handshake_timeout
                    )
                    self._decide_handshake(status, doc)
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
        era = self.era or Era.HEAD
        doc = envelope.encode_request(method, params, envelope.new_id(), era)
        status, reply = await self._post(self._path(), doc, method, timeout)
        if reply is None and status == 404 and era is Era.HEAD:
            raise errors.ProtocolError(f"{self.what(method)}: HTTP 404; not an InfraKit plugin?")
        return envelope.decode_response(status, reply, era, lambda: self.what(method))

    async def _get_events(self, path: str, url: Any) -> aiohttp.ClientResponse:
        """Open ``GET /events`` (answered at once; the stream may then stay quiet for long)."""
        import asyncio

        import aiohttp

        session = self._get_session()
        try:
            async with asyncio.timeout(self.handshake_timeout):
                return await session.get(
                    url,
                    headers=self._headers("GET", path, b""),
                    ssl=self.ssl if self.address.tls and self.ssl is not None else True,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=self.connect_timeout, sock_read=None
                    ),
                )
        except TimeoutError as exc:
            raise self._timeout("GET /events", self.handshake_timeout, "answer") from exc
        except aiohttp.ClientSSLError as exc:
            raise self._tls_failed("GET /events", exc) from exc
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise self._unreachable("GET /events", getattr(exc, "os_error", exc)) from exc

    async def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        """Yield events from the plugin's ``/events`` stream until the stream ends.

        Raises :class:`~infrakit.errors.NotFoundError` if the plugin publishes no events (Go
        plugins): the caller then falls back to polling. The first item is yielded only after the
        subscription is live on the server.
        """

        from urllib.parse import quote

        import aiohttp
        from yarl import URL

        from infrakit.rpc import codec
        from infrakit.spi import event as spi_event

        path = f"/events?topic={quote(topic, safe='')}"
        await self._prove()
        for attempt in (0, 1):
            response = await self._get_events(path, URL(self.address.base_url + path, encoded=True))
            if response.status != 401:
                break
            try:
                doc = codec.loads(await response.read())
            except ValueError:
                doc = None
            finally:
                response.release()
            if attempt == 0 and self._stale_proof(401, doc):
                await self._prove()
                continue
            error = doc.get("error") if isinstance(doc, dict) else None
            said = error.get("message") if isinstance(error, dict) else "HTTP 401"
            raise errors.PluginError(f"{self.what('GET /events')}: {said}")
        try:
            if response.status != 200 or not response.headers.get("Content-Type", "").startswith(
                "text/event-stream"
            ):
                raise errors.NotFoundError(
                    f"plugin {self.name} at {self.address} serves no event stream "
                    f"(HTTP {response.status})"
                )
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    data = b"".join(
                        line[5:].lstrip()
                        for line in frame.split(b"\n")
                        if line.startswith(b"data:")
                    )
                    if data:
                        with contextlib.suppress(ValueError, errors.SpecError):
                            yield spi_event.event_from_wire(codec.loads(data))
                    elif frame.startswith(b": subscribed"):
                        yield spi_event.Event(topic="", type="subscribed")
        except aiohttp.ClientError as exc:
            raise errors.PluginUnreachableError(
                f"plugin {self.name} at {self.address}: event stream ended ({exc!s})"
            ) from exc
        finally:
            response.release()


class SyncClient(_Base):
    """Blocking client over plain sockets, with no heavy imports (the CLI starts in milliseconds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        #: The TCP peer of the current connection (what the challenge is checked against).
        self._peer: Any = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = bytearray()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth_line(self, http_method: str, path: str, body: bytes) -> str:
        if self._proof is None:
            return ""
        return f"Authorization: {self._proof.authorization(http_method, path, body)}\r\n"

    def _prove(self) -> None:
        """Before the first request to a TCP target (with a token): the peer proves it holds it."""
        if not self._must_prove or self._proof is not None:
            return
        challenger = auth.ClientAuth(str(self.token))
        body = json.dumps(challenger.challenge()).encode()
        status, _, reply = self.request(
            "POST", auth.AUTH_PATH, body, "challenge", self.handshake_timeout, sign=False
        )
        try:
            doc = json.loads(reply) if reply.strip() else None
        except ValueError:
            doc = None
        self._verify_peer(challenger, status, doc, self._peer)

    def _connect(self, method: str) -> socket.socket:
        try:
            if self.address.path is not None:
                sock = _connect_unix_blocking(self.address.path, self.connect_timeout)
            else:
                sock = socket.create_connection(
                    (self.address.host, self.address.port), timeout=self.connect_timeout
                )
                if self.address.tls:
                    import ssl

                    context = self.ssl or ssl.create_default_context()
                    try:
                        sock = context.wrap_socket(sock, server_hostname=self.address.host)
                    except ssl.SSLError as exc:
                        sock.close()
                        raise self._tls_failed(method, exc) from exc
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise self._unreachable(method, exc) from exc
        except (TimeoutError, BlockingIOError) as exc:
            raise self._timeout(method, self.connect_timeout, "connection") from exc
        except OSError as exc:
            raise self._unreachable(method, exc) from exc
        sock.settimeout(self.call_timeout)
        self._sock = sock
        self._buf = bytearray()
        with contextlib.suppress(OSError):
            self._peer = sock.getpeername()
        return sock

    def request(
        self,
        http_method: str,
        path: str,
        body: bytes | None,
        method: str,
        timeout: float | None = None,
        *,
        sign: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 exchange on a kept-alive connection (reconnects once if it went stale).

        ``timeout`` bounds the wait for the answer (default: the call timeout). ``sign``: prove
        the token (TCP targets with one) - off only for the challenge itself.
        """
        if sign:
            self._prove()
        status, headers, reply = self._request_once(http_method, path, body, method, timeout, sign)
        if sign and status == 401 and self._stale_proof(status, _json_or_none(reply)):
            self._prove()  # the plugin restarted: one new session, once
            status, headers, reply = self._request_once(
                http_method, path, body, method, timeout, sign
            )
        return status, headers, reply

    def _request_once(
        self,
        http_method: str,
        path: str,
        body: bytes | None,
        method: str,
        timeout: float | None,
        sign: bool,
    ) -> tuple[int, dict[str, str], bytes]:
        seconds = self.call_timeout if timeout is None else timeout
        for attempt in (0, 1):
            reused = self._sock is not None
            sock = self._sock or self._connect(method)
            sock.settimeout(seconds)
            auth_line = self._auth_line(http_method, path, body or b"") if sign else ""
            head = (
                f"{http_method} {path} HTTP/1.1\r\nHost: plugin\r\n{auth_line}"
                f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n"
            ).encode()
            try:
                sock.sendall(head + (body or b""))
                return self._read_response(method)
            except TimeoutError as exc:
                self.close()
                raise self._timeout(method, seconds, "answer") from exc
            except (ConnectionError, _EmptyReply) as exc:
                self.close()
                if reused and attempt == 0 and isinstance(exc, _EmptyReply | BrokenPipeError):
                    continue
                raise errors.ProtocolError(
                    f"{self.what(method)}: connection dropped before a reply ({exc!s}); "
                    "the plugin may have crashed - check its log"
                ) from exc
        raise AssertionError("unreachable")

    def _recv_more(self) -> bool:
        assert self._sock is not None
        data = self._sock.recv(262144)
        if not data:
            return False
        self._buf += data
        return True

    def _read_line(self) -> bytes:
        while True:
            idx = self._buf.find(b"\r\n")
            if idx >= 0:
                line = bytes(self._buf[:idx])
                del self._buf[: idx + 2]
                return line
            if not self._recv_more():
                raise _EmptyReply("connection closed")

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._recv_more():
                raise _EmptyReply("connection closed mid-body")
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _read_head(self, method: str) -> tuple[int, dict[str, str]]:
        """Read a status line and headers."""
        while b"\r\n\r\n" not in self._buf:
            if not self._recv_more():
                if not self._buf:
                    raise _EmptyReply("empty reply")
                self.close()
                raise errors.ProtocolError(f"{self.what(method)}: truncated HTTP reply")
        head_end = self._buf.index(b"\r\n\r\n")
        head = bytes(self._buf[:head_end]).split(b"\r\n")
        del self._buf[: head_end + 4]
        parts = head[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            self.close()
            raise errors.ProtocolError(
                f"{self.what(method)}: not an HTTP reply ({head[0][:60]!r}); "
                "is this an InfraKit plugin socket?"
            )
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        return status, headers

    def _read_response(self, method: str) -> tuple[int, dict[str, str], bytes]:
        """Parse one HTTP/1.1 response (Content-Length, chunked, or read-to-close bodies)."""
        status, headers = self._read_head(method)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._read_line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._read_line():
                        pass
                    break
                chunks.append(self._read_exact(size))
                self._read_line()
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            while self._recv_more():
                pass
            body = bytes(self._buf)
            self.close()
            return status, headers, body
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _post(
        self, path: str, doc: Any, method: str, timeout: float | None = None
    ) -> tuple[int, Any]:
        status, _, body = self.request("POST", path, json.dumps(doc).encode(), method, timeout)
        if not body.strip():
            return status, None
        try:
            return status, json.loads(body)
        except ValueError as exc:
            if status == 404:
                return status, None
            raise errors.ProtocolError(
                f"{self.what(method)}: reply is not JSON (HTTP {status}): {body[:80]!r}"
            ) from exc

    def handshake(self, interface: InterfaceSpec | None = None) -> None:
        if self.era is None:
            hello = envelope.encode_request("Handshake.Hello", {}, envelope.new_id(), Era.HEAD)
            status, doc = self._post("/", hello, "Handshake.Hello", self.handshake_timeout)
            self._decide_handshake(status, doc)
        self.check_interface(interface)

    def call(
        self, method: str, params: dict[str, Any], *, interface: InterfaceSpec | None = None
    ) -> Any:
        self.handshake(interface)
        era = self.era or Era.HEAD
        doc = envelope.encode_request(method, params, envelope.new_id(), era)
        status, reply = self._post(self._path(), doc, method)
        if reply is None and status == 404 and era is Era.HEAD:
            raise errors.ProtocolError(f"{self.what(method)}: HTTP 404; not an InfraKit plugin?")
        return envelope.decode_response(status, reply, era, lambda: self.what(method))

    def get_json(self, path: str) -> Any:
        status, _, body = self.request("GET", path, None, f"GET {path}")
        if status != 200:
            raise errors.NotFoundError(
                f"plugin {self.name} at {self.address}: GET {path} -> {status}"
            )
        return json.loads(body)

    def stop(self) -> bool:
        """Ask an infrakit plugin to stop; False if it does not offer that (Go plugins, or a peer
        that answers anything but infrakit's ``{"stopping": NAME}``).

        Waits the handshake timeout at most: a plugin that can stop says so at once. Raises
        :class:`~infrakit.errors.TransportError` if it cannot be reached or does not answer.
        """
        try:
            status, _, body = self.request(
                "POST", "/_infrakit/stop", b"{}", "stop", self.handshake_timeout
            )
        except errors.ProtocolError:
            return False
        if status != 200:
            return False
        try:
            doc = json.loads(body)
        except ValueError:
            return False
        return isinstance(doc, dict) and "stopping" in doc

    def events(
        self,
        topic: str,
        on_subscribed: Callable[[], None] | None = None,
        *,
        since: str | None = None,
        on_replayed: Callable[[int], None] | None = None,
    ) -> Iterator[spi_event.Event]:
        """Yield events from ``/events`` (blocking). Ends when the plugin closes the stream.

        ``on_subscribed`` is called once the plugin has accepted the subscription (before any
        event), so a caller can tell its user, or a test, that nothing will be missed from now on.
        ``since`` (a Go duration, ``30s``) first replays the events the plugin remembers from
        that long ago; ``on_replayed(count)`` is called once they have all been yielded.
        """
        from urllib.parse import quote

        from infrakit.spi import event as spi_event

        self._prove()
        self.close()
        sock = self._connect("GET /events")
        # The subscription is answered at once (like a handshake); the stream may then be quiet.
        sock.settimeout(self.handshake_timeout)
        path = f"/events?topic={quote(topic, safe='')}"
        if since is not None:
            path += f"&since={quote(since, safe='')}"
        try:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: plugin\r\n"
                f"{self._auth_line('GET', path, b'')}\r\n".encode()
            )
            status, headers = self._read_head("GET /events")
        except TimeoutError as exc:
            self.close()
            raise self._timeout("GET /events", self.handshake_timeout, "answer") from exc
        except (_EmptyReply, ConnectionError) as exc:
            self.close()
            raise errors.ProtocolError(
                f"{self.what('GET /events')}: event stream closed before it started ({exc!s}); "
                "the plugin may have crashed - check its log"
            ) from exc
        sock.settimeout(None)
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            self.close()
            raise errors.NotFoundError(
                f"plugin {self.name} at {self.address} publishes no events (HTTP {status})"
            )
        if on_subscribed is not None:
            on_subscribed()
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        pending = b""
        try:
            while True:
                if chunked:
                    size = int(self._read_line().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    data = self._read_exact(size)
                    self._read_line()
                else:
                    if not self._buf and not self._recv_more():
                        return
                    data = bytes(self._buf)
                    self._buf.clear()
                pending += data
                while b"\n\n" in pending:
                    frame, pending = pending.split(b"\n\n", 1)
                    if frame.startswith(b": replayed ") and on_replayed is not None:
                        count = frame[11:].strip()
                        on_replayed(int(count) if count.isdigit() else 0)
                    payload = b"".join(
                        ln[5:].lstrip() for ln in frame.split(b"\n") if ln.startswith(b"data:")
                    )
                    if payload:
                        with contextlib.suppress(ValueError, errors.SpecError):
                            yield spi_event.event_from_wire(json.loads(payload))
        except _EmptyReply:
            return
        finally:
            self.close()


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


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else None
    except ValueError:
        return None


def _connect_unix_blocking(path: str, timeout: float) -> socket.socket:
    """Connect to a UNIX socket, waiting up to ``timeout`` while its accept queue is full.

    A non-blocking connect fails at once with EAGAIN on a full queue; a blocking one with a send
    timeout waits in the kernel for room and raises :class:`BlockingIOError` when it runs out.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        seconds = max(timeout, 0.001)
        sock.setblocking(True)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000)),
        )
        sock.connect(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


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


class _EmptyReply(ConnectionError):
    """The peer closed a kept-alive connection before answering (safe to retry once)."""
