"""The HTTP listener for humans and probes: ``infrakit up --http HOST:PORT`` (``-o group.http=``).

One TCP listener next to the group (or manager) plugin's socket, serving:

* ``GET /``                    the status page (``launch/static``: HTML, CSS, JS shipped in the
                               package; no build step, no CDN, no external fonts);
* ``GET /static/NAME``         its files;
* ``GET /api/groups``          every group's numbers, from memory (``snapshots()``: desired,
                               actual - null while unknown, with the reason - converged, health
                               counts, breaker, rolling update); never a plugin call;
* ``GET /api/groups/ID``       one group's ``Group.Status`` with a page of its instances
                               (``?offset=0&limit=50&filter=attention``; at most
                               :data:`MAX_PAGE` rows), so 10 000 instances stay fast;
* ``GET /events``              the plugin's own SSE stream (the same handler as on its socket,
                               ``?topic=group/&since=5m`` replays the recent events first);
* ``GET /healthz``             the process answers (JSON);
* ``GET /readyz``              leader known, store reachable, each group's plugins answering:
                               200, or 503 with what is not ready (JSON);
* ``GET /metrics``             ``Recorder.exposition(Accept)`` (404 without a recorder).

Everything is read-only: nothing here commits, scales or destroys. Guarding follows the plugin
listeners' rule (docs/security.md): off loopback the listener needs the shared token (requests
carry ``Authorization: Bearer <token>``; ``/healthz`` stays open for probes) or TLS
(``--tls-cert``), else it is refused before it binds; on loopback it is open, like the UNIX
sockets' owner-only reach is not - the page shows status, never a way to act. Connections get the
RPC listeners' limits (:mod:`infrakit.rpc.connections`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from infrakit import errors
from infrakit._utils.addresses import is_loopback
from infrakit.rpc import codec, connections
from infrakit.spi.group import GroupSnapshot
from infrakit.spi.plugin import Metrics

__all__ = ["MAX_PAGE", "STATIC", "StatusServer", "check_guard"]

log = logging.getLogger(__name__)

#: The status page's files (package data).
STATIC = Path(__file__).with_name("static")
#: Most instance rows one ``/api/groups/ID`` answer carries.
MAX_PAGE = 500
#: Rows of a page when ``limit`` is not given.
DEFAULT_PAGE = 50

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Sent with every answer: the page loads nothing from elsewhere and is never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class StatusSource(Protocol):
    """What the page reads: a group controller or a manager."""

    def snapshots(self) -> list[GroupSnapshot]: ...

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...


def check_guard(name: str, host: str, token: str | None, tls: bool) -> None:
    """Refuse an HTTP listener off loopback with neither the token nor TLS (one line), before
    anything binds; warn about a token sent in clear off loopback."""
    if is_loopback(host):
        return
    if not token and not tls:
        raise errors.SpecError(
            f"plugin {name}: --http {host} is off loopback and needs the shared token "
            "(--token-file, --token or INFRAKIT_TOKEN) or TLS (--tls-cert/--tls-key); "
            "or listen on 127.0.0.1"
        )
    if token and not tls:
        log.warning(
            "plugin %s: --http %s is plain text: the bearer token browsers and scrapers send "
            "travels in clear; serve TLS with --tls-cert/--tls-key",
            name,
            host,
        )


class StatusServer:
    """The HTTP listener of one group or manager plugin (module docstring)."""

    def __init__(
        self,
        name: str,
        group: StatusSource,
        *,
        recorder: Metrics | None = None,
        events: Handler | None = None,
        ready: Callable[[], Awaitable[dict[str, str]]] | None = None,
        limits: connections.ConnectionLimits | None = None,
    ) -> None:
        self.name = name
        self.group = group
        #: ``GET /metrics`` answers from it; the lead's Recorder per process (None: 404).
        self.recorder = recorder
        self.events = events
        self.ready = ready
        self.limits = limits or connections.ConnectionLimits()
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._token_digest: bytes | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        guarded: bool | None = None,
    ) -> None:
        """Listen on ``host:port``. ``guarded`` (default: off loopback with a token) makes every
        request but ``/healthz`` carry the token."""
        check_guard(self.name, host, token, ssl is not None)
        if guarded is None:
            guarded = bool(token) and not is_loopback(host)
        if guarded and not token:
            raise errors.SpecError(f"plugin {self.name}: a guarded --http listener needs a token")
        self._token_digest = _digest(token) if guarded and token else None
        app = web.Application(
            middlewares=[self._headers, self._check_token, connections.admission()]
        )
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/api/groups", self._groups)
        app.router.add_get("/api/groups/{id}", self._group)
        app.router.add_get("/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        self._runner = runner
        loop = asyncio.get_running_loop()
        try:
            await connections.GuardedSite(
                runner,
                f"plugin {self.name} --http",
                self.limits,
                lambda factory: loop.create_server(factory, host, port, ssl=ssl, backlog=128),
            ).start()
        except OSError as exc:
            await self.stop()
            raise errors.ConflictError(
                f"plugin {self.name}: cannot listen on --http {host}:{port} "
                f"({exc.strerror or exc}); choose another address or port"
            ) from exc
        bound = next(a for a in runner.addresses if isinstance(a, tuple))
        self.address = (host, int(bound[1]))
        scheme = "https" if ssl is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        log.info("plugin %s: status page on %s://%s:%d/", self.name, scheme, shown, bound[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- guards ---------------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _json(exc.status, {"error": f"{request.path}: {exc.reason}"})
        except errors.InfrakitError as exc:
            response = _json(_status_of(exc), {"error": str(exc)})
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token_digest is None or request.path == "/healthz":
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(presented.strip()), self._token_digest
        ):
            return await handler(request)
        reason = "missing" if "Authorization" not in request.headers else "wrong"
        response = _json(
            401,
            {
                "error": f"plugin {self.name}: bearer token {reason}; send "
                "'Authorization: Bearer <token>' with the shared token (docs/security.md)"
            },
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="infrakit"'
        return response

    # --- routes ---------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _groups(self, request: web.Request) -> web.StreamResponse:
        # From memory only: a snapshot's Converged stays true while a converged group idles
        # (fresh within its next resync, nothing queued), so no Status call refreshes it first.
        groups = [asdict(s) for s in self.group.snapshots()]
        return _json(200, {"Plugin": self.name, "Groups": groups})

    async def _group(self, request: web.Request) -> web.StreamResponse:
        gid = request.match_info["id"]
        options = _page_options(request.query)
        if isinstance(options, web.Response):
            return options
        report = await self.group.status(gid, options)
        return _json(200, {"ID": gid, **report})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.events is None:
            return _json(404, {"error": f"plugin {self.name} publishes no events"})
        return await self.events(request)

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return _json(200, {"ok": True, "plugin": self.name})

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        checks = await self.ready() if self.ready is not None else {}
        failing = {k: v for k, v in checks.items() if v}
        doc = {
            "ready": not failing,
            "plugin": self.name,
            "checks": {k: v or "ok" for k, v in checks.items()},
            "not_ready": failing,
        }
        return _json(503 if failing else 200, doc)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if self.recorder is None:
            return _json(404, {"error": f"plugin {self.name} serves no metrics"})
        body, content_type = self.recorder.exposition(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response


def _page_options(query: Any) -> dict[str, Any] | web.Response:
    """``offset``/``limit``/``filter`` of ``/api/groups/ID`` -> Status options (or a 400)."""
    options: dict[str, Any] = {"offset": 0, "limit": DEFAULT_PAGE}
    for key, top in (("offset", None), ("limit", MAX_PAGE)):
        text = query.get(key)
        if text is None:
            continue
        if not text.isdigit() or (top is not None and int(text) > top):
            most = f" at most {top}" if top is not None else ""
            return _json(400, {"error": f"{key}={text!r}: expected a whole number{most}"})
        options[key] = int(text)
    which = query.get("filter", "all")
    if which not in ("all", "attention"):
        return _json(400, {"error": f"filter={which!r}: expected all or attention"})
    options["filter"] = which
    return options


def _status_of(exc: errors.InfrakitError) -> int:
    if isinstance(exc, errors.NotFoundError):
        return 404
    if isinstance(exc, errors.SpecError):
        return 400
    if isinstance(exc, errors.NotLeaderError):
        return 503
    return 502


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _json(status: int, doc: Any) -> web.Response:
    response = web.Response(status=status, body=codec.dumps(doc) + b"\n")
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    return response
