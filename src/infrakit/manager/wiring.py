"""What the ``manager`` kind builds from its options: the elector, the store, the group controller
it runs while leading and the clients that forward to the leader (:mod:`infrakit.manager.kind`
declares the options; this module is imported by its ``build`` only).

Every option is checked before anything listens: an explicit store file whose directory does not
exist, an unreadable store, ``listen`` without a token, bad TLS files, and an etcd (election or
store) that does not answer within ``START_TIMEOUT`` each stop the start with one line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infrakit import errors
from infrakit._utils.addresses import is_loopback
from infrakit.controller.group.controller import GroupController
from infrakit.controller.group.metadata import GroupMetadata
from infrakit.controller.group.metered import MeteredControllers
from infrakit.controller.group.readiness import readiness
from infrakit.leader import Elector, LeaderInfo, open_elector
from infrakit.manager.kind import KIND
from infrakit.manager.manager import Manager, RemoteGroup
from infrakit.manager.stack import ManagerStack
from infrakit.rpc.auth import resolve_token
from infrakit.rpc.client import Client
from infrakit.rpc.group import GroupClient
from infrakit.rpc.tls import tls_contexts
from infrakit.spi.plugin import Context, Served, vendor_info
from infrakit.store import open_store

__all__ = ["START_TIMEOUT", "build"]

#: Seconds a starting manager waits for etcd (``leader=etcd``) to answer before it gives up.
START_TIMEOUT = 5.0


def _leader_kind(given: str | None, store_url: str | None) -> str:
    """The election backend: as given, else etcd when the store is etcd (so the store can fence
    writes with etcd's leader key), else the file lock. An etcd store with the file lock is
    refused: the lock covers one host, and the store could not reject a deposed leader's writes."""
    etcd_store = bool(store_url) and str(store_url).startswith("etcd://")
    if not given:
        return "etcd" if etcd_store else "file"
    if given == "file" and etcd_store:
        raise errors.SpecError(
            f"manager --leader file with --store {store_url}: the file lock elects on one host "
            "only and the etcd store could not fence a deposed leader's writes; use --leader etcd "
            "(the default with an etcd store)"
        )
    return given


def _check_token(listen: tuple[str, int] | None, token: str | None, insecure: bool) -> None:
    """``listen`` without a token is refused before anything listens (the RPC server applies the
    same rule, but only when the manager - the last plugin ``up`` serves - starts listening)."""
    if listen is None or token or (insecure and is_loopback(listen[0])):
        return
    raise errors.SpecError(
        f"manager --listen {listen[0]}:{listen[1]}: listening on TCP needs a shared token "
        "(--token-file, --token or INFRAKIT_TOKEN); without one only loopback with --insecure "
        "is allowed"
    )


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
    listen = ctx.option(KIND, "listen")
    token = resolve_token(
        ctx.option(KIND, "token") or None, ctx.option(KIND, "token-file") or None, "manager --token"
    )
    insecure = bool(ctx.option(KIND, "insecure"))
    _check_token(listen, token, insecure)
    server_tls, client_tls = _tls(ctx)
    poll_interval = ctx.option(KIND, "poll-interval")
    location = _location(listen, server_tls is not None)
    elector = _open_elector(ctx, leader_kind, member, location, store_url)
    store = open_store(
        store_url,
        ctx.home,
        fence=elector if leader_kind == "etcd" else None,
        next_step=ctx.another(KIND, "store"),
    )
    await _preflight(elector, store)

    controllers = MeteredControllers(ctx, poll_interval=poll_interval)
    leaders = _LeaderClients(member, token, client_tls)
    manager = Manager(elector, store, controllers.make, leaders.connect)
    _watch_leading(controllers, manager, elector, member)

    async def stop() -> None:
        await manager.stop()
        await leaders.close()

    async def leader_known() -> str:
        info = await elector.leader()
        return "" if info is not None else f"no leader elected ({elector.describe()})"

    return Served(
        group={".": manager},
        metadata={".": GroupMetadata(manager)},
        stack=ManagerStack(manager, ctx.plugin_dir / ctx.name if ctx.plugin_dir else None),
        events=manager,
        start=manager.start,
        stop=stop,
        tcp=listen,
        tcp_token=token,
        tcp_insecure=insecure,
        tcp_ssl=server_tls,
        vendor=vendor_info("infrakit-manager"),
        metrics=controllers.recorder,
        http=ctx.option(KIND, "http"),
        ready=lambda: readiness(manager.snapshots, store, leader_known),
    )


def _location(listen: tuple[str, int] | None, tls: bool) -> str:
    """Where followers forward to this member: its ``listen`` address ("" without one)."""
    if listen is None:
        return ""
    return f"{'https' if tls else 'tcp'}://{listen[0]}:{listen[1]}"


def _watch_leading(
    controllers: MeteredControllers, manager: Manager, elector: Elector, member: str
) -> None:
    """Scrapes read the controller the manager runs while this member leads (no groups on a
    follower: they live on the leader), and the leader gauge says 1 for ``member`` only then."""

    def leading() -> GroupController | None:
        made = controllers.made
        return (
            made if made is not None and manager.controller is made and elector.is_leader else None
        )

    controllers.watch(leading)
    controllers.recorder.leader = lambda: (member, leading() is not None)


def _open_elector(
    ctx: Context, leader_kind: str, member: str, location: str, store_url: str | None
) -> Elector:
    """The election backend, advertising ``location`` (where followers forward) for ``member``."""
    endpoint, prefix = _etcd_endpoint(store_url, str(ctx.option(KIND, "etcd")))
    return open_elector(
        leader_kind,
        home=ctx.home,
        id=member,
        location=location,
        endpoint=endpoint,
        prefix=prefix,
        ttl=ctx.option(KIND, "ttl"),
        lock_path=_lock_path(store_url, ctx.home),
    )


class _LeaderClients:
    """How a follower reaches the leader: one RPC client per leader location, kept."""

    def __init__(self, member: str, token: str | None, tls: ssl.SSLContext | None) -> None:
        self.member = member
        self.token = token
        self.tls = tls
        self.clients: dict[str, GroupClient] = {}

    def connect(self, info: LeaderInfo) -> RemoteGroup:
        client = self.clients.get(info.location)
        if client is None:
            raw = Client(
                f"manager {info.id}",
                info.location,
                token=self.token,
                ssl=self.tls if info.location.startswith("https://") else None,
                tls_hint=f"give manager {self.member} --tls-ca with the CA that signed the "
                f"certificate of {info.id}",
            )
            client = self.clients[info.location] = GroupClient(raw)
        return client

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


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
