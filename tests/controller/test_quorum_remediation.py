"""Pets are remediated one member at a time, never while another logical ID is missing or
changing (pure table tests of ``reconcile.decide``): a quorum system survives one missing member,
not two."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.controller.group.reconcile import REASON_UNHEALTHY, decide
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import GroupState, InFlightCreate, InstanceHealth
from infrakit.spi import group
from infrakit.spi.instance import Description
from infrakit.spi.types import CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Health

HEALTH = {"CheckInterval": "1s", "UnhealthyTimeout": "10s"}
NOW = 100.0


def settings(allocation: dict[str, Any]) -> GroupSettings:
    return parse_spec(
        group.Spec(
            "g",
            {
                "Allocation": allocation,
                "Instance": {"Plugin": "inst", "Properties": {}},
                "Flavor": {"Plugin": "flav", "Properties": {}},
                "Health": HEALTH,
            },
        )
    )


def members(s: GroupSettings, lids: list[str | None]) -> list[Description]:
    out = []
    for i, lid in enumerate(lids):
        tags = {GROUP_TAG: "g", CONFIG_HASH_TAG: s.hash.head}
        if lid is not None:
            tags[LOGICAL_ID_TAG] = lid
        out.append(Description(f"i-{i}", lid, tags))
    return out


def state_with(ms: list[Description], bad_since: dict[str, float]) -> GroupState:
    """Members healthy since 0, except ``bad_since`` (instance ID -> when it turned unhealthy)."""
    state = GroupState()
    for m in ms:
        since = bad_since.get(m.id)
        state.health[m.id] = InstanceHealth(
            first_seen=0.0,
            status=Health.HEALTHY if since is None else Health.UNHEALTHY,
            since=0.0 if since is None else since,
            last_check=NOW,
            ever_healthy=True,
            healthy_streak=1 if since is None else 0,
        )
    return state


PETS = {"LogicalIDs": ["a", "b", "c"]}


@pytest.mark.parametrize(
    ("lids", "bad", "busy", "replaced"),
    [
        # every ID present, nothing in flight: the one unhealthy member is replaced
        (["a", "b", "c"], {"i-1": 50.0}, "", ["i-1"]),
        # two unhealthy at once: only the one unhealthy the longest
        (["a", "b", "c"], {"i-0": 60.0, "i-2": 40.0}, "", ["i-2"]),
        # logical ID c is missing (its member died): no second member is taken down
        (["a", "b"], {"i-0": 50.0}, "", []),
        # c is being created (Prepare/Provision in flight)
        (["a", "b"], {"i-1": 50.0}, "creating", []),
        # a member is being drained/destroyed
        (["a", "b", "c"], {"i-1": 50.0}, "destroying", []),
        # not unhealthy for UnhealthyTimeout yet: nothing, whatever else holds
        (["a", "b", "c"], {"i-1": 95.0}, "", []),
        # the whole cluster reports unhealthy (no leader): still one at a time
        (["a", "b", "c"], {"i-0": 30.0, "i-1": 30.0, "i-2": 30.0}, "", ["i-0"]),
    ],
)
def test_pets_are_remediated_one_at_a_time_and_never_while_one_is_missing(
    lids: list[str], bad: dict[str, float], busy: str, replaced: list[str]
) -> None:
    s = settings(PETS)
    ms = members(s, list(lids))
    state = state_with(ms, bad)
    if busy == "creating":
        state.creating[1] = InFlightCreate(token=1, logical_id="c", started_at=NOW)
    if busy == "destroying":
        state.destroying["i-9"] = NOW
        state.destroying_lids["i-9"] = "x"
    d = decide(s, ms, state, NOW)
    assert [(m.id, r) for m, r in d.destroys] == [(i, REASON_UNHEALTHY) for i in replaced]
    if bad and not replaced and min(bad.values()) + 10 <= NOW:
        assert any("one at a time" in n for n in d.notes), d.notes
        assert d.requeue_after is not None


def test_cattle_remediation_is_unchanged_all_due_members_go() -> None:
    s = settings({"Size": 3})
    ms = members(s, [None, None, None])
    state = state_with(ms, {"i-0": 10.0, "i-1": 20.0})
    d = decide(s, ms, state, NOW)
    assert sorted(m.id for m, r in d.destroys if r == REASON_UNHEALTHY) == ["i-0", "i-1"]
