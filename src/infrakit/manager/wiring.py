"""The ``manager`` plugin kind: the HA manager served as ``group`` (what ``infrakit up`` runs).

Options (``-o manager.OPTION=VALUE`` on ``plugin start``; flags of ``infrakit up``):

* ``store`` - where specs and update progress live: a file path (default
  ``<INFRAKIT_HOME>/store.json``), ``memory``, or ``etcd://HOST:PORT[/prefix]``; env
  ``INFRAKIT_MANAGER_STORE`` (``INFRAKIT_GROUP_STORE`` is honoured too).
* ``leader`` - election backend: ``file`` (a lock next to the store; several managers on one host,
  exactly one leads) or ``etcd`` (across hosts; lease TTL ``ttl``); env ``INFRAKIT_MANAGER_LEADER``.
  Default: ``etcd`` when the store is etcd (``file`` with an etcd store is refused), else ``file``.
* ``id`` - this member's name (default ``<hostname>-<pid>``); env ``INFRAKIT_MANAGER_ID``.
* ``listen`` - ``HOST:PORT`` where followers reach this manager when it leads; env
  ``INFRAKIT_MANAGER_LISTEN``. Requires ``token`` unless HOST is loopback and ``insecure`` is set.
* ``token-file`` - a file (mode 0600, yours) holding the shared token for manager-to-manager
  TCP; env ``INFRAKIT_TOKEN_FILE``. Recommended over ``token``: a value on the command line shows
  in ``ps``.
* ``token`` - the shared token itself; env ``INFRAKIT_TOKEN``. Followers never send it: the
  leader proves it holds the same token for the address in the leader record, then each forwarded
  call is signed (:mod:`infrakit.rpc.auth`).
* ``insecure`` - allow ``listen`` on loopback without a token (logs a WARNING: whoever can reach
  the port can commit, and so run code as this user).
* ``tls-cert`` / ``tls-key`` / ``tls-ca`` - serve and call the TCP endpoint over TLS.
* ``etcd`` - etcd endpoint for ``leader=etcd`` when the store is not etcd (default 127.0.0.1:2379).
* ``ttl`` - etcd lease TTL (default ``2s``).
* ``poll-interval`` - the group controller's resync period (default ``10s``).

Every option is checked before anything listens: an explicit store file whose directory does not
exist, an unreadable store, ``listen`` without a token, bad TLS files, and an etcd (election or
store) that does not answer within ``START_TIMEOUT`` each stop the start with one line.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infrakit import errors
from infrakit._utils.aio import Broker
from infrakit._utils.duration import parse_duration
from infrakit.controller.group.controller import GroupController
from infrakit.leader import LeaderInfo, open_elector
from infrakit.manager.manager import Manager, RemoteGroup
from infrakit.rpc.auth import resolve_token
from infrakit.rpc.client import Client
from infrakit.rpc.group import GroupClient
from infrakit.rpc.tls import tls_contexts
from infrakit.spi.event import Event
from infrakit.spi.plugin import Context, Kind, Option, Served
from infrakit.store import Store, open_store

__all__ = ["KIND", "build"]

#: Seconds a starting manager waits for etcd (``leader=etcd``) to answer before it gives up.
START_TIMEOUT = 5.0

OPTIONS = (
    Option(
        "store",
        "spec store: file path, 'memory' or etcd://host:port[/prefix]",
        None,
        "INFRAKIT_MANAGER_STORE",
    ),
    Option(
        "leader",
        "election backend: file or etcd (default: etcd with an etcd store, else file)",
        None,
        "INFRAKIT_MANAGER_LEADER",
    ),
    Option("id", "this member's name (default <hostname>-<pid>)", None, "INFRAKIT_MANAGER_ID"),
    Option("listen", "HOST:PORT followers forward to", None, "INFRAKIT_MANAGER_LISTEN"),
    Option("token", "shared token for manager TCP (prefer token-file: ps shows this)", None),
    Option("token-file", "file holding the shared token (mode 0600)", None),
    Option("insecure", "allow --listen on loopback without a token", False),
    Option("tls-cert", "TLS certificate (PEM) for the TCP endpoint", None),
    Option("tls-key", "TLS private key (PEM)", None),
    Option("tls-ca", "CA bundle (PEM) to verify other managers", None),
    Option("etcd", "etcd endpoint for leader=etcd", "127.0.0.1:2379", "INFRAKIT_ETCD_ENDPOINT"),
    Option("ttl", "etcd lease TTL (Go duration)", "2s"),
    Option(
        "poll-interval", "group resync period (Go duration)", "10s", "INFRAKIT_GROUP_POLL_INTERVAL"
    ),
)


def _duration(ctx: Context, name: str) -> float:
    raw = ctx.option(KIND, name)
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise errors.SpecError(f"manager --{name}: {exc}") from None
    if value <= 0:
        raise errors.SpecError(f"manager --{name}: must be more than 0, e.g. 2s")
    return value


def _leader_kind(given: Any, store_url: str | None) -> str:
    """The election backend: as given, else etcd when the store is etcd (so the store can fence
    writes with etcd's leader key), else the file lock. An etcd store with the file lock is
    refused: the lock covers one host, and the store could not reject a deposed leader's writes."""
    etcd_store = bool(store_url) and str(store_url).startswith("etcd://")
    if given in (None, ""):
        return "etcd" if etcd_store else "file"
    if given == "file" and etcd_store:
        raise errors.SpecError(
            f"manager --leader file with --store {store_url}: the file lock elects on one host "
            "only and the etcd store could not fence a deposed leader's writes; use --leader etcd "
            "(the default with an etcd store)"
        )
    return str(given)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on") if value is not None else False


def _listen(value: Any) -> tuple[str, int] | None:
    if not value:
        return None
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.SpecError(
            f"manager --listen {value!r}: expected HOST:PORT with a fixed port, e.g. 127.0.0.1:24864"
        )
    return host.strip("[]"), int(port)


def _check_token(listen: tuple[str, int] | None, token: str | None, insecure: bool) -> None:
    """``listen`` without a token is refused before anything listens (the RPC server applies the
    same rule, but only when the manager - the last plugin ``up`` serves - starts listening)."""
    if listen is None or token or (insecure and _is_loopback(listen[0])):
        return
    raise errors.SpecError(
        f"manager --listen {listen[0]}:{listen[1]}: listening on TCP needs a shared token "
        "(--token-file, --token or INFRAKIT_TOKEN); without one only loopback with --insecure "
        "is allowed"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(ctx: Context) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The (server, client) TLS contexts from ``tls-cert`` / ``tls-key`` / ``tls-ca``.

    ``tls-cert`` alone serves TLS and verifies other managers against the system CAs (or
    ``$INFRAKIT_TLS_CA``); ``tls-ca`` alone calls TLS leaders while this member serves plain TCP.
    Every unreadable file or mismatched key is a :class:`~infrakit.errors.SpecError` naming the
    option and the file, raised before anything listens.
    """
    cert, key, ca = (ctx.option(KIND, n) or None for n in ("tls-cert", "tls-key", "tls-ca"))
    return tls_contexts(cert, key, ca, "manager", system_trust=True)


def _etcd_endpoint(store_url: str | None, fallback: str) -> tuple[str, str]:
    if store_url and store_url.startswith("etcd://"):
        parsed = urlparse(store_url)
        return parsed.netloc, parsed.path or "/infrakit"
    return fallback, "/infrakit"


async def build(ctx: Context) -> Served:
    store_url = ctx.option(KIND, "store") or os.environ.get("INFRAKIT_GROUP_STORE") or None
    leader_kind = _leader_kind(ctx.option(KIND, "leader"), store_url)
    member = ctx.option(KIND, "id") or f"{socket.gethostname()}-{os.getpid()}"
    listen = _listen(ctx.option(KIND, "listen"))
    token = resolve_token(
        ctx.option(KIND, "token") or None, ctx.option(KIND, "token-file") or None, "manager --token"
    )
    insecure = _truthy(ctx.option(KIND, "insecure"))
    _check_token(listen, token, insecure)
    server_tls, client_tls = _tls(ctx)
    poll_interval = _duration(ctx, "poll-interval")
    location = ""
    if listen is not None:
        scheme = "https" if server_tls else "tcp"
        location = f"{scheme}://{listen[0]}:{listen[1]}"

    endpoint, prefix = _etcd_endpoint(store_url, str(ctx.option(KIND, "etcd")))
    elector = open_elector(
        leader_kind,
        home=ctx.home,
        id=member,
        location=location,
        endpoint=endpoint,
        prefix=prefix,
        ttl=_duration(ctx, "ttl"),
        lock_path=_lock_path(store_url, ctx.home),
    )
    fence = elector if leader_kind == "etcd" else None
    store = open_store(store_url, ctx.home, fence=fence)
    await _preflight(elector, store)

    def make_controller(fenced: Store, events: Broker[Event]) -> GroupController:
        return GroupController(
            ctx.instance_lookup,
            ctx.flavor_lookup,
            store=fenced,
            poll_interval=poll_interval,
            name=ctx.name,
            events=events,
        )

    clients: dict[str, GroupClient] = {}

    def connect_leader(info: LeaderInfo) -> RemoteGroup:
        client = clients.get(info.location)
        if client is None:
            raw = Client(
                f"manager {info.id}",
                info.location,
                token=token,
                ssl=client_tls if info.location.startswith("https://") else None,
                tls_hint=f"give manager {member} --tls-ca with the CA that signed the "
                f"certificate of {info.id}",
            )
            client = clients[info.location] = GroupClient(raw)
        return client

    manager = Manager(elector, store, make_controller, connect_leader)

    async def stop() -> None:
        await manager.stop()
        for client in clients.values():
            await client.close()

    return Served(
        group={".": manager},
        events=manager,
        start=manager.start,
        stop=stop,
        tcp=listen,
        tcp_token=token,
        tcp_insecure=insecure,
        tcp_ssl=server_tls,
        vendor={"Name": "infrakit-manager", "Version": "0.1.0", "Sub": "", "URL": ""},
    )


async def _preflight(elector: Any, store: Any) -> None:
    """Before anything listens: etcd (election or store) must answer, else the start fails with
    one line. Only at start - once running, an etcd outage means "no leader" until it is back."""
    try:
        check = getattr(elector, "check", None)
        if check is not None:
            await check(START_TIMEOUT)
        check = getattr(store, "check", None)
        if check is not None:
            await check()
    except BaseException:
        with contextlib.suppress(Exception):
            await elector.stop()  # closes its etcd client (the fenced store shares it)
        close = getattr(store, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        raise


def _lock_path(store_url: str | None, home: Path) -> Path:
    """The file lock lives next to a file store (so managers sharing a store share the lock)."""
    if store_url and store_url not in ("memory",) and "://" not in store_url:
        path = Path(store_url.removeprefix("file:")).expanduser()
        return path.with_name(path.name + ".leader")
    return home / "leader.lock"


KIND = Kind(
    name="manager",
    default_name="group",
    summary="HA manager: the group controller with leader election and forwarding",
    build=build,
    options=OPTIONS,
)
