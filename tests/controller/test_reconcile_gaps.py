"""Group controller behaviour documented in docs/group-spec.md that test_controller.py leaves out:
scale-in victim order, StartupTimeout, MinReadySeconds, replace-in-place updates, the breaker
reset by a commit, and the events the controller publishes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infrakit import errors
from infrakit.spi import event, instance
from infrakit.spi.types import CONFIG_HASH_TAG, CREATED_TAG, Health
from tests.controller.conftest import Rig, pets_spec, spec

pytestmark = pytest.mark.timeout(10)

#: Health checked every second; nothing is remediated within a test (1 h).
PATIENT_HEALTH = {"CheckInterval": "1s", "UnhealthyTimeout": "1h"}


async def grow_one_at_a_time(rig: Rig, n: int, gap: float = 5.0, **sections: Any) -> list[str]:
    """Members instance-1..n, each first seen ``gap`` fake seconds after the previous one."""
    await rig.ctl.commit_group(spec(size=1, **sections), False)
    await rig.converge()
    for size in range(2, n + 1):
        await rig.clock.advance(gap)
        await rig.ctl.set_size("cattle", size)
        await rig.converge()
    ids = [f"instance-{i}" for i in range(1, n + 1)]
    assert sorted(rig.inst.instances) == ids
    first_seen = [rig.ctl.groups["cattle"].state.health[i].first_seen for i in ids]
    assert first_seen == sorted(set(first_seen))  # distinct, oldest first
    return ids


def destroyed_ids(rig: Rig) -> set[str]:
    return {i for i, _ in rig.inst.destroyed}


# --- a. scale-in victims -------------------------------------------------------------------------


async def test_scale_in_removes_the_old_config_and_the_unhealthy_member_first(rig: Rig) -> None:
    ids = await grow_one_at_a_time(rig, 4, Health=PATIENT_HEALTH)
    # The two *oldest* are the bad ones, so Newest alone would pick the other two.
    old_config, sick = ids[0], ids[1]
    rig.flav.health[sick] = Health.UNHEALTHY
    await rig.clock.advance(2)
    st = {i["ID"]: i for i in (await rig.ctl.status("cattle"))["Instances"]}
    assert st[sick]["Health"] == "unhealthy"
    assert rig.inst.destroyed == []  # UnhealthyTimeout 1h: not remediated
    await rig.ctl.set_size("cattle", 2)
    # In the same instant (no reconcile in between), one member turns out to be at an old config.
    rig.inst.instances[old_config].desc.tags[CONFIG_HASH_TAG] = "an-older-config"
    await rig.converge()
    assert sorted(rig.inst.instances) == [ids[2], ids[3]]
    # Undesired first, then unhealthy (the update's surge keeps one slot in the first pass).
    assert rig.inst.destroyed == [
        (old_config, instance.REASON_SCALE_DOWN),
        (sick, instance.REASON_SCALE_DOWN),
    ]
    assert rig.inst.calls["provision"] == 4  # scale-in never creates


async def test_scale_in_by_one_prefers_old_config_over_unhealthy_over_newest(rig: Rig) -> None:
    in_place = {"MaxSurge": 0, "MaxUnavailable": 1}  # no surge slot kept for the update
    ids = await grow_one_at_a_time(rig, 4, Health=PATIENT_HEALTH, Updating=in_place)
    old_config, sick = ids[0], ids[1]
    rig.flav.health[sick] = Health.UNHEALTHY
    await rig.clock.advance(2)
    await rig.ctl.set_size("cattle", 3)
    rig.inst.instances[old_config].desc.tags[CONFIG_HASH_TAG] = "an-older-config"
    await rig.converge()
    assert rig.inst.destroyed == [(old_config, instance.REASON_SCALE_DOWN)]
    assert sorted(rig.inst.instances) == ids[1:]
    # One more: the unhealthy member goes before the newest healthy ones.
    await rig.ctl.set_size("cattle", 2)
    await rig.converge()
    assert rig.inst.destroyed[1:] == [(sick, instance.REASON_SCALE_DOWN)]
    assert sorted(rig.inst.instances) == ids[2:]


@pytest.mark.parametrize(
    ("policy", "survivors"),
    [(None, [1, 2]), ("Newest", [1, 2]), ("Oldest", [3, 4])],
    ids=["default", "Newest", "Oldest"],
)
async def test_delete_policy_newest_and_oldest(
    rig: Rig, policy: str | None, survivors: list[int]
) -> None:
    sections = {"Provisioning": {"DeletePolicy": policy}} if policy else {}
    await grow_one_at_a_time(rig, 4, **sections)
    await rig.clock.advance(5)
    await rig.ctl.set_size("cattle", 2)
    await rig.converge()
    assert sorted(rig.inst.instances) == [f"instance-{i}" for i in survivors]
    assert {r for _, r in rig.inst.destroyed} == {instance.REASON_SCALE_DOWN}


async def test_delete_policy_random_removes_the_right_number_of_members_only(rig: Rig) -> None:
    stranger = rig.inst.add({"team": "other"})
    neighbour = rig.inst.add({"infrakit.group": "other-group"})
    await rig.ctl.commit_group(spec(size=6, Provisioning={"DeletePolicy": "Random"}), False)
    await rig.converge()
    members = set(rig.inst.instances) - {stranger, neighbour}
    assert len(members) == 6
    await rig.ctl.set_size("cattle", 2)
    await rig.converge()
    assert len(rig.inst.destroyed) == 4
    assert destroyed_ids(rig) <= members
    assert {stranger, neighbour} <= set(rig.inst.instances)
    assert len(set(rig.inst.instances) & members) == 2
    assert {r for _, r in rig.inst.destroyed} == {instance.REASON_SCALE_DOWN}


async def test_delete_policy_newest_still_holds_after_a_controller_restart(rig: Rig) -> None:
    """Ages come from the ``infrakit.created`` tag the controller writes, not from its memory."""
    await grow_one_at_a_time(rig, 4)
    stamps = [rig.inst.instances[f"instance-{i}"].desc.tags[CREATED_TAG] for i in range(1, 5)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    await rig.restart()
    await rig.converge()
    await rig.clock.advance(5)
    await rig.ctl.set_size("cattle", 2)
    await rig.converge()
    assert sorted(rig.inst.instances) == ["instance-1", "instance-2"]


async def test_delete_policy_oldest_after_a_restart_removes_untagged_members_first(
    rig: Rig,
) -> None:
    """An instance without the tag (adopted from Go InfraKit) has an unknown age: oldest."""
    await grow_one_at_a_time(rig, 3)
    del rig.inst.instances["instance-3"].desc.tags[CREATED_TAG]
    oldest = {"DeletePolicy": "Oldest"}
    await rig.ctl.commit_group(spec(size=3, Provisioning=oldest), False)
    await rig.restart()
    await rig.converge()
    await rig.ctl.set_size("cattle", 1)
    await rig.converge()
    assert sorted(rig.inst.instances) == ["instance-2"]


# --- b. StartupTimeout -----------------------------------------------------------------------------


async def test_instance_that_stays_unknown_is_replaced_after_startup_plus_unhealthy_timeout(
    rig: Rig,
) -> None:
    """docs: UNKNOWN for StartupTimeout makes it unhealthy; unhealthy for UnhealthyTimeout
    gets it replaced - so 30 s + 10 s after it first appeared."""
    rig.flav.default_health = Health.UNKNOWN
    health = {"CheckInterval": "1s", "StartupTimeout": "30s", "UnhealthyTimeout": "10s"}
    t0 = rig.clock.now()
    await rig.ctl.commit_group(spec(size=1, Health=health), False)
    await rig.clock.settle()
    assert sorted(rig.inst.instances) == ["instance-1"]
    await rig.clock.advance(29.5)
    st = (await rig.ctl.status("cattle"))["Instances"][0]
    assert st["Health"] == "unknown"
    await rig.clock.advance(t0 + 39.5 - rig.clock.now())
    assert "instance-1" in rig.inst.instances and rig.inst.destroyed == []
    await rig.clock.advance(1.0)
    assert rig.inst.destroyed == [("instance-1", instance.REASON_UNHEALTHY)]
    assert rig.flav.drained == ["instance-1"]
    assert sorted(rig.inst.instances) == ["instance-2"]  # replaced


async def test_instance_that_answers_healthy_in_time_is_not_replaced(rig: Rig) -> None:
    answered: set[str] = set()
    rig.flav.health_fn = lambda d: Health.HEALTHY if d.id in answered else Health.UNKNOWN
    health = {"CheckInterval": "1s", "StartupTimeout": "30s", "UnhealthyTimeout": "10s"}
    await rig.ctl.commit_group(spec(size=1, Health=health), False)
    await rig.clock.advance(29)
    answered.add("instance-1")
    await rig.clock.advance(120)
    assert rig.inst.destroyed == [] and sorted(rig.inst.instances) == ["instance-1"]


# --- c. MinReadySeconds ----------------------------------------------------------------------------


async def test_min_ready_seconds_holds_the_rolling_update(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    old = set(rig.inst.instances)
    t0 = rig.clock.now()
    await rig.ctl.commit_group(spec(size=2, note="v2", Updating={"MinReadySeconds": "20s"}), False)
    await rig.clock.settle()
    new = set(rig.inst.instances) - old
    assert len(new) == 1  # the surge instance, healthy from its first check (at t0)
    (first_new,) = new
    await rig.clock.advance(t0 + 19.5 - rig.clock.now())
    st = {i["ID"]: i for i in (await rig.ctl.status("cattle"))["Instances"]}
    assert st[first_new]["Health"] == "healthy"
    assert rig.inst.destroyed == []  # healthy, but not ready for 20 s
    assert len(rig.inst.instances) == 3  # and no second surge instance either
    await rig.clock.advance(1.0)
    assert len(rig.inst.destroyed) == 1 and destroyed_ids(rig) <= old
    await rig.converge()
    assert destroyed_ids(rig) == old and len(rig.inst.instances) == 2


# --- d. replace in place ---------------------------------------------------------------------------


async def test_max_surge_0_max_unavailable_1_destroys_first_and_never_exceeds_size(
    rig: Rig,
) -> None:
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    old = set(rig.inst.instances)
    # Before each Provision of the update: how many instances exist, how many were destroyed.
    before_provision: list[tuple[int, int]] = []
    rig.inst.on_provision = lambda s: before_provision.append(
        (len(rig.inst.instances), len(rig.inst.destroyed))
    )
    counts: list[int] = []
    await rig.ctl.commit_group(
        spec(size=3, note="v2", Updating={"MaxSurge": 0, "MaxUnavailable": 1}), False
    )
    for _ in range(100):
        counts.append(len(rig.inst.instances))
        await rig.clock.advance(0.1)
        if not old & set(rig.inst.instances) and not rig.ctl.groups["cattle"].state.creating:
            break
    await rig.converge()
    assert destroyed_ids(rig) == old
    assert len(rig.inst.instances) == 3 and len(rig.hashes()) == 1
    assert max(counts) <= 3 and min(counts) >= 2
    # Every create of the update came after one more old instance was destroyed: with it the
    # group is back at 3, never 4.
    assert [made for made, _ in before_provision] == [2, 2, 2]
    assert [gone for _, gone in before_provision] == [1, 2, 3]


async def test_in_place_update_with_a_slow_drain_never_exceeds_size(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    old = set(rig.inst.instances)

    async def slow_drain(properties: Any, desc: instance.Description) -> None:
        await rig.clock.sleep(25)  # longer than the 10 s resync: a pass runs meanwhile
        rig.flav.drained.append(desc.id)

    rig.flav.drain = slow_drain  # type: ignore[method-assign]
    before_provision: list[int] = []
    rig.inst.on_provision = lambda s: before_provision.append(len(rig.inst.instances))
    counts: list[int] = []
    await rig.ctl.commit_group(
        spec(size=3, note="v2", Updating={"MaxSurge": 0, "MaxUnavailable": 1}), False
    )
    for _ in range(300):
        counts.append(len(rig.inst.instances))
        await rig.clock.advance(0.5)
    assert destroyed_ids(rig) == old and len(rig.inst.instances) == 3  # it does finish
    assert max(counts) <= 3
    assert before_provision == [2, 2, 2]


def _slow_drain(rig: Rig, seconds: float = 25) -> None:
    async def slow_drain(properties: Any, desc: instance.Description) -> None:
        await rig.clock.sleep(seconds)  # longer than the 10 s resync: passes run meanwhile
        rig.flav.drained.append(desc.id)

    rig.flav.drain = slow_drain  # type: ignore[method-assign]


async def test_surge_update_with_a_slow_drain_never_exceeds_size_plus_max_surge(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    old = set(rig.inst.instances)
    _slow_drain(rig)
    await rig.ctl.commit_group(spec(size=3, note="v2"), False)  # MaxSurge 1 (default)
    most = 0
    for _ in range(400):
        state = rig.ctl.groups["cattle"].state
        most = max(most, len(rig.inst.instances) + len(state.creating))
        await rig.clock.advance(0.5)
    assert destroyed_ids(rig) == old and len(rig.inst.instances) == 3
    assert most == 4


async def test_pet_update_with_a_slow_drain_never_runs_two_instances_of_one_logical_id(
    rig: Rig,
) -> None:
    ids = ["a", "b", "c"]
    await rig.ctl.commit_group(pets_spec(ids), False)
    await rig.converge("pets")
    _slow_drain(rig)
    await rig.ctl.commit_group(pets_spec(ids, note="v2"), False)
    worst = 0
    for _ in range(400):
        per_lid: dict[str, int] = {}
        for stored in rig.inst.instances.values():
            lid = stored.desc.logical_id or ""
            per_lid[lid] = per_lid.get(lid, 0) + 1
        worst = max(worst, *per_lid.values())
        await rig.clock.advance(0.5)
    assert len(rig.inst.destroyed) == 3 and len(rig.inst.instances) == 3
    assert len(rig.hashes()) == 1
    assert worst == 1


# --- e. breaker reset by a commit ------------------------------------------------------------------


async def test_commit_after_the_breaker_opened_resets_it_and_creation_resumes(rig: Rig) -> None:
    rig.inst.provision_error = errors.PluginError("quota exceeded")
    prov = {"MaxFailures": 2, "BackoffInitial": "1s", "CoolDown": "5m"}
    await rig.ctl.commit_group(spec(size=3, Provisioning=prov), False)
    await rig.clock.advance(10)
    status = await rig.ctl.status("cattle")
    assert status["Degraded"] and "quota exceeded" in status["Degraded"]["Reason"]
    attempts = rig.inst.calls["provision"]
    await rig.clock.advance(5)
    assert rig.inst.calls["provision"] == attempts  # degraded: nothing until the first trial
    rig.inst.provision_error = None
    await rig.ctl.commit_group(spec(size=3, Provisioning=prov), False)  # the same spec again
    assert (await rig.ctl.status("cattle"))["Degraded"] is None
    took = await rig.converge(limit=5)  # long before the 5 min cool-down
    assert took < 5
    assert len(rig.inst.instances) == 3
    assert (await rig.ctl.status("cattle"))["Backoff"] == 0


# --- f. events -------------------------------------------------------------------------------------


class Events:
    def __init__(self, rig: Rig) -> None:
        self.seen: list[event.Event] = []
        self._stream = rig.ctl.subscribe("group/")
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for ev in self._stream:
            self.seen.append(ev)

    def of(self, type_: str) -> list[event.Event]:
        return [e for e in self.seen if e.type == type_]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_events_for_backoff_and_degraded_carry_the_reason(rig: Rig) -> None:
    events = Events(rig)
    try:
        rig.inst.provision_error = errors.PluginError("quota exceeded")
        prov = {"MaxParallel": 1, "MaxFailures": 3, "BackoffInitial": "1s"}
        await rig.ctl.commit_group(spec(size=2, Provisioning=prov), False)
        await rig.clock.advance(9)  # the breaker opens after ~3 s; its first trial is at +10 s
    finally:
        await events.close()
    backoffs = events.of("backoff")
    assert len(backoffs) == 3
    for ev in backoffs:
        assert ev.topic == "group/cattle"
        assert "quota exceeded" in ev.message and "next create in" in ev.message
        assert ev.data["delay"] > 0
    delays = [ev.data["delay"] for ev in backoffs]
    assert delays[0] < delays[1] < delays[2]  # 1 s, 2 s, 4 s, each +-20%
    (degraded,) = events.of("degraded")
    assert "quota exceeded" in degraded.message and "3 consecutive failed creates" in (
        degraded.message
    )


async def test_events_for_unhealthy_replacement_and_update_steps_carry_the_reason(
    rig: Rig,
) -> None:
    health = {"CheckInterval": "1s", "UnhealthyTimeout": "5s"}
    await rig.ctl.commit_group(spec(size=2, Health=health), False)
    await rig.converge()
    events = Events(rig)
    try:
        sick = "instance-1"
        rig.flav.health[sick] = Health.UNHEALTHY
        await rig.clock.advance(10)
        await rig.converge()
        await rig.ctl.commit_group(spec(size=2, note="v2", Health=health), False)
        await rig.converge()
        await rig.clock.settle()
    finally:
        await events.close()
    (unhealthy,) = events.of("instance-unhealthy")
    assert unhealthy.id == sick and sick in unhealthy.message
    decisions = [e.message for e in events.of("decision")]
    replacing = [m for m in decisions if m.startswith(f"replacing {sick}")]
    assert replacing and "unhealthy" in replacing[0] and "UnhealthyTimeout" in replacing[0]
    destroyed = {e.id: e.message for e in events.of("instance-destroyed")}
    assert f"({instance.REASON_UNHEALTHY})" in destroyed[sick]
    (started,) = events.of("update-started")
    assert "2 instance(s) to replace" in started.message
    steps = [m for m in decisions if m.startswith("rolling update: replacing")]
    assert len(steps) >= 2  # one per step, each saying how many new ones are ready
    assert all("new ready" in m for m in steps)
    rolled = [m for i, m in destroyed.items() if i != sick]
    assert len(rolled) == 2  # instance-2 and the sick one's replacement, rolled to v2
    assert all(f"({instance.REASON_ROLLING_UPDATE})" in m for m in rolled)
    assert len(events.of("update-done")) == 1
