"""Serve plugin objects over HTTP on a UNIX socket (and optionally TCP), speaking both InfraKit eras.

Routes (served by :mod:`infrakit.rpc.http11` on every listener):

* ``POST /``                   JSON-RPC 2.0 (InfraKit HEAD), including ``Handshake.Hello``.
* ``POST <any other path>``    SEED-era JSON-RPC 1.0 envelope (the Go SEED client posts ``/rpc``),
                               answered in SEED shape: ``result`` + ``error``, HTTP 400 on error.
* ``GET /info/api.json``       what this socket implements, with an example request per method.
* ``GET /events?topic=T``      Server-Sent Events from the plugin's event source, if it has one;
                               ``&since=30s`` first replays the events of the last 30 s (sources
                               that remember them, :class:`~infrakit.spi.event.Recent`).
* ``POST /_infrakit/stop``     (UNIX socket only) stop this plugin; ``infrakit plugin stop`` uses it.

A :class:`Service` is one interface's dispatch table (built by ``rpc.instance``, ``rpc.flavor``,
``rpc.group``); a :class:`PluginServer` serves one or more services under one plugin name.

Robustness rules: a request can never crash the server. Bodies that are not JSON, envelopes of the
wrong shape, unknown methods, wrong parameter types, bodies over 16 MiB, bodies nested deeper than
:data:`~infrakit.rpc.envelope.MAX_BODY_DEPTH` levels, bodies that cannot be decoded (broken gzip or
deflate, chunked garbage, cut short, never finished) and exceptions raised by the plugin all become
JSON-RPC errors with a message naming the method and what was expected; so do requests HTTP itself
cannot parse. Connections that send no admitted request in time, sit idle too long, or exceed a
listener's cap of waiting connections are closed (:mod:`infrakit.rpc.connections`).

Any other HTTP method on an RPC path gets HTTP 405 with a JSON-RPC error (Go's text,
``rpc: POST method required, received GET``), in the era of the path.

Sockets are created mode 0600 in a 0700 directory. A socket file whose owner is gone (connection
refused) is replaced; a live one makes :meth:`PluginServer.start` fail with
:class:`~infrakit.errors.ConflictError`.

TCP (for remote callers, e.g. HA manager followers forwarding to the leader)::

    await server.start(path, tcp=("0.0.0.0", 24864), token=secret)            # bearer token
    await server.start(path, tcp=("10.0.0.5", 24864), token=secret, ssl=ctx)  # + TLS
    await server.start(path, tcp=("127.0.0.1", 0), insecure=True)             # loopback only

* ``token``: every request on the TCP listener must carry ``Authorization: Bearer <token>``
  (compared in constant time); otherwise HTTP 401 and a JSON-RPC error saying the token is missing
  or wrong and how to pass one. The UNIX socket never asks for it (its 0600 mode guards it).
* Without a token, a TCP listener is refused (:class:`~infrakit.errors.SpecError`) unless its host
  is loopback (``127.0.0.1``, ``::1``, ``localhost``) and ``insecure=True`` is passed explicitly.
* ``ssl``: an :class:`ssl.SSLContext` (``Purpose.CLIENT_AUTH`` with ``load_cert_chain``) serves
  TLS; the ``<name>.listen`` file then advertises ``https://host:port`` instead of ``tcp://``.
* Port 0 picks a free port; :attr:`PluginServer.tcp_address` tells which. An address that cannot
  be bound raises :class:`~infrakit.errors.ConflictError` and leaves no socket file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import ssl as _ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrakit import errors
from infrakit._utils.addresses import is_loopback
from infrakit._utils.duration import parse_duration
from infrakit._utils.nesting import deeper_than, may_be_deeper_than
from infrakit._utils.private import bind_private_unix, private_dir, write_private
from infrakit.rpc import codec, connections, envelope, http11
from infrakit.rpc.auth import AUTH_PATH, SCHEME, ServerAuth, format_address
from infrakit.rpc.core import sse_comment, sse_data
from infrakit.spi import event as spi_event
from infrakit.spi import plugin as spi_plugin
from infrakit.spi.types import Era, InterfaceSpec

__all__ = ["Handler", "PluginServer", "Service"]

log = logging.getLogger(__name__)


#: ``handler(params, era) -> result`` for one ``Service.Method``.
Handler = Callable[[dict[str, Any], Era], Awaitable[Any]]

#: What a listener answers a request with.
Reply = http11.Response | http11.Streaming

#: Content-Type of every JSON reply.
JSON_TYPE = "application/json; charset=utf-8"

#: Seconds between SSE keep-alive comments (detects vanished subscribers on TCP).
SSE_HEARTBEAT_SECONDS = 30.0


@dataclass
class Service:
    """One interface served on a socket: its handlers and the names of the objects behind it."""

    interface: InterfaceSpec
    handlers: dict[str, Handler]
    #: Object names for the handshake: ``"."`` is the default (unnamed) object.
    objects: list[str] = field(default_factory=lambda: ["."])
    #: Example params per method for ``/info/api.json`` (method -> params).
    examples: dict[str, Any] = field(default_factory=dict)
    #: The default object's ``info()``: ``{"schema": ..., "example": ...}`` of its Properties.
    info: dict[str, Any] | None = None
    #: Zero-value result per method for ``/info/api.json`` (method -> result), as Go printed them.
    results: dict[str, Any] = field(default_factory=dict)


class PluginServer:
    """Serves a set of :class:`Service` objects under one plugin name."""

    def __init__(
        self,
        name: str,
        services: list[Service],
        *,
        events: spi_event.Source | None = None,
        vendor: dict[str, Any] | None = None,
        on_stop_request: Callable[[], None] | None = None,
        limits: connections.ConnectionLimits | None = None,
        metrics: spi_plugin.Metrics | None = None,
    ) -> None:
        self.name = name
        #: ``GET /metrics`` reads it; every answered request is counted into it.
        self.metrics = metrics
        #: Timeouts and the cap of waiting connections, per listener.
        self.limits = limits or connections.ConnectionLimits()
        self.services = services
        self.events = events
        self.vendor = vendor
        self.on_stop_request = on_stop_request
        self.socket_path: Path | None = None
        self.listen_file: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._handlers: dict[str, Handler] = {}
        for svc in services:
            for method, handler in svc.handlers.items():
                if method in self._handlers:
                    raise errors.ConflictError(
                        f"plugin {name}: method {method} is served twice; "
                        "serve each interface once per plugin name"
                    )
                self._handlers[method] = handler
        for method, handler in self._handshake_handlers().items():
            self._handlers.setdefault(method, handler)
        self._http: http11.HttpServer | None = None
        #: GET (and HEAD) routes, by path.
        self._gets: dict[str, Callable[[http11.Request], Awaitable[Reply]]] = {
            "/info/api.json": self._get_api_info,
            "/info/functions.json": self._get_functions,
            "/events": self._get_events,
            "/metrics": self._get_metrics,
            "/healthz": self._get_healthz,
        }
        self._stopping = asyncio.Event()
        #: SHA-256 of the TCP bearer token (None: no token asked for).
        self._token_digest: bytes | None = None
        #: Challenges and signed requests on TCP (None: no token).
        self._auth: ServerAuth | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(
        self,
        socket_path: Path,
        *,
        tcp: tuple[str, int] | None = None,
        token: str | None = None,
        insecure: bool = False,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        """Bind ``socket_path`` (and ``tcp`` host/port, advertised in ``<name>.listen``).

        TCP is reachable by anyone who can reach the port, so it needs ``token``: every request
        there must carry ``Authorization: Bearer <token>`` (compared in constant time; the UNIX
        socket, guarded by file permissions, needs none). Without a token, TCP is refused unless
        it is loopback-only and ``insecure`` says so explicitly. ``ssl`` (an ``SSLContext``)
        serves TLS.
        """
        socket_path = Path(socket_path)
        if tcp is not None and not token and not (insecure and is_loopback(tcp[0])):
            raise errors.SpecError(
                f"plugin {self.name}: listening on TCP {tcp[0]} needs a shared token "
                f"(--token-file, --token or INFRAKIT_TOKEN); without one only loopback with "
                f"--insecure is allowed"
            )
        self._token_digest = _digest(token) if token else None
        self._auth = None
        if tcp is not None and token and ssl is None and not is_loopback(tcp[0]):
            log.warning(
                "plugin %s: TCP %s is plain text: requests and replies can be read and replies "
                "forged on the network (infrakit's clients never send the token itself, but "
                "curl-style bearer tokens travel in clear); serve TLS with --tls-cert/--tls-key",
                self.name,
                tcp[0],
            )
        if len(os.fsencode(socket_path)) > 107:
            raise errors.SpecError(
                f"plugin {self.name}: socket path {socket_path} is longer than 107 bytes; "
                "use a shorter plugin directory (INFRAKIT_PLUGINS_DIR)"
            )
        prepare_socket_path(self.name, socket_path)
        http = self._http = http11.HttpServer(self._route, self.limits, f"plugin {self.name}")
        # TCP (and its .listen file) first: once the UNIX socket accepts, the plugin is whole.
        if tcp is not None:
            try:
                _, port = await http.listen_tcp(tcp[0], tcp[1], ssl)
            except OSError as exc:
                await self.stop()  # no half-started plugin
                raise errors.ConflictError(
                    f"plugin {self.name}: cannot listen on TCP {tcp[0]}:{tcp[1]} "
                    f"({exc.strerror or exc}); choose another address or port"
                ) from exc
            self.tcp_address = (tcp[0], port)
            if token:
                self._auth = ServerAuth(token, [format_address(tcp[0], port)])
            else:
                log.warning(
                    "plugin %s: --insecure: TCP %s:%d takes requests without a token - anyone "
                    "who can reach it (every local user, every container sharing the network) "
                    "can commit specs and so run code as uid %d (%s); use --token-file instead "
                    "(docs/security.md)",
                    self.name,
                    tcp[0],
                    port,
                    os.geteuid(),
                    _user_name(),
                )
            self.listen_file = socket_path.with_name(socket_path.name + ".listen")
            scheme = "https" if ssl is not None else "tcp"
            host = f"[{tcp[0]}]" if ":" in tcp[0] else tcp[0]  # IPv6 in brackets, as in URLs
            write_private(self.listen_file, f"{scheme}://{host}:{port}".encode())
        try:
            await http.listen_unix(bind_private_unix(socket_path))
        except BaseException:
            await self.stop()
            raise
        self.socket_path = socket_path
        log.info("plugin %s listening on %s", self.name, socket_path)

    async def _route(self, request: http11.Request) -> Reply:
        """Every request of every listener: the token check (TCP), admission, then the route."""
        refused = await self._check_token(request)
        if refused is not None:
            return refused
        path = request.path
        if path != AUTH_PATH:  # the challenge is open to all: it admits nobody
            request.admit()
        if request.method == "POST":
            if path == "/":
                return await self._rpc(request, Era.HEAD)
            if path == "/_infrakit/stop":
                return self._post_stop(request)
            if path == AUTH_PATH:
                return await self._post_auth(request)
            return await self._rpc(request, Era.SEED)
        if request.method in ("GET", "HEAD"):
            route = self._gets.get(path)
            if route is not None:
                return await route(request)
        return self._wrong_method(request)

    async def _check_token(self, request: http11.Request) -> http11.Response | None:
        """Requests that came over TCP must carry the token (UNIX ones need none): a request
        signed in a session opened at :data:`AUTH_PATH` (infrakit's clients), or a plain bearer
        token (curl, Prometheus). The challenge route itself is open: it is how one proves.
        None: go on; else the refusal."""
        if (
            self._token_digest is None
            or request.path == AUTH_PATH
            or not isinstance(request.sockname, tuple)
        ):
            return None
        given = request.headers.get("authorization", "")
        scheme, _, presented = given.partition(" ")
        if scheme.lower() == SCHEME.lower() and self._auth is not None:
            body = await request.body(self.limits)  # read once: the route gets the same bytes
            if isinstance(body, connections.BodyError):
                return _json_response(400, {"error": f"plugin {self.name}: {body.message}"})
            why = self._auth.verify(presented, request.method, request.target, body)
            if not why:
                return None
            return _refused(f"plugin {self.name}: signed request refused: {why}", why)
        # Digests have equal length, so the comparison time says nothing about the token.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(presented.strip()), self._token_digest
        ):
            return None
        reason = "missing" if not given else "wrong"
        return _refused(
            f"plugin {self.name}: bearer token {reason}; pass the shared token with "
            f"--token-file, --token or INFRAKIT_TOKEN",
            reason,
        )

    async def _post_auth(self, request: http11.Request) -> http11.Response:
        """Answer a client's challenge with proofs of the token (see :mod:`infrakit.rpc.auth`)."""
        if self._auth is None:
            return _json_response(200, {"Proofs": []})  # no token here: nothing to prove
        body = await request.body(self.limits)
        try:
            doc = None if isinstance(body, connections.BodyError) else codec.loads(body)
        except ValueError:
            doc = None
        sockname = request.sockname
        arrived = format_address(sockname[0], sockname[1]) if isinstance(sockname, tuple) else None
        try:
            return _json_response(200, self._auth.challenge(doc, arrived))
        except errors.SpecError as exc:
            return _json_response(400, {"error": str(exc)})

    async def stop(self) -> None:
        """Stop serving and remove the socket (and ``.listen``) files."""
        self._stopping.set()
        if self._http is not None:
            await self._http.close(grace=0.5)
            self._http = None
        for path in (self.socket_path, self.listen_file):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        log.info("plugin %s stopped", self.name)

    # --- JSON-RPC ------------------------------------------------------------------------------

    async def _rpc(self, request: http11.Request, era: Era) -> http11.Response:
        body = await request.body(self.limits)
        if isinstance(body, connections.BodyError):
            status, doc = envelope.error_reply(None, body.code, body.message, era)
            return _json_response(status, doc, close=body.close)
        status, doc = await self.dispatch_bytes(body, era)
        if doc is None:
            return http11.Response(200, b"", content_type=None)
        return _json_response(status, doc)

    async def dispatch_bytes(self, body: bytes, era: Era) -> tuple[int, Any]:
        """Decode, dispatch and encode-ready reply for one request body (used by tests too)."""
        too_deep = envelope.error_reply(
            None,
            envelope.INVALID_REQUEST,
            f"invalid request: JSON nested deeper than {envelope.MAX_BODY_DEPTH} levels (a spec "
            f"may nest at most {envelope.MAX_BODY_DEPTH - envelope.ENVELOPE_DEPTH}); flatten it",
            era,
        )
        try:
            doc = codec.loads(body)
        except RecursionError:
            return too_deep
        except ValueError as exc:
            return envelope.error_reply(
                None, envelope.PARSE_ERROR, f"parse error: body is not valid JSON ({exc})", era
            )
        if may_be_deeper_than(body, envelope.MAX_BODY_DEPTH) and deeper_than(
            doc, envelope.MAX_BODY_DEPTH
        ):
            return too_deep
        try:
            call = envelope.parse_request(doc, era)
        except envelope.RequestError as exc:
            return envelope.error_reply(exc.id, exc.code, exc.message, era, exc.data)
        result_or_error = await self.dispatch(call)
        if call.notification:
            return 200, None
        return result_or_error

    async def dispatch(self, call: envelope.Call) -> tuple[int, Any]:
        """Run ``call``'s handler: ``(HTTP status, reply)``, counted into the metrics."""
        status, reply = await self._dispatch(call)
        if self.metrics is not None:
            # Unknown methods share one label: a caller cannot grow the series.
            method = call.method if call.method in self._handlers else "unknown"
            self.metrics.rpc_request(method, _result_code(reply))
        return status, reply

    async def _dispatch(self, call: envelope.Call) -> tuple[int, Any]:
        handler = self._handlers.get(call.method)
        if handler is None:
            service = call.method.split(".", 1)[0]
            known = any(m.startswith(service + ".") for m in self._handlers)
            what = "method" if known else "service"
            name = call.method if known else service
            return envelope.error_reply(
                call.id, envelope.SERVER_ERROR, f'rpc: can\'t find {what} "{name}"', call.era
            )
        try:
            result = await handler(call.params, call.era)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code, message, data = envelope.exception_to_error(exc)
            if not isinstance(exc, errors.InfrakitError):
                log.exception("plugin %s: %s raised", self.name, call.method)
            return envelope.error_reply(call.id, code, message, call.era, data)
        return 200, envelope.ok_reply(call.id, result, call.era)

    async def _get_metrics(self, request: http11.Request) -> http11.Response:
        """Prometheus' scrape: the process's metrics, in the format its Accept header asks for."""
        if self.metrics is None:
            return _json_response(404, {"error": f"plugin {self.name} serves no metrics"})
        body, content_type = self.metrics.exposition(request.headers.get("accept", ""))
        return http11.Response(200, body, content_type)

    async def _get_healthz(self, request: http11.Request) -> http11.Response:
        """Liveness: the process answers (readiness is the HTTP listener's ``/readyz``)."""
        return _json_response(200, {"ok": True, "plugin": self.name})

    def _wrong_method(self, request: http11.Request) -> http11.Response:
        era = Era.HEAD if request.path == "/" else Era.SEED
        _, doc = envelope.error_reply(
            None,
            envelope.INVALID_REQUEST,
            f"rpc: POST method required, received {request.method}",
            era,
        )
        response = _json_response(405, doc)
        response.headers["Allow"] = "POST"
        return response

    # --- handshake and info --------------------------------------------------------------------

    def _handshake_handlers(self) -> dict[str, Handler]:
        async def hello(params: dict[str, Any], era: Era) -> Any:
            return {"Objects": self.objects_by_interface()}

        async def implements(params: dict[str, Any], era: Era) -> Any:
            apis = [
                {"Name": s.interface.name, "Version": s.interface.version} for s in self.services
            ]
            return {"APIs": apis}

        async def types(params: dict[str, Any], era: Era) -> Any:
            return {"Types": {str(s.interface): list(s.objects) for s in self.services}}

        async def event_list(params: dict[str, Any], era: Era) -> Any:
            topics = self.events.topics() if self.events is not None else []
            return {"Nodes": sorted(topics)}

        handlers: dict[str, Handler] = {
            "Handshake.Hello": hello,
            "Handshake.Implements": implements,
            "Handshake.Types": types,
            "Plugin.Implements": implements,
        }
        if self.events is not None:
            handlers["Event.List"] = event_list
        return handlers

    def objects_by_interface(self) -> dict[str, list[dict[str, str]]]:
        objects = {
            str(s.interface): [{"Name": o, "ProxyFor": ""} for o in s.objects]
            for s in self.services
        }
        if self.events is not None:
            objects.setdefault(str(spi_event.INTERFACE), [{"Name": ".", "ProxyFor": ""}])
        return objects

    async def _get_api_info(self, request: http11.Request) -> http11.Response:
        interfaces = []
        for svc in self.services:
            methods = []
            for method in sorted(svc.handlers):
                params = svc.examples.get(method, {})
                methods.append(
                    {
                        "Request": {
                            "jsonrpc": "2.0",
                            "method": method,
                            "params": params,
                            "id": "1",
                        },
                        "Response": {
                            "jsonrpc": "2.0",
                            "result": svc.results.get(method, {}),
                            "id": "1",
                        },
                    }
                )
            entry: dict[str, Any] = {**svc.interface.to_wire(), "Methods": methods}
            if svc.info:
                entry["Properties"] = {
                    "Schema": svc.info.get("schema"),
                    "Example": svc.info.get("example"),
                }
            interfaces.append(entry)
        doc = {
            "Vendor": self.vendor,
            "Implements": [s.interface.to_wire() for s in self.services],
            "Interfaces": interfaces,
        }
        return _json_response(200, doc)

    async def _get_functions(self, request: http11.Request) -> http11.Response:
        return _json_response(200, {"base": []})

    # --- events --------------------------------------------------------------------------------

    async def _get_events(self, request: http11.Request) -> Reply:
        query = request.query
        opened = self.open_events(query.get("topic", ""), query.get("since"))
        if isinstance(opened, tuple):
            return _json_response(*opened)
        return http11.Streaming(
            opened, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

    def open_events(
        self, topic: str, since: str | None
    ) -> AsyncGenerator[bytes, None] | tuple[int, dict[str, Any]]:
        """The frames of one ``/events`` subscription, or ``(status, error doc)`` refusing it.

        The subscription is made here, before the first frame is asked for: a ``: subscribed``
        comment first (the subscriber knows it is live from there on), with ``since`` the events
        remembered from that long ago and ``: replayed N``, then every new event, with a
        keep-alive comment every :data:`SSE_HEARTBEAT_SECONDS` of quiet, until the source ends or
        this server stops. The socket route and :class:`~infrakit.rpc.memory.MemoryTransport`
        both serve these frames.
        """
        if self.events is None:
            return 404, {"error": f"plugin {self.name} publishes no events; poll it instead"}
        cutoff: float | None = None
        if since is not None:
            answer = self._since(since)
            if isinstance(answer, str):
                return 400, {"error": answer}
            cutoff = answer
        # Subscribe (Broker registers on this call) and read the replay right after it, with no
        # await between: nothing lost or repeated.
        events = self.events.subscribe(topic)
        replay: list[spi_event.Event] = []
        if cutoff is not None and isinstance(self.events, spi_event.Recent):
            replay = self.events.recent(topic, cutoff)
        return self._event_frames(topic, events, replay if cutoff is not None else None)

    async def _event_frames(
        self,
        topic: str,
        events: AsyncIterator[spi_event.Event],
        replay: list[spi_event.Event] | None,
    ) -> AsyncGenerator[bytes, None]:
        pump = self._pump_events(events)
        try:
            yield sse_comment(f"subscribed {topic}")
            if replay is not None:
                for item in replay:
                    yield sse_data(codec.dumps(spi_event.event_to_wire(item)))
                yield sse_comment(f"replayed {len(replay)}")
            async for frame in pump:
                yield frame
        finally:
            await pump.aclose()
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _since(self, text: str) -> float | str:
        """``since=30s`` -> the wall time 30 s ago; a bad value or a source that remembers no
        events -> the error naming what was expected (answered with HTTP 400)."""
        try:
            seconds = parse_duration(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < float("inf"):
            return f"since={text!r}: expected a Go duration, e.g. since=30s or 5m"
        if not isinstance(self.events, spi_event.Recent):
            return f"plugin {self.name} keeps no event history; subscribe without since"
        return time.time() - seconds

    async def serve_events(self, request: http11.Request) -> Reply:
        """``GET /events`` of this plugin for another listener of the process (the HTTP status
        page's live events): the same stream, ended when this server stops."""
        return await self._get_events(request)

    async def _pump_events(
        self, events: AsyncIterator[spi_event.Event]
    ) -> AsyncGenerator[bytes, None]:
        iterator = events.__aiter__()
        #: A broker subscription hands over what is queued without waiting.
        take_ready: Callable[[], list[spi_event.Event]] | None = getattr(
            iterator, "take_ready", None
        )
        pending: asyncio.Task[spi_event.Event] | None = None
        try:
            while not self._stopping.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=SSE_HEARTBEAT_SECONDS)
                if not done:
                    yield sse_comment("keep-alive")
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
                # A burst (1000 creates) goes out as one write of its frames, not one each.
                burst = [item, *(take_ready() if take_ready is not None else ())]
                yield b"".join(sse_data(codec.dumps(spi_event.event_to_wire(e))) for e in burst)
        finally:
            if pending is not None:
                pending.cancel()

    # --- control -------------------------------------------------------------------------------

    def _post_stop(self, request: http11.Request) -> http11.Response:
        if not request.on_unix_socket or self.on_stop_request is None:
            return _json_response(403, {"error": "stop is only accepted on the UNIX socket"})
        asyncio.get_running_loop().call_soon(self.on_stop_request)
        return _json_response(200, {"stopping": self.name})


def _result_code(reply: Any) -> str:
    """A metrics label for ``reply``: ``ok``, the error's kind (``NotFoundError`` ... a fixed
    set), else its JSON-RPC code; ``error`` for a SEED-era error (a bare string)."""
    error = reply.get("error") if isinstance(reply, dict) else None
    if error is None:
        return "ok"
    if not isinstance(error, dict):
        return "error"
    data = error.get("data")
    if isinstance(data, dict) and isinstance(data.get("kind"), str):
        return str(data["kind"])
    return str(error.get("code", "error"))


def _refused(message: str, reason: str) -> http11.Response:
    """HTTP 401 with a JSON-RPC error; ``data.reason`` lets infrakit's clients tell a session to
    renew from a credential that is wrong."""
    return _json_response(
        401,
        {
            "jsonrpc": "2.0",
            "error": {
                "code": -32001,
                "message": message,
                "data": {"kind": "PluginError", "reason": reason},
            },
            "id": None,
        },
    )


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "no name"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _json_response(status: int, doc: Any, *, close: bool = False) -> http11.Response:
    return http11.Response(status, codec.dumps_line(doc), JSON_TYPE, close=close)


def prepare_socket_path(name: str, path: Path) -> None:
    """Make sure ``path`` can be bound: dir exists (0700), no live plugin owns it, stale removed."""
    private_dir(path.parent)
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_socket():
        raise errors.ConflictError(
            f"plugin {name}: {path} exists and is not a socket; remove it or choose another --name"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.warning("plugin %s: removing stale socket %s left by a stopped process", name, path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    except OSError:
        # A timeout or EAGAIN means something is there and busy: treat as live.
        pass
    finally:
        probe.close()
    raise errors.ConflictError(
        f"plugin {name}: a running plugin already listens on {path}; "
        f"stop it first (infrakit plugin stop {name}) or start this one with another --name"
    )
