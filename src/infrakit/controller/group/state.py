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

from infrakit.spi.types import Health

__all__ = [
    "Breaker",
    "GroupState",
    "InFlightCreate",
    "InstanceHealth",
    "UpdateProgress",
]


@dataclass
class InFlightCreate:
    """A create we started: Prepare + Provision running, or provisioned but not yet visible."""

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


@dataclass
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
class Breaker:
    """Create-side backoff and circuit breaker of one group.

    Every failed create - a Provision error or timeout, an instance that never appears, an instance
    that dies within ``CrashLoopWindow`` of its creation - counts once in ``failures`` and moves the
    backoff one step (``BackoffInitial`` doubled per step, up to ``BackoffMax``): no create starts
    before ``next_create_at``. ``MaxFailures`` consecutive failures *open* the breaker: nothing is
    created until a trial, the first after ``TRIAL_FIRST_WAIT`` (10 s), each further one after
    twice the previous wait, up to ``CoolDown`` (Kubernetes' CrashLoopBackOff shape).

    *Probing*: once an instance died young the group is ``suspect``: it creates one instance at a
    time (a probe) and creates the rest only after that probe stayed up for its probe time. So a
    provider whose instances all die at once never gets a whole generation of creates per backoff
    step, while ``rm instance-*`` (one disaster) still heals in a few seconds. A create that is
    confirmed (lived ``CrashLoopWindow``, or became ready) clears it all.
    """

    #: Consecutive failed creates since the last confirmed one (opens the breaker).
    failures: int = 0
    #: Backoff steps taken since the last successful create (the exponent of the next delay).
    level: int = 0
    #: No create before this time (backoff).
    next_create_at: float = 0.0
    #: Open since (None = closed).
    opened_at: float | None = None
    reason: str = ""
    #: What the last failed create was (shown while creates wait).
    last_failure: str = ""
    #: After the wait: one trial create is allowed.
    half_open: bool = False
    #: Failed trials since the breaker opened (each doubles the wait for the next, up to CoolDown).
    failed_trials: int = 0
    #: An instance died young (or never appeared) and no create was confirmed since: probe first.
    suspect: bool = False
    #: When the last early death was counted: instances that already existed then and die within
    #: ``EARLY_DEATH_BURST`` of it are the same disaster (``rm instance-*``, a rack power cut) and
    #: count once; an instance created after it (a replacement, a probe) always counts.
    burst_at: float | None = None

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def reset(self) -> None:
        self.failures = 0
        self.level = 0
        self.next_create_at = 0.0
        self.opened_at = None
        self.reason = ""
        self.last_failure = ""
        self.half_open = False
        self.failed_trials = 0
        self.suspect = False
        self.burst_at = None


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
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> UpdateProgress | None:
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
    #: IDs seen on the previous reconcile (to notice instances that vanished).
    last_seen: set[str] = field(default_factory=set)
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
    #: Recent decisions, newest last (reasons shown by describe / events).
    decisions: list[str] = field(default_factory=list)

    def note(self, text: str, keep: int = 20) -> None:
        self.decisions.append(text)
        del self.decisions[:-keep]

    @property
    def pending_visible(self) -> list[InFlightCreate]:
        return list(self.creating.values())
