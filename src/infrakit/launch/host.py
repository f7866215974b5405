"""Run plugins in this process: build each kind, serve it on its socket, wire lookups between them.

A :class:`PluginHost` is what ``infrakit up``, ``infrakit plugin start`` and the console scripts
(``infrakit-instance-file`` ...) run. For each plugin it:

1. builds the kind with a :class:`~infrakit.spi.plugin.Context` whose lookups resolve names to
   plugin objects;
2. serves the result over RPC on ``<plugin dir>/<name>`` (mode 0600), optionally on TCP too;
3. runs its start hook, and on shutdown its stop hook, then removes the socket;
4. when it asks for one (``Served.http``: ``up --http``, ``-o group.http=``), serves the HTTP
   listener for humans and probes (:mod:`infrakit.launch.http`) with its metrics recorder, its
   readiness checks and its own event stream.

Lookups prefer plugins running in this same process (called directly, through the same sync/async
adapter as the RPC service, so behaviour is identical and ``infrakit up`` converges 1000 instances
without 2000 local RPC round trips) and otherwise connect to the named socket in the plugin
directory with an RPC client. Clients are cached per name.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from infrakit import discovery, errors
from infrakit._utils import systemd
from infrakit.launch import registry
from infrakit.launch.http import StatusServer, StatusSource, check_guard
from infrakit.rpc import flavor as rpc_flavor
from infrakit.rpc import group as rpc_group
from infrakit.rpc import instance as rpc_instance
from infrakit.rpc import loadbalancer as rpc_lb
from infrakit.rpc import metadata as rpc_metadata
from infrakit.rpc import stack as rpc_stack
from infrakit.rpc.auth import resolve_token
from infrakit.rpc.client import Client, default_call_timeout
from infrakit.rpc.server import PluginServer, Service
from infrakit.spi import flavor, group, instance, loadbalancer, stack
from infrakit.spi.adapt import AsyncFlavor, AsyncInstance, AsyncLoadBalancer
from infrakit.spi.option import env_sources
from infrakit.spi.plugin import Context, Kind, Served

__all__ = ["PluginHost", "services_for"]

log = logging.getLogger(__name__)


@dataclass
class Adapted:
    """The uniform async view of what a plugin serves, and the RPC services exposing it."""

    instance: dict[str, AsyncInstance]
    flavor: dict[str, AsyncFlavor]
    services: list[Service]
    loadbalancer: dict[str, AsyncLoadBalancer] = field(default_factory=dict)


def services_for(name: str, served: Served) -> Adapted:
    """Adapt ``served`` once and build the RPC services over those same adapters."""
    inst = {k: _as_instance(v, name, k) for k, v in served.instance.items()}
    flav = {k: _as_flavor(v, name, k) for k, v in served.flavor.items()}
    balancers = {k: _as_balancer(v, name, k) for k, v in served.loadbalancer.items()}
    services: list[Service] = []
    if inst:
        services.append(rpc_instance.service(inst))
    if flav:
        services.append(rpc_flavor.service(flav))
    if served.group:
        services.append(rpc_group.service(dict(served.group)))
    if served.metadata:
        services.append(rpc_metadata.service(dict(served.metadata)))
    if served.stack is not None:
        if not isinstance(served.stack, stack.Plugin):
            raise errors.SpecError(
                f"plugin {name}: its stack object {type(served.stack).__name__} does not "
                "implement the Stack interface (is_leader, leader_location, enforce ...)"
            )
        services.append(rpc_stack.service(served.stack))
    if balancers:
        services.append(rpc_lb.service(balancers))
    if not services and served.events is None:
        raise errors.SpecError(
            f"plugin {name} serves nothing: no instance, flavor, group or load balancer object"
        )
    return Adapted(inst, flav, services, balancers)


def _cannot_start(name: str, kind: Kind | None, exc: OSError) -> errors.SpecError:
    """A plugin whose build or start hook hit the file system (a directory option that cannot be
    created, a file it cannot read): one line naming the plugin, the path and what to check."""
    reason = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    if kind is None:
        return errors.SpecError(f"plugin {name} cannot start: {reason}; check its setup")
    return errors.SpecError(
        f"plugin {name} (kind {kind.name}) cannot start: {reason}; check its -o {kind.name}.* "
        "options and their environment variables (infrakit plugin kinds)"
    )


def _label(name: str, type_: str) -> str:
    return f"{name}/{type_}" if type_ else name


def _as_instance(obj: object, name: str, type_: str) -> AsyncInstance:
    return obj if isinstance(obj, AsyncInstance) else AsyncInstance(obj, _label(name, type_))


def _as_flavor(obj: object, name: str, type_: str) -> AsyncFlavor:
    return obj if isinstance(obj, AsyncFlavor) else AsyncFlavor(obj, _label(name, type_))


def _as_balancer(obj: object, name: str, type_: str) -> AsyncLoadBalancer:
    if isinstance(obj, AsyncLoadBalancer):
        return obj
    return AsyncLoadBalancer(obj, _label(name, type_))


@dataclass
class Running:
    """One plugin served by this host."""

    name: str
    kind: Kind | None
    served: Served
    server: PluginServer
    instance: dict[str, AsyncInstance] = field(default_factory=dict)
    flavor: dict[str, AsyncFlavor] = field(default_factory=dict)
    loadbalancer: dict[str, AsyncLoadBalancer] = field(default_factory=dict)
    #: The HTTP listener (status page, health, metrics), when ``Served.http`` asked for one.
    http: StatusServer | None = None


P = TypeVar("P")


def _typed(running: Running, name: str, objects: Mapping[str, P]) -> P | None:
    """The instance or flavor object ``name`` addresses in ``running`` (None if it serves no
    object of that interface); a type it does not have is NotFoundError (InfraKit's words)."""
    sub = discovery.split_name(name)[1]
    if sub in objects:
        return objects[sub]
    if objects:
        raise errors.NotFoundError(f"no-plugin:{sub} (plugin {running.name} has no such type)")
    return None


def _local_instance(running: Running, name: str) -> instance.Plugin | None:
    return _typed(running, name, running.instance)


def _local_flavor(running: Running, name: str) -> flavor.Plugin | None:
    return _typed(running, name, running.flavor)


def _local_balancer(running: Running, name: str) -> loadbalancer.Plugin | None:
    return _typed(running, name, running.loadbalancer)


def _local_group(running: Running, name: str) -> group.Plugin | None:
    if not running.served.group:
        return None
    found: object = rpc_group.resolve_name(running.served.group, name)
    if not isinstance(found, group.Plugin):
        raise errors.PluginError(
            f"plugin {running.name}: its group object {type(found).__name__} does not implement "
            "the Group interface (commit_group, describe_group ...)"
        )
    return found


def _remote_instance(client: Client, name: str) -> instance.Plugin:
    return rpc_instance.InstanceClient(client, discovery.split_name(name)[1])


def _remote_flavor(client: Client, name: str) -> flavor.Plugin:
    return rpc_flavor.FlavorClient(client, discovery.split_name(name)[1])


def _remote_balancer(client: Client, name: str) -> loadbalancer.Plugin:
    return rpc_lb.LoadBalancerClient(client, discovery.split_name(name)[1])


class PluginHost:
    """Serves plugins in this process and resolves plugin names for them."""

    def __init__(
        self,
        plugin_dir: Path | None = None,
        *,
        home: Path | None = None,
        tcp_host: str | None = None,
        tcp_token: str | None = None,
        tcp_insecure: bool = False,
        tcp_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        prefer_local: bool = True,
    ) -> None:
        # Serving is what creates the plugin directory (reading it never does).
        self.plugin_dir = plugin_dir or discovery.plugins_dir(create=True)
        self.home = home or discovery.infrakit_home()
        # A bad INFRAKIT_CLIENT_TIMEOUT stops the host now, not its first lookup much later.
        default_call_timeout()
        self.tcp_host = tcp_host
        #: ``--listen-tcp`` needs a token (or loopback + insecure); see PluginServer.start.
        self.tcp_token = tcp_token if tcp_token is not None else resolve_token(None, None)
        self.tcp_insecure = tcp_insecure
        #: ``--tls-cert``/``--tls-key``: the ``--listen-tcp`` listeners serve TLS.
        self.tcp_ssl = tcp_ssl
        #: ``--tls-ca``: verifies plugins found at ``https://`` addresses (else $INFRAKIT_TLS_CA).
        self.client_ssl = client_ssl
        self.prefer_local = prefer_local
        self.running: dict[str, Running] = {}
        self._clients: dict[str, Client] = {}
        #: Remote plugin objects by the name they were looked up with, one cache per interface.
        self._instances: dict[str, instance.Plugin] = {}
        self._flavors: dict[str, flavor.Plugin] = {}
        self._groups: dict[str, group.Plugin] = {}
        self._balancers: dict[str, loadbalancer.Plugin] = {}
        self._done = asyncio.Event()
        self._background: set[asyncio.Future[None]] = set()

    # --- lookups (what plugins receive) ---------------------------------------------------------

    def _client(self, lookup: str) -> Client:
        client = self._clients.get(lookup)
        if client is None:
            entry = discovery.find(lookup, self.plugin_dir, start_hint=registry.start_hint(lookup))
            secure = self.client_ssl if entry.address.startswith("https://") else None
            client = Client(lookup, entry.address, token=self.tcp_token, ssl=secure)
            self._clients[lookup] = client
        return client

    def _lookup(
        self,
        name: str,
        cache: dict[str, P],
        local: Callable[[Running, str], P | None],
        remote: Callable[[Client, str], P],
    ) -> P:
        """The one lookup: ``name``'s plugin running in this process (``local`` picks the object
        from it, None when it serves no such interface), else an RPC client, cached per name."""
        lookup = discovery.split_name(name)[0]
        running = self.running.get(lookup) if self.prefer_local else None
        if running is not None:
            found = local(running, name)
            if found is not None:
                return found
        cached = cache.get(name)
        if cached is None:
            cached = cache[name] = remote(self._client(lookup), name)
        return cached

    def instance_lookup(self, name: str) -> instance.Plugin:
        return self._lookup(name, self._instances, _local_instance, _remote_instance)

    def flavor_lookup(self, name: str) -> flavor.Plugin:
        return self._lookup(name, self._flavors, _local_flavor, _remote_flavor)

    def group_lookup(self, name: str) -> group.Plugin:
        return self._lookup(name, self._groups, _local_group, rpc_group.GroupClient)

    def loadbalancer_lookup(self, name: str) -> loadbalancer.Plugin:
        return self._lookup(name, self._balancers, _local_balancer, _remote_balancer)

    def forget_client(self, lookup: str) -> None:
        """Drop a cached client (the plugin restarted elsewhere)."""
        self._clients.pop(lookup, None)
        for cache in (self._instances, self._flavors, self._groups, self._balancers):
            for name in [n for n in cache if discovery.split_name(n)[0] == lookup]:
                del cache[name]

    # --- serving --------------------------------------------------------------------------------

    def context(
        self,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        flags: Mapping[str, str] | None = None,
        from_env: Mapping[str, str] | None = None,
    ) -> Context:
        return Context(
            name=name,
            options=dict(options or {}),
            home=self.home,
            instance_lookup=self.instance_lookup,
            flavor_lookup=self.flavor_lookup,
            group_lookup=self.group_lookup,
            plugin_dir=self.plugin_dir,
            flags=dict(flags or {}),
            from_env=dict(from_env or {}),
            loadbalancer_lookup=self.loadbalancer_lookup,
        )

    async def build_kind(
        self,
        kind: Kind,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        flags: Mapping[str, str] | None = None,
        from_env: Mapping[str, str] | None = None,
    ) -> Served:
        """Build ``kind`` as ``name`` without serving it: where its options are checked.

        Its options are resolved and parsed first (an unknown name or a bad value is one line),
        so ``build`` reads parsed values. Hosts that run several plugins build them all first,
        so a bad option of the last one stops the process before any socket exists.
        """
        if name in self.running:
            raise errors.ConflictError(f"plugin {name} is already running in this process")
        resolved = kind.resolve_options(options or {})
        env = {**env_sources(kind.options, options or {}), **(from_env or {})}
        try:
            built = kind.build(self.context(name, resolved, flags=flags, from_env=env))
            return await built if inspect.isawaitable(built) else built
        except OSError as exc:
            raise _cannot_start(name, kind, exc) from exc

    async def start_kind(
        self, kind: Kind, name: str, options: Mapping[str, object] | None = None
    ) -> Running:
        """Build ``kind`` and serve it as ``name``."""
        served = await self.build_kind(kind, name, options)
        return await self.serve(name, served, kind=kind)

    async def serve(self, name: str, served: Served, *, kind: Kind | None = None) -> Running:
        """Serve already-built objects as plugin ``name``."""
        adapted = services_for(name, served)
        self._refuse_taken_name(name, kind)
        server = PluginServer(
            name,
            adapted.services,
            events=served.events,
            vendor=served.vendor,
            on_stop_request=lambda: self._stop_soon(name),
            metrics=served.metrics,
        )
        running = Running(
            name, kind, served, server, adapted.instance, adapted.flavor, adapted.loadbalancer
        )
        http_token, http_ssl = self.check_http(name, served)
        if served.tcp is not None:
            await server.start(
                self.plugin_dir / name,
                tcp=served.tcp,
                token=served.tcp_token,
                insecure=served.tcp_insecure,
                ssl=served.tcp_ssl,
            )
        else:
            tcp = (self.tcp_host, 0) if self.tcp_host else None
            await server.start(
                self.plugin_dir / name,
                tcp=tcp,
                token=self.tcp_token,
                insecure=self.tcp_insecure,
                ssl=self.tcp_ssl if tcp else None,
            )
        self.running[name] = running
        try:
            if served.start is not None:
                await served.start()
            if served.http is not None:
                running.http = await self._serve_http(running, http_token, http_ssl)
        except BaseException as exc:
            self.running.pop(name, None)
            if running.http is not None:
                await running.http.stop()
            if running.http is None and served.http is not None and served.stop is not None:
                await served.stop()  # started, but its HTTP listener could not bind
            await server.stop()
            if isinstance(exc, OSError):
                raise _cannot_start(name, kind, exc) from exc
            raise
        return running

    def check_http(self, name: str, served: Served) -> tuple[str | None, ssl.SSLContext | None]:
        """The token and TLS of ``served``'s HTTP listener - the plugin's own (the manager's
        ``--token-file``/``--tls-cert``), else this host's; an HTTP listener off loopback with
        neither is refused (one line). Hosts of several plugins check them all before serving."""
        token = served.tcp_token if served.tcp_token else self.tcp_token
        tls = served.tcp_ssl if served.tcp_ssl is not None else self.tcp_ssl
        if served.http is not None:
            check_guard(name, served.http[0], token, tls is not None)
        return token, tls

    async def _serve_http(
        self, running: Running, token: str | None, tls: ssl.SSLContext | None
    ) -> StatusServer:
        served = running.served
        assert served.http is not None
        source = served.group.get(".")
        if not callable(getattr(source, "snapshots", None)):
            raise errors.SpecError(
                f"plugin {running.name}: --http serves a group controller's status page, and "
                f"this plugin serves no group controller; give --http to the group plugin"
            )
        page: StatusSource = source  # type: ignore[assignment]
        http = StatusServer(
            running.name,
            page,
            recorder=served.metrics,
            events=running.server.serve_events if served.events is not None else None,
            ready=served.ready,
        )
        await http.start(*served.http, token=token, ssl=tls)
        return http

    def _refuse_taken_name(self, name: str, kind: Kind | None) -> None:
        """Fail before binding if a live plugin (or a non-socket file) holds ``name``.

        The server checks too, but only the host knows how the plugin was started, so only it
        can name the next step: ``KIND:OTHER-NAME`` for a kind, the ``name`` given to
        ``infrakit.serve`` for a plugin author's own script (no ``--name`` it may not have).
        """
        path = self.plugin_dir / name
        if kind is not None:
            other = (
                f"serve this one under another name (infrakit plugin start {kind.name}:OTHER-NAME)"
            )
        else:
            other = "serve this one under another name"
        try:
            mode = path.lstat().st_mode
        except OSError:
            return
        if not stat.S_ISSOCK(mode):
            raise errors.ConflictError(
                f"plugin {name}: {path} exists and is not a socket; remove it or {other}"
            )
        if discovery.probe(discovery.Entry(name, str(path), path)):
            raise errors.ConflictError(
                f"plugin {name}: a running plugin already listens on {path}; stop it first "
                f"(infrakit plugin stop {name}) or {other}"
            )

    def _stop_soon(self, name: str) -> None:
        task = asyncio.ensure_future(self.stop(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, name: str) -> None:
        running = self.running.pop(name, None)
        if running is None:
            return
        if running.http is not None:
            await running.http.stop()
        if running.served.stop is not None:
            try:
                await running.served.stop()
            except Exception:
                log.exception("plugin %s: stop hook failed", name)
        await running.server.stop()
        if not self.running:
            self._done.set()

    async def stop_all(self) -> None:
        # Stop in reverse start order: the group controller before the plugins it drives.
        for name in reversed(list(self.running)):
            await self.stop(name)
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        for cache in (self._instances, self._flavors, self._groups, self._balancers):
            cache.clear()
        self._done.set()

    async def run_until_stopped(self) -> None:
        """Wait for SIGINT/SIGTERM (or every plugin stopped), then stop everything cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._done.set)
        pinging = asyncio.create_task(systemd.watchdog(), name="systemd watchdog")
        try:
            await self._done.wait()
        finally:
            systemd.notify("STOPPING=1")
            pinging.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await self.stop_all()
