"""``Group.Status``: the group as an operator sees it, built from the controller's memory. Pure.

Everything comes from one observation (the last pass's) and the memory next to it, so the
numbers agree with each other: desired / actual / healthy / pending / destroying, the rolling
update, the breaker, each instance's config and health, recent decisions. The controller decides
whether the observation is fresh and whether the provider can be observed at all; this module only
lays the answer out (its keys are the wire format, documented in docs/plugins/group.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from infrakit import errors
from infrakit.controller.group.reconcile import logical_id_of
from infrakit.controller.group.spec import GroupSettings
from infrakit.controller.group.state import GroupState, InstanceHealth
from infrakit.spi.group import GroupSnapshot
from infrakit.spi.instance import Description
from infrakit.spi.types import Health

__all__ = ["InstancePage", "instance_page", "snapshot_of", "status_report"]

#: How many recent decisions Status carries.
DECISIONS_SHOWN = 10


@dataclass(frozen=True)
class InstancePage:
    """Which instance rows Status carries: ``limit`` rows from ``offset`` (None: all), of every
    instance or (``attention``) only those that are not healthy at the desired config - how
    the status page and ``group watch`` stay fast with 10 000 instances. With ``tags`` each row
    also carries the instance's ``Tags`` and ``Seen``, its place in the observation (the order
    DescribeGroup lists them in): ``group describe`` prints both of its tables from one call."""

    offset: int = 0
    limit: int | None = None
    attention: bool = False
    tags: bool = False


def instance_page(options: dict[str, Any] | None) -> InstancePage:
    """The page Status ``options`` ask for (``Offset``, ``Limit``, ``Filter: attention``,
    ``Tags: true``); a value of the wrong kind is one :class:`~infrakit.errors.SpecError` line."""
    options = options or {}
    offset, limit, which = options.get("offset", 0), options.get("limit"), options.get("filter")
    tags = options.get("tags")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise errors.SpecError(f"Group.Status: Offset {offset!r}: expected a whole number >= 0")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise errors.SpecError(f"Group.Status: Limit {limit!r}: expected a whole number >= 0")
    if which not in (None, "", "all", "attention"):
        raise errors.SpecError(f"Group.Status: Filter {which!r}: expected 'all' or 'attention'")
    if tags is not None and not isinstance(tags, bool):
        raise errors.SpecError(f"Group.Status: Tags {tags!r}: expected true or false")
    return InstancePage(offset, limit, which == "attention", bool(tags))


def status_report(
    settings: GroupSettings,
    state: GroupState,
    members: list[Description] | None,
    *,
    observed_ago: float | None,
    unknown: str,
    converged: bool,
    events: str,
    now: float,
    page: InstancePage | None = None,
) -> dict[str, Any]:
    """The Status document. ``members`` is the last observation (None: none yet); ``unknown``
    says why the actual instances are unknown now ("" when they are known); ``page`` picks the
    instance rows it carries (default: all)."""
    page = page or InstancePage()
    members = members or []
    # The counts are over every member; only the rows are paged (100 000 instances are counted
    # in one pass over memory, but a page shows 50). Rows come in a stable order (logical ID,
    # then ID), so pages do not shift between two requests.
    seen = _survey(settings, state, members)
    chosen = seen.rows
    if page.attention:
        checked = settings.properties.health is not None
        chosen = [r for r in chosen if _needs_attention(r, checked, state)]
    end = None if page.limit is None else page.offset + page.limit
    report: dict[str, Any] = {
        "Desired": settings.size,
        # Unknown, never zero, while the provider cannot be observed: "0 instances" would read
        # as an outage that is not there (and is what InfraKit said).
        "Actual": None if unknown else len(members),
        "ActualUnknown": unknown or None,
        "ObservedAgo": round(observed_ago, 3) if observed_ago is not None else None,
        # One source for the counts, the rows and the header: the members' health words (the
        # rows are a page of them). Health is "checked" when the spec asks for checks or any
        # member was checked (a rolling update asks the flavor about each new instance even
        # without a Health section).
        "Healthy": seen.words.get("healthy", 0),
        "Unhealthy": seen.words.get("unhealthy", 0),
        "OldConfig": seen.old,
        "HealthChecked": settings.properties.health is not None
        or any(w != "-" for w in seen.words),
        "Pending": len(state.creating),
        "Destroying": len(state.destroying),
        "Converged": converged,
        "ConfigHash": settings.hash.head,
        "Updating": _updating(settings, state),
        "Degraded": _degraded(settings, state, now),
        "Backoff": round(max(0.0, state.breaker.next_create_at - now), 3),
        "ShortCircuit": state.short_circuit,
        "LastError": state.last_error,
        "Events": events,
        "Instances": _instance_rows(chosen[page.offset : end], state, now, page.tags),
        "InstancesTotal": len(chosen),
        "InstancesOffset": page.offset,
        "Decisions": list(state.decisions[-DECISIONS_SHOWN:]),
    }
    if page.tags:  # tells a client this server knows the option (an older one ignores it)
        report["InstancesTagged"] = True
    return report


#: What Status needs of one member, worked out once: (logical ID or "", ID, logical ID, health
#: record, health word, at the desired config, place in the observation, the member), sorted on
#: the first two (Status order).
_Row = tuple[str, str, "str | None", "InstanceHealth | None", str, bool, int, Description]


_STATUS_ORDER = itemgetter(0, 1)
#: The same order when no member has a logical ID (cattle): 100 000 rows sort in a third of the
#: time on the ID alone as on an (empty string, ID) pair.
_ID_ORDER = itemgetter(1)


@dataclass(frozen=True)
class _Survey:
    """Every member as a :data:`_Row`, in Status order, with the counts of health words and of
    members at an old config."""

    rows: list[_Row]
    words: dict[str, int]
    old: int


def _survey(settings: GroupSettings, state: GroupState, members: list[Description]) -> _Survey:
    """One look at each member (100 000 members: one pass, not five)."""
    health = state.health
    matches = settings.hash.matches
    rows: list[_Row] = []
    words: dict[str, int] = {}
    old = 0
    pets = False
    for seen, m in enumerate(members):
        h = health.get(m.id)
        word = health_word(h)
        desired = matches(m.tags)
        old += not desired
        words[word] = words.get(word, 0) + 1
        lid = logical_id_of(m)
        pets = pets or lid is not None
        rows.append((lid or "", m.id, lid, h, word, desired, seen, m))
    rows.sort(key=_STATUS_ORDER if pets else _ID_ORDER)  # stable: never compares the records
    return _Survey(rows, words, old)


def _needs_attention(row: _Row, checked: bool, state: GroupState) -> bool:
    """Not healthy (when health is checked), at an old config, or being destroyed."""
    _, iid, _, _, word, desired, _, _ = row
    return (checked and word != "healthy") or not desired or iid in state.destroying


def snapshot_of(
    settings: GroupSettings,
    state: GroupState,
    members: list[Description] | None,
    *,
    unknown: str,
    converged: bool,
    passes: int,
) -> GroupSnapshot:
    """The group's numbers for metrics and the status page (cheap: no row per instance)."""
    members = members or []
    counts = {"healthy": 0, "unhealthy": 0, "unknown": 0}
    for m in members:
        word = health_word(state.health.get(m.id))
        counts[word if word in counts else "unknown"] += 1  # never checked: unknown
    breaker = state.breaker
    if breaker.open:
        phase = "half-open" if breaker.half_open else "open"
    else:
        phase = "probing" if breaker.suspect else "closed"
    upd = state.update
    return GroupSnapshot(
        id=settings.id,
        desired=settings.size,
        actual=None if unknown else len(members),
        pending=len(state.creating),
        destroying=len(state.destroying),
        healthy=counts["healthy"],
        unhealthy=counts["unhealthy"],
        unknown=counts["unknown"],
        converged=converged,
        breaker=phase,
        passes=passes,
        update_total=upd.total if upd is not None else None,
        update_replaced=upd.replaced if upd is not None else 0,
        update_paused=bool(upd is not None and (upd.paused or upd.failed)),
        actual_unknown=unknown,
    )


def _instance_rows(
    rows: list[_Row], state: GroupState, now: float, tags: bool
) -> list[dict[str, Any]]:
    """Each instance as Status shows it: its config (desired or old), health and since when,
    whether it is being destroyed, and why its health is what it is. With ``tags`` also what
    DescribeGroup would list of it: its ``Tags`` (as the plugin sent them), its place in the
    observation (``Seen``) and, only where it differs from the row's (taken from the
    ``infrakit.logical_id`` tag), the plugin's own logical ID (``ListedLogicalID``)."""
    destroying = state.destroying
    out = []
    for _, iid, lid, h, word, desired, seen, member in rows:
        shown: dict[str, Any] = {
            "ID": iid,
            "LogicalID": lid,
            "Config": "desired" if desired else "old",
            "Health": word,
            "HealthSince": round(now - h.since, 3) if h and h.last_check is not None else None,
            "Destroying": iid in destroying,
            "Note": h.note if h else "",
        }
        if tags:
            shown["Tags"] = member.tags
            shown["Seen"] = seen
            if member.logical_id != lid:
                shown["ListedLogicalID"] = member.logical_id
        out.append(shown)
    return out


def _degraded(settings: GroupSettings, state: GroupState, now: float) -> dict[str, Any] | None:
    """The open breaker: why, how many failures, when the next trial create is (None: closed)."""
    breaker = state.breaker
    if not breaker.open:
        return None
    prov = settings.properties.provisioning
    return {
        "Reason": breaker.reason,
        "Failures": breaker.failures,
        "HalfOpen": breaker.half_open,
        "FailedTrials": breaker.failed_trials,
        "NextTrialIn": round(max(0.0, breaker.next_trial_at(prov, now) - now), 3),
    }


def _updating(settings: GroupSettings, state: GroupState) -> dict[str, Any] | None:
    """The rolling update's progress, gates and canary state (None: no update)."""
    upd = state.update
    if upd is None:
        return None
    return {
        "Target": upd.target,
        "Replaced": upd.replaced,
        "Total": upd.total,
        "Paused": upd.paused,
        "Failed": upd.failed,
        "Canary": settings.properties.updating.canary,
        "Promoted": upd.promoted,
        "Reason": upd.reason,
    }


def health_word(h: InstanceHealth | None) -> str:
    """An instance's health as Status shows it: healthy, unhealthy, unknown, or ``-`` (never
    checked)."""
    if h is None or h.last_check is None:
        return "-"
    return _WORDS[h.status]


#: Health -> its word (``Enum.name`` is a descriptor lookup: 100 000 rows paid it twice each).
_WORDS = {status: status.name.lower() for status in Health}
