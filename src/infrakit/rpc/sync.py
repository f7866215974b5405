"""The blocking plugin client (the CLI) and its transport: HTTP/1.1 over a plain socket.

:class:`SyncClient` is the :class:`~infrakit.rpc.core.ClientCore` (handshake, envelopes of both
eras, error messages, the event stream's frames) over a :class:`SyncTransport`: by default a
:class:`SocketTransport`, one kept-alive connection to a UNIX socket or TCP address (TLS for
``https://``), with the standard library only, so a CLI command starts in milliseconds; or
:class:`infrakit.rpc.memory.LoopMemoryTransport`, into a server on an event loop of this process.
Options are :class:`~infrakit.rpc.client.Client`'s.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from infrakit import errors
from infrakit.rpc.core import (
    ClientCore,
    Replayed,
    SseDecoder,
    Subscribed,
    parse_response_head,
    request_head,
)
from infrakit.spi.types import InterfaceSpec

if TYPE_CHECKING:
    from infrakit.spi import event as spi_event

__all__ = ["SocketTransport", "SyncClient", "SyncTransport"]


class SyncTransport(Protocol):
    """Moves bytes for :class:`SyncClient`; errors are the core's messages."""

    #: The connection's peer address (what a token challenge is checked against), or None.
    peer: Any

    def exchange(
        self,
        http_method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        method: str,
        seconds: float,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request: ``(status, lower-cased headers, body)``."""
        ...

    def open_stream(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """``GET`` an event stream: its status and headers."""
        ...

    def stream_chunks(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The opened stream's body as it arrives, until it ends."""
        ...

    def close(self) -> None: ...


class SyncClient(ClientCore):
    """Blocking client of one plugin (plain sockets by default), with no heavy imports."""

    def __init__(
        self,
        *args: Any,
        transport: Callable[[ClientCore], SyncTransport] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        #: ``transport`` builds it for this client (default: :class:`SocketTransport`).
        self.transport: SyncTransport = (transport or SocketTransport)(self)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prove(self) -> None:
        """Before the first request to a TCP target (with a token): the peer proves it holds it."""
        if not self.must_prove:
            return
        from infrakit.rpc import auth

        challenger = self.challenger()
        body = json.dumps(challenger.challenge()).encode()
        status, _, reply = self.request(
            "POST", auth.AUTH_PATH, body, "challenge", self.handshake_timeout, sign=False
        )
        doc = self.reply_doc(status, reply, "challenge", json.loads, strict=False)
        self.verify_peer(challenger, status, doc, self.transport.peer)

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
        seconds = self.call_timeout if timeout is None else timeout
        headers = self.headers(http_method, path, body or b"") if sign else {}
        status, got, reply = self.transport.exchange(
            http_method, path, body, headers, method, seconds
        )
        if sign and status == 401:
            doc = self.reply_doc(status, reply, method, json.loads, strict=False)
            if self.stale_proof(status, doc):
                self._prove()  # the plugin restarted: one new session, once
                headers = self.headers(http_method, path, body or b"")
                status, got, reply = self.transport.exchange(
                    http_method, path, body, headers, method, seconds
                )
        return status, got, reply

    def _post(
        self, path: str, doc: Any, method: str, timeout: float | None = None
    ) -> tuple[int, Any]:
        status, _, body = self.request("POST", path, json.dumps(doc).encode(), method, timeout)
        return status, self.reply_doc(status, body, method, json.loads, strict=True)

    def handshake(self, interface: InterfaceSpec | None = None) -> None:
        if self.era is None:
            status, doc = self._post("/", self.hello(), "Handshake.Hello", self.handshake_timeout)
            self.decide_handshake(status, doc)
        self.check_interface(interface)

    def call(
        self, method: str, params: dict[str, Any], *, interface: InterfaceSpec | None = None
    ) -> Any:
        self.handshake(interface)
        path, doc = self.encode_call(method, params)
        status, reply = self._post(path, doc, method)
        return self.result(method, status, reply)

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
        self._prove()
        path = self.events_path(topic, since)
        # A GET without a body: no Content-Type, as the client always sent it.
        signed = {k: v for k, v in self.headers("GET", path, b"").items() if k != "Content-Type"}
        status, headers = self.transport.open_stream(path, signed)
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            self.close()
        self.check_stream(status, headers.get("content-type", ""))
        if on_subscribed is not None:
            on_subscribed()
        decoder = SseDecoder(json.loads)
        try:
            for chunk in self.transport.stream_chunks(headers):
                for item in decoder.feed(chunk):
                    if isinstance(item, Replayed):
                        if on_replayed is not None:
                            on_replayed(item.count)
                    elif not isinstance(item, Subscribed):
                        yield item
        finally:
            self.close()


class SocketTransport:
    """HTTP/1.1 for :class:`SyncClient` on one kept-alive socket; errors are the core's."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        #: The TCP peer of the current connection (what the challenge is checked against).
        self.peer: Any = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = bytearray()

    def _connect(self, method: str) -> socket.socket:
        core, address = self.core, self.core.address
        try:
            if address.path is not None:
                sock = _connect_unix_blocking(address.path, core.connect_timeout)
            else:
                sock = socket.create_connection(
                    (address.host, address.port), timeout=core.connect_timeout
                )
                if address.tls:
                    import ssl

                    context = core.ssl or ssl.create_default_context()
                    try:
                        sock = context.wrap_socket(sock, server_hostname=address.host)
                    except ssl.SSLError as exc:
                        sock.close()
                        raise core.tls_failed(method, exc) from exc
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise core.unreachable(method, exc) from exc
        except (TimeoutError, BlockingIOError) as exc:
            raise core.timeout(method, core.connect_timeout, "connection") from exc
        except OSError as exc:
            raise core.unreachable(method, exc) from exc
        sock.settimeout(core.call_timeout)
        self._sock = sock
        self._buf = bytearray()
        with contextlib.suppress(OSError):
            self.peer = sock.getpeername()
        return sock

    def exchange(
        self,
        http_method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        method: str,
        seconds: float,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read its response; a kept-alive connection the peer closed
        meanwhile is retried once on a new one."""
        data = body or b""
        for attempt in (0, 1):
            reused = self._sock is not None
            sock = self._sock or self._connect(method)
            sock.settimeout(seconds)
            try:
                sock.sendall(request_head(http_method, path, headers, len(data)) + data)
                return self._read_response(method)
            except TimeoutError as exc:
                self.close()
                raise self.core.timeout(method, seconds, "answer") from exc
            except (ConnectionError, _EmptyReply) as exc:
                self.close()
                if reused and attempt == 0 and isinstance(exc, _EmptyReply | BrokenPipeError):
                    continue
                raise self.core.dropped(method, exc) from exc
        raise AssertionError("unreachable")

    def open_stream(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """``GET`` an event stream on a connection of its own; its status and headers."""
        core, what = self.core, "GET /events"
        self.close()
        sock = self._connect(what)
        # The subscription is answered at once (like a handshake); the stream may then be quiet.
        sock.settimeout(core.handshake_timeout)
        try:
            sock.sendall(request_head("GET", path, headers, None))
            status, got = self._read_head(what)
        except TimeoutError as exc:
            self.close()
            raise core.timeout(what, core.handshake_timeout, "answer") from exc
        except (_EmptyReply, ConnectionError) as exc:
            self.close()
            raise errors.ProtocolError(
                f"{core.what(what)}: event stream closed before it started ({exc!s}); "
                "the plugin may have crashed - check its log"
            ) from exc
        sock.settimeout(None)
        return status, got

    def stream_chunks(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The stream's body as it arrives, until the peer ends it."""
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
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
                yield data
        except _EmptyReply:
            return

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
        with memoryview(self._buf) as view:
            data = bytes(view[:size])  # one copy (a slice of the bytearray would be a second)
        del self._buf[:size]
        return data

    def _read_head(self, method: str) -> tuple[int, dict[str, str]]:
        """Read a status line and headers."""
        while b"\r\n\r\n" not in self._buf:
            if not self._recv_more():
                if not self._buf:
                    raise _EmptyReply("empty reply")
                self.close()
                raise errors.ProtocolError(f"{self.core.what(method)}: truncated HTTP reply")
        head_end = self._buf.index(b"\r\n\r\n")
        head = bytes(self._buf[:head_end])
        del self._buf[: head_end + 4]
        try:
            return parse_response_head(head)
        except ValueError as exc:
            self.close()
            raise self.core.not_http(method, str(exc)) from None

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


class _EmptyReply(ConnectionError):
    """The peer closed a kept-alive connection before answering (safe to retry once)."""


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
