"""The etcd-member flavor's pure parts (Properties, addresses, command line, join plan) as tables,
and Prepare / Healthy against real sockets and a real etcd (the full cluster story is
tests/e2e/test_etcd_cluster.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from infrakit.errors import SpecError
from infrakit.plugins.etcdmember.gateway import GatewayError, Member
from infrakit.plugins.etcdmember.plugin import (
    CLIENT_URL_TAG,
    JOIN_TAG,
    EtcdMemberFlavor,
    addresses,
    check_allocation,
    foreign_member,
    joined_cluster,
    member_command,
    parse_properties,
    plan_join,
)
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Description, Spec
from infrakit.spi.types import Health
from infrakit.testing.etcd import EtcdServer, EtcdUnavailable

IDS = ["e1", "e2", "e3"]
PROPS: dict[str, Any] = {"DataDir": "/tmp/ik-etcd", "ClientPortBase": 23790, "PeerPortBase": 23800}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DataDir": None}, "DataDir: expected an absolute directory path"),
        ({"DataDir": "data"}, "DataDir: expected an absolute directory path"),
        ({"ClientPortBase": 0}, "ClientPortBase: expected a port number"),
        ({"PeerPortBase": "23800"}, "PeerPortBase: expected a port number"),
        ({"Flags": "--x"}, "Flags: expected an array of etcd flags"),
        ({"JoinTimeout": "soon"}, "JoinTimeout: expected a Go duration"),
        ({"Host": "a b"}, "Host: expected a host name"),
    ],
)
def test_bad_properties_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_properties({**PROPS, **change})


@pytest.mark.parametrize(
    ("ids", "props", "message"),
    [
        (None, PROPS, "no Allocation.LogicalIDs"),
        (["a=b"], PROPS, "cannot name a member"),
        (["../x"], PROPS, "cannot name a member"),
        (IDS, {**PROPS, "PeerPortBase": 23792}, "apart and at most 65535"),
        (IDS, {**PROPS, "ClientPortBase": 65534}, "apart and at most 65535"),
    ],
)
def test_allocations_the_flavor_cannot_serve(
    ids: list[str] | None, props: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        check_allocation(parse_properties(props), AllocationMethod(logical_ids=ids))


def test_each_logical_id_gets_the_base_ports_plus_its_position_and_a_data_dir() -> None:
    addrs = addresses(parse_properties(PROPS), IDS)
    assert addrs["e3"].client_url == "http://127.0.0.1:23792"
    assert addrs["e3"].peer_url == "http://127.0.0.1:23802"
    assert addrs["e3"].data_dir == "/tmp/ik-etcd/e3"


def test_the_command_line_carries_identity_urls_cluster_and_the_extra_flags() -> None:
    props = parse_properties({**PROPS, "Flags": ["--heartbeat-interval=150"]})
    me = addresses(props, IDS)["e1"]
    argv = member_command(["etcd"], props, me, "existing", "e1=http://x", "tok")
    assert argv[0] == "etcd" and argv[-1] == "--heartbeat-interval=150"
    flags = dict(zip(argv[1:-1:2], argv[2:-1:2], strict=True))
    assert flags == {
        "--name": "e1",
        "--data-dir": "/tmp/ik-etcd/e1",
        "--listen-client-urls": "http://127.0.0.1:23790",
        "--advertise-client-urls": "http://127.0.0.1:23790",
        "--listen-peer-urls": "http://127.0.0.1:23800",
        "--initial-advertise-peer-urls": "http://127.0.0.1:23800",
        "--initial-cluster": "e1=http://x",
        "--initial-cluster-state": "existing",
        "--initial-cluster-token": "tok",
    }


ME = addresses(parse_properties(PROPS), IDS)["e2"]
OTHER = Member("1", "e1", ("http://127.0.0.1:23800",), ("http://127.0.0.1:23790",))


@pytest.mark.parametrize(
    ("listed", "action", "member"),
    [
        # nobody holds the peer URL: add
        ([OTHER], "add", None),
        # the dead incarnation holds it: remove it, then add
        ([OTHER, Member("2", "e2", (ME.peer_url,), ("http://127.0.0.1:23791",))], "replace", "2"),
        # an initial member that never started (named, no client URLs): replace as well
        ([OTHER, Member("2", "e2", (ME.peer_url,), ())], "replace", "2"),
        # an entry an earlier attempt added, never started (no name, no client URLs): join as it
        ([OTHER, Member("7", "", (ME.peer_url,), ())], "reuse", "7"),
    ],
)
def test_the_join_plan(listed: list[Member], action: str, member: str | None) -> None:
    plan = plan_join(ME, listed)
    assert plan.action == action
    assert (plan.member.id if plan.member else None) == member


def test_the_joining_member_names_itself_and_others_by_name_or_id() -> None:
    listed = [OTHER, Member("7", "", (ME.peer_url,), ()), Member("9", "", ("http://h:1",), ())]
    assert joined_cluster(ME, "7", listed) == (
        "e1=http://127.0.0.1:23800,e2=http://127.0.0.1:23801,member-9=http://h:1"
    )


ADDRS = addresses(parse_properties(PROPS), IDS)


@pytest.mark.parametrize(
    ("answering", "listed", "why"),
    [
        ("1", [OTHER], ""),
        ("1", [Member("1", "a", ("http://127.0.0.1:24801",), ("http://x",))], "calls itself 'a'"),
        ("1", [Member("1", "e1", ("http://127.0.0.1:9",), ("http://x",))], "calls itself 'e1'"),
        ("5", [OTHER], "not in its own member list"),
    ],
)
def test_a_stranger_on_one_of_our_ports_is_never_joined(
    answering: str, listed: list[Member], why: str
) -> None:
    found = foreign_member(answering, listed, ADDRS)
    assert (why in found) if why else found == ""


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ("etcdserver: unhealthy cluster", True),
        ("etcdserver: re-configuration failed due to not enough started members", True),
        ("etcdserver: Peer URLs already exists", True),
        ("etcdserver: request timed out", True),
        ("etcdserver: member not found", False),
        ("etcdserver: permission denied", False),
    ],
)
def test_which_refusals_are_retried(message: str, retryable: bool) -> None:
    assert GatewayError("http://x", 503, message).retryable is retryable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_prepare_with_no_peer_answering_starts_a_new_cluster() -> None:
    base = _closed_port()
    props = {**PROPS, "ClientPortBase": base, "PeerPortBase": base + 10}
    flavor = EtcdMemberFlavor()
    await flavor.validate(props, AllocationMethod(logical_ids=IDS))
    spec = Spec(properties={"Command": ["etcd"], "Dir": "/tmp"}, tags={"t": "1"}, logical_id="e1")
    out = await flavor.prepare(props, spec, AllocationMethod(logical_ids=IDS), Index("db", 1))
    argv = out.properties["Command"]
    assert out.properties["Dir"] == "/tmp"
    assert argv[argv.index("--initial-cluster-state") + 1] == "new"
    assert argv[argv.index("--initial-cluster-token") + 1] == "infrakit-db"
    assert argv[argv.index("--initial-cluster") + 1] == ",".join(
        f"e{i + 1}=http://127.0.0.1:{base + 10 + i}" for i in range(3)
    )
    assert out.tags == {"t": "1", CLIENT_URL_TAG: f"http://127.0.0.1:{base}", JOIN_TAG: "new"}
    assert out.init == ""  # a new member keeps its data directory (a restart from its data)


async def test_prepare_refuses_an_instance_without_one_of_the_logical_ids() -> None:
    with pytest.raises(SpecError, match="is not one of the group's LogicalIDs"):
        await EtcdMemberFlavor().prepare(
            PROPS, Spec(properties={}, logical_id=None), AllocationMethod(logical_ids=IDS), Index()
        )


async def test_healthy_asks_the_member_itself() -> None:
    flavor = EtcdMemberFlavor()
    silent = Description("i-1", "e1", {CLIENT_URL_TAG: f"http://127.0.0.1:{_closed_port()}"})
    assert await flavor.healthy(PROPS, silent) is Health.UNKNOWN
    assert await flavor.healthy(PROPS, Description("i-1", "e1", {})) is Health.UNKNOWN
    try:
        etcd = EtcdServer()
    except EtcdUnavailable as exc:
        pytest.skip(str(exc))
    with etcd:
        member = Description("i-2", "e1", {CLIENT_URL_TAG: f"http://{etcd.endpoint}"})
        assert await flavor.healthy(PROPS, member) is Health.HEALTHY
