"""The group controller's decisions, as pure functions of (desired spec, observed members, memory).

Nothing here does I/O: :func:`decide` looks at one consistent picture and says which instances to
create, which to destroy (and why), and when to look again. The controller
(:mod:`infrakit.controller.group.controller`) observes, calls this, and carries the decisions out.
Because it is pure, every rule below is unit-tested with plain data.

Vocabulary
----------
*member*      an instance carrying ``infrakit.group=<gid>`` that we are not already destroying.
*desired*     a member whose config tag matches the spec (HEAD hash, or SEED hash for adoption).
*undesired*   a member at another configuration: the rolling update replaces it.
*pending*     a create we started whose instance is not visible yet (Provision running, or
              provisioned but DescribeInstances lags). Pending creates count toward the group,
              so a slow or lagging provider never makes us create twice (InfraKit #409, #677).
*ready*       a desired member that Flavor.Healthy called HEALTHY for at least
              ``max(Updating.MinReadySeconds, Updating.Duration)`` and ``Updating.Count``
              consecutive checks.
*bad*         UNHEALTHY, or UNKNOWN after having been healthy, or still UNKNOWN when
              ``Health.StartupTimeout`` after it was first seen has passed.
*available*   a ready desired member, or an undesired member that is not bad.

Cattle (Allocation.Size = N)
----------------------------
1. Remediation (only with a Health section): members bad for ``Health.UnhealthyTimeout`` are
   destroyed (the next step replaces them) - unless more than ``Health.MaxUnhealthy`` are bad at
   once, which short-circuits remediation (Cluster API's rule) and is reported.
2. Creates: ``need = N - desired - pending`` new instances are wanted, and the group may hold at
   most ``N + surge`` instances (existing + pending), where ``surge = MaxSurge`` while an update is
   rolling (not paused, canary allowing) and 0 otherwise. Creates are limited by
   ``Provisioning.MaxParallel``, the backoff after failures and the circuit breaker.
3. Rolling: undesired members are destroyed only while ``available - 1 >= N - MaxUnavailable``,
   i.e. after a new instance became ready (create-before-destroy within the surge). With the
   defaults (MaxSurge 1, MaxUnavailable 0) that is: one new instance, wait until it is ready,
   destroy one old one, repeat. A canary phase stops after ``Canary`` replacements until promoted.
4. Scale-in: members beyond ``N + surge`` (counting pending) are destroyed, choosing undesired
   ones first, then bad ones, then by ``Provisioning.DeletePolicy`` (Newest by default).

Pets (Allocation.LogicalIDs)
----------------------------
Each logical ID has exactly one member. A missing ID is created (with its ID), members whose ID was
removed from the spec are destroyed, duplicates are reduced to one, members without a logical ID
are left alone (and reported). Rolling replaces one member at a time - destroy, then the missing
ID is recreated at the new config - and only while every ID is present and ready and, for groups
of three or more, a majority stays available. Remediation of pets, too, takes one member at a
time and none while another logical ID is missing or changing (a quorum survives one missing
member, not two). A flavor whose Healthy means "member up and the cluster has a leader"
(etcd-member) makes the ready gate wait for the cluster's leader as well.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from infrakit._utils.duration import format_duration
from infrakit.controller.group.breaker import probe_time
from infrakit.controller.group.spec import GroupSettings, resolve_percent, rollout_budget
from infrakit.controller.group.state import GroupState, InstanceHealth
from infrakit.spi.instance import (
    REASON_ROLLING_UPDATE,
    REASON_SCALE_DOWN,
    REASON_UNHEALTHY,
    Description,
)
from infrakit.spi.types import LOGICAL_ID_TAG, Health

__all__ = [
    "ByConfig",
    "Decision",
    "by_config",
    "decide",
    "health_checks_due",
    "is_ready",
    "logical_id_of",
    "replacement_order",
    "victim_order",
]

#: How often a new instance's health is re-checked while an update waits for it (seconds).
READY_RECHECK = 1.0

#: Reason for destroying members whose logical ID left the spec.
REASON_REMOVED = "removed_from_quorum"
REASON_DUPLICATE = "duplicate_logical_id"


@dataclass
class Decision:
    """What to do now."""

    #: One entry per instance to create: its logical ID (None for cattle).
    creates: list[str | None] = field(default_factory=list)
    #: Members to drain and destroy, with the reason (``instance.Context.reason``).
    destroys: list[tuple[Description, str]] = field(default_factory=list)
    #: Seconds until something here needs looking at again (None: only the resync timer).
    requeue_after: float | None = None
    #: Size right, every member at the desired config, nothing in flight.
    converged: bool = False
    #: Human-readable lines explaining the decision (become events / describe output).
    notes: list[str] = field(default_factory=list)
    #: A rolling update has undesired members to replace.
    updating: bool = False
    #: Creates were wanted but withheld (breaker open / backoff).
    blocked: str = ""
    #: Cattle creates wanted beyond the parallelism budget (scale-up only, nothing blocked):
    #: finishing creates may start these directly.
    backlog: int = 0

    def soon(self, delay: float) -> None:
        """Ask for the next pass in ``delay`` seconds at the latest (the earliest request wins)."""
        delay = max(0.0, delay)
        if self.requeue_after is None or delay < self.requeue_after:
            self.requeue_after = delay


class ByConfig(NamedTuple):
    """A pass's members split by the spec's config hash (computed once per pass: a pass over
    10 000 members would otherwise compare each one's tags five times)."""

    desired: list[Description]
    undesired: list[Description]


def by_config(settings: GroupSettings, members: list[Description]) -> ByConfig:
    """Members at the spec's config (either era's tag) and members at another."""
    desired: list[Description] = []
    undesired: list[Description] = []
    matches = settings.hash.matches
    for m in members:
        (desired if matches(m.tags) else undesired).append(m)
    return ByConfig(desired, undesired)


def logical_id_of(desc: Description) -> str | None:
    """A pet's logical ID: the description's, else the ``infrakit.logical_id`` tag (HEAD)."""
    return desc.logical_id or desc.tags.get(LOGICAL_ID_TAG) or None


def _ready_time(settings: GroupSettings) -> float:
    """How long a new instance must stay healthy to be ready: the longer of
    ``Updating.MinReadySeconds`` and InfraKit's ``Updating.Duration``."""
    u = settings.properties.updating
    return max(u.min_ready_seconds, u.duration)


def is_ready(h: InstanceHealth | None, settings: GroupSettings, now: float) -> bool:
    """A member is *ready* (module docstring): HEALTHY for the ready time and for
    ``Updating.Count`` consecutive checks. Without a Health section, and outside an update,
    nothing is ever asked, so nothing is ready: readiness only gates rolling updates."""
    if h is None or h.status is not Health.HEALTHY:
        return False
    if now - h.since < _ready_time(settings):
        return False
    return h.healthy_streak >= max(1, settings.properties.updating.count)


def bad_since(h: InstanceHealth | None, settings: GroupSettings) -> float | None:
    """When the member became bad (see module docstring), or None if it is not bad."""
    if h is None:
        return None
    if h.status is Health.UNHEALTHY:
        return h.since
    if h.status is Health.UNKNOWN and h.last_check is not None:
        if h.ever_healthy:
            return h.since
        startup = settings.properties.health.startup_timeout if settings.properties.health else None
        if startup is not None:
            return h.first_seen + startup
    return None


def _is_bad(h: InstanceHealth | None, settings: GroupSettings, now: float) -> bool:
    """The member is bad now (see :func:`bad_since`)."""
    since = bad_since(h, settings)
    return since is not None and now >= since


def health_checks_due(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    now: float,
    split: ByConfig | None = None,
) -> list[Description]:
    """Members to ask ``Flavor.Healthy`` about before deciding (``split``: the pass's
    :func:`by_config`, computed here when not given).

    With a Health section: every member, every ``Health.CheckInterval``. Without one (InfraKit's
    behaviour): only desired members that are not ready yet while an update waits for them.
    """
    health = settings.properties.health
    split = split or by_config(settings, members)
    if health is not None:
        desired_ids = {m.id for m in split.desired}
        due = []
        for m in members:
            h = state.health.get(m.id)
            if (
                h is None
                or h.last_check is None
                or now - h.last_check >= health.check_interval
                or (
                    not is_ready(h, settings, now)
                    and m.id in desired_ids
                    and now - h.last_check >= min(READY_RECHECK, health.check_interval)
                )
            ):
                due.append(m)
        return due
    if not split.undesired and not (state.update and not state.update.failed):
        return []
    due = []
    for m in split.desired:
        h = state.health.get(m.id)
        if is_ready(h, settings, now):
            continue
        if h is None or h.last_check is None or now - h.last_check >= READY_RECHECK:
            due.append(m)
    return due


def victim_order(
    members: list[Description],
    settings: GroupSettings,
    state: GroupState,
    now: float,
    rng: random.Random,
) -> list[Description]:
    """Scale-in order: undesired first, then bad, then by DeletePolicy (Newest default).

    Used by the decision below and by ``plan.structured_plan`` (``--pretend -o json``), so the
    plan names the instances a commit will really remove. Age is when this controller first saw
    the instance; instances it never saw count as oldest."""
    policy = settings.properties.provisioning.delete_policy

    def age_key(m: Description) -> float:
        return _created(state, m)

    shuffled = list(members)
    rng.shuffle(shuffled)
    if policy == "Newest":
        ordered = sorted(shuffled, key=lambda m: (-age_key(m), m.id))
    elif policy == "Oldest":
        ordered = sorted(shuffled, key=lambda m: (age_key(m), m.id))
    else:
        ordered = shuffled
    return sorted(
        ordered,
        key=lambda m: (
            settings.hash.matches(m.tags),
            not _is_bad(state.health.get(m.id), settings, now),
        ),
    )


def replacement_order(
    undesired: list[Description], settings: GroupSettings, state: GroupState, now: float
) -> list[Description]:
    """The order a rolling update replaces old members in: bad ones first (replacing them costs
    no availability), then the oldest first (by first seen, then ID). Shared with the plan."""
    bad = [m for m in undesired if _is_bad(state.health.get(m.id), settings, now)]
    bad_ids = {m.id for m in bad}
    good = [m for m in undesired if m.id not in bad_ids]
    return bad + sorted(good, key=lambda m: (_created(state, m), m.id))


def _created(state: GroupState, m: Description) -> float:
    """When member ``m`` was created (``InstanceHealth.created``); unknown counts as oldest."""
    h = state.health.get(m.id)
    return h.created if h is not None else float("-inf")


def _probes_in_progress(state: GroupState, now: float) -> tuple[int, float | None]:
    """Probe creates still running or not yet visible, plus probe instances still on trial; and
    the earliest time one of the latter passes."""
    count = sum(1 for c in state.creating.values() if c.probe)
    earliest: float | None = None
    for h in state.health.values():
        if h.probe_until is not None and h.probe_until > now:
            count += 1
            earliest = h.probe_until if earliest is None else min(earliest, h.probe_until)
    return count, earliest


def _create_budget(settings: GroupSettings, state: GroupState, now: float, d: Decision) -> int:
    """How many creates may start now (parallelism, backoff, probing, breaker)."""
    prov = settings.properties.provisioning
    # Only creates whose Provision has not returned hold a slot: once the provider named the
    # instance, it is merely waiting to become visible and costs the provider nothing more.
    running = sum(1 for c in state.creating.values() if c.instance_id is None)
    budget = max(0, prov.max_parallel - running)
    b = state.breaker
    # The gates, in order: an open breaker waits for its trial; a closed one may still be
    # backing off after a failure; a probing one lets one instance through at a time.
    if b.open and not b.half_open:
        wait = b.next_trial_at(prov, now) - now
        if wait > 0:
            d.blocked = f"degraded: {b.reason}"
            d.soon(wait)
            return 0
        # The trial is due: this pass may make one create (the probe below limits it to one).
        b.half_open = True
    if not b.half_open and now < b.next_create_at:
        d.blocked = f"backing off after {b.failures} failed create(s), last: {b.last_failure}"
        d.soon(b.next_create_at - now)
        return 0
    if b.probing:
        # One probe at a time: its instance must stay up for its probe time before the rest.
        probing, passes_at = _probes_in_progress(state, now)
        if passes_at is not None:
            d.soon(passes_at - now)
        what = "the trial instance" if b.half_open else "the new instance"
        because = f", because {b.last_failure}" if b.last_failure else ""
        d.blocked = (
            f"creating one instance at a time until {what} stays up for "
            f"{format_duration(probe_time(prov, b.level))}{because}"
        )
        return 0 if probing else min(budget, 1)
    return budget


def _remediate(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    now: float,
    d: Decision,
) -> set[str]:
    """Destroy members that stayed bad too long (Health section only). Returns destroyed IDs."""
    health = settings.properties.health
    if health is None:
        return set()  # without a Health section nothing is ever replaced for its health
    # Who is bad now, and when the others would turn bad (a pass is asked for then).
    bad: list[tuple[Description, float]] = []
    for m in members:
        since = bad_since(state.health.get(m.id), settings)
        if since is not None and now >= since:
            bad.append((m, since))
        elif since is not None:
            d.soon(since - now)
    state.short_circuit = ""
    if not bad:
        return set()
    # Too many bad at once looks like a broken health check or network, not broken instances:
    # replacing them all would turn an outage of the checks into an outage of the service.
    limit = resolve_percent(health.max_unhealthy, max(1, settings.size), round_up=False)
    if len(bad) > limit:
        state.short_circuit = (
            f"remediation stopped: {len(bad)} of {len(members)} members are unhealthy, "
            f"more than Health.MaxUnhealthy {health.max_unhealthy}"
        )
        d.notes.append(state.short_circuit)
        return set()
    # Bad is not yet due: a member gets UnhealthyTimeout to recover before it is replaced.
    due: list[tuple[Description, float]] = []
    for m, since in bad:
        if now >= since + health.unhealthy_timeout:
            due.append((m, since))
        else:
            d.soon(since + health.unhealthy_timeout - now)
    if settings.is_quorum:
        due = _one_pet_at_a_time(settings, members, state, due, d)
    out: set[str] = set()
    for m, since in due:
        h = state.health.get(m.id)
        status = h.status.name.lower() if h else "unknown"
        d.destroys.append((m, REASON_UNHEALTHY))
        d.notes.append(
            f"replacing {m.id}: {status} for {now - since:.0f}s "
            f"(Health.UnhealthyTimeout {health.unhealthy_timeout:g}s)"
        )
        out.add(m.id)
    return out


def _one_pet_at_a_time(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    due: list[tuple[Description, float]],
    d: Decision,
) -> list[tuple[Description, float]]:
    """Remediation of pets takes down one member at a time, as the rolling update does: a quorum
    system (etcd, ZooKeeper) survives one missing member, not two - and when a cluster without
    a leader answers "unhealthy" on every member, replacing them all at once would wipe it. So
    while a logical ID is missing, being created or being destroyed, nothing more is replaced;
    otherwise only the member bad the longest."""
    if not due:
        return due
    present = {logical_id_of(m) for m in members}
    absent = [lid for lid in settings.properties.allocation.logical_ids or [] if lid not in present]
    if absent or state.creating or state.destroying:
        busy = f"logical ID(s) {', '.join(absent)} missing" if absent else "a member is changing"
        d.notes.append(
            f"remediation of {len(due)} unhealthy member(s) waits: {busy}; pets are replaced "
            f"one at a time"
        )
        d.soon(READY_RECHECK)
        return []
    return [min(due, key=lambda pair: (pair[1], pair[0].id))]


def decide(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    now: float,
    rng: random.Random | None = None,
    split: ByConfig | None = None,
) -> Decision:
    """Decide creates and destroys for one group (see module docstring for the rules).
    ``split`` is the pass's :func:`by_config` of ``members`` (computed here when not given)."""
    rng = rng or random.Random(0)
    d = Decision()
    split = split or by_config(settings, members)
    # Step 1: health. Members replaced for their health leave the pass's view at once, so the
    # steps below create their replacements in this same pass.
    remediated = _remediate(settings, members, state, now, d)
    if remediated:
        members = [m for m in members if m.id not in remediated]
        split = ByConfig(
            [m for m in split.desired if m.id not in remediated],
            [m for m in split.undesired if m.id not in remediated],
        )
    live = members
    # Step 2: the shape of the group. Pets are kept by logical ID, one member at a time;
    # cattle by count, scale-in first, then creates, then the rolling update.
    if settings.is_quorum:
        _decide_quorum(settings, live, state, now, d)
    else:
        _decide_cattle(settings, live, state, now, d, rng, split)
    # Step 3: converged only when nothing is decided, in flight or being destroyed, and what
    # is there is exactly the spec: the right count (or logical IDs) at the right config.
    pending = len(state.creating)
    if not d.creates and not d.destroys and pending == 0 and not state.destroying:
        if settings.is_quorum:
            ids = settings.properties.allocation.logical_ids or []
            lids = [logical_id_of(m) for m in members]
            d.converged = (
                all(settings.hash.matches(m.tags) for m in members)
                and sorted(x for x in lids if x is not None) == sorted(ids)
                and len(members) == len(ids)
            )
        else:
            d.converged = len(members) == settings.size and not split.undesired
    return d


@dataclass
class _Cattle:
    """One pass's view of a cattle group: its members split by config, and the update's budget."""

    members: list[Description]
    desired: list[Description]
    undesired: list[Description]
    #: Members plus creates in flight.
    total: int
    #: The update replaces instances now (old ones exist, not paused or failed, canary allows).
    rolling: bool
    #: Canary replacements still allowed before ``promote`` (None: no canary phase).
    canary_left: int | None
    surge: int
    max_unavailable: int


def _decide_cattle(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    now: float,
    d: Decision,
    rng: random.Random,
    split: ByConfig,
) -> None:
    """Cattle, in three steps (module docstring): scale in, create, roll."""
    c = _cattle_view(settings, members, split, state, d)
    _cattle_scale_in(settings, c, state, now, d, rng)
    _cattle_creates(settings, c, state, now, d)
    if c.rolling and c.undesired:
        _cattle_roll(settings, c, state, now, d)


def _cattle_view(
    settings: GroupSettings,
    members: list[Description],
    split: ByConfig,
    state: GroupState,
    d: Decision,
) -> _Cattle:
    """Split the members by config, and work out the update's budget for this pass: whether it
    rolls now (old members left, not paused or failed, canary allowing) and its surge."""
    n = settings.size
    u = settings.properties.updating
    desired, undesired = split
    upd = state.update
    rolling = bool(undesired) and not (upd is not None and (upd.paused or upd.failed))
    d.updating = bool(undesired)
    # Canary: at most `canary` replacements before someone promotes.
    canary_left: int | None = None
    if rolling and u.canary > 0 and upd is not None and not upd.promoted:
        canary_left = max(0, u.canary - upd.replaced - len(state.rolling_destroys))
        if canary_left == 0:
            rolling = False
            d.notes.append(
                f"canary: {upd.replaced} instance(s) replaced; waiting for "
                f"`infrakit group promote {settings.id}`"
            )
    # While old instances remain, the surge already created is kept even when the update is
    # paused (pausing freezes an update; it does not finish it). New surge only while rolling.
    surge, max_unavailable = rollout_budget(u, n)
    return _Cattle(
        members=members,
        desired=desired,
        undesired=undesired,
        total=len(members) + len(state.creating),
        rolling=rolling,
        canary_left=canary_left,
        surge=surge if undesired else 0,
        max_unavailable=max_unavailable,
    )


def _cattle_scale_in(
    settings: GroupSettings,
    c: _Cattle,
    state: GroupState,
    now: float,
    d: Decision,
    rng: random.Random,
) -> None:
    """Members beyond Size + surge (counting pending) go, in ``victim_order``."""
    n = settings.size
    ceiling = n + c.surge
    if c.total <= ceiling:
        return
    surplus = min(c.total - ceiling, len(c.members))
    victims = victim_order(c.members, settings, state, now, rng)[:surplus]
    for v in victims:
        d.destroys.append((v, REASON_SCALE_DOWN))
    if victims:
        d.notes.append(f"scaling in: {len(victims)} above the target size {n}")
    gone = {v.id for v in victims}
    c.members = [m for m in c.members if m.id not in gone]
    c.desired = [m for m in c.desired if m.id not in gone]
    c.undesired = [m for m in c.undesired if m.id not in gone]
    c.total -= len(victims)


def _cattle_creates(
    settings: GroupSettings, c: _Cattle, state: GroupState, now: float, d: Decision
) -> None:
    """Missing desired members are created, within the ceiling and the create budget."""
    n = settings.size
    pending = len(state.creating)
    need = max(0, n - len(c.desired) - pending)
    # Instances we are draining or destroying are not members any more, but they still exist:
    # they count against the ceiling, or a slow Drain would let a replacement start early and
    # the provider would hold more than Size + MaxSurge (and MaxSurge 0 would not be in place).
    existing = c.total + len(state.destroying)
    room = max(0, (n + c.surge if c.rolling else n) - existing)
    if c.canary_left is not None:
        # New instances beyond the size only for the canary replacements still to do.
        surge_in_flight = max(0, c.total - n)
        room = min(room, max(0, n - c.total) + max(0, c.canary_left - surge_in_flight))
    wanted = min(need, room)
    if wanted <= 0:
        return
    count = min(wanted, _create_budget(settings, state, now, d))
    d.creates.extend([None] * count)
    if d.blocked and wanted > count:
        d.notes.append(f"{wanted - count} instance(s) wait: {d.blocked}")
    if not c.rolling and not d.blocked and not state.breaker.open:
        d.backlog = wanted - count  # finishing creates may start these (see Decision.backlog)
    if count:
        surge = f" (+{c.surge} surge for the update)" if c.surge and c.rolling else ""
        d.notes.append(
            f"creating {count} instance(s): {len(c.members)} exist, {pending} pending, "
            f"target {n}{surge}"
        )


def _cattle_roll(
    settings: GroupSettings, c: _Cattle, state: GroupState, now: float, d: Decision
) -> None:
    """Old members are destroyed only while availability stays above Size - MaxUnavailable."""
    ready_new = [m for m in c.desired if is_ready(state.health.get(m.id), settings, now)]
    order = replacement_order(c.undesired, settings, state, now)
    bad_old = sum(1 for m in order if _is_bad(state.health.get(m.id), settings, now))
    available = len(ready_new) + len(order) - bad_old
    floor = settings.size - c.max_unavailable
    # Removing a bad old instance costs no availability; a good one only above the floor.
    allowed = bad_old + max(0, available - floor)
    if c.canary_left is not None:
        allowed = min(allowed, c.canary_left)
    if allowed > 0:
        for v in order[:allowed]:
            d.destroys.append((v, REASON_ROLLING_UPDATE))
        d.notes.append(
            f"rolling update: replacing {min(allowed, len(order))} of {len(c.undesired)} "
            f"old instance(s); {len(ready_new)} new ready"
        )
        return
    waiting = [m for m in c.desired if not is_ready(state.health.get(m.id), settings, now)]
    if waiting:
        d.soon(READY_RECHECK)
        _soon_for_ready(waiting, settings, state, now, d)


def _soon_for_ready(
    waiting: list[Description], settings: GroupSettings, state: GroupState, now: float, d: Decision
) -> None:
    """Look again when a waiting healthy member will have been healthy long enough."""
    for m in waiting:
        h = state.health.get(m.id)
        if h is not None and h.status is Health.HEALTHY:
            d.soon(h.since + _ready_time(settings) - now)


def _decide_quorum(
    settings: GroupSettings,
    members: list[Description],
    state: GroupState,
    now: float,
    d: Decision,
) -> None:
    """Pets, in three steps (module docstring): prune, create missing IDs, roll one at a time."""
    ids = list(settings.properties.allocation.logical_ids or [])
    by_lid = _by_logical_id(members, state, d)
    pending_lids = {c.logical_id for c in state.creating.values()}
    _quorum_prune(settings, by_lid, set(ids), pending_lids, state, now, d)
    # A logical ID whose instance is still being drained or destroyed is not missing yet: a pet
    # is destroyed, then created again, never both at once.
    leaving = set(state.destroying_lids.values())
    missing = [
        lid for lid in ids if lid not in by_lid and lid not in pending_lids and lid not in leaving
    ]
    if missing:
        chosen = missing[: _create_budget(settings, state, now, d)]
        d.creates.extend(chosen)
        if d.blocked and len(missing) > len(chosen):
            d.notes.append(f"{len(missing) - len(chosen)} logical ID(s) wait: {d.blocked}")
        if chosen:
            d.notes.append(f"creating logical ID(s) {', '.join(chosen)}")
    current = {lid: ms for lid, ms in by_lid.items() if lid in ids}
    undesired = [
        ms[0] for ms in current.values() if not settings.hash.matches(ms[0].tags) and len(ms) == 1
    ]
    d.updating = bool(undesired)
    in_progress = bool(missing or pending_lids - {None} or state.destroying)
    if undesired and not in_progress:
        _quorum_roll(settings, ids, current, undesired, state, now, d)


def _by_logical_id(
    members: list[Description], state: GroupState, d: Decision
) -> dict[str, list[Description]]:
    """Members by logical ID; members without one are left alone (and reported once)."""
    by_lid: dict[str, list[Description]] = {}
    for m in members:
        lid = logical_id_of(m)
        if lid is None:
            if m.id not in state.warned_no_lid:
                state.warned_no_lid.add(m.id)
                d.notes.append(f"ignoring {m.id}: it carries the group tag but no logical ID")
            continue
        by_lid.setdefault(lid, []).append(m)
    return by_lid


def _quorum_prune(
    settings: GroupSettings,
    by_lid: dict[str, list[Description]],
    wanted: set[str],
    pending_lids: set[str | None],
    state: GroupState,
    now: float,
    d: Decision,
) -> None:
    """Members whose logical ID left the spec go; duplicates of an ID are reduced to the best
    one (desired config, ready, oldest)."""
    for lid, ms in by_lid.items():
        if lid not in wanted:
            for m in ms:
                d.destroys.append((m, REASON_REMOVED))
            d.notes.append(f"logical ID {lid} left the spec: destroying {len(ms)} instance(s)")
        elif len(ms) > 1 and lid not in pending_lids:
            keep = sorted(
                ms,
                key=lambda m: (
                    not settings.hash.matches(m.tags),
                    not is_ready(state.health.get(m.id), settings, now),
                    _created(state, m),
                    m.id,
                ),
            )[0]
            for m in ms:
                if m is not keep:
                    d.destroys.append((m, REASON_DUPLICATE))
            d.notes.append(f"logical ID {lid} has {len(ms)} instances: keeping {keep.id}")


def _quorum_roll(
    settings: GroupSettings,
    ids: list[str],
    current: dict[str, list[Description]],
    undesired: list[Description],
    state: GroupState,
    now: float,
    d: Decision,
) -> None:
    """One member at a time, only while every ID is present and ready and, for three or more,
    a majority stays available; bad members first, then in the order of the logical IDs."""
    upd = state.update
    if upd is not None and (upd.paused or upd.failed):
        return
    desired = [ms[0] for ms in current.values() if settings.hash.matches(ms[0].tags)]
    not_ready = [m for m in desired if not is_ready(state.health.get(m.id), settings, now)]
    if not_ready:
        d.soon(READY_RECHECK)
        _soon_for_ready(not_ready, settings, state, now, d)
        return
    u = settings.properties.updating
    if u.canary > 0 and upd is not None and not upd.promoted and upd.replaced >= u.canary:
        d.notes.append(
            f"canary: {upd.replaced} member(s) replaced; waiting for "
            f"`infrakit group promote {settings.id}`"
        )
        return
    n = len(ids)
    available = len(desired) + sum(
        1 for m in undesired if not _is_bad(state.health.get(m.id), settings, now)
    )
    majority = n // 2 + 1
    if n >= 3 and available - 1 < majority:
        d.notes.append(
            f"rolling update waits: only {available} of {n} members available, "
            f"a majority ({majority}) must stay up"
        )
        return
    victim = sorted(
        undesired,
        key=lambda m: (
            not _is_bad(state.health.get(m.id), settings, now),
            ids.index(logical_id_of(m) or ""),
        ),
    )[0]
    d.destroys.append((victim, REASON_ROLLING_UPDATE))
    d.notes.append(f"rolling update: replacing {victim.id} ({logical_id_of(victim)})")
