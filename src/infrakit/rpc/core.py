"""The client core: everything a plugin client does except I/O (the httpx shape).

A call to a plugin is the same in every client: pick the era by a handshake, encode the request,
decode the reply of either era, turn failures into one-line :mod:`infrakit.errors` messages that
name the plugin, the method and the address, and read the ``/events`` stream. That lives here,
once; the clients only move bytes:

* :class:`infrakit.rpc.client.Client` - async, over a pluggable :class:`AsyncTransport`
  (:class:`infrakit.rpc.streams.StreamTransport` on a UNIX socket or TCP by default,
  :class:`infrakit.rpc.memory.MemoryTransport`
  straight into a :class:`~infrakit.rpc.server.PluginServer` in the same process);
* :class:`infrakit.rpc.sync.SyncClient` - blocking, over plain sockets (the fast CLI).

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
nor the handshake ever waits longer than the call timeout.

The event stream (Server-Sent Events) is framed here for both sides: :func:`sse_data` and
:func:`sse_comment` write frames (the server, the in-memory transport), :class:`SseDecoder` reads
them (both clients).

No sockets, no aiohttp, no asyncio here (import-linter holds it to that).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from infrakit import errors
from infrakit.rpc import envelope
from infrakit.spi.types import Era, InterfaceSpec

if TYPE_CHECKING:
    import ssl as _ssl

    from infrakit.rpc import auth
    from infrakit.spi import event as spi_event

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Address",
    "AsyncStream",
    "AsyncTransport",
    "ClientCore",
    "Replayed",
    "SseDecoder",
    "Subscribed",
    "default_call_timeout",
    "parse_address",
    "parse_response_head",
    "request_head",
    "sse_comment",
    "sse_data",
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
        return f"{'https' if self.tls else 'tcp'}://{self.hostport}"

    @property
    def hostport(self) -> str:
        """``host:port`` (``[v6]:port``), as the token proofs name addresses."""
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        if self.path is not None:
            return "http://plugin"
        return f"{'https' if self.tls else 'http'}://{self.hostport}"


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


# --- the event stream ------------------------------------------------------------------------


def sse_data(payload: bytes) -> bytes:
    """One SSE event frame carrying ``payload`` (an event's JSON)."""
    return b"data: " + payload + b"\n\n"


def sse_comment(text: str) -> bytes:
    """One SSE comment frame: ``: subscribed TOPIC``, ``: replayed N``, ``: keep-alive``."""
    return b": " + text.encode() + b"\n\n"


def request_head(http_method: str, path: str, headers: dict[str, str], length: int | None) -> bytes:
    """The head of a client's HTTP/1.1 request (both clients' socket transports); ``length``
    (a body follows) adds ``Content-Length`` and, unless given, a JSON ``Content-Type``."""
    lines = [f"{http_method} {path} HTTP/1.1", "Host: plugin"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        if "Content-Type" not in headers:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """A response's status and headers (names in lower case) from its head without the final
    CRLFCRLF; :class:`ValueError` carrying the first line when it is not an HTTP response."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(repr(lines[0][:60]))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The server's ``: subscribed`` comment: the subscription is live from here on."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """The server's ``: replayed N`` comment: the ``since=`` replay is over."""

    count: int


class SseDecoder:
    """Frames of an ``/events`` stream, fed in whatever pieces the transport reads.

    ``feed`` returns what the bytes completed: events (undecodable ones are skipped, as a stream
    must survive one bad frame), :class:`Subscribed` and :class:`Replayed` markers.
    """

    def __init__(self, loads: Callable[[bytes], Any]) -> None:
        self._loads = loads
        self._pending = b""

    def feed(self, data: bytes) -> list[spi_event.Event | Subscribed | Replayed]:
        from infrakit.spi import event as spi_event

        self._pending += data
        out: list[spi_event.Event | Subscribed | Replayed] = []
        while b"\n\n" in self._pending:
            frame, self._pending = self._pending.split(b"\n\n", 1)
            payload = b"".join(
                line[5:].lstrip() for line in frame.split(b"\n") if line.startswith(b"data:")
            )
            if payload:
                try:
                    out.append(spi_event.event_from_wire(self._loads(payload)))
                except (ValueError, errors.SpecError):
                    continue
            elif frame.startswith(b": subscribed"):
                out.append(Subscribed())
            elif frame.startswith(b": replayed "):
                count = frame[11:].strip()
                out.append(Replayed(int(count) if count.isdigit() else 0))
        return out


# --- transports ------------------------------------------------------------------------------


class AsyncStream(Protocol):
    """An opened ``GET /events``: its status and content type, then its bytes."""

    status: int
    content_type: str

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives; :class:`~infrakit.errors.PluginUnreachableError` if cut."""
        ...

    async def read(self) -> bytes:
        """The whole (short) body of a refused subscription."""
        ...

    async def aclose(self) -> None:
        """Give the connection back (or end the subscription)."""
        ...


class AsyncTransport(Protocol):
    """Moves bytes for :class:`infrakit.rpc.client.Client`; errors are the core's messages
    (``core.unreachable``, ``core.timeout`` ...), so every transport fails the same way."""

    async def post(
        self,
        core: ClientCore,
        path: str,
        data: bytes,
        headers: dict[str, str],
        method: str,
        timeout: float,
    ) -> tuple[int, bytes, Any]:
        """One POST: ``(status, body, the connection's peer address or None)``."""
        ...

    async def open_stream(
        self, core: ClientCore, path: str, headers: dict[str, str]
    ) -> AsyncStream: ...

    async def close(self) -> None: ...


# --- the core --------------------------------------------------------------------------------


class ClientCore:
    """Handshake state, request encoding, reply decoding and error messages of one plugin client.

    ``token`` (TCP targets only, never sent itself) and ``ssl`` default, for TCP targets only,
    to what :func:`infrakit.rpc.auth.client_credentials` reads from the environment (the one
    place a client reads files).
    """

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
        if self.address.path is None:  # a UNIX socket takes no token and no TLS
            from infrakit.rpc.auth import client_credentials

            token, ssl = client_credentials(self.address, name, token, ssl)
        #: Shared token proven to TCP targets; never used on UNIX sockets, never sent itself.
        self.token = token
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

    # --- requests ----------------------------------------------------------------------------

    @staticmethod
    def hello() -> dict[str, Any]:
        """The ``Handshake.Hello`` request (HEAD; a SEED plugin answers it with 404)."""
        return envelope.encode_request("Handshake.Hello", {}, envelope.new_id(), Era.HEAD)

    def encode_call(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The path and envelope of a call in the era the handshake chose."""
        era = self.era or Era.HEAD
        path = "/rpc" if era is Era.SEED else "/"
        return path, envelope.encode_request(method, params, envelope.new_id(), era)

    def result(self, method: str, status: int, reply: Any) -> Any:
        """The wire ``result`` of a call's decoded reply, or the error it carries, raised."""
        era = self.era or Era.HEAD
        if reply is None and status == 404 and era is Era.HEAD:
            raise errors.ProtocolError(f"{self.what(method)}: HTTP 404; not an InfraKit plugin?")
        return envelope.decode_response(status, reply, era, lambda: self.what(method))

    def reply_doc(
        self, status: int, body: bytes, method: str, loads: Callable[[bytes], Any], strict: bool
    ) -> Any:
        """A reply body decoded (None when empty). Not JSON: None for a 404 or when not
        ``strict`` (the challenge), else a :class:`~infrakit.errors.ProtocolError`."""
        if not body or body.isspace():  # no copy of a 36 MB body just to look at it
            return None
        try:
            return loads(body)
        except ValueError as exc:
            if status == 404 or not strict:
                return None
            raise errors.ProtocolError(
                f"{self.what(method)}: reply is not JSON (HTTP {status}): {body[:80]!r}"
            ) from exc

    def events_path(self, topic: str, since: str | None = None) -> str:
        path = f"/events?topic={quote(topic, safe='')}"
        if since is not None:
            path += f"&since={quote(since, safe='')}"
        return path

    def check_stream(self, status: int, content_type: str) -> None:
        """A subscription that is not an event stream: the plugin publishes none (Go plugins):
        :class:`~infrakit.errors.NotFoundError`, so the caller polls instead."""
        if status != 200 or not content_type.startswith("text/event-stream"):
            raise errors.NotFoundError(
                f"plugin {self.name} at {self.address} publishes no events (HTTP {status})"
            )

    def stream_refused(self, doc: Any) -> errors.PluginError:
        """The 401 of a subscription the server refused, as one line."""
        error = doc.get("error") if isinstance(doc, dict) else None
        said = error.get("message") if isinstance(error, dict) else "HTTP 401"
        return errors.PluginError(f"{self.what('GET /events')}: {said}")

    # --- the token proof (TCP) ---------------------------------------------------------------

    def headers(self, http_method: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._proof is not None:
            headers["Authorization"] = self._proof.authorization(http_method, path, body)
        return headers

    @property
    def must_prove(self) -> bool:
        """A TCP target and a token: the peer proves it holds the token before any request."""
        return bool(self.token) and self.address.path is None and self._proof is None

    def challenger(self) -> auth.ClientAuth:
        from infrakit.rpc import auth

        return auth.ClientAuth(str(self.token))

    def verify_peer(self, challenger: auth.ClientAuth, status: int, doc: Any, peer: Any) -> None:
        """Accept the peer's proofs for the address dialled (or the socket's peer) or raise."""
        from infrakit.rpc import auth

        dialled = [self.address.hostport]
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

    def stale_proof(self, status: int, doc: Any) -> bool:
        """The server asks for a new session (it restarted, or the session aged out)."""
        if status != 401 or self._proof is None or not isinstance(doc, dict):
            return False
        from infrakit.rpc import auth

        error = doc.get("error")
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, dict) and data.get("reason") == auth.STALE_SESSION:
            self._proof = None
            return True
        return False

    # --- the handshake -----------------------------------------------------------------------

    def decide_handshake(self, status: int, doc: Any) -> None:
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

    # --- error messages ----------------------------------------------------------------------

    def what(self, method: str) -> str:
        return f"plugin {self.name} ({method}) at {self.address}"

    def unreachable(self, method: str, exc: BaseException) -> errors.InfrakitError:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = "socket file is missing"
        hint = (
            f"start it (infrakit plugin start ...:{self.name}) or check INFRAKIT_PLUGINS_DIR"
            if self.address.path is not None
            else "check that it runs and the address in its .listen file"
        )
        return errors.PluginUnreachableError(f"{self.what(method)}: not running ({reason}); {hint}")

    def tls_failed(self, method: str, exc: BaseException) -> errors.ProtocolError:
        reason = " ".join(str(getattr(exc, "os_error", None) or exc).split())[:160]
        return errors.ProtocolError(
            f"{self.what(method)}: TLS handshake failed ({reason}); {self.tls_hint}"
        )

    def timeout(self, method: str, seconds: float, phase: str) -> errors.PluginTimeoutError:
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

    def dropped(self, method: str, exc: BaseException) -> errors.ProtocolError:
        return errors.ProtocolError(
            f"{self.what(method)}: connection dropped before a reply ({exc!s}); "
            "the plugin may have crashed - check its log"
        )

    def not_http(self, method: str, said: str) -> errors.ProtocolError:
        return errors.ProtocolError(
            f"{self.what(method)}: not an HTTP reply ({said}); is this an InfraKit plugin socket?"
        )
