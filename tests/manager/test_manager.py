"""The manager's leadership logic on fakes: who acts, fencing on loss, forwarding (through the real
group client and service, in memory), resuming updates."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from infrakit import errors
from infrakit._utils.aio import Broker
from infrakit.controller.group.controller import GroupController
from infrakit.manager import manager
from infrakit.manager.manager import Manager
from infrakit.rpc import group as rpc_group
from infrakit.rpc.client import Client
from infrakit.rpc.group import GroupClient
from infrakit.rpc.memory import MemoryTransport
from infrakit.rpc.server import PluginServer
from infrakit.spi import group
from infrakit.spi.event import Event
from infrakit.store import Store
from infrakit.store.memory import MemoryStore
from infrakit.testing import FakeClock
from infrakit.testing.fakes import (
    FakeElection,
    FakeFlavorPlugin,
    FakeInstancePlugin,
    lookup,
)

pytestmark = pytest.mark.timeout(20)

BASE = {
    "Allocation": {"Size": 3},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {"Init": ["echo hi"]}},
}


def spec(size: int = 3, note: str = "v1") -> group.Spec:
    props = copy.deepcopy(BASE)
    props["Allocation"] = {"Size": size}
    props["Instance"]["Properties"]["Note"] = note
    return group.Spec("cattle", props)


def leader_client(target: Manager) -> GroupClient:
    """What a follower forwards through: the real group client and the leader's real group
    service, joined in memory (the envelopes, the errors and the extensions as on TCP)."""
    server = PluginServer("group", [rpc_group.service({".": target})])
    return GroupClient(Client("group", "memory/group", transport=MemoryTransport(server)))


@dataclass
class Cluster:
    clock: FakeClock
    inst: FakeInstancePlugin
    store: MemoryStore
    election: FakeElection
    managers: dict[str, Manager]

    async def settle(self, seconds: float = 1.0) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        steps = max(1, round(seconds / 0.1))
        for _ in range(steps):
            await self.clock.advance(seconds / steps)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    clock = FakeClock()
    inst = FakeInstancePlugin(clock=clock)
    flav = FakeFlavorPlugin()
    store = MemoryStore()
    election = FakeElection()

    def make_controller(s: Store, events: Broker[Event]) -> GroupController:
        return GroupController(
            lookup({"inst": inst}),
            lookup({"flav": flav}),
            store=s,
            clock=clock,
            poll_interval=10,
            events=events,
        )

    managers: dict[str, Manager] = {}
    for member in ("m1", "m2", "m3"):
        elector = election.member(member, location=f"tcp://127.0.0.1:{9000 + len(managers)}")
        managers[member] = Manager(
            elector,
            store,
            make_controller,
            connect_leader=lambda info: leader_client(managers[info.id]),
        )
    for m in managers.values():
        await m.start()
    c = Cluster(clock, inst, store, election, managers)
    try:
        yield c
    finally:
        for m in managers.values():
            await m.stop()


async def test_only_the_leader_runs_a_controller(cluster: Cluster) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    running = [name for name, m in cluster.managers.items() if m.controller is not None]
    assert running == ["m1"]
    status = await cluster.managers["m2"].manager_status()
    assert status["Leader"]["ID"] == "m1" and status["Leading"] is False


async def test_a_member_elected_whose_store_fails_resigns_so_another_can_lead(
    cluster: Cluster,
) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    m2 = cluster.managers["m2"]
    refused = errors.StoreError("store: the disk is gone")

    async def broken(prefix: str) -> dict[str, Any]:
        raise refused

    healthy = cluster.store.list
    cluster.store.list = broken  # type: ignore[method-assign]
    cluster.election.elect("m2")  # m2 is elected, but its controller cannot load the store
    await cluster.settle()
    assert m2.controller is None
    assert m2.elector.resigned == [manager.RESIGN_PAUSE]  # type: ignore[attr-defined]
    assert cluster.election.leader_id is None  # it gave leadership up instead of sitting on it
    cluster.store.list = healthy  # type: ignore[method-assign]
    cluster.election.elect("m3")
    await cluster.settle()
    assert cluster.managers["m3"].controller is not None


async def test_follower_forwards_commits_to_the_leader(cluster: Cluster) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    assert await cluster.managers["m3"].commit_group(spec(), False) == "Managing 3 instances"
    await cluster.settle(5)
    assert len(cluster.inst.instances) == 3
    assert "groups/cattle" in cluster.store.data
    described = await cluster.managers["m2"].describe_group("cattle")  # forwarded read
    assert len(described.instances) == 3
    assert (await cluster.managers["m2"].status("cattle"))["Converged"] is True


async def test_no_leader_is_a_clear_error(cluster: Cluster) -> None:
    with pytest.raises(errors.NotLeaderError, match="no leader"):
        await cluster.managers["m1"].commit_group(spec(), False)
    assert cluster.store.data == {}


async def test_losing_leadership_stops_acting_immediately(cluster: Cluster) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    await cluster.managers["m1"].commit_group(spec(), False)
    await cluster.settle(5)
    assert len(cluster.inst.instances) == 3

    cluster.election.elect(None)  # m1 can no longer prove it leads (lease lost)
    await cluster.settle()
    assert cluster.managers["m1"].controller is None
    provisions = cluster.inst.calls["provision"]
    cluster.inst.kill(next(iter(cluster.inst.instances)))
    await cluster.settle(30)
    assert cluster.inst.calls["provision"] == provisions  # nobody acts without a leader

    cluster.election.elect("m2")  # the new leader resumes from the store and heals
    await cluster.settle(5)
    assert len(cluster.inst.instances) == 3
    assert cluster.inst.calls["provision"] == provisions + 1


async def test_failover_mid_update_resumes_without_duplicates(cluster: Cluster) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    await cluster.managers["m1"].commit_group(spec(size=10), False)
    await cluster.settle(5)
    assert len(cluster.inst.instances) == 10
    first = set(cluster.inst.instances)

    # Roll to v2; fail over while the update is in progress.
    await cluster.managers["m1"].commit_group(spec(size=10, note="v2"), False)
    await cluster.settle(0.3)
    cluster.election.elect("m3")
    await cluster.settle(60)

    live = cluster.inst.instances
    assert len(live) == 10
    ctl = cluster.managers["m3"].controller
    assert ctl is not None
    want = ctl.groups["cattle"].settings.hash.head
    assert {s.desc.tags["infrakit.config.hash"] for s in live.values()} == {want}
    assert not first & set(live)  # every old instance replaced exactly once
    assert cluster.inst.calls["provision"] == 20


async def test_graceful_stop_hands_over(cluster: Cluster) -> None:
    cluster.election.elect("m1")
    await cluster.settle()
    await cluster.managers["m1"].stop()
    assert cluster.managers["m1"].controller is None
    assert cluster.election.leader_id is None  # resigned: a real backend elects the next at once
    cluster.election.elect("m2")
    await cluster.settle()
    assert cluster.managers["m2"].controller is not None


class BrokenStore(MemoryStore):
    """A store that stopped answering (etcd down): every read fails."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    async def list(self, prefix: str) -> dict[str, Any]:
        if self.broken:
            raise errors.StoreError("store fake: list failed; check that etcd runs")
        return await super().list(prefix)


def broken_manager(election: FakeElection, store: Store, member: str = "m1") -> Manager:
    def make_controller(s: Store, events: Broker[Event]) -> GroupController:
        return GroupController(lookup({}), lookup({}), store=s, clock=FakeClock(), events=events)

    return Manager(election.member(member), store, make_controller)


async def test_a_store_that_fails_when_first_elected_fails_the_start_and_resigns() -> None:
    election = FakeElection()
    election.elect("m1")
    manager = broken_manager(election, BrokenStore())
    with pytest.raises(errors.StoreError, match="check that etcd runs"):
        await manager.start()
    assert manager.controller is None
    assert election.leader_id is None  # resigned: another manager may lead


async def test_a_store_failure_once_running_is_one_log_line_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    election = FakeElection()
    store = BrokenStore()
    manager = broken_manager(election, store)
    await manager.start()  # a follower: nothing to do at start
    try:
        election.elect("m1")
        for _ in range(20):
            await asyncio.sleep(0)
        assert manager.controller is None
        errors_logged = [r for r in caplog.records if r.levelname == "ERROR"]
        assert [r.getMessage() for r in errors_logged] == [
            "manager m1: cannot lead: store fake: list failed; check that etcd runs"
        ]
        assert errors_logged[0].exc_info is None
    finally:
        await manager.stop()
