"""The ingress: its pure decisions as tables, and the group controller keeping a (fake, in-memory)
load balancer equal to its members, draining before every destroy, on a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from infrakit import errors
from infrakit.controller.group.controller import GroupController
from infrakit.controller.group.ingress import BackendPlan, gated_health, plan_backends
from infrakit.spi import instance
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.types import ADDRESS_TAG, Health
from infrakit.store.memory import MemoryStore
from infrakit.testing import FakeClock
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin, lookup
from tests.controller.conftest import spec

UP, CHECKING, DOWN, DRAINING = (
    spi_lb.BACKEND_UP,
    spi_lb.BACKEND_CHECKING,
    spi_lb.BACKEND_DOWN,
    spi_lb.BACKEND_DRAINING,
)


def member(iid: str, address: str | None = None) -> instance.Description:
    tags = {"infrakit.group": "g"}
    if address is not None:
        tags[ADDRESS_TAG] = address
    return instance.Description(iid, tags=tags)


def addr(n: int) -> str:
    return f"127.0.0.1:{9000 + n}"


# --- the decisions, as tables ---------------------------------------------------------------------

PLANS = [
    pytest.param([member("a", addr(1))], [], set(), set(), BackendPlan({"a": addr(1)}), id="new"),
    pytest.param(
        [member("a", addr(1))],
        [spi_lb.Backend("a", addr(1), CHECKING)],
        set(),
        set(),
        BackendPlan(),
        id="registered-checking-left-alone",
    ),
    pytest.param(
        [member("a", addr(1))],
        [spi_lb.Backend("a", addr(1), UP), spi_lb.Backend("dead", addr(2), DOWN)],
        set(),
        set(),
        BackendPlan(deregister=["dead"]),
        id="killed-member-drained-out",
    ),
    pytest.param(
        [member("a", addr(1))],
        [spi_lb.Backend("a", addr(1), UP), spi_lb.Backend("old", addr(2), DRAINING)],
        set(),
        set(),
        BackendPlan(),
        id="draining-not-deregistered-twice",
    ),
    pytest.param(
        [member("a", addr(1)), member("b", addr(2))],
        [spi_lb.Backend("a", addr(1), UP), spi_lb.Backend("b", addr(2), UP)],
        {"b"},
        set(),
        BackendPlan(deregister=["b"]),
        id="being-destroyed-drained",
    ),
    pytest.param(
        [member("a", addr(1))],
        [spi_lb.Backend("a", addr(1), UP)],
        set(),
        {"a"},
        BackendPlan(deregister=["a"]),
        id="unhealthy-drained",
    ),
    pytest.param(
        [member("a", addr(1))],
        [spi_lb.Backend("a", addr(1), DRAINING)],
        set(),
        set(),
        BackendPlan({"a": addr(1)}),
        id="routable-again-re-registered",
    ),
    pytest.param(
        [member("a", addr(3))],
        [spi_lb.Backend("a", addr(1), UP)],
        set(),
        set(),
        BackendPlan({"a": addr(3)}),
        id="moved-address-re-registered",
    ),
    pytest.param(
        [member("a"), member("b", addr(2))],
        [],
        set(),
        set(),
        BackendPlan({"b": addr(2)}, unaddressed=["a"]),
        id="no-address-reported",
    ),
    pytest.param(
        [],
        [spi_lb.Backend("a", addr(1), UP), spi_lb.Backend("b", addr(2), CHECKING)],
        set(),
        set(),
        BackendPlan(deregister=["a", "b"]),
        id="empty-group-empties-pool",
    ),
]


@pytest.mark.parametrize(("members", "backends", "destroying", "unhealthy", "want"), PLANS)
def test_plan_backends(
    members: list[instance.Description],
    backends: list[spi_lb.Backend],
    destroying: set[str],
    unhealthy: set[str],
    want: BackendPlan,
) -> None:
    got = plan_backends(members, backends, destroying=destroying, unhealthy=unhealthy)
    assert got == want


@pytest.mark.parametrize(
    ("flavor", "backend", "want"),
    [
        (Health.HEALTHY, spi_lb.Backend("a", state=UP), Health.HEALTHY),
        (Health.HEALTHY, spi_lb.Backend("a", state=CHECKING), Health.UNKNOWN),
        (Health.HEALTHY, spi_lb.Backend("a", state=DOWN), Health.UNKNOWN),
        (Health.HEALTHY, spi_lb.Backend("a", state=DRAINING), Health.UNKNOWN),
        (Health.HEALTHY, None, Health.UNKNOWN),
        (Health.UNHEALTHY, spi_lb.Backend("a", state=UP), Health.UNHEALTHY),
        (Health.UNKNOWN, spi_lb.Backend("a", state=UP), Health.UNKNOWN),
    ],
)
def test_health_behind_a_balancer(
    flavor: Health, backend: spi_lb.Backend | None, want: Health
) -> None:
    status, note = gated_health(flavor, "", backend, "lb")
    assert status is want
    if status is not flavor:
        assert "lb" in note


# --- the controller with a fake balancer ----------------------------------------------------------


@dataclass
class FakeBalancer:
    """An in-memory L4 balancer: registered backends come up at the next look; a drained one
    leaves once its ``connections`` are 0."""

    routes_: list[spi_lb.Route] = field(default_factory=list)
    backends_: dict[str, spi_lb.Backend] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=dict)
    #: Raised by every call while set (a balancer that is down).
    error: BaseException | None = None
    #: Registered backends stay "checking" while this is False.
    pass_checks: bool = True
    log: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def name(self) -> str:
        self._check()
        return "lb"

    async def routes(self) -> list[spi_lb.Route]:
        self._check()
        return list(self.routes_)

    async def publish(self, route: spi_lb.Route) -> str:
        self._check()
        self.routes_.append(route)
        return f"published {route.load_balancer_port}"

    async def unpublish(self, ext_port: int) -> str:
        raise NotImplementedError

    async def configure_health_check(self, check: spi_lb.HealthCheck) -> str:
        raise NotImplementedError

    async def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        self._check()
        for iid in ids:
            self.backends_[iid] = spi_lb.Backend(iid, addresses[iid], CHECKING)
        self.log.append(("register", tuple(ids)))
        return "ok"

    async def deregister_backends(self, ids: list[str]) -> str:
        self._check()
        for iid in ids:
            if iid not in self.backends_:
                raise errors.NotFoundError(f"backend {iid} is not registered")
        for iid in ids:
            b = self.backends_[iid]
            self.backends_[iid] = spi_lb.Backend(iid, b.address, DRAINING)
        self.log.append(("deregister", tuple(ids)))
        return "ok"

    async def backends(self) -> list[str]:
        self._check()
        return sorted(self.backends_)

    async def backend_states(self) -> list[spi_lb.Backend]:
        self._check()
        for iid, b in list(self.backends_.items()):
            if b.state == DRAINING and not self.connections.get(iid):
                del self.backends_[iid]
            elif b.state == CHECKING and self.pass_checks:
                self.backends_[iid] = spi_lb.Backend(iid, b.address, UP)
        return [
            spi_lb.Backend(b.id, b.address, b.state, self.connections.get(b.id, 0))
            for b in self.backends_.values()
        ]

    def up(self) -> set[str]:
        return {i for i, b in self.backends_.items() if b.state == UP}


INGRESS = {
    "Plugin": "lb",
    "DrainTimeout": "30s",
    "Route": {"LoadBalancerPort": 8080, "Port": 80},
}


@dataclass
class LbRig:
    clock: FakeClock
    inst: FakeInstancePlugin
    lb: FakeBalancer
    ctl: GroupController

    async def converge(self, gid: str = "web") -> None:
        await self.clock.run_until(
            lambda: (
                gid in self.ctl.groups
                and self.ctl.groups[gid].truly_converged(self.clock.now())
                and self.members() <= set(self.lb.backends_)
            ),
            limit=600,
        )

    def members(self) -> set[str]:
        return set(self.inst.instances)


@pytest.fixture
async def lbrig() -> LbRig:  # type: ignore[misc]
    clock = FakeClock()
    ports = itertools.count(9001)
    inst = FakeInstancePlugin(clock=clock)
    inst.on_provision = lambda s: s.tags.__setitem__(ADDRESS_TAG, f"127.0.0.1:{next(ports)}")
    lb = FakeBalancer()
    ctl = GroupController(
        lookup({"inst": inst}),
        lookup({"flav": FakeFlavorPlugin()}),
        store=MemoryStore(),
        clock=clock,
        poll_interval=10.0,
        loadbalancer_lookup=lookup({"lb": lb}),
    )
    await ctl.start()
    try:
        yield LbRig(clock, inst, lb, ctl)
    finally:
        await ctl.stop()


async def test_members_are_registered_and_the_route_published(lbrig: LbRig) -> None:
    await lbrig.ctl.commit_group(spec("web", size=3, Ingress=INGRESS), False)
    await lbrig.converge()
    assert set(lbrig.lb.backends_) == lbrig.members()
    addresses = {b.address for b in lbrig.lb.backends_.values()}
    assert addresses == {lbrig.inst.instances[i].desc.tags[ADDRESS_TAG] for i in lbrig.members()}
    assert [r.load_balancer_port for r in lbrig.lb.routes_] == [8080]


async def test_a_killed_member_is_drained_out_and_its_replacement_registered(
    lbrig: LbRig,
) -> None:
    await lbrig.ctl.commit_group(spec("web", size=3, Ingress=INGRESS), False)
    await lbrig.converge()
    victim = sorted(lbrig.members())[0]
    lbrig.inst.kill(victim)
    await lbrig.clock.run_until(lambda: victim not in lbrig.lb.backends_, limit=60)
    await lbrig.converge()
    assert set(lbrig.lb.backends_) == lbrig.members() and len(lbrig.members()) == 3


async def test_scale_in_drains_before_destroying(lbrig: LbRig) -> None:
    await lbrig.ctl.commit_group(spec("web", size=3, Ingress=INGRESS), False)
    await lbrig.converge()
    for iid in lbrig.members():
        lbrig.lb.connections[iid] = 2  # every backend is busy
    await lbrig.ctl.set_size("web", 2)
    await lbrig.clock.run_until(
        lambda: any(b.state == DRAINING for b in lbrig.lb.backends_.values()), limit=30
    )
    (draining,) = [i for i, b in lbrig.lb.backends_.items() if b.state == DRAINING]
    await lbrig.clock.advance(5)
    assert draining in lbrig.inst.instances, "destroyed while its connections were open"
    lbrig.lb.connections[draining] = 0  # its last request finished
    await lbrig.clock.run_until(lambda: draining not in lbrig.inst.instances, limit=5)
    assert lbrig.inst.destroyed == [(draining, instance.REASON_SCALE_DOWN)]


async def test_drain_timeout_destroys_anyway(lbrig: LbRig) -> None:
    await lbrig.ctl.commit_group(spec("web", size=2, Ingress=INGRESS), False)
    await lbrig.converge()
    for iid in lbrig.members():
        lbrig.lb.connections[iid] = 1  # never finishes
    started = lbrig.clock.now()
    await lbrig.ctl.set_size("web", 1)
    await lbrig.clock.run_until(lambda: len(lbrig.inst.destroyed) == 1, limit=120)
    waited = lbrig.clock.now() - started
    assert 30 <= waited < 32, waited


async def test_rolling_update_waits_until_the_balancer_routes_to_the_new_member(
    lbrig: LbRig,
) -> None:
    await lbrig.ctl.commit_group(spec("web", size=2, Ingress=INGRESS), False)
    await lbrig.converge()
    old = lbrig.members()
    lbrig.lb.pass_checks = False  # new backends stay "checking"
    await lbrig.ctl.commit_group(spec("web", size=2, note="v2", Ingress=INGRESS), False)
    await lbrig.clock.run_until(lambda: len(lbrig.members()) == 3, limit=30)
    await lbrig.clock.advance(20)
    assert old <= lbrig.members(), "an old member was destroyed before a new one took traffic"
    new = lbrig.members() - old
    assert all(lbrig.lb.backends_[i].state == CHECKING for i in new)
    lbrig.lb.pass_checks = True
    await lbrig.clock.run_until(lambda: not (old & lbrig.members()), limit=120)
    await lbrig.converge()
    assert set(lbrig.lb.backends_) == lbrig.members()
    # Every old member was drained (deregistered) before it was destroyed.
    drained = {i for op, ids in lbrig.lb.log if op == "deregister" for i in ids}
    assert old <= drained
    assert all(reason == instance.REASON_ROLLING_UPDATE for _, reason in lbrig.inst.destroyed)


async def test_an_unreachable_balancer_changes_nothing_and_holds_a_rolling_update(
    lbrig: LbRig,
) -> None:
    await lbrig.ctl.commit_group(spec("web", size=2, Ingress=INGRESS), False)
    await lbrig.converge()
    old = lbrig.members()
    events = lbrig.ctl.subscribe("group/web")
    await lbrig.ctl.commit_group(spec("web", size=2, note="v2", Ingress=INGRESS), False)
    lbrig.lb.error = errors.PluginUnreachableError("load balancer lb is not running")
    for _ in range(60):
        await lbrig.clock.advance(1)
    assert lbrig.inst.destroyed == []  # no old member was destroyed without its drain
    assert old <= lbrig.members()
    seen = []
    async for e in events:
        seen.append(e)
        if e.type in ("ingress-failed",):
            break
    assert "backends unchanged" in seen[-1].message
    new = lbrig.members() - old
    notes = {lbrig.ctl.groups["web"].state.health[i].note for i in new}
    assert notes == {"load balancer lb cannot say: load balancer lb is not running"}, notes


async def test_commit_names_a_missing_balancer(lbrig: LbRig) -> None:
    with pytest.raises(errors.SpecError, match="Failed to find load balancer plugin 'nope'"):
        await lbrig.ctl.commit_group(spec("web", size=1, Ingress={"Plugin": "nope"}), False)
    assert "web" not in lbrig.ctl.groups
    bare = GroupController(
        lookup({"inst": lbrig.inst}), lookup({"flav": FakeFlavorPlugin()}), clock=lbrig.clock
    )
    with pytest.raises(errors.SpecError, match="reaches no load balancers"):
        await bare.commit_group(spec("web", size=1, Ingress=INGRESS), False)
