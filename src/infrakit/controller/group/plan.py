"""What a commit will do: InfraKit's one-line plan sentence, and a structured plan for machines.

The sentence is InfraKit HEAD's, word for word (``infrakit group commit --pretend`` prints
``Committing <id> would involve: <sentence>``), computed the same way: from the change in the
*spec's* size and the members whose config differs from the new spec:

=====================================  ==============================================================
same size, nothing to roll             ``Noop``
same size, k members to roll           ``Performing a rolling update on k instances``
shrink by d, r = N - #desired <= 0     ``Terminating d instances to reduce the group size to N``
shrink by d, r > 0                     ``Terminating d instances to reduce the group size to N,
                                       then performing a rolling update on r instances``
grow by d, nothing to roll             ``Adding d instances to increase the group size to N``
grow by d, k to roll                   ``Performing a rolling update on k instances, then adding d
                                       instances to increase the group size to N``
new group                              ``Managing N instances``
=====================================  ==============================================================

Quorum groups whose logical IDs change (InfraKit refused them) get ``Adding instances with logical
IDs a, b; removing instances with logical IDs c[, then performing a rolling update on k instances]``.

:func:`structured_plan` returns the same decision as data - instances to create, to destroy, the
replacement order in batches, and the gates between batches - for ``--pretend -o json``.
"""

from __future__ import annotations

import random
from typing import Any

from infrakit.controller.group.reconcile import logical_id_of, replacement_order, victim_order
from infrakit.controller.group.spec import GroupSettings, rollout_budget
from infrakit.controller.group.state import GroupState
from infrakit.spi.instance import Description

__all__ = ["plan_sentence", "structured_plan"]


def plan_sentence(old: GroupSettings | None, new: GroupSettings, members: list[Description]) -> str:
    """InfraKit HEAD's sentence for committing ``new`` over ``old`` (None: a new group), given
    the current ``members`` (module docstring's table). Word for word, because scripts and Go
    InfraKit's tutorial tests compare it - except that a rolling update with an
    ``Updating.Canary`` (infrakit's own key) says where it will stop: ``...; canary: 1 instance
    first, then a pause until `infrakit group promote cattle```."""
    text = _infrakit_sentence(old, new, members)
    canary = new.properties.updating.canary
    if canary and "rolling update" in text:
        first = f"{canary} instance{'s' if canary > 1 else ''}"
        text += f"; canary: {first} first, then a pause until `infrakit group promote {new.id}`"
    return text


def _infrakit_sentence(
    old: GroupSettings | None, new: GroupSettings, members: list[Description]
) -> str:
    """InfraKit HEAD's sentence, word for word (see :func:`plan_sentence`)."""
    if old is None:
        return f"Managing {new.size} instances"
    undesired = [m for m in members if not new.hash.matches(m.tags)]
    if new.is_quorum or old.is_quorum:
        old_ids = list(old.properties.allocation.logical_ids or [])
        new_ids = list(new.properties.allocation.logical_ids or [])
        if new.is_quorum and old.is_quorum and set(old_ids) == set(new_ids):
            return (
                f"Performing a rolling update on {len(undesired)} instances"
                if undesired
                else "Noop"
            )
        if new.is_quorum:
            added = [i for i in new_ids if i not in old_ids]
            removed = [i for i in old_ids if i not in new_ids]
            staying = [m for m in undesired if logical_id_of(m) in set(new_ids)]
            parts = []
            if added:
                parts.append("adding instances with logical IDs " + ", ".join(added))
            if removed:
                parts.append("removing instances with logical IDs " + ", ".join(removed))
            text = "; ".join(parts) or "Noop"
            text = text[0].upper() + text[1:]
            if staying:
                text += f", then performing a rolling update on {len(staying)} instances"
            return text
    size_change = new.size - old.size
    roll = len(undesired)
    if size_change == 0:
        return f"Performing a rolling update on {roll} instances" if roll else "Noop"
    if size_change < 0:
        desired = len(members) - roll
        roll = max(0, new.size - desired)
        text = f"Terminating {-size_change} instances to reduce the group size to {new.size}"
        if roll > 0:
            text += f", then performing a rolling update on {roll} instances"
        return text
    if roll == 0:
        return f"Adding {size_change} instances to increase the group size to {new.size}"
    return (
        f"Performing a rolling update on {roll} instances, then adding {size_change} "
        f"instances to increase the group size to {new.size}"
    )


def structured_plan(
    old: GroupSettings | None,
    new: GroupSettings,
    members: list[Description],
    state: GroupState | None = None,
    now: float = 0.0,
) -> dict[str, Any]:
    """The commit's effect as data: creates, destroys, replacement batches and gates.

    ``state`` is the controller's memory of the group (health, when each member was first seen)
    at time ``now``: with it the scale-in victims and the replacement order are the ones the
    controller will pick (``reconcile.victim_order`` / ``replacement_order``, the same code).
    With DeletePolicy Random the named victims are one possible draw."""
    state = state if state is not None else GroupState()
    desired = [m for m in members if new.hash.matches(m.tags)]
    undesired = [m for m in members if not new.hash.matches(m.tags)]
    plan: dict[str, Any] = {
        "Group": new.id,
        "Sentence": plan_sentence(old, new, members),
        "ConfigHash": new.hash.head,
        "Current": {
            "Instances": len(members),
            "Desired": len(desired),
            "Undesired": len(undesired),
        },
        "Target": {"Size": new.size},
    }
    if new.is_quorum:
        plan.update(_pets_plan(new, members, undesired))
    else:
        plan.update(_cattle_plan(new, members, undesired, state, now))
    return plan


def _pets_plan(
    new: GroupSettings, members: list[Description], undesired: list[Description]
) -> dict[str, Any]:
    """Missing logical IDs are created, removed ones destroyed, the rest rolled one at a time."""
    ids = list(new.properties.allocation.logical_ids or [])
    present = {logical_id_of(m) for m in members}
    create = [{"LogicalID": i} for i in ids if i not in present]
    destroy = [
        {"ID": m.id, "LogicalID": logical_id_of(m), "Reason": "removed_from_quorum"}
        for m in members
        if logical_id_of(m) not in set(ids) and logical_id_of(m) is not None
    ]
    rolling = [m for m in undesired if logical_id_of(m) in set(ids)]
    batches = [
        {
            "Batch": i + 1,
            "Replace": [{"ID": m.id, "LogicalID": logical_id_of(m)}],
            "Order": "destroy-then-create",
        }
        for i, m in enumerate(sorted(rolling, key=lambda m: ids.index(logical_id_of(m) or "")))
    ]
    return {
        "Create": create,
        "Destroy": destroy,
        "Replacements": batches,
        "Gates": _gates(new, pets=True),
    }


def _cattle_plan(
    new: GroupSettings,
    members: list[Description],
    undesired: list[Description],
    state: GroupState,
    now: float,
) -> dict[str, Any]:
    """Scale-in victims, creates for the size, and the rolling update's batches."""
    u = new.properties.updating
    plan: dict[str, Any] = {}
    n = new.size
    scale_in = max(0, len(members) - n)
    # A fixed seed: pretending twice gives the same answer (only DeletePolicy Random uses it).
    victims = victim_order(members, new, state, now, random.Random(0))[:scale_in]
    victim_ids = {v.id for v in victims}
    remaining_old = [m for m in undesired if m.id not in victim_ids]
    # As in reconcile._decide_cattle: MaxSurge new instances may exist beside the old ones, and
    # MaxUnavailable old ones may go before their replacements are ready (rollout_budget makes
    # sure at least one of the two is above 0).
    surge, unavailable = rollout_budget(u, n)
    if not remaining_old:
        surge = 0
    step = max(1, surge + unavailable)
    creates_for_size = max(0, n - (len(members) - len(victims)))
    order = replacement_order(remaining_old, new, state, now)
    batches: list[dict[str, Any]] = []
    for i in range(0, len(order), step):
        chunk = order[i : i + step]
        batches.append(
            {
                "Batch": len(batches) + 1,
                "Create": min(surge, len(chunk)) if surge else 0,
                "Replace": [{"ID": m.id} for m in chunk],
                "Order": "create-then-destroy" if surge else "destroy-then-create",
            }
        )
    if u.canary and batches:
        plan["Canary"] = {"Instances": u.canary, "Then": "pause until `infrakit group promote`"}
    plan["Create"] = {"ForSize": creates_for_size, "ForReplacement": len(remaining_old)}
    plan["Destroy"] = [{"ID": v.id, "Reason": "scale_down"} for v in victims] + [
        {"ID": m.id, "Reason": "rolling_update"} for m in order
    ]
    plan["Replacements"] = batches
    if new.properties.provisioning.delete_policy == "Random" and victims:
        plan["Note"] = "DeletePolicy Random: the scale-down victims above are one possible draw"
    plan["Gates"] = _gates(new, pets=False)
    return plan


def _gates(new: GroupSettings, *, pets: bool) -> list[str]:
    """What must hold between replacement batches, in words, for the plan's ``Gates``."""
    u = new.properties.updating
    gates = ["each new instance reports HEALTHY from Flavor.Healthy"]
    ready = max(u.min_ready_seconds, u.duration)
    if ready:
        gates.append(f"and stays healthy for {ready:g}s")
    if u.count:
        gates.append(f"and passes {u.count} consecutive health checks")
    if pets:
        gates.append("a majority of members stays available (groups of 3 or more)")
    else:
        gates.append(
            f"at least Size - MaxUnavailable = "
            f"{new.size - rollout_budget(u, new.size)[1]} "
            "instances stay available"
        )
    if u.progress_deadline:
        action = "roll back" if u.auto_rollback else "pause"
        gates.append(f"no progress for {u.progress_deadline:g}s -> {action}")
    return gates
