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

import hashlib
import hmac
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from infrakit import errors
from infrakit._utils.addresses import is_loopback
from infrakit.rpc import codec, connections, http11
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

Reply = http11.Response | http11.Streaming
Handler = Callable[[http11.Request], Awaitable[Reply]]

#: Content types of the page's files, by suffix.
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

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
        self._http: http11.HttpServer | None = None
        self._routes: dict[str, Handler] = {
            "/": self._index,
            "/api/groups": self._groups,
            "/events": self._events,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
        }
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
        http = self._http = http11.HttpServer(
            self._serve, self.limits, f"plugin {self.name} --http"
        )
        try:
            bound = await http.listen_tcp(host, port, ssl)
        except OSError as exc:
            await self.stop()
            raise errors.ConflictError(
                f"plugin {self.name}: cannot listen on --http {host}:{port} "
                f"({exc.strerror or exc}); choose another address or port"
            ) from exc
        self.address = (host, int(bound[1]))
        scheme = "https" if ssl is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        log.info("plugin %s: status page on %s://%s:%d/", self.name, scheme, shown, bound[1])

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close(grace=0.5)
            self._http = None

    # --- guards ---------------------------------------------------------------------------------

    async def _serve(self, request: http11.Request) -> Reply:
        """Every request: the token check, admission, the route; errors as JSON; the security
        headers on every answer."""
        try:
            response = self._check_token(request) or await self._route(request)
        except errors.InfrakitError as exc:
            response = _json(_status_of(exc), {"error": str(exc)})
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _route(self, request: http11.Request) -> Reply:
        request.admit()
        path = request.path
        handler = self._routes.get(path)
        if handler is None and path.startswith("/api/groups/"):
            handler = self._group
        elif handler is None and path.startswith("/static/"):
            handler = self._static
        if handler is None:
            return _json(404, {"error": f"{path}: Not Found"})
        if request.method not in ("GET", "HEAD"):
            response = _json(405, {"error": f"{path}: Method Not Allowed"})
            response.headers["Allow"] = "GET, HEAD"
            return response
        return await handler(request)

    def _check_token(self, request: http11.Request) -> http11.Response | None:
        if self._token_digest is None or request.path == "/healthz":
            return None
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(presented.strip()), self._token_digest
        ):
            return None
        reason = "missing" if "authorization" not in request.headers else "wrong"
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

    async def _index(self, request: http11.Request) -> Reply:
        response = _file(STATIC / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _static(self, request: http11.Request) -> Reply:
        """A file of the page: a plain name in :data:`STATIC` (no directories, no dot files)."""
        name = request.path[len("/static/") :]
        if name in {p.name for p in STATIC.iterdir() if p.is_file()} and not name.startswith("."):
            return _file(STATIC / name)
        return _json(404, {"error": f"{request.path}: Not Found"})

    async def _groups(self, request: http11.Request) -> Reply:
        # From memory only: a snapshot's Converged stays true while a converged group idles
        # (fresh within its next resync, nothing queued), so no Status call refreshes it first.
        groups = [asdict(s) for s in self.group.snapshots()]
        return _json(200, {"Plugin": self.name, "Groups": groups})

    async def _group(self, request: http11.Request) -> Reply:
        gid = request.path[len("/api/groups/") :]
        if not gid or "/" in gid:
            return _json(404, {"error": f"{request.path}: Not Found"})
        options = _page_options(request.query)
        if isinstance(options, http11.Response):
            return options
        report = await self.group.status(gid, options)
        return _json(200, {"ID": gid, **report})

    async def _events(self, request: http11.Request) -> Reply:
        if self.events is None:
            return _json(404, {"error": f"plugin {self.name} publishes no events"})
        return await self.events(request)

    async def _healthz(self, request: http11.Request) -> Reply:
        return _json(200, {"ok": True, "plugin": self.name})

    async def _readyz(self, request: http11.Request) -> Reply:
        checks = await self.ready() if self.ready is not None else {}
        failing = {k: v for k, v in checks.items() if v}
        doc = {
            "ready": not failing,
            "plugin": self.name,
            "checks": {k: v or "ok" for k, v in checks.items()},
            "not_ready": failing,
        }
        return _json(503 if failing else 200, doc)

    async def _metrics(self, request: http11.Request) -> Reply:
        if self.recorder is None:
            return _json(404, {"error": f"plugin {self.name} serves no metrics"})
        body, content_type = self.recorder.exposition(request.headers.get("accept", ""))
        return http11.Response(200, body, content_type)


def _page_options(query: Any) -> dict[str, Any] | http11.Response:
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


def _json(status: int, doc: Any) -> http11.Response:
    return http11.Response(
        status, codec.dumps(doc) + b"\n", "application/json", {"Cache-Control": "no-store"}
    )


def _file(path: Path) -> http11.Response:
    content_type = STATIC_TYPES.get(path.suffix, "application/octet-stream")
    return http11.Response(200, path.read_bytes(), content_type)
