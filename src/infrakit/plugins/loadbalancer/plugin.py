"""The L4 load balancer backed by a real HAProxy (see the package docstring).

Routes are HAProxy frontends, each with its own backend ``be_<port>``; a backend (an instance) is
one server in every route's backend, named after its instance ID. Backends move through states
(:mod:`infrakit.spi.loadbalancer`):

``RegisterBackends``  ``add server`` (created in maintenance), ``enable health``: the checks run
                      while it takes no traffic (*checking*); once a route's check has passed
                      ``rise`` times in a row it is ``set ... state ready`` (*up*).
``DeregisterBackends`` ``set ... state drain``: no new connections (*draining*); once its
                      connections are gone (``scur`` and ``qcur`` 0) - or the drain timeout has
                      passed, then its sessions are shut - it is put in maintenance and
                      ``del server``: it leaves ``Backends``.

A background task moves checking and draining backends on (``TEND_INTERVAL``). Routes and the
health check are kept in ``state.json`` beside the configuration, so a restarted plugin listens
where it did, with the backends that were up (checking ones the ingress registers again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infrakit.errors import InfrakitError, NotFoundError, PluginError, SpecError
from infrakit.plugins.loadbalancer.haproxy import Frontend, HAProxy, ServerLine, render_config
from infrakit.spi import instance as spi_instance
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.types import ADDRESS_TAG

__all__ = ["DEFAULT_HEALTH_CHECK", "HAProxyBalancer", "parse_address"]

log = logging.getLogger(__name__)

#: Seconds between looks at checking and draining backends.
TEND_INTERVAL = 0.1
#: Probe every 500 ms; 2 passes make a backend up, 2 failures down; a probe may take 2 s.
DEFAULT_HEALTH_CHECK = spi_lb.HealthCheck(
    backend_port=0, healthy=2, unhealthy=2, interval=0.5, timeout=2.0
)
#: ``check_status`` values of a passed HAProxy check (TCP, TLS, HTTP).
_PASSED = {"L4OK", "L6OK", "L7OK"}
#: Characters HAProxy accepts in a server name.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def parse_address(text: str, what: str) -> tuple[str, int | None]:
    """``HOST:PORT``, ``HOST`` or ``[V6]:PORT`` -> (host, port or None)."""
    host, port = text, None
    if text.count(":") == 1 or (text.startswith("[") and "]:" in text):
        host, _, digits = text.rpartition(":")
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise SpecError(f"{what}: port {digits!r} of {text!r} is not a TCP port (1-65535)")
        port = int(digits)
    if not _HOST.fullmatch(host):
        raise SpecError(f"{what}: {text!r} is not HOST[:PORT] (e.g. 127.0.0.1:8080)")
    return host, port


@dataclass(slots=True)
class _Backend:
    """One registered instance."""

    id: str
    #: Its server name in every route's backend.
    server: str
    host: str
    #: From its address; None: each route's ``Port``.
    port: int | None
    state: str = spi_lb.BACKEND_CHECKING
    draining_since: float | None = None
    #: Routes (balancer ports) whose HAProxy backend has this server.
    added: set[int] = field(default_factory=set)

    @property
    def address(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


class HAProxyBalancer:
    """An L4 balancer on its own HAProxy process (module docstring). ``instances``, when given,
    is how ``RegisterBackends`` without ``Addresses`` (a Go client) finds an instance's address:
    the ``infrakit.address`` tag that instance plugin describes it with."""

    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        binary: str = "haproxy",
        bind: str = "127.0.0.1",
        routes: tuple[spi_lb.Route, ...] = (),
        drain_timeout: float = 300.0,
        instances: Callable[[], spi_instance.Plugin] | None = None,
    ) -> None:
        self.balancer_name = name
        self.directory = directory
        self.bind = bind
        self.drain_timeout = drain_timeout
        self.haproxy = HAProxy(directory, binary, f"load balancer {name}")
        self._initial_routes = routes
        self._instances = instances
        self._routes: dict[int, spi_lb.Route] = {}
        self._health = DEFAULT_HEALTH_CHECK
        self._backends: dict[str, _Backend] = {}
        self._lock = asyncio.Lock()
        self._tender: asyncio.Task[None] | None = None
        self._tend_error = ""

    @property
    def _label(self) -> str:
        return f"load balancer {self.balancer_name}"

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start HAProxy on the saved routes (plus the ``routes`` option) and backends, and the
        tending task. Saved backends start up (static servers: traffic at once, as before the
        restart); one that died meanwhile fails its check and the ingress drains it out."""
        self._load_state(backends=True)
        for route in self._initial_routes:
            self._routes[route.load_balancer_port] = route
        self._save_state()
        await self.haproxy.start(self._config(), [(self.bind, p) for p in self._routes])
        for backend in self._backends.values():
            backend.added = set(self._routes)
        self._tender = asyncio.create_task(self._tend_forever(), name=f"tend {self._label}")

    async def stop(self) -> None:
        """Stop tending and stop HAProxy (by PID, reaped)."""
        if self._tender is not None:
            self._tender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tender
            self._tender = None
        await self.haproxy.stop()

    def _state_path(self) -> Path:
        return self.directory / "state.json"

    def _load_state(self, *, backends: bool = False) -> None:
        """Routes and health check from ``state.json`` (and, at start, the backends)."""
        try:
            doc = json.loads(self._state_path().read_text())
            routes = [spi_lb.route_from_wire(r) for r in doc.get("Routes") or []]
            health = spi_lb.health_check_from_wire(doc.get("HealthCheck"))
            saved = {
                str(b["ID"]): parse_address(str(b["Address"]), f"backend {b['ID']}")
                for b in (doc.get("Backends") or [] if backends else [])
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, InfrakitError, AttributeError, KeyError, TypeError) as exc:
            raise SpecError(
                f"{self._label}: cannot read {self._state_path()} ({exc}); fix or remove it"
            ) from None
        self._routes = {r.load_balancer_port: r for r in routes}
        if health.interval > 0:
            self._health = health
        for iid, (host, port) in saved.items():
            self._backends[iid] = _Backend(
                iid, self._server_name(iid), host, port, state=spi_lb.BACKEND_UP
            )

    def _save_state(self) -> None:
        from infrakit._utils.private import private_dir, write_private

        private_dir(self.directory)
        doc = {
            "Routes": [spi_lb.route_to_wire(r) for r in self._routes.values()],
            "HealthCheck": spi_lb.health_check_to_wire(self._health),
            "Backends": [
                {"ID": b.id, "Address": b.address}
                for b in self._backends.values()
                if b.state in (spi_lb.BACKEND_UP, spi_lb.BACKEND_DOWN)
            ],
        }
        write_private(self._state_path(), json.dumps(doc, indent=1).encode())

    def _check_options(self) -> str:
        h = self._health
        text = (
            f"check inter {max(1, round(h.interval * 1000))}ms rise {h.healthy} fall {h.unhealthy}"
        )
        return text + (f" port {h.backend_port}" if h.backend_port else "")

    def _config(self) -> str:
        """The configuration: every route, with the backends that are up as its servers (the
        others are added through the runtime API once it runs)."""
        frontends = []
        for port, route in sorted(self._routes.items()):
            servers = tuple(
                ServerLine(b.server, b.host, b.port or route.port, self._check_options(), up=True)
                for b in self._backends.values()
                if b.state in (spi_lb.BACKEND_UP, spi_lb.BACKEND_DOWN)
            )
            mode = "http" if route.load_balancer_protocol in ("HTTP", "HTTPS") else "tcp"
            frontends.append(
                Frontend(f"be_{port}", self.bind, port, mode, route.health_monitor_path, servers)
            )
        return render_config(self.haproxy.socket_path, frontends, self._health.timeout or 2.0)

    # --- the L4 SPI -----------------------------------------------------------------------------

    def name(self) -> str:
        return self.balancer_name

    def routes(self) -> list[spi_lb.Route]:
        return [self._routes[p] for p in sorted(self._routes)]

    async def publish(self, route: spi_lb.Route) -> str:
        if route.protocol == "UDP" or route.load_balancer_protocol == "UDP":
            raise SpecError(f"{self._label}: HAProxy balances TCP, not UDP; use TCP or HTTP")
        if route.load_balancer_protocol in ("HTTPS", "SSL"):
            raise SpecError(
                f"{self._label}: TLS termination (HTTPS, SSL) is not supported; publish TCP "
                f"and terminate TLS in the backends"
            )
        async with self._lock:
            self.haproxy.require_running()
            if self._routes.get(route.load_balancer_port) == route:
                return f"route {route.load_balancer_port} -> {route.port} already published"
            new = route.load_balancer_port not in self._routes
            self._routes[route.load_balancer_port] = route
            try:
                await self._reload([route.load_balancer_port] if new else [])
            except BaseException:
                self._load_state()
                raise
            self._save_state()
        return f"published {self.bind}:{route.load_balancer_port} -> backends' port {route.port}"

    async def unpublish(self, ext_port: int) -> str:
        async with self._lock:
            self.haproxy.require_running()
            if ext_port not in self._routes:
                known = ", ".join(str(p) for p in sorted(self._routes)) or "none"
                raise NotFoundError(
                    f"{self._label}: no route listens on port {ext_port} (routes: {known}); "
                    f"nothing was changed"
                )
            del self._routes[ext_port]
            try:
                await self._reload([])
            except BaseException:
                self._load_state()
                raise
            self._save_state()
        return f"unpublished port {ext_port}"

    async def _reload(self, new_ports: list[int]) -> None:
        """New routes need a new HAProxy: reload it, then add the backends that are not up yet
        through the runtime API; draining ones finish on the old process and are forgotten."""
        for b in [b for b in self._backends.values() if b.state == spi_lb.BACKEND_DRAINING]:
            del self._backends[b.id]
        await self.haproxy.reload(self._config(), [(self.bind, p) for p in new_ports])
        for b in self._backends.values():
            if b.state in (spi_lb.BACKEND_UP, spi_lb.BACKEND_DOWN):
                b.added = set(self._routes)
            else:
                b.added = set()
                await self._add(b)

    async def configure_health_check(self, check: spi_lb.HealthCheck) -> str:
        if check.healthy < 1 or check.unhealthy < 1 or check.interval <= 0:
            raise SpecError(
                f"{self._label}: HealthCheck needs Healthy >= 1, Unhealthy >= 1 and an Interval "
                f"> 0, got {check}"
            )
        async with self._lock:
            self._health = replace(check, timeout=check.timeout or 2.0)
            self._save_state()
        return (
            f"health check: every {check.interval:g}s, {check.healthy} pass(es) up, "
            f"{check.unhealthy} failure(s) down (for backends registered from now on)"
        )

    async def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        wanted = await self._addresses(ids, addresses)  # every check first: nothing half-done
        async with self._lock:
            self.haproxy.require_running()
            done = []
            for iid, (host, port) in wanted.items():
                known = self._backends.get(iid)
                if known is not None and (known.host, known.port) == (host, port):
                    if known.state == spi_lb.BACKEND_DRAINING:
                        await self._make_ready(known)
                        done.append(iid)
                    continue
                if known is not None:
                    await self._remove(known)
                backend = _Backend(iid, self._server_name(iid), host, port)
                self._backends[iid] = backend
                await self._add(backend)
                done.append(iid)
            self._save_state()
        if not done:
            return f"{len(wanted)} backend(s) already registered"
        return f"registered {len(done)} backend(s): {', '.join(done)}"

    async def _addresses(
        self, ids: list[str], addresses: dict[str, str]
    ) -> dict[str, tuple[str, int | None]]:
        """Where each instance is: ``Addresses``, else its ``infrakit.address`` tag as the
        instance plugin (``-o loadbalancer.instances``) describes it."""
        text = {iid: addresses[iid] for iid in ids if iid in addresses}
        missing = [iid for iid in ids if iid not in text]
        if missing and self._instances is not None:
            described = await self._instances().describe_instances({}, False)
            tags = {d.id: d.tags.get(ADDRESS_TAG, "") for d in described}
            text.update({iid: tags[iid] for iid in missing if tags.get(iid)})
            missing = [iid for iid in ids if iid not in text]
        if missing:
            raise SpecError(
                f"{self._label}: no address for backend {missing[0]}: pass Addresses "
                f'{{"{missing[0]}": "HOST:PORT"}} with RegisterBackends, or start the plugin with '
                f"-o loadbalancer.instances=PLUGIN to read the instances' {ADDRESS_TAG} tag; "
                f"nothing was registered"
            )
        return {iid: parse_address(text[iid], f"address of {iid}") for iid in ids}

    async def deregister_backends(self, ids: list[str]) -> str:
        async with self._lock:
            self.haproxy.require_running()
            unknown = [iid for iid in ids if iid not in self._backends]
            if unknown:
                known = ", ".join(sorted(self._backends)) or "none"
                raise NotFoundError(
                    f"{self._label}: backend {unknown[0]} is not registered (backends: "
                    f"{known}); nothing was deregistered"
                )
            for iid in ids:
                backend = self._backends[iid]
                if backend.state == spi_lb.BACKEND_DRAINING:
                    continue
                if backend.state == spi_lb.BACKEND_CHECKING:
                    await self._remove(backend)  # it never took traffic
                    continue
                for port in sorted(backend.added):
                    await self._expect(f"set server be_{port}/{backend.server} state drain", "")
                backend.state = spi_lb.BACKEND_DRAINING
                backend.draining_since = time.monotonic()
            self._save_state()
        return f"draining {len(ids)} backend(s): {', '.join(ids)}"

    def backends(self) -> list[str]:
        return sorted(self._backends)

    async def backend_states(self) -> list[spi_lb.Backend]:
        """Every backend with its state and open connections (one ``show stat``)."""
        rows = await self.haproxy.stats()
        by_server = _rows_by_server(rows)
        out = []
        for iid in sorted(self._backends):
            b = self._backends[iid]
            mine = [by_server.get((f"be_{p}", b.server), {}) for p in sorted(b.added)]
            connections = sum(_int(r.get("scur")) + _int(r.get("qcur")) for r in mine)
            state = b.state
            if state == spi_lb.BACKEND_UP and any(
                r.get("status", "").startswith("DOWN") for r in mine
            ):
                state = spi_lb.BACKEND_DOWN
            out.append(spi_lb.Backend(iid, b.address, state, connections))
        return out

    # --- backends in HAProxy ----------------------------------------------------------------------

    def _server_name(self, iid: str) -> str:
        name = _UNSAFE.sub("_", iid)[:100] or "backend"
        taken = {b.server for b in self._backends.values()}
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}~{n}".replace("~", "_")
        return name

    async def _expect(self, command: str, *accepted: str) -> str:
        """Run ``command``; a reply other than ``accepted`` ones is a PluginError naming it."""
        reply = await self.haproxy.command(command)
        if reply not in accepted:
            raise PluginError(f"{self._label}: haproxy refused {command!r}: {reply}")
        return reply

    async def _add(self, b: _Backend) -> None:
        """The server in maintenance, with its checks running (it takes no traffic yet)."""
        b.state = spi_lb.BACKEND_CHECKING
        for port, route in sorted(self._routes.items()):
            server = f"be_{port}/{b.server}"
            target = f"{b.host}:{b.port or route.port}"
            await self._expect(
                f"add server {server} {target} {self._check_options()}", "New server registered."
            )
            b.added.add(port)
            await self._expect(f"enable health {server}", "")

    async def _make_ready(self, b: _Backend) -> None:
        for port in sorted(b.added):
            await self._expect(f"set server be_{port}/{b.server} state ready", "")
        b.state, b.draining_since = spi_lb.BACKEND_UP, None

    async def _remove(self, b: _Backend) -> None:
        """Out of every route's backend now (maintenance, then ``del server``), and forgotten."""
        for port in sorted(b.added):
            server = f"be_{port}/{b.server}"
            await self._expect(f"set server {server} state maint", "")
            reply = await self.haproxy.command(f"del server {server}")
            if reply.startswith("Server still has connections"):
                await self.haproxy.command(f"shutdown sessions server {server}")
                reply = await self.haproxy.command(f"del server {server}")
            if reply not in ("Server deleted.", "No such server."):
                raise PluginError(f"{self._label}: haproxy refused 'del server {server}': {reply}")
            b.added.discard(port)
        self._backends.pop(b.id, None)

    # --- tending: promote checked backends, delete drained ones -----------------------------------

    async def _tend_forever(self) -> None:
        while True:
            await asyncio.sleep(TEND_INTERVAL)
            if not any(b.state in _TENDED for b in self._backends.values()):
                continue
            try:
                async with self._lock:
                    await self._tend()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message = str(exc) if isinstance(exc, InfrakitError) else repr(exc)
                if message != self._tend_error:
                    log.error("%s: %s; backends are left as they are", self._label, message)
                self._tend_error = message
                continue
            self._tend_error = ""

    async def _tend(self) -> None:
        by_server = _rows_by_server(await self.haproxy.stats())
        now = time.monotonic()
        for b in list(self._backends.values()):
            rows = [by_server.get((f"be_{p}", b.server), {}) for p in sorted(b.added)]
            if b.state == spi_lb.BACKEND_CHECKING and b.added and all(_passed(r) for r in rows):
                await self._make_ready(b)
                log.info("%s: backend %s (%s) is up", self._label, b.id, b.address)
            elif b.state == spi_lb.BACKEND_DRAINING:
                busy = sum(_int(r.get("scur")) + _int(r.get("qcur")) for r in rows)
                waited = now - (b.draining_since or now)
                if busy and waited < self.drain_timeout:
                    continue
                if busy:
                    log.warning(
                        "%s: backend %s still has %d connection(s) after the drain timeout "
                        "(%gs); closing them",
                        self._label,
                        b.id,
                        busy,
                        self.drain_timeout,
                    )
                await self._remove(b)
                log.info("%s: backend %s drained in %.2fs", self._label, b.id, waited)


_TENDED = (spi_lb.BACKEND_CHECKING, spi_lb.BACKEND_DRAINING)


def _rows_by_server(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(r.get("pxname", ""), r.get("svname", "")): r for r in rows}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _passed(row: dict[str, str]) -> bool:
    """The server's check passed ``rise`` times in a row (checks run while in maintenance)."""
    if row.get("check_status") not in _PASSED:
        return False
    return _int(row.get("check_health")) >= max(1, _int(row.get("check_rise")))
