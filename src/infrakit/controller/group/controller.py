"""The default group controller: keeps each committed group's instances equal to its spec.

How it works
------------
Every group is reconciled through one :class:`~infrakit.controller.queue.WorkQueue`, so a group is
handled by one worker at a time and bursts of triggers collapse into one pass. Triggers are:

* API calls (commit, free, scale, pause/resume/promote/rollback/reset);
* **instance-change events** from the group's instance plugin (the file plugin publishes one when
  any file in its directory changes; the process plugin when a process exits) - this is what heals
  in milliseconds instead of InfraKit's 10 s poll;
* completion of the controller's own work (a create returned, a destroy finished);
* a resync timer (``poll_interval``, default 10 s) - the safety net, and the only trigger for
  plugins that publish no events (Go InfraKit plugins).

One reconcile pass (:meth:`GroupController._reconcile`) is level-triggered:

1. **observe** - ``DescribeInstances({"infrakit.group": gid})``. An error means *no action this
   round* (never "zero instances": that is how InfraKit ran away, #677).
2. **remember** - match the answer against in-flight creates (so a provider whose Describe lags
   behind Provision never causes duplicates), notice instances that vanished (crash-loop
   detection), and keep health history.
3. **ask health** - ``Flavor.Healthy`` for the members that need it (every member each
   ``Health.CheckInterval`` when the group has a Health section; otherwise only new instances a
   rolling update waits for). An error counts as UNKNOWN.
4. **decide** - the pure rules of :mod:`infrakit.controller.group.reconcile`.
5. **act** - creates (Prepare + Provision) and destroys (Drain + Destroy) run as background tasks,
   so a slow or hung provider never blocks the loop; each is bounded by a timeout and its outcome
   triggers the next pass.

Never running away: pending creates count toward the group; creates are bounded by
``Provisioning.MaxParallel``; failed creates back off exponentially (with jitter); and after
``Provisioning.MaxFailures`` consecutive failures - Provision errors, instances that never appear,
or instances that die within ``Provisioning.CrashLoopWindow`` of creation - the group turns
*Degraded* and creates nothing until ``Provisioning.CoolDown`` has passed (then one trial create),
the next commit, or ``infrakit group reset``.

What is persisted (``store``): the committed spec (``groups/<gid>``) before it takes effect, the
last spec that fully converged (``stable/<gid>``, the rollback target), and rolling-update progress
(``updates/<gid>``), so a restarted controller resumes every group and every update.

The controller never talks RPC itself: it is given *lookups* that turn plugin names into objects
implementing the instance and flavor SPIs (RPC clients in production, fakes in tests), and a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from infrakit import errors
from infrakit._utils.aio import Broker, cancel_and_wait
from infrakit._utils.duration import format_duration
from infrakit.controller.clock import Clock, SystemClock
from infrakit.controller.group.plan import plan_sentence, structured_plan
from infrakit.controller.group.reconcile import (
    backoff_delay,
    decide,
    health_checks_due,
    is_ready,
    logical_id_of,
    probe_time,
    trial_wait,
)
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import (
    GroupState,
    InFlightCreate,
    InstanceHealth,
    UpdateProgress,
)
from infrakit.controller.queue import WorkQueue
from infrakit.spi import event as spi_event
from infrakit.spi import flavor as spi_flavor
from infrakit.spi import group as spi_group
from infrakit.spi import instance as spi_instance
from infrakit.spi.types import (
    CONFIG_HASH_TAG,
    CREATE_TOKEN_TAG,
    CREATED_TAG,
    GROUP_TAG,
    LOGICAL_ID_TAG,
    Health,
    format_timestamp,
    parse_timestamp,
)
from infrakit.store import Store

__all__ = ["GroupController"]

log = logging.getLogger(__name__)

#: Event types logged at debug level (still published as events).
_QUIET_EVENTS = frozenset({"instance-created"})

#: Instances that die within this many seconds of a counted early death, and already existed
#: when it happened, are the same disaster and count once (see ``Breaker.burst_at``).
EARLY_DEATH_BURST = 2.0

#: Seconds allowed for DescribeInstances during a reconcile.
DESCRIBE_TIMEOUT = 30.0
#: Seconds allowed for a plugin's Validate on commit: well inside the CLI's 60 s call timeout, so
#: a hung plugin is named in the error rather than the group controller the CLI talked to.
VALIDATE_TIMEOUT = 15.0
#: Seconds allowed for one Flavor.Healthy call (a timeout counts as UNKNOWN).
HEALTH_TIMEOUT = 10.0
#: Seconds allowed for Drain, and for Destroy.
DRAIN_TIMEOUT = 300.0
DESTROY_TIMEOUT = 120.0
#: Concurrent Flavor.Healthy calls per group.
HEALTH_PARALLEL = 32
#: Concurrent destroys when a whole group is destroyed.
DESTROY_PARALLEL = 32
#: An instance a Destroy said OK for but the provider still lists is hidden at least this long
#: (or VisibilityTimeout), doubled per repeat, up to DESTROY_RETRY_MAX, before it is destroyed again.
DESTROY_RETRY_MIN = 10.0
DESTROY_RETRY_MAX = 3600.0
#: Retry delays (seconds) after a failed observation: doubled per failure up to the maximum.
OBSERVE_RETRY_INITIAL = 0.5
OBSERVE_RETRY_MAX = 30.0
#: Status and DescribeGroup answer from the last observation. When it is older than
#: STATUS_REFRESH_AFTER they ask for a new one and wait for it at most STATUS_WAIT; an observation
#: counts as fresh (Converged may be true) for FRESH_FOR seconds.
STATUS_REFRESH_AFTER = 0.5
STATUS_WAIT = 0.08
FRESH_FOR = 1.0
#: A DescribeInstances running longer than this makes the group's actual size unknown.
OBSERVE_SLOW = 2.0


@dataclass
class Observation:
    """The members one reconcile pass saw (after matching in-flight work), and when."""

    members: list[spi_instance.Description]
    at: float


@dataclass
class Group:
    """One managed group: its settings and runtime memory."""

    settings: GroupSettings
    state: GroupState = field(default_factory=GroupState)
    #: Raw properties of the last spec that fully converged (rollback target).
    stable: Any = None
    converged: bool = False
    observe_failures: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Ready desired members seen on the last pass (progress detection).
    ready_count: int = 0
    #: The last successful observation (what Status and DescribeGroup report).
    observation: Observation | None = None
    #: Since when a DescribeInstances of a pass is running (None: none is).
    observing_since: float | None = None
    #: Why the latest observation attempt failed ("" when it succeeded).
    observe_error: str = ""
    #: Set (and replaced) after every observation attempt: Status waits on it.
    observed: asyncio.Event = field(default_factory=asyncio.Event)


class GroupController:
    """Implements :class:`infrakit.spi.group.Plugin` (plus infrakit's extensions) for many groups."""

    def __init__(
        self,
        instance_lookup: Callable[[str], Any],
        flavor_lookup: Callable[[str], Any],
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        poll_interval: float = 10.0,
        name: str = "group",
        rng: random.Random | None = None,
        workers: int = 4,
    ) -> None:
        self.instance_lookup = instance_lookup
        self.flavor_lookup = flavor_lookup
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.poll_interval = poll_interval
        self.name = name
        self.rng = rng or random.Random()
        self.groups: dict[str, Group] = {}
        self.queue = WorkQueue(self._reconcile, self.clock, workers=workers)
        self.events: Broker[spi_event.Event] = Broker()
        self._watches: dict[str, asyncio.Task[None]] = {}
        #: Instance plugin name -> "events" | "polling" | "reconnecting" (shown in describe).
        self.watch_mode: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._create_tokens = 0
        #: Prefix of this run's create tokens: a token left on an instance by an earlier run
        #: never matches a create of this one.
        self._run_id = secrets.token_hex(4)
        self._started = False
        #: Set by ``stop``: chained creates end at once (see ``_create``).
        self._stopping = False
        #: Instance plugins already warned about for listing an ID twice.
        self._warned_duplicates: set[str] = set()

    # ============================================================================================
    # lifecycle
    # ============================================================================================

    async def start(self) -> None:
        """Load committed groups from the store and start reconciling them."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        self.queue.start()
        if self.store is None:
            return
        specs = await self.store.list("groups/")
        for key, doc in sorted(specs.items()):
            gid = key.removeprefix("groups/")
            try:
                spec = spi_group.spec_from_wire(doc)
                settings = parse_spec(spec)
            except errors.InfrakitError as exc:
                log.error("stored group %s is invalid and is not managed: %s", gid, exc)
                continue
            group = Group(settings)
            group.stable = await self.store.get(f"stable/{gid}")
            upd = UpdateProgress.from_json(await self.store.get(f"updates/{gid}"))
            group.state.update = upd
            if upd is not None:
                # Instances this update destroyed before the restart may still be listed by a
                # provider that destroys asynchronously (EC2 "shutting-down"): like any destroy
                # of ours, they are not members - neither destroyed twice nor counted as old.
                hidden_until = (
                    self.clock.now() + settings.properties.provisioning.visibility_timeout
                )
                for iid in upd.destroyed:
                    group.state.destroyed_until[iid] = hidden_until
            self.groups[gid] = group
            self._ensure_watch(settings.properties.instance.plugin)
            self._publish(gid, "resumed", f"resumed managing {gid} from the store")
            self.queue.add(gid)
        if self.groups:
            log.info("resumed %d group(s) from %s", len(self.groups), self.store.describe())

    async def stop(self) -> None:
        """Stop reconciling; wait for in-flight work to be cancelled. Instances are untouched."""
        self._stopping = True
        await self.queue.stop()
        tasks = [t for g in self.groups.values() for t in g.tasks]
        await cancel_and_wait(*self._watches.values(), *tasks)
        self._watches.clear()
        self._started = False

    # ============================================================================================
    # the Group SPI
    # ============================================================================================

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str:
        settings = parse_spec(spec)
        await self._validate_with_plugins(settings)
        gid = settings.id
        async with self._lock(gid):
            old = self.groups.get(gid)
            members: list[spi_instance.Description] = []
            if old is not None:
                members = await self._describe(settings, gid)
            details = plan_sentence(old.settings if old else None, settings, members)
            if pretend:
                return details
            await self._persist_spec(settings)
            if old is None:
                group = Group(settings)
                group.stable = await self._store_get(f"stable/{gid}")
                self.groups[gid] = group
                self._publish(gid, "committed", f"managing {gid}: {details}")
            else:
                group = old
                previous_plugin = old.settings.properties.instance.plugin
                if old.settings.hash != settings.hash:
                    group.state.update = None
                    await self._store_delete(f"updates/{gid}")
                elif group.state.update is not None:
                    group.state.update.failed = False
                group.settings = settings
                group.state.breaker.reset()
                group.converged = False
                self._publish(gid, "committed", f"{gid}: {details}")
                if previous_plugin != settings.properties.instance.plugin:
                    self._release_watch(previous_plugin)
            group.converged = False
            self._ensure_watch(settings.properties.instance.plugin)
        self.queue.add(gid)
        return details

    async def free_group(self, id: str) -> None:
        group = self._get(id)
        async with self._lock(id):
            # The store first: if it refuses (not the leader, etcd down), nothing changed and the
            # group is still managed; forgetting first would leave it stored but unmanaged.
            for key in (f"groups/{id}", f"updates/{id}", f"stable/{id}"):
                await self._store_delete(key)
            await self._forget(id, group)
        self._publish(id, "freed", f"no longer managing {id}; its instances were left alone")

    async def describe_group(self, id: str) -> spi_group.GroupDescription:
        """The members of the last observation (see :meth:`status`), never a hung provider's."""
        group = self._get(id)
        await self._fresh_observation(group)
        obs = group.observation
        members = list(obs.members) if obs is not None else []
        return spi_group.GroupDescription(instances=members, converged=self._converged(group))

    async def destroy_group(self, id: str) -> None:
        group = self._get(id)
        async with self._lock(id):
            for key in (f"groups/{id}", f"updates/{id}", f"stable/{id}"):
                await self._store_delete(key)  # first, as in free_group
            await self._forget(id, group)
            self._publish(id, "destroying", f"destroying every instance of {id}")
            members = await self._describe(group.settings, id)
            sem = asyncio.Semaphore(DESTROY_PARALLEL)
            failures: list[str] = []

            async def one(desc: spi_instance.Description) -> None:
                async with sem:
                    try:
                        await self._drain_and_destroy(
                            group, desc, spi_instance.REASON_TERMINATE, strict_drain=False
                        )
                    except errors.InfrakitError as exc:
                        failures.append(f"{desc.id}: {exc}")

            await asyncio.gather(*(one(m) for m in members))
        if failures:
            raise errors.PluginError(
                f"group {id}: {len(failures)} of {len(members)} instance(s) could not be "
                f"destroyed ({'; '.join(failures[:3])}); the group is no longer managed - "
                "destroy them with `infrakit instance destroy`"
            )
        self._publish(id, "destroyed", f"destroyed {len(members)} instance(s) of {id}")

    async def inspect_groups(self) -> list[spi_group.Spec]:
        return [
            spi_group.Spec(id=gid, properties=g.settings.normalized())
            for gid, g in sorted(self.groups.items())
        ]

    async def destroy_instances(self, id: str, instances: list[str]) -> None:
        group = self._get(id)
        async with self._lock(id):
            members = await self._describe(group.settings, id)
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
                new_size = max(0, settings.size - len(victims))
                raw = _with_size(settings.raw, new_size)
                new_settings = parse_spec(spi_group.Spec(id, raw))
                await self._persist_spec(new_settings)
                group.settings = new_settings
                group.converged = False
            for v in victims:
                group.state.destroying[v.id] = self.clock.now()
        try:
            await asyncio.gather(
                *(
                    self._drain_and_destroy(
                        group, v, spi_instance.REASON_TERMINATE, strict_drain=False
                    )
                    for v in victims
                )
            )
        finally:
            self.queue.add(id)

    async def size(self, id: str) -> int:
        return self._get(id).settings.size

    async def set_size(self, id: str, size: int) -> None:
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
        await self.commit_group(spi_group.Spec(id, _with_size(group.settings.raw, size)), False)

    # --- infrakit extensions (Group.Status, Group.Plan, ...) ------------------------------------

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Desired / actual / healthy / updating / degraded, and per-instance state.

        Answered from the last observation within ``STATUS_WAIT``, whatever the provider does:
        an older one than ``STATUS_REFRESH_AFTER`` asks the group's worker for a new pass and
        waits that long for it. ``Converged`` is true only when that observation is fresh, it
        matched the spec and nothing is in flight; ``Actual`` is None (with ``ActualUnknown``
        saying why) while the provider cannot be observed."""
        group = self._get(id)
        await self._fresh_observation(group)
        settings, state = group.settings, group.state
        now = self.clock.now()
        obs = group.observation
        unknown = self._unknown_reason(group, now)
        members = list(obs.members) if obs is not None else []
        instances = []
        for m in sorted(members, key=lambda m: (logical_id_of(m) or "", m.id)):
            h = state.health.get(m.id)
            instances.append(
                {
                    "ID": m.id,
                    "LogicalID": logical_id_of(m),
                    "Config": "desired" if settings.hash.matches(m.tags) else "old",
                    "Health": _health_word(h),
                    "HealthSince": round(now - h.since, 3)
                    if h and h.last_check is not None
                    else None,
                    "Destroying": m.id in state.destroying,
                    "Note": h.note if h else "",
                }
            )
        healthy = sum(1 for i in instances if i["Health"] == "healthy")
        upd = state.update
        breaker = state.breaker
        return {
            "Desired": settings.size,
            "Actual": None if unknown else len(members),
            "ActualUnknown": unknown or None,
            "ObservedAgo": round(now - obs.at, 3) if obs is not None else None,
            "Healthy": healthy,
            "HealthChecked": settings.properties.health is not None,
            "Pending": len(state.creating),
            "Destroying": len(state.destroying),
            "Converged": self._converged(group),
            "ConfigHash": settings.hash.head,
            "Updating": (
                {
                    "Target": upd.target,
                    "Replaced": upd.replaced,
                    "Total": upd.total,
                    "Paused": upd.paused,
                    "Failed": upd.failed,
                    "Canary": settings.properties.updating.canary,
                    "Promoted": upd.promoted,
                    "Reason": upd.reason,
                }
                if upd is not None
                else None
            ),
            "Degraded": (
                {
                    "Reason": breaker.reason,
                    "Failures": breaker.failures,
                    "HalfOpen": breaker.half_open,
                    "FailedTrials": breaker.failed_trials,
                    "NextTrialIn": round(
                        max(
                            0.0,
                            (breaker.opened_at or now)
                            + trial_wait(settings.properties.provisioning, breaker.failed_trials)
                            - now,
                        ),
                        3,
                    ),
                }
                if breaker.open
                else None
            ),
            "Backoff": round(max(0.0, breaker.next_create_at - now), 3),
            "ShortCircuit": state.short_circuit,
            "LastError": state.last_error,
            "Events": self.watch_mode.get(settings.properties.instance.plugin, "polling"),
            "Instances": instances,
            "Decisions": list(state.decisions[-10:]),
        }

    async def plan(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The structured plan for committing ``options["spec"]`` (nothing changes)."""
        raw_spec = (options or {}).get("spec")
        if raw_spec is None:
            raise errors.SpecError("Group.Plan: params.Spec (the group spec to plan) must be set")
        settings = parse_spec(spi_group.spec_from_wire(raw_spec))
        await self._validate_with_plugins(settings)
        old = self.groups.get(settings.id)
        members = await self._describe(settings, settings.id) if old is not None else []
        return {
            "Plan": structured_plan(
                old.settings if old else None,
                settings,
                members,
                old.state if old else None,
                self.clock.now(),
            )
        }

    async def pause(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        group = self._get(id)
        upd = group.state.update
        if upd is None:
            raise errors.ConflictError(f"group {id} has no rolling update to pause")
        upd.paused = True
        upd.reason = "paused by user"
        await self._persist_update(id, group)
        self._publish(id, "update-paused", f"update of {id} paused by user")
        self.queue.add(id)
        return {"Paused": True}

    async def resume(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        group = self._get(id)
        upd = group.state.update
        if upd is None:
            raise errors.ConflictError(f"group {id} has no rolling update to resume")
        upd.paused = False
        upd.failed = False
        upd.reason = ""
        upd.last_progress_at = self.clock.wall()
        # Resuming means "try again": an update paused because creates kept failing would
        # otherwise pause again at once on the still-open breaker.
        group.state.breaker.reset()
        await self._persist_update(id, group)
        self._publish(id, "update-resumed", f"update of {id} resumed")
        self.queue.add(id)
        return {"Paused": False}

    async def promote(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        group = self._get(id)
        upd = group.state.update
        if upd is None or group.settings.properties.updating.canary == 0:
            raise errors.ConflictError(f"group {id} has no canary update waiting for promotion")
        upd.promoted = True
        upd.last_progress_at = self.clock.wall()
        await self._persist_update(id, group)
        self._publish(id, "update-promoted", f"canary of {id} promoted: rolling the rest")
        self.queue.add(id)
        return {"Promoted": True}

    async def rollback(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        group = self._get(id)
        if group.stable is None:
            raise errors.ConflictError(
                f"group {id} has no earlier spec that fully converged; commit the spec you want"
            )
        if group.stable == group.settings.raw:
            raise errors.ConflictError(f"group {id} already runs its last converged spec")
        details = await self.commit_group(spi_group.Spec(id, group.stable), False)
        self._publish(id, "rolled-back", f"{id} rolled back to its last converged spec: {details}")
        return {"Details": details}

    async def reset(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        group = self._get(id)
        group.state.breaker.reset()
        self._publish(id, "reset", f"{id}: circuit breaker reset; creating again")
        self.queue.add(id)
        return {"Degraded": False}

    async def _fresh_observation(self, group: Group) -> None:
        """Ask for a new observation when the last is older than STATUS_REFRESH_AFTER, and wait
        for it at most STATUS_WAIT (a hung provider never holds up Status)."""
        obs = group.observation
        now = self.clock.now()
        if obs is not None and now - obs.at <= STATUS_REFRESH_AFTER:
            return
        waiter = group.observed
        self.queue.add(group.settings.id)
        with contextlib.suppress(TimeoutError):
            await self.clock.wait_for(waiter.wait(), STATUS_WAIT)

    def _observed(self, group: Group) -> None:
        """An observation attempt ended: wake Status calls waiting for it."""
        group.observed.set()
        group.observed = asyncio.Event()

    def _unknown_reason(self, group: Group, now: float) -> str:
        """Why the group's actual instances are unknown now ("" when they are known)."""
        plugin = group.settings.properties.instance.plugin
        if group.observe_error:
            return f"cannot list instances: {group.observe_error}"
        if group.observing_since is not None and now - group.observing_since > OBSERVE_SLOW:
            return (
                f"plugin {plugin} has not answered DescribeInstances for "
                f"{now - group.observing_since:.1f}s"
            )
        if group.observation is None:
            return f"not observed yet (waiting for plugin {plugin})"
        return ""

    def _converged(self, group: Group) -> bool:
        """Converged, truthfully: the last pass matched the spec, on an observation that is
        fresh, of a provider that can be observed, with nothing in flight."""
        obs = group.observation
        now = self.clock.now()
        return (
            group.converged
            and obs is not None
            and now - obs.at <= FRESH_FOR
            and not self._unknown_reason(group, now)
            and not group.state.creating
            and not group.state.destroying
        )

    # --- event source ---------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return sorted(f"group/{gid}" for gid in self.groups)

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        return self.events.subscribe(topic)

    # ============================================================================================
    # reconcile
    # ============================================================================================

    async def _reconcile(self, gid: str) -> float | None:
        group = self.groups.get(gid)
        if group is None:
            return None
        settings, state = group.settings, group.state
        group.observing_since = self.clock.now()
        try:
            found = await self._describe(settings, gid)
        except asyncio.CancelledError:
            group.observing_since = None
            raise
        except Exception as exc:
            group.observing_since = None
            group.observe_failures += 1
            delay = min(
                OBSERVE_RETRY_MAX, OBSERVE_RETRY_INITIAL * 2.0 ** (group.observe_failures - 1)
            )
            message = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
            if state.last_error != message:
                self._publish(gid, "observe-failed", f"cannot list {gid}: {message}; no action")
            state.last_error = message
            group.observe_error = message
            group.converged = False
            self._observed(group)
            return delay
        if self.groups.get(gid) is not group or group.settings is not settings:
            return 0.0  # changed while we waited: look again
        group.observing_since = None
        group.observe_failures = 0
        group.observe_error = ""
        state.last_error = ""
        now = self.clock.now()
        members = self._remember(gid, group, found, now)
        # What Status reports: every listed member, those being destroyed included.
        visible = [d for d in found if d.id not in state.destroyed_until]
        group.observation = Observation(visible, now)
        due = health_checks_due(settings, members, state, now)
        if due:
            await self._check_health(group, due)
            if self.groups.get(gid) is not group or group.settings is not settings:
                return 0.0
            now = self.clock.now()
        await self._track_update(gid, group, members, now)
        settings = group.settings
        decision = decide(settings, members, state, now, self.rng)
        for note in decision.notes:
            if not state.decisions or state.decisions[-1] != note:
                state.note(note)
                self._publish(gid, "decision", note)
        state.create_backlog = decision.backlog
        for lid in decision.creates:
            self._spawn(group, self._create(gid, group, lid))
        for desc, reason in decision.destroys:
            if desc.id in state.destroying:
                continue  # one destroy per instance at a time, whatever the decision says
            state.destroying[desc.id] = now
            if reason == spi_instance.REASON_ROLLING_UPDATE:
                state.rolling_destroys.add(desc.id)
            self._spawn(group, self._destroy_in_background(gid, group, desc, reason))
        was_converged = group.converged
        group.converged = decision.converged
        self._observed(group)
        if decision.converged and not was_converged:
            self._publish(gid, "converged", f"{gid} converged: {settings.size} instance(s)")
            if group.stable != settings.raw:
                group.stable = settings.raw
                await self._store_put(f"stable/{gid}", settings.raw)
        health = settings.properties.health
        return _min_delay(
            decision.requeue_after,
            self.poll_interval,
            self._visibility_due(state, now),
            health.check_interval if health is not None else None,
        )

    def _remember(
        self, gid: str, group: Group, found: list[spi_instance.Description], now: float
    ) -> list[spi_instance.Description]:
        """Reconcile what the provider says with what we know is in flight (see module doc)."""
        state, settings = group.state, group.settings
        prov = settings.properties.provisioning
        listed = {d.id for d in found}
        created_ids = {c.instance_id: c for c in state.creating.values() if c.instance_id}
        # Creates whose instance is listed before their Provision call returned (a provider that
        # is quicker to list than to answer): matched by the token tag, so the instance is not
        # counted twice - once as a member and once in flight - which made the next pass scale
        # in a healthy member and create again.
        by_tag = {c.tag: c for c in state.creating.values() if c.instance_id is None}
        if by_tag:
            for d in found:
                c = by_tag.get(d.tags.get(CREATE_TOKEN_TAG, ""))
                if c is not None:
                    c.instance_id = d.id
                    created_ids[d.id] = c
        members: list[spi_instance.Description] = []
        for d in found:
            if d.logical_id is None and d.tags.get(LOGICAL_ID_TAG):
                d.logical_id = d.tags[LOGICAL_ID_TAG]
            if d.id in state.destroying:
                continue
            until = state.destroyed_until.get(d.id)
            if until is not None:
                if now < until:
                    continue
                del state.destroyed_until[d.id]  # destroy silently failed: it is back
            members.append(d)
            if d.id not in state.health:
                create = created_ids.get(d.id)
                state.health[d.id] = InstanceHealth(
                    first_seen=now,
                    since=now,
                    created_by_us=create is not None,
                    created=self._created(d, now),
                    probe_until=(
                        now + probe_time(prov, state.breaker.level)
                        if create is not None and create.probe
                        else None
                    ),
                )
        # Creates that became visible, or never did.
        for token, c in list(state.creating.items()):
            if c.instance_id is not None and c.instance_id in listed:
                del state.creating[token]
                state.provisioned.pop(c.instance_id, None)
            elif c.visible_by is not None and now >= c.visible_by:
                del state.creating[token]
                state.provisioned.pop(c.instance_id or "", None)
                self._record_failure(
                    gid,
                    group,
                    f"instance {c.instance_id or '(no ID)'} was provisioned but never appeared "
                    f"in DescribeInstances within {prov.visibility_timeout:g}s",
                    provision_error=False,
                )
        for iid in list(state.destroyed_until):
            if iid not in listed:
                del state.destroyed_until[iid]
        for iid in list(state.destroy_count):
            if iid not in listed and iid not in state.destroying:
                del state.destroy_count[iid]
        # Members that vanished without us destroying them.
        vanished = state.last_seen - listed - set(state.destroying)
        breaker = state.breaker
        for iid in vanished:
            h = state.health.pop(iid, None)
            if h is None:
                continue
            age = now - h.first_seen
            self._publish(gid, "instance-lost", f"{iid} disappeared; it will be replaced", iid)
            if h.created_by_us and age < prov.crash_loop_window:
                # An instance that dies this young is a failed create: it moves the backoff and
                # counts toward the breaker, and the group probes (one create at a time) until a
                # new instance stays up. Instances that already existed when the last counted
                # death happened and die within EARLY_DEATH_BURST of it are the same disaster
                # (`rm instance-*`) and count once; one created after it (a probe) always counts.
                message = f"instance {iid} died {age:.1f}s after it was created (crash loop?)"
                same_burst = (
                    h.probe_until is None
                    and breaker.burst_at is not None
                    and h.first_seen <= breaker.burst_at
                    and now - breaker.burst_at < EARLY_DEATH_BURST
                )
                if same_burst:
                    breaker.suspect = True
                    group.state.note(message + " - same burst, counted once")
                    continue
                breaker.burst_at = now
                self._record_failure(
                    gid, group, message, provision_error=False, event_type="early-death"
                )
        for iid in list(state.health):
            if iid not in listed:
                del state.health[iid]
        # A probe that stayed up for its probe time lets the rest be created (and closes an
        # open breaker: the trial worked). A create that survived CrashLoopWindow (or became
        # ready) confirms the provider works: failures and backoff start from zero again.
        for m in members:
            h = state.health[m.id]
            if h.probe_until is not None and now >= h.probe_until:
                h.probe_until = None
                self._probe_passed(gid, group, m.id)
            if h.created_by_us and (
                now - h.first_seen >= prov.crash_loop_window or is_ready(h, settings, now)
            ):
                h.created_by_us = False
                if not breaker.open:
                    breaker.failures = 0
                    breaker.level = 0
                    breaker.suspect = False
                    breaker.last_failure = ""
        state.last_seen = {m.id for m in members}
        return members

    def _probe_passed(self, gid: str, group: Group, iid: str) -> None:
        """A probe's instance stayed up: create the rest; an open breaker's trial closes it."""
        breaker = group.state.breaker
        prov = group.settings.properties.provisioning
        if breaker.half_open:
            breaker.opened_at = None
            breaker.half_open = False
            breaker.failed_trials = 0
            breaker.reason = ""
            # One more failure opens it again at once.
            breaker.failures = max(0, prov.max_failures - 1)
            self._publish(
                gid, "recovered", f"{gid}: trial instance {iid} stayed up; creating again"
            )
        elif breaker.suspect:
            group.state.note(f"{iid} stayed up: creating the rest")
        breaker.suspect = False

    async def _check_health(self, group: Group, due: list[spi_instance.Description]) -> None:
        settings = group.settings
        try:
            flavor = self.flavor_lookup(settings.properties.flavor.plugin)
        except errors.InfrakitError as exc:
            for m in due:
                self._record_health(group, m.id, Health.UNKNOWN, f"flavor unreachable: {exc}")
            return
        props = settings.properties.flavor.properties
        sem = asyncio.Semaphore(HEALTH_PARALLEL)

        async def one(m: spi_instance.Description) -> None:
            async with sem:
                try:
                    status = await self.clock.wait_for(flavor.healthy(props, m), HEALTH_TIMEOUT)
                    note = ""
                except asyncio.CancelledError:
                    raise
                except errors.InfrakitError as exc:
                    status, note = Health.UNKNOWN, f"Healthy failed: {exc}"
                except TimeoutError:
                    status, note = Health.UNKNOWN, f"Healthy did not answer in {HEALTH_TIMEOUT:g}s"
                except Exception as exc:
                    status, note = Health.UNKNOWN, f"Healthy failed: {exc}"
                self._record_health(group, m.id, Health(status), note)

        await asyncio.gather(*(one(m) for m in due))

    def _record_health(self, group: Group, iid: str, status: Health, note: str) -> None:
        now = self.clock.now()
        h = group.state.health.get(iid)
        if h is None:
            return
        if status is not h.status:
            if status is Health.UNHEALTHY:
                self._publish(
                    group.settings.id,
                    "instance-unhealthy",
                    f"{iid} is unhealthy {note}".strip(),
                    iid,
                )
            h.status = status
            h.since = now
        if status is Health.HEALTHY:
            h.ever_healthy = True
            h.healthy_streak += 1
        else:
            h.healthy_streak = 0
        h.last_check = now
        h.note = note

    async def _track_update(
        self, gid: str, group: Group, members: list[spi_instance.Description], now: float
    ) -> None:
        """Start, advance, time out or finish the group's rolling-update record."""
        settings, state = group.settings, group.state
        wall = self.clock.wall()
        undesired = [m for m in members if not settings.hash.matches(m.tags)]
        upd = state.update
        u = settings.properties.updating
        if undesired and (upd is None or upd.target != settings.hash.head):
            state.update = UpdateProgress(
                target=settings.hash.head,
                previous=group.stable if group.stable != settings.raw else None,
                started_at=wall,
                last_progress_at=wall,
                total=len(undesired),
                promoted=u.canary == 0,
            )
            group.ready_count = 0
            await self._persist_update(gid, group)
            self._publish(
                gid,
                "update-started",
                f"rolling update of {gid}: {len(undesired)} instance(s) to replace",
            )
            return
        if upd is None:
            return
        ready = sum(
            1
            for m in members
            if settings.hash.matches(m.tags) and is_ready(state.health.get(m.id), settings, now)
        )
        if ready > group.ready_count:
            upd.last_progress_at = wall
        group.ready_count = ready
        finished = (
            not undesired
            and not state.creating
            and len([m for m in members if settings.hash.matches(m.tags)]) >= settings.size
        )
        if finished:
            state.update = None
            await self._store_delete(f"updates/{gid}")
            self._publish(gid, "update-done", f"rolling update of {gid} complete")
            return
        if upd.paused or upd.failed:
            return
        # An update stops for one of two causes: the new config cannot be created (the circuit
        # breaker opened: creates fail, or new instances die young), or no new instance became
        # ready within ProgressDeadline. With AutoRollback it then commits the last spec that
        # fully converged; without, it pauses until someone resumes or rolls back.
        if state.breaker.open:
            cause = detail = f"creates at the new config keep failing ({state.breaker.reason})"
        elif u.progress_deadline and wall - upd.last_progress_at > u.progress_deadline:
            cause = f"no progress for {format_duration(u.progress_deadline)}"
            detail = cause + " (Updating.ProgressDeadline)"
        else:
            return
        if u.auto_rollback and upd.previous is not None:
            upd.failed = True
            upd.reason = f"{cause}: rolling back"
            self._publish(gid, "update-failed", f"{gid}: {upd.reason}")
            self._spawn(group, self._auto_rollback(gid, upd.previous))
        else:
            upd.paused = True
            upd.reason = (
                f"{detail}; fix the cause, then "
                f"`infrakit group resume {gid}` or `infrakit group rollback {gid}`"
            )
            self._publish(gid, "update-paused", f"{gid}: {upd.reason}")
        await self._persist_update(gid, group)

    async def _auto_rollback(self, gid: str, previous: Any) -> None:
        try:
            details = await self.commit_group(spi_group.Spec(gid, previous), False)
        except errors.InfrakitError as exc:
            self._publish(gid, "rollback-failed", f"{gid}: automatic rollback failed: {exc}")
            return
        self._publish(gid, "rolled-back", f"{gid} rolled back automatically: {details}")

    # ============================================================================================
    # acting
    # ============================================================================================

    async def _create(self, gid: str, group: Group, logical_id: str | None) -> None:
        """Create one instance; while the last pass left a backlog, go on with the next one.

        Chaining keeps MaxParallel creates running during a big scale-up without a full
        reconcile pass per batch (a pass is O(members); 10 000 instances would need 100 of
        them). It is safe against over-creation: the next create registers itself as pending
        before this task yields, and any pass that runs meanwhile recomputes the backlog.
        """
        settings = group.settings
        while True:
            created = await self._create_once(gid, group, logical_id)
            if self._stopping:
                # On Python 3.11 asyncio.wait_for swallows a cancellation that arrives as its
                # inner call finishes, which is every time with a provider as quick as the file
                # plugin: without this check a stopped controller went on through the whole
                # backlog (20 000 files after SIGTERM).
                return
            state = group.state
            if not (
                created
                and logical_id is None
                and state.create_backlog > 0
                and self.groups.get(gid) is group
                and group.settings is settings
                and not state.breaker.open
                and not state.breaker.suspect
                and state.breaker.next_create_at <= self.clock.now()
            ):
                self.queue.add(gid)
                return
            state.create_backlog -= 1

    async def _create_once(self, gid: str, group: Group, logical_id: str | None) -> bool:
        """One Prepare + Provision, tracked as in flight. True when it succeeded."""
        state = group.state
        settings = group.settings
        prov = settings.properties.provisioning
        self._create_tokens += 1
        token = self._create_tokens
        pending = InFlightCreate(
            token=token,
            logical_id=logical_id,
            started_at=self.clock.now(),
            config=settings.hash.head,
            tag=f"{self._run_id}-{token}",
            probe=state.breaker.suspect or state.breaker.half_open,
        )
        state.creating[token] = pending
        state.sequence += 1
        tags = {
            GROUP_TAG: gid,
            CONFIG_HASH_TAG: settings.hash.head,
            CREATED_TAG: format_timestamp(self.clock.wall()),
            CREATE_TOKEN_TAG: pending.tag,
        }
        if logical_id is not None:
            tags[LOGICAL_ID_TAG] = logical_id
        spec = spi_instance.Spec(
            properties=settings.properties.instance.properties,
            tags=dict(tags),
            init="",
            logical_id=logical_id,
        )
        index = spi_flavor.Index(group=gid, sequence=state.sequence)
        try:
            flavor = self.flavor_lookup(settings.properties.flavor.plugin)
            plugin = self.instance_lookup(settings.properties.instance.plugin)
            instance_id = await self.clock.wait_for(
                self._prepare_and_provision(flavor, plugin, settings, spec, tags, index),
                prov.provision_timeout,
            )
        except asyncio.CancelledError:
            state.creating.pop(token, None)
            raise
        except Exception as exc:
            state.creating.pop(token, None)
            if isinstance(exc, errors.InfrakitError):
                reason = str(exc)
            elif isinstance(exc, TimeoutError):
                reason = f"Provision did not finish within {prov.provision_timeout:g}s"
            else:
                reason = repr(exc)
            self._record_failure(gid, group, f"create failed: {reason}", provision_error=True)
            return False
        pending.instance_id = instance_id
        if instance_id and token in state.creating:  # else: already listed (see _remember)
            state.provisioned[instance_id] = token
        pending.visible_by = self.clock.now() + prov.visibility_timeout
        breaker = state.breaker
        if not (breaker.suspect or breaker.half_open):
            # Provision works again. (A probe or trial proves nothing until its instance stays
            # up: instances of a crash-looping image are provisioned fine and then die.)
            breaker.level = 0
            breaker.next_create_at = 0.0
        self._publish(
            gid,
            "instance-created",
            f"created {instance_id}" + (f" ({logical_id})" if logical_id else ""),
            instance_id or "",
        )
        return True

    async def _prepare_and_provision(
        self,
        flavor: Any,
        plugin: Any,
        settings: GroupSettings,
        spec: spi_instance.Spec,
        tags: dict[str, str],
        index: spi_flavor.Index,
    ) -> str | None:
        prepared = await flavor.prepare(
            settings.properties.flavor.properties, spec, settings.allocation, index
        )
        # A flavor may add tags but must not drop membership: an untagged instance would be
        # invisible to us and we would create another one (runaway).
        prepared.tags = {**prepared.tags, **tags}
        if spec.logical_id is not None:
            prepared.logical_id = spec.logical_id
        result: str | None = await plugin.provision(prepared)
        return result

    def _record_failure(
        self,
        gid: str,
        group: Group,
        message: str,
        *,
        provision_error: bool,
        event_type: str = "create-failed",
    ) -> None:
        """One failed create: a backoff step, a count toward the breaker (see ``Breaker``)."""
        settings, breaker = group.settings, group.state.breaker
        prov = settings.properties.provisioning
        now = self.clock.now()
        breaker.failures += 1
        breaker.last_failure = message
        if not provision_error:
            breaker.suspect = True  # instances die or vanish: probe before creating many
        if breaker.open and not breaker.half_open:
            # Open: the trial schedule is the only backoff (a death now must not push it).
            self._publish(gid, event_type, f"{message}; the group is degraded")
        else:
            breaker.level += 1
            delay = backoff_delay(prov, breaker.level) * (1.0 + self.rng.uniform(-0.2, 0.2))
            breaker.next_create_at = now + delay
            self._publish(
                gid,
                "backoff" if provision_error else event_type,
                f"{message}; next create in {delay:.1f}s",
                data={"delay": delay},
            )
        group.state.note(message)
        if breaker.half_open:
            breaker.failed_trials += 1
            self._open_breaker(gid, group, now, f"trial create failed: {message}")
        elif not breaker.open and breaker.failures >= prov.max_failures:
            breaker.failed_trials = 0
            self._open_breaker(
                gid, group, now, f"{breaker.failures} consecutive failed creates, last: {message}"
            )

    def _open_breaker(self, gid: str, group: Group, now: float, why: str) -> None:
        breaker = group.state.breaker
        wait = trial_wait(group.settings.properties.provisioning, breaker.failed_trials)
        breaker.opened_at = now
        breaker.half_open = False
        breaker.reason = (
            f"{why}; next trial create in {format_duration(wait)}, or run "
            f"`infrakit group reset {gid}` once the cause is fixed"
        )
        self._publish(gid, "degraded", f"{gid} degraded: {breaker.reason}")
        log.warning("group %s degraded: %s", gid, breaker.reason)

    async def _destroy_in_background(
        self, gid: str, group: Group, desc: spi_instance.Description, reason: str
    ) -> None:
        try:
            await self._drain_and_destroy(
                group, desc, reason, strict_drain=reason == spi_instance.REASON_ROLLING_UPDATE
            )
        except errors.InfrakitError as exc:
            message = f"could not destroy {desc.id} ({reason}): {exc}"
            group.state.note(message)
            self._publish(gid, "destroy-failed", message, desc.id)
            upd = group.state.update
            if reason == spi_instance.REASON_ROLLING_UPDATE and upd is not None:
                upd.paused = True
                upd.reason = message + f"; fix it, then `infrakit group resume {gid}`"
                await self._persist_update(gid, group)
        finally:
            self.queue.add(gid)

    async def _drain_and_destroy(
        self, group: Group, desc: spi_instance.Description, reason: str, *, strict_drain: bool
    ) -> None:
        """Drain (unless skipped) then destroy one instance; record it as gone."""
        settings, state = group.settings, group.state
        gid = settings.id
        state.destroying[desc.id] = self.clock.now()
        if desc.logical_id:
            state.destroying_lids[desc.id] = desc.logical_id
        try:
            skip_drain = (
                reason == spi_instance.REASON_ROLLING_UPDATE
                and settings.properties.updating.skip_before_instance_destroy == "drain"
            )
            if not skip_drain:
                try:
                    flavor = self.flavor_lookup(settings.properties.flavor.plugin)
                    await self.clock.wait_for(
                        flavor.drain(settings.properties.flavor.properties, desc), DRAIN_TIMEOUT
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    text = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
                    if strict_drain:
                        raise errors.PluginError(f"Drain failed: {text}") from exc
                    self._publish(
                        gid,
                        "drain-failed",
                        f"drain of {desc.id} failed ({text}); destroying anyway",
                        desc.id,
                    )
            plugin = self.instance_lookup(settings.properties.instance.plugin)
            try:
                await self.clock.wait_for(
                    plugin.destroy(desc.id, spi_instance.Context(reason)), DESTROY_TIMEOUT
                )
            except errors.NotFoundError:
                pass  # already gone: that is what we wanted
            except errors.InfrakitError:
                raise
            except TimeoutError as exc:
                raise errors.PluginTimeoutError(
                    f"Destroy of {desc.id} did not finish within {DESTROY_TIMEOUT:g}s"
                ) from exc
        finally:
            state.destroying.pop(desc.id, None)
            state.destroying_lids.pop(desc.id, None)
            state.rolling_destroys.discard(desc.id)
        now = self.clock.now()
        # A provider may list an instance for a while after destroying it (EC2 "shutting-down"):
        # it is hidden meanwhile. One that says OK but keeps listing it gets the destroy again
        # only after a doubling wait, never a Destroy storm.
        count = state.destroy_count.get(desc.id, 0) + 1
        state.destroy_count[desc.id] = count
        hide = max(settings.properties.provisioning.visibility_timeout, DESTROY_RETRY_MIN)
        state.destroyed_until[desc.id] = now + min(DESTROY_RETRY_MAX, hide * 2 ** (count - 1))
        state.health.pop(desc.id, None)
        state.last_seen.discard(desc.id)
        upd = state.update
        if reason == spi_instance.REASON_ROLLING_UPDATE and upd is not None:
            upd.replaced += 1
            upd.destroyed.append(desc.id)
            upd.last_progress_at = self.clock.wall()
            await self._persist_update(gid, group)
        self._publish(gid, "instance-destroyed", f"destroyed {desc.id} ({reason})", desc.id)

    # ============================================================================================
    # helpers
    # ============================================================================================

    async def _validate_with_plugins(self, settings: GroupSettings) -> None:
        p = settings.properties
        try:
            flavor = self.flavor_lookup(p.flavor.plugin)
        except errors.InfrakitError as exc:
            raise errors.SpecError(
                f"Failed to find Flavor plugin '{p.flavor.plugin}':{exc}"
            ) from exc
        await self._named(
            flavor.validate(p.flavor.properties, settings.allocation), "Flavor", p.flavor.plugin
        )
        try:
            plugin = self.instance_lookup(p.instance.plugin)
        except errors.InfrakitError as exc:
            raise errors.SpecError(
                f"Failed to find Instance plugin '{p.instance.plugin}':{exc}"
            ) from exc
        await self._named(plugin.validate(p.instance.properties), "Instance", p.instance.plugin)

    async def _named(self, awaitable: Any, kind: str, name: str) -> None:
        """Await a plugin's Validate within VALIDATE_TIMEOUT; make sure its error names it."""
        try:
            await self.clock.wait_for(awaitable, VALIDATE_TIMEOUT)
        except errors.SpecError:
            raise
        except errors.InfrakitError as exc:
            text = str(exc)
            if name not in text:
                text = f"{kind} plugin {name} rejected the spec: {text}"
            raise type(exc)(text) from exc
        except TimeoutError as exc:
            raise errors.PluginTimeoutError(
                f"plugin {name} ({kind}.Validate) did not answer within {VALIDATE_TIMEOUT:g}s; "
                f"the plugin may be hung: check or restart it, then commit again"
            ) from exc

    async def _describe(
        self, settings: GroupSettings, gid: str, *, properties: bool = False
    ) -> list[spi_instance.Description]:
        plugin = self.instance_lookup(settings.properties.instance.plugin)
        try:
            found: list[spi_instance.Description] = await self.clock.wait_for(
                plugin.describe_instances({GROUP_TAG: gid}, properties), DESCRIBE_TIMEOUT
            )
        except errors.InfrakitError:
            raise
        except TimeoutError as exc:
            raise errors.PluginTimeoutError(
                f"plugin {settings.properties.instance.plugin} (Instance.DescribeInstances) did "
                f"not answer within {DESCRIBE_TIMEOUT:g}s"
            ) from exc
        # Never touch an instance that lacks our group tag, whatever the plugin returned; and a
        # provider that lists an ID twice gets it counted (and destroyed) once.
        seen: set[str] = set()
        members: list[spi_instance.Description] = []
        for d in found:
            if d.tags.get(GROUP_TAG) != gid:
                continue
            if d.id in seen:
                self._warn_duplicates(settings.properties.instance.plugin, d.id)
                continue
            seen.add(d.id)
            members.append(d)
        return members

    def _warn_duplicates(self, plugin: str, iid: str) -> None:
        if plugin in self._warned_duplicates:
            return
        self._warned_duplicates.add(plugin)
        log.warning(
            "plugin %s lists instance %s more than once in DescribeInstances; counting each ID "
            "once (a bug in the plugin: report it to its authors)",
            plugin,
            iid,
        )

    def _get(self, gid: str) -> Group:
        group = self.groups.get(gid)
        if group is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise errors.GroupNotFoundError(
                f"Group '{gid}' is not being watched (groups: {known}); "
                "commit it first with `infrakit group commit FILE`"
            )
        return group

    def _lock(self, gid: str) -> asyncio.Lock:
        lock = self._locks.get(gid)
        if lock is None:
            lock = self._locks[gid] = asyncio.Lock()
        return lock

    async def _forget(self, gid: str, group: Group) -> None:
        """Stop managing ``gid``: no more reconciles, in-flight creates cancelled."""
        self.groups.pop(gid, None)
        self.queue.forget(gid)
        await cancel_and_wait(*group.tasks)
        self._release_watch(group.settings.properties.instance.plugin)

    def _created(self, d: spi_instance.Description, now: float) -> float:
        """When ``d`` was created, moved onto the controller clock's timeline (``now`` is that
        clock's present), from its ``infrakit.created`` tag; ``-inf`` without a readable one."""
        created_wall = parse_timestamp(d.tags.get(CREATED_TAG, ""))
        if created_wall is None:
            return float("-inf")
        return now - max(0.0, self.clock.wall() - created_wall)

    def _spawn(self, group: Group, coro: Any) -> None:
        task = asyncio.create_task(coro)
        group.tasks.add(task)
        task.add_done_callback(group.tasks.discard)

    def _visibility_due(self, state: GroupState, now: float) -> float | None:
        deadlines = [c.visible_by - now for c in state.creating.values() if c.visible_by]
        return max(0.0, min(deadlines)) if deadlines else None

    def _publish(
        self, gid: str, type_: str, message: str, instance_id: str = "", data: Any = None
    ) -> None:
        # One line per instance created is noise at 1000 instances (and costs ~50 us each);
        # the batch's "creating N instance(s)" decision and "converged" stay at info.
        log.log(logging.DEBUG if type_ in _QUIET_EVENTS else logging.INFO, "%s: %s", gid, message)
        self.events.publish(
            f"group/{gid}",
            spi_event.Event(
                topic=f"group/{gid}", type=type_, id=instance_id or gid, message=message, data=data
            ),
        )

    # --- instance-plugin event subscriptions ----------------------------------------------------

    def _is_create_echo(self, gid: str, instance_id: str) -> bool:
        """A ``created`` event that needs no pass: most likely the echo of one of our own
        creates still running, whose completion triggers a pass that sees it anyway. Skipping
        these saves one O(members) pass per instance during a big scale-up.

        An ID we already got back from Provision is *not* an echo: it is the provider telling us
        the instance became visible (Describe lags), and that pass is what counts it.
        """
        state = self.groups[gid].state
        if not state.creating:
            return False
        return state.provisioned.get(instance_id) not in state.creating  # O(1) per event

    def _groups_using(self, plugin: str) -> list[str]:
        return [
            g for g, grp in self.groups.items() if grp.settings.properties.instance.plugin == plugin
        ]

    def _ensure_watch(self, plugin: str) -> None:
        if plugin not in self._watches or self._watches[plugin].done():
            self._watches[plugin] = asyncio.create_task(self._watch(plugin))

    def _release_watch(self, plugin: str) -> None:
        if self._groups_using(plugin):
            return
        task = self._watches.pop(plugin, None)
        if task is not None:
            task.cancel()
        self.watch_mode.pop(plugin, None)

    async def _watch(self, plugin_name: str) -> None:
        """Follow the plugin's instance events; re-subscribe after restarts; else rely on polling."""
        delay = 0.5
        while True:
            try:
                plugin = self.instance_lookup(plugin_name)
                subscribe = getattr(plugin, "subscribe", None)
                if subscribe is None:
                    self.watch_mode[plugin_name] = "polling"
                    return
                async for ev in subscribe("instance/"):
                    if self.watch_mode.get(plugin_name) != "events":
                        self.watch_mode[plugin_name] = "events"
                        delay = 0.5
                        if ev.type == "subscribed":
                            # Live again: catch up on whatever happened while we were away.
                            for gid in self._groups_using(plugin_name):
                                self.queue.add(gid)
                            continue
                    for gid in self._groups_using(plugin_name):
                        if ev.type == "created" and self._is_create_echo(gid, ev.id):
                            continue
                        self.queue.add(gid)
                self.watch_mode[plugin_name] = "reconnecting"
            except asyncio.CancelledError:
                raise
            except errors.NotFoundError:
                # The plugin publishes no events (a Go plugin): the resync timer does the work.
                self.watch_mode[plugin_name] = "polling"
                delay = 30.0
            except Exception as exc:
                log.debug("event stream of %s interrupted: %s", plugin_name, exc)
                self.watch_mode[plugin_name] = "reconnecting"
            for gid in self._groups_using(plugin_name):
                self.queue.add(gid)
            await self.clock.sleep(delay)
            delay = min(delay * 2, 10.0) if self.watch_mode.get(plugin_name) != "polling" else 30.0

    # --- store -----------------------------------------------------------------------------------

    async def _persist_spec(self, settings: GroupSettings) -> None:
        await self._store_put(
            f"groups/{settings.id}", {"ID": settings.id, "Properties": settings.raw}
        )

    async def _persist_update(self, gid: str, group: Group) -> None:
        upd = group.state.update
        if upd is None:
            await self._store_delete(f"updates/{gid}")
        else:
            await self._store_put(f"updates/{gid}", upd.to_json())

    async def _store_put(self, key: str, value: Any) -> None:
        if self.store is not None:
            await self.store.put(key, value)

    async def _store_get(self, key: str) -> Any:
        return None if self.store is None else await self.store.get(key)

    async def _store_delete(self, key: str) -> None:
        if self.store is not None:
            await self.store.delete(key)


def _with_size(raw: Any, size: int) -> dict[str, Any]:
    """A copy of group properties with ``Allocation.Size`` replaced (keys matched like Go)."""
    props = dict(raw) if isinstance(raw, dict) else {}
    key = next((k for k in props if isinstance(k, str) and k.lower() == "allocation"), "Allocation")
    alloc = dict(props.get(key) or {})
    size_key = next((k for k in alloc if k.lower() == "size"), "Size")
    alloc[size_key] = size
    props[key] = alloc
    return props


def _health_word(h: InstanceHealth | None) -> str:
    if h is None or h.last_check is None:
        return "-"
    return h.status.name.lower()


def _min_delay(*delays: float | None) -> float | None:
    values = [d for d in delays if d is not None]
    return min(values) if values else None
