"""In-memory fake plugins with failure hooks - the one fake style used by infrakit's own tests.

:class:`FakeInstancePlugin` keeps instances in a dict and publishes ``instance/change`` events like a
real provider; :class:`FakeFlavorPlugin` prepares specs like vanilla and answers ``Healthy`` from a
table or a function. Both count their calls, so tests can assert "no duplicate Provision".

Failure injection is by plain attributes and hook callables::

    inst = FakeInstancePlugin(clock=clock)
    inst.provision_error = errors.PluginError("quota exceeded")    # every Provision fails
    inst.provision_delay = 5.0                                      # Provision takes 5 s (fake time)
    inst.describe_lag = 2.0                                         # new instances appear 2 s late
    inst.describe_error = errors.PluginTimeoutError("down")         # Describe fails
    inst.kill("instance-3")                                         # dies out of band
    flav = FakeFlavorPlugin()
    flav.health["instance-3"] = Health.UNHEALTHY                   # or flav.health_fn = lambda d: ...

WARNING: these fakes model the SPI contract, not any particular provider's timing; test against the
real plugin (file, process, ...) for behaviour that depends on it.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from infrakit import errors
from infrakit._utils.aio import Broker
from infrakit._utils.clock import Clock, SystemClock
from infrakit.spi import event, flavor, instance
from infrakit.spi.adapt import AsyncFlavor, AsyncInstance
from infrakit.spi.types import Health, Tags

__all__ = [
    "FakeElection",
    "FakeElector",
    "FakeFlavorPlugin",
    "FakeInstancePlugin",
    "lookup",
    "wait_until",
]


@dataclass
class _Stored:
    desc: instance.Description
    spec: instance.Spec
    created_at: float
    visible_at: float


@dataclass
class FakeInstancePlugin:
    clock: Clock = field(default_factory=SystemClock)
    #: Raised by every Provision while set.
    provision_error: BaseException | None = None
    #: Called with the spec before each Provision; may raise to fail that one.
    on_provision: Callable[[instance.Spec], None] | None = None
    #: Seconds (of ``clock`` time) each Provision takes.
    provision_delay: float = 0.0
    #: Seconds after Provision before DescribeInstances shows the instance.
    describe_lag: float = 0.0
    #: Raised by every DescribeInstances while set.
    describe_error: BaseException | None = None
    #: Seconds (of ``clock`` time) each DescribeInstances takes (a hung provider: a big number).
    describe_delay: float = 0.0
    #: Raised by every Destroy while set.
    destroy_error: BaseException | None = None
    #: Instances die this many seconds after creation (crash loop); None = never. They are
    #: reaped when DescribeInstances next runs, or - with ``kill_in_background`` - on time, with a
    #: ``deleted`` event, like a real provider's crashing instance.
    die_after: float | None = None
    kill_in_background: bool = False
    #: Rejected by Validate when it returns a message.
    validate_fn: Callable[[Any], str | None] | None = None
    publishes_events: bool = True

    def __post_init__(self) -> None:
        self.instances: dict[str, _Stored] = {}
        self.calls: dict[str, int] = {
            "validate": 0,
            "provision": 0,
            "destroy": 0,
            "describe": 0,
            "label": 0,
        }
        self.destroyed: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)
        self._broker: Broker[event.Event] = Broker()
        self._deaths: set[asyncio.Task[None]] = set()

    # --- SPI ------------------------------------------------------------------------------------

    async def validate(self, properties: Any) -> None:
        self.calls["validate"] += 1
        if self.validate_fn is not None:
            problem = self.validate_fn(properties)
            if problem:
                raise errors.SpecError(problem)

    async def provision(self, spec: instance.Spec) -> str | None:
        self.calls["provision"] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.provision_delay:
                await self.clock.sleep(self.provision_delay)
            if self.provision_error is not None:
                raise self.provision_error
            if self.on_provision is not None:
                self.on_provision(spec)
            iid = f"instance-{next(self._ids)}"
            now = self.clock.now()
            self.instances[iid] = _Stored(
                instance.Description(iid, spec.logical_id, dict(spec.tags)),
                copy.deepcopy(spec),
                now,
                now + self.describe_lag,
            )
        finally:
            self.in_flight -= 1
        self._publish("created", iid)
        if self.die_after is not None and self.kill_in_background:
            task = asyncio.create_task(self._die_later(iid, self.die_after))
            self._deaths.add(task)
            task.add_done_callback(self._deaths.discard)
        return iid

    async def _die_later(self, iid: str, after: float) -> None:
        await self.clock.sleep(after)
        self.kill(iid)

    async def label(self, instance_id: str, labels: Tags) -> None:
        self.calls["label"] += 1
        stored = self._find(instance_id)
        stored.desc.tags.update(labels)

    async def destroy(self, instance_id: str, context: instance.Context) -> None:
        self.calls["destroy"] += 1
        if self.destroy_error is not None:
            raise self.destroy_error
        self._find(instance_id)
        del self.instances[instance_id]
        self.destroyed.append((instance_id, context.reason))
        self._publish("deleted", instance_id)

    async def describe_instances(
        self, tags: Tags, properties: bool = False
    ) -> list[instance.Description]:
        self.calls["describe"] += 1
        if self.describe_delay:
            await self.clock.sleep(self.describe_delay)
        if self.describe_error is not None:
            raise self.describe_error
        self._reap()
        now = self.clock.now()
        out = []
        for stored in self.instances.values():
            if stored.visible_at > now:
                continue
            if instance.tags_match(stored.desc.tags, tags):
                d = copy.deepcopy(stored.desc)
                if properties:
                    d.properties = instance.spec_to_wire(stored.spec)
                out.append(d)
        return out

    # --- events ---------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [event.TOPIC_INSTANCE_CHANGE] if self.publishes_events else []

    async def subscribe(self, topic: str) -> AsyncIterator[event.Event]:
        if not self.publishes_events:
            raise errors.NotFoundError("fake plugin publishes no events")
        async for item in self._broker.subscribe(topic):
            yield item

    # --- test controls --------------------------------------------------------------------------

    def add(self, tags: Tags, logical_id: str | None = None, iid: str | None = None) -> str:
        """Create an instance out of band (e.g. one left by a Go InfraKit deployment)."""
        iid = iid or f"instance-{next(self._ids)}"
        now = self.clock.now()
        self.instances[iid] = _Stored(
            instance.Description(iid, logical_id, dict(tags)),
            instance.Spec(tags=dict(tags), logical_id=logical_id),
            now,
            now,
        )
        self._publish("created", iid)
        return iid

    def kill(self, instance_id: str) -> None:
        """The instance dies out of band."""
        self.instances.pop(instance_id, None)
        self._publish("deleted", instance_id)

    def ids(self, **tags: str) -> list[str]:
        return sorted(
            i
            for i, s in self.instances.items()
            if all(s.desc.tags.get(k.replace("_", ".")) == v for k, v in tags.items())
        )

    def _find(self, instance_id: str) -> _Stored:
        stored = self.instances.get(instance_id)
        if stored is None:
            raise errors.NotFoundError(f"fake: no instance {instance_id}")
        return stored

    def _reap(self) -> None:
        if self.die_after is None:
            return
        now = self.clock.now()
        for iid in [i for i, s in self.instances.items() if now - s.created_at >= self.die_after]:
            self.kill(iid)

    def _publish(self, kind: str, iid: str) -> None:
        if self.publishes_events:
            self._broker.publish(
                event.TOPIC_INSTANCE_CHANGE,
                event.Event(topic=event.TOPIC_INSTANCE_CHANGE, type=kind, id=iid),
            )


@dataclass
class FakeFlavorPlugin:
    """Prepares like vanilla (``Init`` lines, ``Tags``) and answers Healthy from a table."""

    #: Health per instance ID; missing IDs get ``default_health``.
    health: dict[str, Health] = field(default_factory=dict)
    default_health: Health = Health.HEALTHY
    #: Overrides the table when set: ``fn(description) -> Health`` (may raise).
    health_fn: Callable[[instance.Description], Health] | None = None
    drain_error: BaseException | None = None
    validate_error: BaseException | None = None

    def __post_init__(self) -> None:
        self.calls: dict[str, int] = {"validate": 0, "prepare": 0, "healthy": 0, "drain": 0}
        self.drained: list[str] = []

    async def validate(self, properties: Any, allocation: flavor.AllocationMethod) -> None:
        self.calls["validate"] += 1
        if self.validate_error is not None:
            raise self.validate_error

    async def prepare(
        self,
        properties: Any,
        spec: instance.Spec,
        allocation: flavor.AllocationMethod,
        index: flavor.Index,
    ) -> instance.Spec:
        self.calls["prepare"] += 1
        props = properties if isinstance(properties, dict) else {}
        out = copy.deepcopy(spec)
        out.tags.update(props.get("Tags") or {})
        lines = props.get("Init") or []
        out.init = "\n".join([spec.init, *lines] if spec.init else lines)
        return out

    async def healthy(self, properties: Any, desc: instance.Description) -> Health:
        self.calls["healthy"] += 1
        if self.health_fn is not None:
            return self.health_fn(desc)
        return self.health.get(desc.id, self.default_health)

    async def drain(self, properties: Any, desc: instance.Description) -> None:
        self.calls["drain"] += 1
        if self.drain_error is not None:
            raise self.drain_error
        self.drained.append(desc.id)


def lookup(plugins: dict[str, Any]) -> Callable[[str], Any]:
    """A lookup function over named plugins; unknown names raise PluginNotFoundError.

    The plugins may be the fakes here, or a plugin author's own class with plain ``def`` (or
    ``async def``) methods, exactly as ``infrakit plugin start`` would serve it: objects whose SPI
    methods are not all ``async def`` are seen through the same adapter (``spi.adapt``) the RPC
    service uses, so a test calls them as the group controller would."""
    found = {name: _as_async(name, obj) for name, obj in plugins.items()}

    def find(name: str) -> Any:
        try:
            return found[name]
        except KeyError:
            raise errors.PluginNotFoundError(f"plugin not found: {name}") from None

    return find


_INSTANCE_METHODS = ("validate", "provision", "destroy", "describe_instances")
_FLAVOR_METHODS = ("validate", "prepare", "healthy", "drain")


def _as_async(name: str, obj: Any) -> Any:
    for methods, adapter in ((_INSTANCE_METHODS, AsyncInstance), (_FLAVOR_METHODS, AsyncFlavor)):
        if all(hasattr(obj, m) for m in methods):
            if all(inspect.iscoroutinefunction(getattr(obj, m)) for m in methods):
                return obj  # already async: kept as is, so a test may still patch its methods
            # Plain methods run inline (not in threads): the fake clock drives them fully.
            return adapter(obj, name, inline=True)
    return obj


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``predicate`` - a plain or an ``async`` function - on the real event loop until it is
    true (for tests using real time); TimeoutError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


@dataclass(frozen=True)
class FakeLeaderInfo:
    id: str
    location: str


class FakeElection:
    """An election the test decides: ``election.elect("m2")`` makes m2 lead, ``elect(None)`` nobody.

    Electors created with :meth:`member` implement :class:`infrakit.leader.Elector`; each is told
    of every change, as a real backend would (the old leader first loses, then the new one gains).
    """

    def __init__(self) -> None:
        self.members: dict[str, FakeElector] = {}
        self.leader_id: str | None = None

    def member(self, id: str, location: str = "") -> FakeElector:
        elector = FakeElector(self, id, location)
        self.members[id] = elector
        return elector

    def elect(self, member_id: str | None) -> None:
        old = self.members.get(self.leader_id or "")
        self.leader_id = member_id
        if old is not None and old.id != member_id:
            old._tell(False)
        new = self.members.get(member_id or "")
        if new is not None and new.started:
            new._tell(True)


class FakeElector:
    """One member of a :class:`FakeElection`."""

    def __init__(self, election: FakeElection, id: str, location: str) -> None:
        self.election = election
        self.id = id
        self.location = location
        self.started = False
        self.resigned: list[float] = []
        self._leading = False
        self._queues: list[asyncio.Queue[bool]] = []

    async def start(self) -> None:
        self.started = True
        self._tell(self.election.leader_id == self.id)

    async def stop(self) -> None:
        self.started = False
        if self.election.leader_id == self.id:
            self.election.elect(None)
        self._tell(False)

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def changes(self) -> AsyncIterator[bool]:
        queue: asyncio.Queue[bool] = asyncio.Queue()
        self._queues.append(queue)
        if self.started:
            queue.put_nowait(self._leading)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    async def leader(self) -> FakeLeaderInfo | None:
        lid = self.election.leader_id
        if lid is None:
            return None
        member = self.election.members[lid]
        return FakeLeaderInfo(lid, member.location)

    async def resign(self, pause: float) -> None:
        """Give leadership up (the test decides who leads next); recorded in ``resigned``."""
        self.resigned.append(pause)
        if self.election.leader_id == self.id:
            self.election.elect(None)

    async def members(self) -> list[FakeLeaderInfo]:
        started = [m for m in self.election.members.values() if m.started]
        return [FakeLeaderInfo(m.id, m.location) for m in sorted(started, key=lambda m: m.id)]

    def describe(self) -> str:
        return "fake election"

    def _tell(self, leading: bool) -> None:
        self._leading = leading
        for queue in self._queues:
            queue.put_nowait(leading)
