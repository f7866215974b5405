"""The create side's backoff and circuit breaker of one group: a small state machine, pure.

What it is for: a provider that fails - Provision errors, instances that never appear, instances
that die right after they were created (a crash-looping image) - must never get an unbounded
stream of creates (InfraKit #345, #409, #677). Every transition is a method of :class:`Breaker`
that takes the time and settings it needs and returns the :class:`Notice` lines to publish, so the
rules are table-tested with plain data and the controller only carries notices out.

The rules
---------
* Every failed create counts once in ``failures`` and is one **backoff** step: no create starts
  before ``next_create_at`` (``BackoffInitial`` doubled per step up to ``BackoffMax``, with the
  caller's jitter). A successful Provision resets the backoff - unless the group is *suspect*.
* **Suspect / probing**: once an instance died young or never appeared, Provision succeeding
  proves nothing (a crash-looping image provisions fine, then dies). The group then creates one
  instance at a time (a *probe*) and creates the rest only after the probe's instance stayed up
  for :func:`probe_time`. A provider whose every instance dies within a second therefore gets at
  most ``Size + MaxFailures`` Provision calls before the breaker opens.
* **Open**: ``MaxFailures`` consecutive failures open the breaker. The first trial create comes
  :data:`TRIAL_FIRST_WAIT` after it opened, each failed trial doubles the wait up to ``CoolDown``
  (Kubernetes' CrashLoopBackOff shape); a trial whose instance stays up for its probe time closes
  it (``failures`` stays one short of the limit, so the next failure opens it again at once).
* **Confirmed**: a create whose instance lived ``CrashLoopWindow`` (or became ready) clears
  failures, backoff and suspicion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from infrakit._utils.duration import format_duration

if TYPE_CHECKING:
    from infrakit.controller.group.sections import ProvisioningSection

__all__ = [
    "PROBE_TIME_MAX",
    "PROBE_TIME_MIN",
    "TRIAL_FIRST_WAIT",
    "Breaker",
    "Notice",
    "backoff_delay",
    "probe_time",
    "trial_wait",
]

#: An open breaker's first trial create comes this long after it opened (seconds).
TRIAL_FIRST_WAIT = 10.0
#: Bounds of the time a probe's instance must stay up (see :func:`probe_time`).
PROBE_TIME_MIN = 2.0
PROBE_TIME_MAX = 10.0


@dataclass(frozen=True)
class Notice:
    """A line the controller publishes on ``group/<id>`` (and logs); ``warning`` logs it so."""

    type: str
    message: str
    instance_id: str = ""
    data: Any = None
    warning: bool = False


def backoff_delay(prov: ProvisioningSection, level: int) -> float:
    """The wait before the next create after ``level`` consecutive backoff steps (no jitter)."""
    if level <= 0:
        return 0.0
    return float(min(prov.backoff_max, prov.backoff_initial * 2 ** min(level - 1, 60)))


def trial_wait(prov: ProvisioningSection, failed_trials: int) -> float:
    """How long an open breaker waits before its next trial: ``TRIAL_FIRST_WAIT``, doubled per
    failed trial, never more than ``CoolDown``."""
    return float(min(prov.cool_down, TRIAL_FIRST_WAIT * 2 ** min(failed_trials, 30)))


def probe_time(prov: ProvisioningSection, level: int) -> float:
    """How long a probe's instance must stay up before the rest are created: the current backoff
    delay, at least ``PROBE_TIME_MIN``, at most ``PROBE_TIME_MAX`` (and ``CrashLoopWindow``)."""
    wanted = max(PROBE_TIME_MIN, backoff_delay(prov, level))
    return float(min(PROBE_TIME_MAX, prov.crash_loop_window, wanted))


@dataclass
class Breaker:
    """Backoff and circuit breaker state of one group (see the module docstring)."""

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
    #: Notices of transitions not yet published (drained by the controller).
    pending: list[Notice] = field(default_factory=list, repr=False)

    @property
    def open(self) -> bool:
        """The breaker is open (a trial may be due: ``half_open``)."""
        return self.opened_at is not None

    @property
    def at_rest(self) -> bool:
        """Nothing to reset: closed, no failed create counted, no backoff, no probing."""
        return (
            self.opened_at is None
            and self.failures == 0
            and self.level == 0
            and not self.suspect
            and not self.half_open
        )

    @property
    def probing(self) -> bool:
        """Creates go one at a time (a probe, or the open breaker's trial)."""
        return self.suspect or self.half_open

    def reset(self) -> None:
        """Everything forgotten: a new commit, ``infrakit group reset``, a resumed update."""
        fresh = Breaker()
        for f in fields(self):
            if f.name != "pending":
                setattr(self, f.name, getattr(fresh, f.name))

    def next_trial_at(self, prov: ProvisioningSection, now: float) -> float:
        """When the open breaker's next trial may start."""
        return (self.opened_at if self.opened_at is not None else now) + trial_wait(
            prov, self.failed_trials
        )

    # --- transitions ---------------------------------------------------------------------------

    def failed(
        self,
        gid: str,
        message: str,
        prov: ProvisioningSection,
        now: float,
        *,
        jitter: float,
        provision_error: bool,
        temporary: bool = False,
        event_type: str = "create-failed",
    ) -> None:
        """One failed create: a backoff step and a count toward opening. ``jitter`` multiplies
        the backoff delay (the caller's randomness, e.g. ``1 + uniform(-0.2, 0.2)``). A
        ``temporary`` failure (the plugin is not running or restarting) backs off but does not
        count: restarting a plugin never degrades a group."""
        self.last_failure = message
        if temporary and not self.half_open:
            self.level += 1
            delay = backoff_delay(prov, self.level) * jitter
            self.next_create_at = max(self.next_create_at, now + delay)
            self.pending.append(
                Notice("backoff", f"{message}; next create in {delay:.1f}s", data={"delay": delay})
            )
            return
        self.failures += 1
        if not provision_error:
            self.suspect = True  # instances die or vanish: probe before creating many
        if self.open and not self.half_open:
            # Open: the trial schedule is the only backoff (a death now must not push it).
            self.pending.append(Notice(event_type, f"{message}; the group is degraded"))
        else:
            self.level += 1
            delay = backoff_delay(prov, self.level) * jitter
            self.next_create_at = now + delay
            self.pending.append(
                Notice(
                    "backoff" if provision_error else event_type,
                    f"{message}; next create in {delay:.1f}s",
                    data={"delay": delay},
                )
            )
        if self.half_open:
            self.failed_trials += 1
            self._open(gid, prov, now, f"trial create failed: {message}")
        elif not self.open and self.failures >= prov.max_failures:
            self.failed_trials = 0
            self._open(
                gid, prov, now, f"{self.failures} consecutive failed creates, last: {message}"
            )

    def provisioned(self) -> None:
        """A Provision succeeded. A probe or trial proves nothing until its instance stays up
        (instances of a crash-looping image are provisioned fine and then die)."""
        if not self.probing:
            self.level = 0
            self.next_create_at = 0.0

    def probe_passed(self, gid: str, instance_id: str, prov: ProvisioningSection) -> str:
        """A probe's instance stayed up: create the rest; the trial of an open breaker closes it.
        Returns a decision note for the group's history ("" for none)."""
        note = ""
        if self.half_open:
            self.opened_at = None
            self.half_open = False
            self.failed_trials = 0
            self.reason = ""
            self.failures = max(0, prov.max_failures - 1)  # one more failure opens it again
            self.pending.append(
                Notice(
                    "recovered", f"{gid}: trial instance {instance_id} stayed up; creating again"
                )
            )
        elif self.suspect:
            note = f"{instance_id} stayed up: creating the rest"
        self.suspect = False
        return note

    def confirmed(self) -> None:
        """A create we made lived CrashLoopWindow (or became ready): the provider works."""
        if not self.open:
            self.failures = 0
            self.level = 0
            self.suspect = False
            self.last_failure = ""

    def take_notices(self) -> list[Notice]:
        """Hand over the notices of the transitions so far (the caller publishes them)."""
        notices, self.pending = self.pending, []
        return notices

    def _open(self, gid: str, prov: ProvisioningSection, now: float, why: str) -> None:
        """Open (or re-open after a failed trial) with a reason that says when the next trial
        comes and how to skip the wait."""
        wait = trial_wait(prov, self.failed_trials)
        self.opened_at = now
        self.half_open = False
        self.reason = (
            f"{why}; next trial create in {format_duration(wait)}, or run "
            f"`infrakit group reset {gid}` once the cause is fixed"
        )
        self.pending.append(Notice("degraded", f"{gid} degraded: {self.reason}", warning=True))
