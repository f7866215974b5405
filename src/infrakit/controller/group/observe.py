"""Observe: one DescribeInstances answer, matched against what the controller knows. Pure.

The provider's answer is the truth about *which* instances exist; what it cannot say is kept in
:class:`~infrakit.controller.group.state.GroupState`. :func:`observe` joins the two, before any
decision is made:

* **in-flight creates** - an instance listed before its Provision reply arrived is matched to its
  create by the ``infrakit.create_token`` tag (so it is not counted twice); a create whose instance
  became visible is no longer pending; one that never became visible within
  ``Provisioning.VisibilityTimeout`` is a failed create (a provider that lies or lost it). A
  create whose Provision timed out stays pending just as long: the provider may finish it late.
* **destroys** - instances being drained or destroyed are not members; instances we destroyed
  are hidden while the provider still lists them (EC2's "shutting-down"), until a time after
  which the destroy is taken to have failed.
* **vanished members** - a member listed last time and gone now was lost out of band: it is
  reported, and if we created it less than ``CrashLoopWindow`` ago it is a failed create (see
  :mod:`~infrakit.controller.group.breaker` for backoff, probing and the burst rule).
* **probes and confirmations** - a probe's instance that stayed up lets the rest be created; a
  create that lived ``CrashLoopWindow`` (or became ready) confirms the provider works.
* **health history** - a new member gets its record (first seen, created when, by us or not).

Nothing here does I/O or awaits: the function takes the answer, the memory and the time, updates
the memory and returns an :class:`Observation` - the members to decide on, what Status reports and
the notices to publish - so every rule is table-tested with plain data like ``decide()``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from infrakit.controller.group.breaker import Notice, probe_time
from infrakit.controller.group.reconcile import is_ready
from infrakit.controller.group.spec import GroupSettings
from infrakit.controller.group.state import GroupState, InFlightCreate, InstanceHealth
from infrakit.spi.instance import Description
from infrakit.spi.types import CREATE_TOKEN_TAG, CREATED_TAG, LOGICAL_ID_TAG, parse_timestamp

__all__ = ["EARLY_DEATH_BURST", "Observation", "created_time", "observe"]

#: Instances that die within this many seconds of a counted early death, and already existed
#: when it happened, are the same disaster and count once (see ``Breaker.burst_at``).
EARLY_DEATH_BURST = 2.0


@dataclass
class Observation:
    """What one pass saw."""

    #: Listed members we are not destroying and have not destroyed: what ``decide()`` works on.
    members: list[Description]
    #: Every listed member not hidden after our destroy (those being destroyed included): what
    #: Status and DescribeGroup report.
    visible: list[Description]
    #: When (controller clock).
    at: float
    #: Lines to publish on ``group/<id>``, in the order they happened.
    notices: list[Notice] = field(default_factory=list)


def created_time(d: Description, now: float, wall: float) -> float:
    """When ``d`` was created, on the controller clock's timeline (``now`` is that clock's present
    and ``wall`` the wall clock's), from its ``infrakit.created`` tag; ``-inf`` without one."""
    created_wall = parse_timestamp(d.tags.get(CREATED_TAG, ""))
    if created_wall is None:
        return float("-inf")
    return now - max(0.0, wall - created_wall)


def observe(
    settings: GroupSettings,
    state: GroupState,
    found: list[Description],
    now: float,
    wall: float,
    rng: random.Random,
) -> Observation:
    """Join ``found`` (one DescribeInstances answer, de-duplicated, all carrying the group tag)
    with ``state``; update ``state`` and return what was seen (see the module docstring)."""
    obs = Observation(members=[], visible=[], at=now)
    listed = {d.id: None for d in found}  # a dict's keys: ~20 bytes an ID where a set takes ~50
    created_ids = _match_creates(state, found)
    obs.members = _members(settings, state, found, now, wall, created_ids)
    _settle_creates(settings, state, listed, now, rng, obs)
    for iid in list(state.destroyed_until):
        if iid not in listed:
            del state.destroyed_until[iid]
    for iid in list(state.destroy_count):
        if iid not in listed and iid not in state.destroying:
            del state.destroy_count[iid]
    _vanished(settings, state, listed, now, rng, obs)
    for iid in list(state.health):
        if iid not in listed:
            del state.health[iid]
    _probes_and_confirmations(settings, state, obs.members, now, obs)
    state.last_seen = {m.id: None for m in obs.members}
    obs.visible = [d for d in found if d.id not in state.destroyed_until]
    return obs


def _match_creates(state: GroupState, found: list[Description]) -> dict[str, InFlightCreate]:
    """Instance ID -> its in-flight create, for creates whose Provision returned, and for those
    whose instance is listed before the reply came (matched by the create-token tag: otherwise
    it would count twice - once as a member, once in flight - and the next pass would scale in a
    healthy member and create again)."""
    created_ids = {c.instance_id: c for c in state.creating.values() if c.instance_id}
    by_tag = {c.tag: c for c in state.creating.values() if c.instance_id is None}
    if by_tag:
        for d in found:
            c = by_tag.get(d.tags.get(CREATE_TOKEN_TAG, ""))
            if c is not None:
                c.instance_id = d.id
                created_ids[d.id] = c
    return created_ids


def _members(
    settings: GroupSettings,
    state: GroupState,
    found: list[Description],
    now: float,
    wall: float,
    created_ids: dict[str, InFlightCreate],
) -> list[Description]:
    """The listed instances that are members; a health record for each new one."""
    prov = settings.properties.provisioning
    members: list[Description] = []
    # A scale-up's instances share one created tag per millisecond: one parse and one float.
    last_stamp, last_created = None, float("-inf")
    for i, listed in enumerate(found):
        d = listed
        if d.logical_id is None and d.tags.get(LOGICAL_ID_TAG):
            # A copy with the LogicalID of its tag: the description may be the plugin's own
            # (in-process plugins hand out the records they keep).
            d = found[i] = Description(d.id, d.tags[LOGICAL_ID_TAG], d.tags, d.properties)
        if d.id in state.destroying:
            continue
        until = state.destroyed_until.get(d.id)
        if until is not None:
            if now < until:
                continue
            del state.destroyed_until[d.id]  # the destroy silently failed: it is back
        members.append(d)
        if d.id not in state.health:
            create = created_ids.get(d.id)
            stamp = d.tags.get(CREATED_TAG)
            if stamp is None or stamp != last_stamp:
                last_stamp, last_created = stamp, created_time(d, now, wall)
            state.health[d.id] = InstanceHealth(
                first_seen=now,
                since=now,
                created_by_us=create is not None,
                created=last_created,
                probe_until=(
                    now + probe_time(prov, state.breaker.level)
                    if create is not None and create.probe
                    else None
                ),
            )
    return members


def _settle_creates(
    settings: GroupSettings,
    state: GroupState,
    listed: dict[str, None],
    now: float,
    rng: random.Random,
    obs: Observation,
) -> None:
    """Creates whose instance became visible are done; those that never did are failures."""
    prov = settings.properties.provisioning
    for token, c in list(state.creating.items()):
        if c.instance_id is not None and c.instance_id in listed:
            del state.creating[token]
            state.provisioned.pop(c.instance_id, None)
        elif c.visible_by is not None and now >= c.visible_by:
            del state.creating[token]
            state.provisioned.pop(c.instance_id or "", None)
            if c.abandoned:
                continue  # its timeout was the failure; the provider did not make it after all
            message = (
                f"instance {c.instance_id or '(no ID)'} was provisioned but never appeared "
                f"in DescribeInstances within {prov.visibility_timeout:g}s"
            )
            _fail(settings, state, message, now, rng, obs, event_type="create-failed")
    if not state.creating:
        # A dict keeps the table of its largest size: after a scale-up of 10 000, ~50 bytes per
        # instance for two empty dicts. clear() lets it go.
        state.creating.clear()
        state.provisioned.clear()


def _vanished(
    settings: GroupSettings,
    state: GroupState,
    listed: dict[str, None],
    now: float,
    rng: random.Random,
    obs: Observation,
) -> None:
    """Members that vanished without us destroying them: lost, and failed creates if young.

    An instance that dies younger than CrashLoopWindow moves the backoff and counts toward the
    breaker, and the group probes (one create at a time) until a new instance stays up. Instances
    that already existed when the last counted death happened and die within EARLY_DEATH_BURST of
    it are the same disaster (``rm instance-*``) and count once; one created after it (a probe, a
    replacement) always counts - so a crash loop cannot hide in "bursts".
    """
    prov = settings.properties.provisioning
    breaker = state.breaker
    destroying = state.destroying
    for iid in [i for i in state.last_seen if i not in listed and i not in destroying]:
        h = state.health.pop(iid, None)
        if h is None:
            continue
        obs.notices.append(
            Notice("instance-lost", f"{iid} disappeared; it will be replaced", instance_id=iid)
        )
        age = now - h.first_seen
        if not (h.created_by_us and age < prov.crash_loop_window):
            continue
        message = f"instance {iid} died {age:.1f}s after it was created (crash loop?)"
        same_burst = (
            h.probe_until is None
            and breaker.burst_at is not None
            and h.first_seen <= breaker.burst_at
            and now - breaker.burst_at < EARLY_DEATH_BURST
        )
        if same_burst:
            breaker.suspect = True
            state.note(message + " - same burst, counted once")
            continue
        breaker.burst_at = now
        _fail(settings, state, message, now, rng, obs, event_type="early-death")


def _probes_and_confirmations(
    settings: GroupSettings,
    state: GroupState,
    members: list[Description],
    now: float,
    obs: Observation,
) -> None:
    """A probe that stayed up for its probe time lets the rest be created (and closes an open
    breaker: the trial worked). A create that survived CrashLoopWindow (or became ready) confirms
    the provider works: failures and backoff start from zero again."""
    prov = settings.properties.provisioning
    breaker = state.breaker
    for m in members:
        h = state.health[m.id]
        if h.probe_until is not None and now >= h.probe_until:
            h.probe_until = None
            note = breaker.probe_passed(settings.id, m.id, prov)
            if note:
                state.note(note)
            obs.notices.extend(breaker.take_notices())
        if h.created_by_us and (
            now - h.first_seen >= prov.crash_loop_window or is_ready(h, settings, now)
        ):
            h.created_by_us = False
            breaker.confirmed()


def _fail(
    settings: GroupSettings,
    state: GroupState,
    message: str,
    now: float,
    rng: random.Random,
    obs: Observation,
    *,
    event_type: str,
) -> None:
    """A failed create found by observing (an early death, an instance that never appeared):
    the breaker's transition, the group's history, and the notices in order."""
    state.breaker.failed(
        settings.id,
        message,
        settings.properties.provisioning,
        now,
        jitter=1.0 + rng.uniform(-0.2, 0.2),
        provision_error=False,
        event_type=event_type,
    )
    state.note(message)
    obs.notices.extend(state.breaker.take_notices())
