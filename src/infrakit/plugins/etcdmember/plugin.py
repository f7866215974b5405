"""The etcd-member flavor's implementation (see the package docstring for its Properties).

Pure parts - Properties, each member's addresses, the command line, the join plan - are plain
functions tested with tables; :class:`EtcdMemberFlavor` adds the member API calls
(:mod:`infrakit.plugins.etcdmember.gateway`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any, Literal

from infrakit._utils.duration import parse_duration
from infrakit.errors import PluginError, SpecError
from infrakit.plugins.etcdmember import gateway
from infrakit.plugins.etcdmember.gateway import GatewayError, Member, Unreachable
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Description, Spec
from infrakit.spi.types import JSON, Health, ci_get, ci_view, want_str

__all__ = [
    "CLIENT_URL_TAG",
    "JOIN_TAG",
    "EtcdMemberFlavor",
    "EtcdMemberProperties",
    "JoinPlan",
    "MemberAddress",
    "addresses",
    "foreign_member",
    "initial_cluster",
    "member_command",
    "parse_properties",
    "plan_join",
]

log = logging.getLogger(__name__)

#: Tag carrying the member's client URL (Healthy asks it).
CLIENT_URL_TAG = "infrakit.etcd.client-url"
#: Tag saying how the member started: ``new`` (bootstrap, or restart from its data) or
#: ``existing`` (joined a running cluster through the member API).
JOIN_TAG = "infrakit.etcd.join"

#: Seconds for one /health or member-list request (a member without a quorum never answers).
#: etcd's /health itself waits up to 1 s for its quorum read; a loaded member needs more, and a
#: running member taken for silent would make Prepare start a new cluster's member.
PROBE_TIMEOUT = 3.0
#: Seconds for a member remove/add (a raft configuration change; etcd's own limit is 5 s).
CHANGE_TIMEOUT = 7.0
#: Seconds between looks while the cluster answers but has no leader (an election).
RETRY_EVERY = 0.25

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_EXAMPLE = '{"DataDir": "/var/lib/infrakit-etcd", "ClientPortBase": 23790, "PeerPortBase": 23800}'

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["DataDir"],
    "properties": {
        "DataDir": {"type": "string", "description": "absolute; member data in DataDir/<ID>"},
        "Host": {"type": "string", "description": "address members listen on (127.0.0.1)"},
        "ClientPortBase": {"type": "integer", "description": "client port of the first ID"},
        "PeerPortBase": {"type": "integer", "description": "peer port of the first ID"},
        "Token": {"type": "string", "description": "--initial-cluster-token"},
        "Flags": {"type": "array", "items": {"type": "string"}},
        "JoinTimeout": {"type": "string", "description": "Go duration (30s)"},
    },
}
PROPERTIES_EXAMPLE: dict[str, Any] = {
    "DataDir": "/var/lib/infrakit-etcd",
    "ClientPortBase": 23790,
    "PeerPortBase": 23800,
    "Flags": ["--heartbeat-interval=100", "--election-timeout=1000"],
}


@dataclass(frozen=True, slots=True)
class EtcdMemberProperties:
    """Decoded and checked etcd-member Properties."""

    data_dir: str
    host: str = "127.0.0.1"
    client_port_base: int = 23790
    peer_port_base: int = 23800
    token: str = ""
    flags: tuple[str, ...] = ()
    join_timeout: float = 30.0


def _port(view: dict[str, Any], key: str, default: int) -> int:
    value = ci_get(view, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SpecError(
            f"etcd-member Properties.{key}: expected a port number 1..65535, got {value!r}; "
            f"e.g. {_EXAMPLE}"
        )
    return value


def parse_properties(properties: JSON) -> EtcdMemberProperties:
    """Decode etcd-member Properties, raising SpecError with the field and what was expected."""
    view = ci_view(properties, "etcd-member Properties")
    data_dir = want_str(ci_get(view, "DataDir"), "etcd-member Properties.DataDir")
    if not data_dir or not posixpath.isabs(data_dir):
        raise SpecError(
            f"etcd-member Properties.DataDir: expected an absolute directory path, got "
            f"{data_dir!r}; members keep their data in DataDir/<logical ID>, e.g. {_EXAMPLE}"
        )
    host = want_str(ci_get(view, "Host"), "etcd-member Properties.Host") or "127.0.0.1"
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise SpecError(
            f"etcd-member Properties.Host: expected a host name or IPv4 address, got {host!r}"
        )
    flags = ci_get(view, "Flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise SpecError(
            "etcd-member Properties.Flags: expected an array of etcd flags, e.g. "
            '["--heartbeat-interval=100"]'
        )
    raw_timeout = ci_get(view, "JoinTimeout", "30s")
    try:
        join_timeout = parse_duration(raw_timeout)
    except (ValueError, TypeError):
        raise SpecError(
            f"etcd-member Properties.JoinTimeout: expected a Go duration like '30s', got "
            f"{raw_timeout!r}"
        ) from None
    return EtcdMemberProperties(
        data_dir=posixpath.normpath(data_dir),
        host=host,
        client_port_base=_port(view, "ClientPortBase", 23790),
        peer_port_base=_port(view, "PeerPortBase", 23800),
        token=want_str(ci_get(view, "Token"), "etcd-member Properties.Token"),
        flags=tuple(flags),
        join_timeout=join_timeout,
    )


@dataclass(frozen=True, slots=True)
class MemberAddress:
    """Where one logical ID's member lives: its etcd name, URLs and data directory."""

    name: str
    client_url: str
    peer_url: str
    data_dir: str


def check_allocation(props: EtcdMemberProperties, allocation: AllocationMethod) -> list[str]:
    """The group's logical IDs, checked: present, usable as etcd names and directory names, and
    their port ranges inside 1..65535 and apart."""
    ids = allocation.logical_ids or []
    if not ids:
        raise SpecError(
            "etcd-member flavor: the group has no Allocation.LogicalIDs; an etcd cluster is a "
            'group of pets, e.g. "Allocation": {"LogicalIDs": ["etcd1", "etcd2", "etcd3"]}'
        )
    for lid in ids:
        if not _NAME.match(lid):
            raise SpecError(
                f"etcd-member flavor: logical ID {lid!r} cannot name a member; use letters, "
                f"digits, '.', '_' or '-' (it names the member and its data directory)"
            )
    n = len(ids)
    client, peer = props.client_port_base, props.peer_port_base
    if max(client, peer) + n - 1 > 65535 or (client < peer + n and peer < client + n):
        raise SpecError(
            f"etcd-member Properties: {n} members need client ports {client}..{client + n - 1} "
            f"and peer ports {peer}..{peer + n - 1}, apart and at most 65535; move "
            f"ClientPortBase or PeerPortBase"
        )
    return list(ids)


def addresses(props: EtcdMemberProperties, ids: list[str]) -> dict[str, MemberAddress]:
    """Each logical ID's member: ports are the bases plus the ID's position in LogicalIDs."""
    return {
        lid: MemberAddress(
            name=lid,
            client_url=f"http://{props.host}:{props.client_port_base + i}",
            peer_url=f"http://{props.host}:{props.peer_port_base + i}",
            data_dir=posixpath.join(props.data_dir, lid),
        )
        for i, lid in enumerate(ids)
    }


def initial_cluster(pairs: list[tuple[str, str]]) -> str:
    """``--initial-cluster``: ``name=peerURL`` pairs joined by commas."""
    return ",".join(f"{name}={url}" for name, url in pairs)


def member_command(
    prefix: list[str],
    props: EtcdMemberProperties,
    me: MemberAddress,
    state: Literal["new", "existing"],
    cluster: str,
    token: str,
) -> list[str]:
    """The member's argv: ``prefix`` (the instance's Command, e.g. ``["etcd"]``), its identity
    and URLs, the cluster to start or join, then the Properties' extra ``Flags``."""
    return [
        *prefix,
        "--name", me.name,
        "--data-dir", me.data_dir,
        "--listen-client-urls", me.client_url,
        "--advertise-client-urls", me.client_url,
        "--listen-peer-urls", me.peer_url,
        "--initial-advertise-peer-urls", me.peer_url,
        "--initial-cluster", cluster,
        "--initial-cluster-state", state,
        "--initial-cluster-token", token,
        *props.flags,
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """How a member joins a running cluster (a healthy member answered).

    * ``add`` - nothing holds its peer URL: add it.
    * ``replace`` - an earlier incarnation holds it (the dead member): remove that one, then add.
    * ``reuse`` - an entry added by an earlier attempt that never started holds it: join as it.
    """

    action: Literal["add", "replace", "reuse"]
    #: The member to remove first (replace) or to join as (reuse).
    member: Member | None = None


def plan_join(me: MemberAddress, members: list[Member]) -> JoinPlan:
    """Decide how ``me`` joins a cluster whose member list is ``members`` (see :class:`JoinPlan`).
    Remove before add: after the remove the survivors need each other, but adding first to a
    cluster with a dead member would raise the quorum while one vote is missing."""
    entry = next((m for m in members if me.peer_url in m.peer_urls), None)
    if entry is None:
        return JoinPlan("add")
    if not entry.started and not entry.name:
        return JoinPlan("reuse", entry)
    return JoinPlan("replace", entry)


def joined_cluster(me: MemberAddress, joined_id: str, members: list[Member]) -> str:
    """``--initial-cluster`` for a member joining as ``joined_id``: every member by name (the
    joining one by its own; one added but not started yet has none, so its ID stands in)."""
    pairs: list[tuple[str, str]] = []
    for m in members:
        name = me.name if m.id == joined_id else (m.name or f"member-{m.id}")
        pairs.extend((name, url) for url in m.peer_urls)
    return initial_cluster(pairs)


def foreign_member(answering: str, members: list[Member], addrs: dict[str, MemberAddress]) -> str:
    """Why the member answering (ID ``answering``) is not one of ours ("" when it is): ours is
    named by a logical ID and advertises that ID's peer URL. The member API of a stranger on one
    of our ports (another cluster) must never be changed."""
    me = next((m for m in members if m.id == answering), None)
    if me is None:
        return f"member {answering or '?'} is not in its own member list"
    ours = addrs.get(me.name)
    if ours is None or ours.peer_url not in me.peer_urls:
        return f"it calls itself {me.name!r} at {', '.join(me.peer_urls) or 'no peer URL'}"
    return ""


def _instance_command(properties: JSON) -> list[str]:
    """The instance's Command to prefix the flags with (``["etcd"]`` when none is given)."""
    if isinstance(properties, dict):
        command = properties.get("Command")
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            return list(command)
    return ["etcd"]


@dataclass(slots=True)
class _Probe:
    """Which peers answered /health, and which said healthy."""

    answered: list[str]
    healthy: list[str]


class EtcdMemberFlavor:
    """Members of an etcd cluster, one per logical ID (package docstring)."""

    async def validate(self, properties: JSON, allocation: AllocationMethod) -> None:
        check_allocation(parse_properties(properties), allocation)

    async def prepare(
        self, properties: JSON, spec: Spec, allocation: AllocationMethod, index: Index
    ) -> Spec:
        props = parse_properties(properties)
        ids = check_allocation(props, allocation)
        lid = spec.logical_id
        if lid not in ids:
            raise SpecError(
                f"etcd-member flavor: instance logical ID {lid!r} is not one of the group's "
                f"LogicalIDs {ids}; every member needs one"
            )
        addrs = addresses(props, ids)
        me = addrs[lid]
        token = props.token or (f"infrakit-{index.group}" if index.group else "infrakit-etcd")
        peers = [a.client_url for name, a in addrs.items() if name != lid]
        state, cluster = await self._start_or_join(props, me, peers, addrs)
        init = [spec.init] if spec.init else []
        if state == "existing":  # a new member: whatever an earlier incarnation left must go
            init.append(f"rm -rf -- {shlex.quote(me.data_dir)}")
        prefix = _instance_command(spec.properties)
        instance = dict(spec.properties) if isinstance(spec.properties, dict) else {}
        instance["Command"] = member_command(prefix, props, me, state, cluster, token)
        return dataclasses.replace(
            spec,
            properties=instance,
            init="\n".join(init),
            tags={**spec.tags, CLIENT_URL_TAG: me.client_url, JOIN_TAG: state},
        )

    async def _start_or_join(
        self,
        props: EtcdMemberProperties,
        me: MemberAddress,
        peers: list[str],
        addrs: dict[str, MemberAddress],
    ) -> tuple[Literal["new", "existing"], str]:
        """Join through a healthy peer; bootstrap when no peer answers. While peers answer but
        none is healthy (an election) wait up to JoinTimeout, then start from the member's own
        data (``new`` is ignored by etcd when the data directory holds a member: that restart is
        the way back for a cluster that lost its quorum)."""
        everyone = initial_cluster([(a.name, a.peer_url) for a in addrs.values()])
        deadline = time.monotonic() + props.join_timeout
        while True:
            probe = await _probe(peers)
            if probe.healthy:
                return "existing", await self._join(probe.healthy[0], me, addrs, deadline)
            if not probe.answered:
                log.info("etcd member %s: no peer answers; starting the cluster", me.name)
                return "new", everyone
            if time.monotonic() >= deadline:
                log.warning(
                    "etcd member %s: peers %s answer but none is healthy after %gs; starting "
                    "from the member's own data",
                    me.name,
                    ", ".join(probe.answered),
                    props.join_timeout,
                )
                return "new", everyone
            await asyncio.sleep(RETRY_EVERY)

    async def _join(
        self, endpoint: str, me: MemberAddress, addrs: dict[str, MemberAddress], deadline: float
    ) -> str:
        """Remove the dead incarnation, add this one (retrying what the cluster refuses for
        now); the ``--initial-cluster`` to start it with."""
        while True:
            try:
                return await self._join_once(endpoint, me, addrs)
            except (GatewayError, Unreachable) as exc:
                retry = isinstance(exc, Unreachable) or exc.retryable
                if not retry or time.monotonic() >= deadline:
                    raise PluginError(
                        f"etcd member {me.name}: cannot join the cluster through {endpoint}: "
                        f"{exc}; the group controller will try again (check the members' logs)"
                    ) from None
                log.info("etcd member %s: join refused for now (%s); retrying", me.name, exc)
                await asyncio.sleep(RETRY_EVERY * 4)

    async def _join_once(
        self, endpoint: str, me: MemberAddress, addrs: dict[str, MemberAddress]
    ) -> str:
        answering, members = await gateway.list_members(endpoint, PROBE_TIMEOUT)
        stranger = foreign_member(answering, members, addrs)
        if stranger:
            raise PluginError(
                f"etcd member {me.name}: {endpoint} is not a member of this cluster ({stranger}); "
                f"another etcd holds that port: stop it or move ClientPortBase/PeerPortBase"
            )
        plan = plan_join(me, members)
        if plan.action == "reuse" and plan.member is not None:
            log.info("etcd member %s: joining as %s (added earlier)", me.name, plan.member.id)
            return joined_cluster(me, plan.member.id, members)
        if plan.action == "replace" and plan.member is not None:
            old = plan.member
            try:
                await gateway.remove_member(endpoint, old.id, CHANGE_TIMEOUT)
            except GatewayError as exc:
                if "member not found" not in exc.message.lower():
                    raise
            log.info("etcd member %s: removed the old member %s", me.name, old.id)
        added, after = await gateway.add_member(endpoint, me.peer_url, CHANGE_TIMEOUT)
        log.info("etcd member %s: added as %s through %s", me.name, added.id, endpoint)
        return joined_cluster(me, added.id, after)

    async def healthy(self, properties: JSON, instance: Description) -> Health:
        """The member's own ``/health``: HEALTHY only when it has a leader and a quorum read
        passed; UNHEALTHY when it answers otherwise; UNKNOWN when it does not answer (yet)."""
        url = instance.tags.get(CLIENT_URL_TAG)
        if not url:
            return Health.UNKNOWN
        try:
            ok = await gateway.healthy(url, PROBE_TIMEOUT)
        except Unreachable:
            return Health.UNKNOWN
        return Health.HEALTHY if ok else Health.UNHEALTHY

    async def drain(self, properties: JSON, instance: Description) -> None:
        """Nothing: the instance's SIGTERM makes etcd hand leadership over before it stops, and
        the replacement's Prepare removes the stopped member from the cluster."""
        return None

    def info(self) -> dict[str, Any]:
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}


async def _probe(peers: list[str]) -> _Probe:
    """Ask every peer's /health at once."""

    async def one(url: str) -> bool | None:
        try:
            return await gateway.healthy(url, PROBE_TIMEOUT)
        except Unreachable:
            return None

    answers = await asyncio.gather(*(one(u) for u in peers))
    return _Probe(
        answered=[u for u, a in zip(peers, answers, strict=True) if a is not None],
        healthy=[u for u, a in zip(peers, answers, strict=True) if a],
    )
