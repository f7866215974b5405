"""Rolling-update progress: when an update starts, advances, finishes, pauses or rolls back. Pure.

``decide()`` (:mod:`~infrakit.controller.group.reconcile`) says *which* instances to replace next;
this module keeps the update's record (:class:`~infrakit.controller.group.state.UpdateProgress`,
persisted so a restarted controller resumes it) and judges it as a whole:

* **start** - members at another config than the spec's, and no record for this target yet: a
  record is made (target hash, the last converged spec to roll back to, how many to replace).
* **progress** - the number of *ready* new members grew: the update made progress (this is what
  ``Updating.ProgressDeadline`` measures).
* **finish** - no old member left, nothing in flight, at least ``Size`` new members.
* **stop** - the update stops for one of two causes: the new config cannot be created (the circuit
  breaker opened: creates fail, or new instances die young), or no new instance became ready
  within ``ProgressDeadline``. With ``AutoRollback`` it then commits the last spec that fully
  converged; without, it pauses until someone resumes or rolls back.

:func:`advance` updates the record in ``state`` and returns a :class:`RolloutStep` saying what the
controller must carry out (persist the record, publish, commit the rollback spec). The user's
controls - :func:`pause`, :func:`resume`, :func:`promote` - are transitions of the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infrakit import errors
from infrakit._utils.duration import format_duration
from infrakit.controller.group.breaker import Notice
from infrakit.controller.group.reconcile import ByConfig, by_config, is_ready
from infrakit.controller.group.spec import GroupSettings
from infrakit.controller.group.state import GroupState, UpdateProgress
from infrakit.spi.instance import Description

__all__ = ["RolloutStep", "advance", "pause", "promote", "resume"]


@dataclass
class RolloutStep:
    """What the controller does after :func:`advance`."""

    #: Write ``state.update`` to the store (or delete the record when it is None).
    persist: bool = False
    #: Lines to publish on ``group/<id>``.
    notices: list[Notice] = field(default_factory=list)
    #: Group properties to commit as an automatic rollback (None: none).
    rollback_to: Any = None


def advance(
    settings: GroupSettings,
    state: GroupState,
    members: list[Description],
    stable: Any,
    now: float,
    wall: float,
    split: ByConfig | None = None,
) -> RolloutStep:
    """Start, advance, time out or finish the group's rolling-update record (module docstring).

    ``stable`` is the last spec that fully converged (the rollback target); ``now`` the controller
    clock, ``wall`` the wall clock (the record's times survive a restart)."""
    gid = settings.id
    step = RolloutStep()
    desired, undesired = split or by_config(settings, members)
    upd = state.update
    u = settings.properties.updating
    if undesired and (upd is None or upd.target != settings.hash.head):
        state.update = UpdateProgress(
            target=settings.hash.head,
            previous=stable if stable != settings.raw else None,
            started_at=wall,
            last_progress_at=wall,
            total=len(undesired),
            promoted=u.canary == 0,
        )
        state.ready_count = 0
        step.persist = True
        step.notices.append(
            Notice(
                "update-started",
                f"rolling update of {gid}: {len(undesired)} instance(s) to replace",
            )
        )
        return step
    if upd is None:
        return step
    ready = sum(1 for m in desired if is_ready(state.health.get(m.id), settings, now))
    if ready > state.ready_count:
        upd.last_progress_at = wall
    state.ready_count = ready
    if not undesired and not state.creating and len(desired) >= settings.size:
        state.update = None
        step.persist = True
        step.notices.append(Notice("update-done", f"rolling update of {gid} complete"))
        return step
    if not (upd.paused or upd.failed):
        _judge(settings, state, upd, wall, step)
    return step


def _judge(
    settings: GroupSettings, state: GroupState, upd: UpdateProgress, wall: float, step: RolloutStep
) -> None:
    """Stop an update that cannot go on: pause it, or (AutoRollback) roll it back."""
    gid = settings.id
    u = settings.properties.updating
    if state.breaker.open:
        cause = detail = f"creates at the new config keep failing ({state.breaker.reason})"
    elif u.progress_deadline and wall - upd.last_progress_at > u.progress_deadline:
        cause = f"no progress for {format_duration(u.progress_deadline)}"
        detail = cause + " (Updating.ProgressDeadline)"
    else:
        return
    step.persist = True
    if u.auto_rollback and upd.previous is not None:
        upd.failed = True
        upd.reason = f"{cause}: rolling back"
        step.notices.append(Notice("update-failed", f"{gid}: {upd.reason}"))
        step.rollback_to = upd.previous
    else:
        upd.paused = True
        upd.reason = (
            f"{detail}; fix the cause, then "
            f"`infrakit group resume {gid}` or `infrakit group rollback {gid}`"
        )
        step.notices.append(Notice("update-paused", f"{gid}: {upd.reason}"))


# --- the user's controls (infrakit group pause / resume / promote) ---------------------------


def pause(state: GroupState, gid: str) -> Notice:
    """Freeze the update: nothing more is replaced until it is resumed (the surge stays). Like
    every control, it fails when there is nothing to do: an update already paused or failed."""
    upd = _running(state, gid, "pause")
    if upd.paused or upd.failed:
        raise errors.ConflictError(
            f"update of {gid} is already {'paused' if upd.paused else 'stopped'} "
            f"({upd.reason or 'no reason recorded'}); nothing to pause"
        )
    upd.paused = True
    upd.reason = "paused by user"
    return Notice("update-paused", f"update of {gid} paused by user")


def resume(state: GroupState, gid: str, wall: float) -> Notice:
    """Go on - also after a failure: resuming means "try again", so the breaker is reset too
    (an update paused because creates kept failing would otherwise pause again at once)."""
    upd = _running(state, gid, "resume")
    if not (upd.paused or upd.failed):
        waiting = "its canary waits for `infrakit group promote " + gid + "`"
        raise errors.ConflictError(
            f"update of {gid} is not paused ({waiting if not upd.promoted else 'it is rolling'}); "
            "nothing to resume"
        )
    upd.paused = False
    upd.failed = False
    upd.reason = ""
    upd.last_progress_at = wall
    state.breaker.reset()
    return Notice("update-resumed", f"update of {gid} resumed")


def promote(settings: GroupSettings, state: GroupState, wall: float) -> Notice:
    """The canary looks good: replace the rest."""
    upd = state.update
    if upd is None or settings.properties.updating.canary == 0:
        raise errors.ConflictError(
            f"group {settings.id} has no canary update waiting for promotion"
        )
    if upd.promoted:
        raise errors.ConflictError(
            f"canary of {settings.id} is already promoted (the update replaces the rest); "
            "nothing to promote"
        )
    upd.promoted = True
    upd.last_progress_at = wall
    return Notice("update-promoted", f"canary of {settings.id} promoted: rolling the rest")


def _running(state: GroupState, gid: str, verb: str) -> UpdateProgress:
    """The group's rolling update, or a ConflictError saying there is none to ``verb``."""
    if state.update is None:
        raise errors.ConflictError(f"group {gid} has no rolling update to {verb}")
    return state.update
