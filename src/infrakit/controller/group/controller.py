"""The default group controller: keeps each committed group's instances equal to its spec.

The reconcile contract
----------------------
Every group is reconciled through one :class:`~infrakit.controller.queue.WorkQueue` key: one
worker at a time per group, bursts of triggers collapse into one pass, and a pass returns when it
wants to run again. Triggers are

* API calls (commit, free, scale, pause/resume/promote/rollback/reset, Status);
* instance events from the group's instance plugin, routed to the group that owns the instance
  (:mod:`~infrakit.controller.source`) - this is what heals in milliseconds, not a 10 s poll;
* the end of the controller's own work (a create returned, a destroy finished);
* the resync timer (``poll_interval``, default 10 s) - the safety net, and the only trigger for
  plugins that publish no events (Go InfraKit plugins).

A pass (:meth:`GroupController._reconcile`) is level-triggered: it never relies on what triggered
it. It reads, top to bottom:

1. **observe** - ``DescribeInstances`` (:mod:`~infrakit.controller.group.actuator`), joined with
   what is in flight (:mod:`~infrakit.controller.group.observe`, pure). An error means *no action
   this round* - never "zero instances" (that is how InfraKit ran away, #677). A group with an
   ``Ingress`` then has its load balancer synced with the members, in the background
   (:mod:`~infrakit.controller.group.balancer`).
2. **health** - ``Flavor.Healthy`` for the members that need it.
3. **rollout** - the rolling update's record advances, finishes, pauses or rolls back
   (:mod:`~infrakit.controller.group.rollout`, pure).
4. **decide** - creates and destroys (:mod:`~infrakit.controller.group.reconcile`, pure).
5. **act** - creates and destroys start as background tasks of the group (actuator), so a slow or
   hung provider never blocks the loop; each asks for the next pass when it ends.

Never running away: pending creates count toward the group; creates are bounded by
``Provisioning.MaxParallel``; every failed create backs off, young deaths make the group probe one
create at a time, and ``MaxFailures`` in a row open the circuit breaker
(:mod:`~infrakit.controller.group.breaker`).

Persisted (``store``), each before it takes effect: the committed spec (``groups/<gid>``), the
last spec that fully converged (``stable/<gid>``, the rollback target) and the rolling update's
progress (``updates/<gid>``), so a restarted controller resumes every group and every update.

The controller never talks RPC: it is given typed lookups that turn plugin names into objects
implementing the instance and flavor SPIs (RPC clients, in-process adapters, fakes) and a clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from infrakit import errors
from infrakit._utils.aio import Broker, cancel_and_wait
from infrakit._utils.clock import Clock, SystemClock
from infrakit._utils.duration import parse_duration
from infrakit.controller.group import rollout
from infrakit.controller.group.actuator import Actuator
from infrakit.controller.group.balancer import Ingress
from infrakit.controller.group.breaker import Notice
from infrakit.controller.group.extensions import GroupExtensions
from infrakit.controller.group.kind import DEFAULT_POLL_INTERVAL
from infrakit.controller.group.observe import observe
from infrakit.controller.group.plan import plan_sentence
from infrakit.controller.group.reconcile import Decision, by_config, decide, health_checks_due
from infrakit.controller.group.records import GroupRecords
from infrakit.controller.group.runtime import Group, hidden_due, min_delay, visibility_due
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.queue import WorkQueue
from infrakit.controller.source import InstanceEvents
from infrakit.spi import event as spi_event
from infrakit.spi import group as spi_group
from infrakit.spi import instance as spi_instance
from infrakit.spi.plugin import FlavorLookup, InstanceLookup, LoadBalancerLookup
from infrakit.store import Store

__all__ = ["GroupController"]

log = logging.getLogger(__name__)

#: Event types logged at debug level (still published as events): one line per instance created
#: is noise at 1000 instances; the batch's "creating N instance(s)" and "converged" stay at info.
_QUIET_EVENTS = frozenset({"instance-created"})
#: While a plugin's event stream is live, the resync runs this many times less often...
EVENTS_RESYNC_FACTOR = 6.0
#: ...but at least this often (seconds).
EVENTS_RESYNC_MAX = 60.0


class GroupController(GroupExtensions):
    """Implements :class:`infrakit.spi.group.Plugin` for many groups, plus infrakit's extensions
    (:class:`~infrakit.controller.group.extensions.GroupExtensions`: Status, Plan, update
    controls)."""

    def __init__(
        self,
        instance_lookup: InstanceLookup,
        flavor_lookup: FlavorLookup,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        poll_interval: float = parse_duration(DEFAULT_POLL_INTERVAL),
        name: str = "group",
        rng: random.Random | None = None,
        workers: int = 4,
        events: Broker[spi_event.Event] | None = None,
        on_pass: Callable[[str, float, bool], None] | None = None,
        on_notice: Callable[[str, str], None] | None = None,
        loadbalancer_lookup: LoadBalancerLookup | None = None,
    ) -> None:
        """Wire the controller: its queue (one worker per group at a time), the actuator that
        calls the plugins, and the instance-event source that queues the groups events concern.
        ``workers`` bounds how many groups reconcile at once; ``events`` is where it publishes;
        ``loadbalancer_lookup`` reaches the balancers of groups with an ``Ingress``."""
        self.store = store
        self.records = GroupRecords(store)
        self.clock: Clock = clock or SystemClock()
        self.poll_interval = poll_interval
        self.name = name
        self.groups: dict[str, Group] = {}
        self.queue = WorkQueue(self._reconcile, self.clock, workers=workers, on_done=on_pass)
        #: Told (group ID, event type) of every event published (metrics count them).
        self._on_notice = on_notice
        #: Where events are published (``group/<id>``); the manager hands its own.
        self.events: Broker[spi_event.Event] = (
            events if events is not None else Broker(history=spi_event.RECENT_EVENTS)
        )
        self._rng = rng or random.Random()
        self.sources = InstanceEvents(
            instance_lookup,
            self.clock,
            creating=lambda gid: bool(self.groups[gid].state.creating),
            enqueue=self.queue.add,
        )
        self.actuator = Actuator(
            instance_lookup,
            flavor_lookup,
            self.clock,
            publish=self._publish,
            requeue=self.queue.add,
            current=self.groups.get,
            persist_update=self._persist_update,
            on_provisioned=lambda group, iid: self.sources.provisioned(group.id, iid),
            rng=self._rng,
            run_id=secrets.token_hex(4),
            ingress=Ingress(loadbalancer_lookup, self.clock, self._publish),
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._started = False

    @property
    def watch_mode(self) -> dict[str, str]:
        """Instance plugin name -> "events" | "polling" | "reconnecting" (shown in describe)."""
        return self.sources.mode

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load committed groups from the store and start reconciling them."""
        if self._started:
            return
        self._started = True
        self.actuator.stopping = False
        self.queue.start()
        for group in await self.records.load(self.clock.now()):
            self.groups[group.id] = group
            self.sources.follow(group.settings.properties.instance.plugin, group.id)
            self._publish(
                group.id, Notice("resumed", f"resumed managing {group.id} from the store")
            )
            self.queue.add(group.id)
        if self.groups:
            log.info("resumed %d group(s) from %s", len(self.groups), self.records.describe())

    async def stop(self) -> None:
        """Stop reconciling; wait for in-flight work to be cancelled. Instances are untouched."""
        self.actuator.stopping = True
        await self.queue.stop()
        await self.sources.stop()
        await cancel_and_wait(*(t for g in self.groups.values() for t in g.tasks))
        self._started = False

    # --- the Group SPI -------------------------------------------------------------------------

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str:
        """Adopt ``spec``: validate it (and let both plugins validate their Properties), persist it,
        then reconcile. Returns InfraKit's plan sentence (``Managing 5 instances``, ``Performing a
        rolling update on 5 instances``...). ``pretend`` computes the sentence and changes nothing.
        A commit of a new config hash starts a new rolling update; committing again resets the
        breaker ("try again")."""
        settings = parse_spec(spec)
        await self.actuator.validate(settings)
        gid = settings.id
        async with self._lock(gid):
            old = self.groups.get(gid)
            members = await self.actuator.describe(settings) if old is not None else []
            details = plan_sentence(old.settings if old else None, settings, members)
            if pretend:
                return details
            await self.records.put_spec(settings)  # before it takes effect
            if old is None:
                group = Group(settings)
                group.stable = await self.records.stable(gid)
                self.groups[gid] = group
                self._publish(gid, Notice("committed", f"managing {gid}: {details}"))
            else:
                group = old
                previous_plugin = old.settings.properties.instance.plugin
                if old.settings.hash != settings.hash:
                    group.state.update = None  # a new target: the next pass starts its record
                    await self.records.put_update(gid, None)
                elif group.state.update is not None:
                    group.state.update.failed = False
                group.settings = settings
                group.state.breaker.reset()  # committing again means "try again"
                self._publish(gid, Notice("committed", f"{gid}: {details}"))
                if previous_plugin != settings.properties.instance.plugin:
                    self.sources.release(previous_plugin, gid)
            group.converged = False
            self.sources.follow(settings.properties.instance.plugin, gid)
        self.queue.add(gid)
        return details

    async def free_group(self, id: str) -> None:
        """Stop managing the group; its instances are left alone (a new commit adopts them)."""
        group = self._get(id)
        async with self._lock(id):
            # The store first: if it refuses (not the leader, etcd down), nothing changed and the
            # group is still managed; forgetting first would leave it stored but unmanaged.
            await self.records.delete_group(id)
            await self._forget(id, group)
        self._publish(
            id, Notice("freed", f"no longer managing {id}; its instances were left alone")
        )

    async def describe_group(self, id: str) -> spi_group.GroupDescription:
        """The members of the last observation (as :meth:`status`), never a hung provider's."""
        group = self._get(id)
        await self._fresh_observation(group)
        obs = group.observation
        return spi_group.GroupDescription(
            instances=list(obs.visible) if obs is not None else [],
            converged=group.truly_converged(self.clock.now()),
        )

    async def destroy_group(self, id: str) -> None:
        """Stop managing the group, then drain and destroy every member. The store forgets it
        first, so a failure midway leaves no half-managed group; undestroyed instances are named."""
        group = self._get(id)
        async with self._lock(id):
            await self.records.delete_group(id)  # first, as in free_group
            await self._forget(id, group)
            self._publish(id, Notice("destroying", f"destroying every instance of {id}"))
            members = await self.actuator.describe(group.settings)
            await self.actuator.terminate(
                group,
                members,
                "the group is no longer managed - destroy them with `infrakit instance destroy`",
            )
        self._publish(id, Notice("destroyed", f"destroyed {len(members)} instance(s) of {id}"))

    async def inspect_groups(self) -> list[spi_group.Spec]:
        """The committed specs, normalized as InfraKit prints them (defaults filled in)."""
        return [
            spi_group.Spec(id=gid, properties=g.settings.normalized())
            for gid, g in sorted(self.groups.items())
        ]

    async def destroy_instances(self, id: str, instances: list[str]) -> None:
        """Destroy these members now (drained first). A cattle group shrinks by as many (InfraKit
        HEAD's semantics), persisted before anything is destroyed; a pet group keeps its logical
        IDs, so the destroyed pets are recreated. Unknown IDs refuse the whole call."""
        group = self._get(id)
        async with self._lock(id):
            members = await self.actuator.describe(group.settings)
            by_id = {m.id: m for m in members}
            unknown = [i for i in instances if i not in by_id]
            if unknown:
                raise errors.NotFoundError(
                    f"group {id}: {', '.join(unknown)} not among its {len(members)} instances; "
                    f"nothing was destroyed (see `infrakit group describe {id}`)"
                )
            victims = [by_id[i] for i in dict.fromkeys(instances)]
            settings = group.settings
            if not settings.is_quorum:
                # Cattle shrink by the instances destroyed (InfraKit HEAD's semantics).
                new_size = max(0, settings.size - len(victims))
                new_settings = settings.resized(new_size)
                await self.records.put_spec(new_settings)
                group.settings = new_settings
                group.converged = False
            for v in victims:
                group.state.destroying[v.id] = self.clock.now()
        try:
            await self.actuator.terminate(
                group, victims, "try again, or destroy them with `infrakit instance destroy`"
            )
        finally:
            self.queue.add(id)

    async def size(self, id: str) -> int:
        """The group's target size (the number of logical IDs for pets)."""
        return self._get(id).settings.size

    async def set_size(self, id: str, size: int) -> None:
        """Scale a cattle group: a commit of the same spec with ``Allocation.Size`` replaced."""
        group = self._get(id)
        if size < 0:
            raise errors.SpecError("size cannot be negative")
        if group.settings.is_quorum:
            raise errors.SpecError(
                "cannot set size if logic ids are explicitly set (edit Allocation.LogicalIDs "
                "and commit instead)"
            )
        if size == 0:
            raise errors.SpecError(
                f"cannot scale {id} to 0: Allocation must not be blank; "
                f"use `infrakit group destroy {id}` to remove the group"
            )
        await self.commit_group(group.settings.resized(size).spec(), False)

    # --- event source --------------------------------------------------------------------------

    def topics(self) -> list[str]:
        """Event topics: ``group/<id>`` per managed group."""
        return sorted(f"group/{gid}" for gid in self.groups)

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        """Follow the controller's events on ``topic`` (a prefix matches every group)."""
        return self.events.subscribe(topic)

    def recent(self, topic: str, since: float) -> list[spi_event.Event]:
        """The remembered events on ``topic`` since wall time ``since``, oldest first."""
        return self.events.recent(topic, since)

    # --- the pass ------------------------------------------------------------------------------

    async def _reconcile(self, gid: str) -> float | None:
        """One level-triggered pass over group ``gid`` (see the module docstring); returns when
        to look again (seconds), or None. Whenever it awaits a plugin it checks afterwards that
        the group was not freed or re-committed meanwhile, and if it was, looks again at once."""
        group = self.groups.get(gid)
        if group is None:
            return None
        group.passes += 1
        settings, state = group.settings, group.state
        # 1. observe: no answer means no action (retry later), never "zero instances".
        found = await self.actuator.observe(group)
        if isinstance(found, float):
            return found
        if self._changed(group, settings):
            return 0.0
        now = self.clock.now()
        obs = group.observation = observe(settings, state, found, now, self.clock.wall(), self._rng)
        # The visible members are the members (the same set) unless some are being destroyed.
        same = len(obs.visible) == len(obs.members)
        self.sources.own(gid, state.last_seen if same else {d.id: None for d in obs.visible})
        self._publish_all(gid, obs.notices)
        # Ingress: the load balancer follows the members (in the background; no Ingress: no-op).
        self.actuator.ingress.sync(group, obs.members)
        split = by_config(settings, obs.members)  # once: every step below needs it
        # 2. health: only the members whose answer the rules need now.
        due = health_checks_due(settings, obs.members, state, now, split)
        if due:
            await self.actuator.check_health(group, due)
            if self._changed(group, settings):
                return 0.0
            now = self.clock.now()
        # 3. rollout: the update's record moves on (persisted before anything acts on it).
        wall = self.clock.wall()
        step = rollout.advance(settings, state, obs.members, group.stable, now, wall, split)
        self._publish_all(gid, step.notices)
        if step.persist:
            await self._persist_update(group)
        if step.rollback_to is not None:
            group.spawn(self._auto_rollback(gid, step.rollback_to))
        # 4. decide, 5. act.
        decision = decide(settings, obs.members, state, now, self._rng, split)
        self._act(group, decision, now)
        await self._note_convergence(group, decision.converged)
        group.wake_observers()
        health = settings.properties.health
        return min_delay(
            decision.requeue_after,
            self._resync_after(settings),
            visibility_due(group, now),
            hidden_due(group, now),
            health.check_interval if health is not None else None,
        )

    def _resync_after(self, settings: GroupSettings) -> float:
        """The safety-net pass: every ``poll_interval`` for a plugin without events (Go
        InfraKit's); while the plugin's event stream is live, events do the work and the resync
        is ``EVENTS_RESYNC_FACTOR`` times rarer, at most every ``EVENTS_RESYNC_MAX`` seconds -
        so 100 000 idle instances cost one pass a minute, not six."""
        plugin = settings.properties.instance.plugin
        if self.watch_mode.get(plugin) != "events":
            return self.poll_interval
        return max(
            self.poll_interval, min(EVENTS_RESYNC_MAX, self.poll_interval * EVENTS_RESYNC_FACTOR)
        )

    def _act(self, group: Group, decision: Decision, now: float) -> None:
        """Start the decision's creates and destroys in the background; record why."""
        state = group.state
        for note in decision.notes:
            if not state.decisions or state.decisions[-1] != note:  # say each reason once
                state.note(note)
                self._publish(group.id, Notice("decision", note))
        state.create_backlog = decision.backlog
        for lid in decision.creates:
            group.spawn(self.actuator.create(group, lid))
        for desc, reason in decision.destroys:
            if desc.id in state.destroying:
                continue  # one destroy per instance at a time, whatever the decision says
            state.destroying[desc.id] = now
            if reason == spi_instance.REASON_ROLLING_UPDATE:
                state.rolling_destroys.add(desc.id)
            group.spawn(self.actuator.destroy(group, desc, reason))

    def _changed(self, group: Group, settings: GroupSettings) -> bool:
        """The group was freed or re-committed while the pass awaited a plugin."""
        return self.groups.get(group.id) is not group or group.settings is not settings

    def _publish_all(self, gid: str, notices: list[Notice]) -> None:
        """Publish notices in order."""
        for notice in notices:
            self._publish(gid, notice)

    async def _note_convergence(self, group: Group, converged: bool) -> None:
        """Publish the moment a group converges; its spec becomes the rollback target."""
        was, group.converged = group.converged, converged
        if converged and not was:
            settings = group.settings
            message = f"{group.id} converged: {settings.size} instance(s)"
            self._publish(group.id, Notice("converged", message))
            if group.stable != settings.raw:
                group.stable = settings.raw
                await self.records.put_stable(group.id, settings.raw)

    async def _auto_rollback(self, gid: str, previous: Any) -> None:
        """AutoRollback: commit the last spec that fully converged, saying how it went."""
        try:
            details = await self.commit_group(spi_group.Spec(gid, previous), False)
        except errors.InfrakitError as exc:
            self._publish(
                gid, Notice("rollback-failed", f"{gid}: automatic rollback failed: {exc}")
            )
            return
        self._publish(gid, Notice("rolled-back", f"{gid} rolled back automatically: {details}"))

    def _get(self, gid: str) -> Group:
        """The managed group ``gid``, or InfraKit's "is not being watched" error."""
        group = self.groups.get(gid)
        if group is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise errors.GroupNotFoundError(
                f"Group '{gid}' is not being watched (groups: {known}); "
                "commit it first with `infrakit group commit FILE`"
            )
        return group

    def _lock(self, gid: str) -> asyncio.Lock:
        """The lock serializing API calls that change group ``gid`` (commit, free, destroy)."""
        lock = self._locks.get(gid)
        if lock is None:
            lock = self._locks[gid] = asyncio.Lock()
        return lock

    async def _forget(self, gid: str, group: Group) -> None:
        """Stop managing ``gid``: no more reconciles, in-flight creates cancelled."""
        self.groups.pop(gid, None)
        self.queue.forget(gid)
        self.sources.own(gid, set())
        await cancel_and_wait(*group.tasks)
        self.sources.release(group.settings.properties.instance.plugin, gid)

    def _publish(self, gid: str, notice: Notice) -> None:
        """An event on ``group/<id>``, logged on the way (quiet types at debug, warnings as
        such)."""
        level = logging.DEBUG if notice.type in _QUIET_EVENTS else logging.INFO
        if notice.warning:
            level = logging.WARNING
        if log.isEnabledFor(level):
            fields = {"group": gid, "event": notice.type, "instance": notice.instance_id}
            log.log(level, "%s: %s", gid, notice.message, extra=fields)
        if self._on_notice is not None:
            self._on_notice(gid, notice.type)
        self.events.publish(
            f"group/{gid}",
            spi_event.Event(
                topic=f"group/{gid}",
                type=notice.type,
                id=notice.instance_id or gid,
                message=notice.message,
                data=notice.data,
            ),
        )

    async def _persist_update(self, group: Group) -> None:
        """Write (or delete) the group's rolling-update record, before anything acts on it."""
        await self.records.put_update(group.id, group.state.update)
