"""What the group controller remembers about one group between reconciles.

The *truth* about a group is always re-read from its instance plugin (membership is the
``infrakit.group`` tag, configuration the ``infrakit.config.hash`` tag). What lives here is only what
the provider cannot tell us:

* **in-flight work** - creates whose Provision has not returned, instances provisioned but not yet
  visible in DescribeInstances (a lagging provider must never make us create twice), and instances
  being drained/destroyed;
* **health history** - since when each instance is healthy / unhealthy / unknown, so timeouts
  (StartupTimeout, UnhealthyTimeout, MinReadySeconds) can be judged;
* **the circuit breaker and backoff** for creates;
* **update progress** - the target configuration, the previous stable spec, how many instances were
  replaced, canary/pause state. This part is persisted (``updates/<gid>`` in the store) so a
  restarted controller resumes an update where it stopped.

Everything uses the controller's clock (monotonic seconds), except ``UpdateProgress`` timestamps,
which are wall-clock seconds so they survive a restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from infrakit.controller.group.breaker import Breaker
from infrakit.spi.types import Health

__all__ = [
    "Breaker",
    "GroupState",
    "InFlightCreate",
    "InstanceHealth",
    "UpdateProgress",
]


@dataclass(slots=True)
class InFlightCreate:
    """A create we started: Prepare + Provision running, or provisioned but not yet visible.

    With ``__slots__``: a scale-up of 10 000 holds one per create until a pass sees its instance,
    and those objects, freed together at the end, left their memory scattered among the
    instances' records (about 0.3 KB of RSS per instance with a ``__dict__`` each)."""

    token: int
    logical_id: str | None
    started_at: float
    #: Set once Provision returned an ID.
    instance_id: str | None = None
    #: While Provision runs: None. After: the time by which the instance must be visible.
    visible_by: float | None = None
    #: The config hash the instance was created with.
    config: str = ""
    #: Its ``infrakit.create_token`` tag value (unique per controller run and create).
    tag: str = ""
    #: Started as a probe (the group was suspect, or it is the breaker's trial): its instance must
    #: stay up for its probe time before more creates start.
    probe: bool = False
    #: Provision timed out: its outcome is unknown, so it counts as pending until ``visible_by``
    #: (its instance, if the provider made it after all, is matched by the create-token tag).
    abandoned: bool = False


@dataclass(slots=True)
class InstanceHealth:
    """Health history of one member, as seen through Flavor.Healthy."""

    first_seen: float
    status: Health = Health.UNKNOWN
    #: When ``status`` last changed.
    since: float = 0.0
    last_check: float | None = None
    ever_healthy: bool = False
    #: Consecutive HEALTHY answers (for ``Updating.Count``).
    healthy_streak: int = 0
    #: Why the last check gave its answer (errors are counted UNKNOWN).
    note: str = ""
    #: True if we created it (crash-loop detection applies).
    created_by_us: bool = False
    #: When it was created, on the controller clock's timeline (from its ``infrakit.created``
    #: tag, so it survives a restart; ``-inf`` when unknown). Orders scale-in and replacement.
    created: float = float("-inf")
    #: A probe's instance: the time it must stay up until (None: not a probe, or it passed).
    probe_until: float | None = None


@dataclass
class UpdateProgress:
    """A rolling update in progress (persisted)."""

    #: Config hash (HEAD) being rolled out.
    target: str
    #: The group properties of the last spec that fully converged (rollback target), if known.
    previous: Any = None
    started_at: float = 0.0
    last_progress_at: float = 0.0
    #: Undesired instances replaced so far in this update.
    replaced: int = 0
    #: Instances still at another configuration when the update began.
    total: int = 0
    #: Canary phase done (``infrakit group promote``) - or no canary configured.
    promoted: bool = False
    paused: bool = False
    #: Why the update is paused / failed (shown in describe).
    reason: str = ""
    failed: bool = False
    #: IDs of instances destroyed by this update (never destroyed twice after a restart).
    destroyed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as the store keeps it."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> UpdateProgress | None:
        """A stored record, or None for anything that is not one (an older or damaged value is
        never trusted: the next pass starts a fresh record)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("target"), str):
            return None
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass
class GroupState:
    """Runtime memory of one group (see module docstring)."""

    creating: dict[int, InFlightCreate] = field(default_factory=dict)
    #: Instance ID -> token of its in-flight create, once Provision returned (event lookups).
    provisioned: dict[str, int] = field(default_factory=dict)
    #: Instance IDs being drained/destroyed by us, with the time we started.
    destroying: dict[str, float] = field(default_factory=dict)
    #: Logical IDs of the ``destroying`` instances that have one (instance ID -> logical ID).
    destroying_lids: dict[str, str] = field(default_factory=dict)
    #: The subset of ``destroying`` that are rolling-update replacements.
    rolling_destroys: set[str] = field(default_factory=set)
    #: Instance IDs we destroyed, ignored if still listed until the given time (async providers).
    destroyed_until: dict[str, float] = field(default_factory=dict)
    #: Destroys that returned OK per instance ID still listed (doubles the wait before the next).
    destroy_count: dict[str, int] = field(default_factory=dict)
    health: dict[str, InstanceHealth] = field(default_factory=dict)
    breaker: Breaker = field(default_factory=Breaker)
    update: UpdateProgress | None = None
    #: IDs of the members of the previous reconcile (to notice instances that vanished). Each
    #: observation replaces it and nothing changes it in place: the event router keeps it too.
    #: A dict's keys, not a set: ~20 bytes an instance instead of ~50.
    last_seen: dict[str, None] = field(default_factory=dict)
    #: Members without a LogicalID in a quorum group (warned once).
    warned_no_lid: set[str] = field(default_factory=set)
    #: Last full health sweep (Health section) time.
    last_sweep: float | None = None
    #: Remediation short-circuit message, when too many are unhealthy.
    short_circuit: str = ""
    #: Last error reaching the plugins (shown in describe), and since when.
    last_error: str = ""
    #: Sequence for Flavor.Prepare's Index and create tokens.
    sequence: int = 0
    #: Creates the last pass wanted but could not start for want of parallelism (MaxParallel):
    #: a finishing create starts the next one directly, without a full pass (see ``_create``).
    create_backlog: int = 0
    #: Ready desired members seen on the last pass (rolling-update progress detection).
    ready_count: int = 0
    #: Recent decisions, newest last (reasons shown by describe / events).
    decisions: list[str] = field(default_factory=list)

    def note(self, text: str, keep: int = 20) -> None:
        """Remember a decision's reason (the last ``keep``), shown by describe and Status."""
        self.decisions.append(text)
        del self.decisions[:-keep]

    @property
    def pending_visible(self) -> list[InFlightCreate]:
        """Every create in flight, visible or not yet."""
        return list(self.creating.values())
