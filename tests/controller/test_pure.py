"""Table tests of the controller's pure modules: breaker, observe, rollout, decide.

Plain data in, plain data out: no controller, no plugins, no event loop. Each table row is one
situation a group can be in and what must happen; the controller tests (test_controller.py) show
the same rules working end to end with the fake plugins and the fake clock.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

import pytest

from infrakit.controller.group import rollout
from infrakit.controller.group.breaker import Breaker, backoff_delay, probe_time, trial_wait
from infrakit.controller.group.observe import EARLY_DEATH_BURST, observe
from infrakit.controller.group.reconcile import decide
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import (
    GroupState,
    InFlightCreate,
    InstanceHealth,
    UpdateProgress,
)
from infrakit.errors import ConflictError
from infrakit.spi import group
from infrakit.spi.instance import Description
from infrakit.spi.types import (
    CONFIG_HASH_TAG,
    CREATE_TOKEN_TAG,
    CREATED_TAG,
    GROUP_TAG,
    LOGICAL_ID_TAG,
    parse_timestamp,
)

BASE: dict[str, Any] = {
    "Allocation": {"Size": 3},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {}},
}


def settings(size: int = 3, note: str = "v1", **sections: Any) -> GroupSettings:
    props = copy.deepcopy(BASE)
    props["Allocation"] = {"Size": size}
    props["Instance"]["Properties"]["Note"] = note
    props.update(sections)
    return parse_spec(group.Spec("g", props))


def member(iid: str, s: GroupSettings, **tags: str) -> Description:
    return Description(iid, None, {GROUP_TAG: "g", CONFIG_HASH_TAG: s.hash.head, **tags})


PROV = settings().properties.provisioning  # the defaults


# --- breaker ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "delay"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (100, 60.0)]
)
def test_backoff_doubles_from_backoff_initial_up_to_backoff_max(level: int, delay: float) -> None:
    assert backoff_delay(PROV, level) == delay


@pytest.mark.parametrize(
    ("failed_trials", "cool_down", "wait"),
    [(0, 300, 10.0), (1, 300, 20.0), (4, 300, 160.0), (5, 300, 300.0), (0, 5, 5.0), (3, 20, 20.0)],
)
def test_trials_come_after_10s_doubling_up_to_cool_down(
    failed_trials: int, cool_down: float, wait: float
) -> None:
    prov = settings(Provisioning={"CoolDown": cool_down}).properties.provisioning
    assert trial_wait(prov, failed_trials) == wait


@pytest.mark.parametrize(
    ("level", "window", "probe"),
    [(0, 30, 2.0), (1, 30, 2.0), (4, 30, 8.0), (6, 30, 10.0), (6, 5, 5.0)],
)
def test_a_probe_must_stay_up_for_the_backoff_between_2s_and_10s(
    level: int, window: float, probe: float
) -> None:
    prov = settings(Provisioning={"CrashLoopWindow": window}).properties.provisioning
    assert probe_time(prov, level) == probe


def test_breaker_failures_back_off_open_and_trials_reopen_with_a_longer_wait() -> None:
    b = Breaker()
    for n in range(1, 5):
        b.failed("g", f"boom {n}", PROV, now=n, jitter=1.0, provision_error=True)
        assert not b.open and b.next_create_at == n + backoff_delay(PROV, n)
    b.failed("g", "boom 5", PROV, now=5, jitter=1.0, provision_error=True)
    assert b.open and b.failures == 5 and "next trial create in 10s" in b.reason
    types = [n.type for n in b.take_notices()]
    assert types == ["backoff"] * 5 + ["degraded"]
    assert b.next_trial_at(PROV, 5) == 15
    b.half_open = True  # the wait passed: one trial
    b.failed("g", "trial boom", PROV, now=15, jitter=1.0, provision_error=True)
    assert b.open and not b.half_open and b.failed_trials == 1
    assert b.next_trial_at(PROV, 15) == 35 and "next trial create in 20s" in b.reason


def test_a_failure_while_open_does_not_push_the_trial_schedule() -> None:
    b = Breaker(failures=5, opened_at=100.0, next_create_at=101.0, level=5)
    b.failed("g", "died", PROV, now=103, jitter=1.0, provision_error=False)
    assert b.next_create_at == 101.0 and b.level == 5 and b.opened_at == 100.0


def test_an_unreachable_plugin_backs_off_but_never_counts_toward_opening() -> None:
    b = Breaker()
    for n in range(10):
        b.failed("g", "plugin down", PROV, now=n, jitter=1.0, provision_error=True, temporary=True)
    assert b.failures == 0 and not b.open and b.next_create_at > 9


@pytest.mark.parametrize(
    ("suspect", "half_open", "level_after"), [(False, False, 0), (True, False, 3), (False, True, 3)]
)
def test_provision_success_resets_the_backoff_only_outside_probing(
    suspect: bool, half_open: bool, level_after: int
) -> None:
    b = Breaker(level=3, next_create_at=50.0, suspect=suspect, half_open=half_open)
    b.provisioned()
    assert b.level == level_after


def test_a_passed_trial_closes_the_breaker_one_failure_short_of_opening_again() -> None:
    b = Breaker(failures=7, opened_at=1.0, half_open=True, failed_trials=2, suspect=True)
    b.probe_passed("g", "i-1", PROV)
    assert not b.open and not b.probing and b.failures == PROV.max_failures - 1
    assert [n.type for n in b.take_notices()] == ["recovered"]


# --- observe ---------------------------------------------------------------------------------


def observed_state(s: GroupSettings, ids: list[str], first_seen: float, **h: Any) -> GroupState:
    state = GroupState()
    for iid in ids:
        state.health[iid] = InstanceHealth(first_seen=first_seen, created_by_us=True, **h)
    state.last_seen = dict.fromkeys(ids)
    return state


def test_observe_matches_a_create_listed_before_its_provision_reply_by_its_token() -> None:
    s = settings()
    state = GroupState()
    state.creating[1] = InFlightCreate(token=1, logical_id=None, started_at=0, tag="run-1")
    found = [member("i-1", s, **{CREATE_TOKEN_TAG: "run-1"})]
    obs = observe(s, state, found, 1.0, 1.0, random.Random(0))
    assert [m.id for m in obs.members] == ["i-1"]
    assert not state.creating  # matched: no longer pending, not counted twice
    assert state.health["i-1"].created_by_us


def test_observe_takes_a_logical_id_from_its_tag_without_changing_the_plugins_description() -> None:
    # In-process plugins hand out the descriptions they keep (the file plugin's records).
    s = settings()
    listed = member("i-1", s, **{LOGICAL_ID_TAG: "db-1"})
    found = [listed]
    obs = observe(s, GroupState(), found, 1.0, 1.0, random.Random(0))
    assert [(m.id, m.logical_id) for m in obs.members] == [("i-1", "db-1")]
    assert [(m.id, m.logical_id) for m in obs.visible] == [("i-1", "db-1")]
    assert listed.logical_id is None


def test_observe_parses_a_created_tag_once_for_the_instances_of_one_millisecond() -> None:
    s = settings()
    stamp = "2026-12-02T10:00:00.123Z"
    found = [member(f"i-{n}", s, **{CREATED_TAG: stamp}) for n in range(3)]
    found.append(member("i-3", s, **{CREATED_TAG: "2026-12-02T10:00:01.000Z"}))
    found.append(member("i-4", s))
    state = GroupState()
    wall = parse_timestamp("2026-12-02T10:00:02.123Z") or 0.0
    observe(s, state, found, 100.0, wall, random.Random(0))
    created = [state.health[f"i-{n}"].created for n in range(5)]
    assert created[:4] == pytest.approx([98.0, 98.0, 98.0, 98.877])
    assert created[0] is created[1] is created[2]  # one float for the three
    assert created[4] == float("-inf")


def test_observe_counts_a_create_that_never_appeared_as_a_failure() -> None:
    s = settings(Provisioning={"VisibilityTimeout": "5s"})
    state = GroupState()
    state.creating[1] = InFlightCreate(
        token=1, logical_id=None, started_at=0, instance_id="i-9", visible_by=5.0
    )
    obs = observe(s, state, [], 6.0, 6.0, random.Random(0))
    assert not state.creating and state.breaker.failures == 1 and state.breaker.suspect
    assert any("never appeared" in n.message for n in obs.notices)


@pytest.mark.parametrize(
    ("ages", "counted"),
    [
        ([1.0], 1),  # one young death
        ([1.0, 1.0, 1.0], 1),  # `rm instance-*`: one disaster
        ([40.0, 40.0], 0),  # old instances: not a crash loop
    ],
)
def test_observe_counts_young_deaths_once_per_burst(ages: list[float], counted: int) -> None:
    s = settings()
    ids = [f"i-{n}" for n in range(len(ages))]
    now = 100.0
    state = GroupState()
    for iid, age in zip(ids, ages, strict=True):
        state.health[iid] = InstanceHealth(first_seen=now - age, created_by_us=True)
    state.last_seen = dict.fromkeys(ids)
    obs = observe(s, state, [], now, now, random.Random(0))
    assert state.breaker.failures == counted
    assert sum(1 for n in obs.notices if n.type == "instance-lost") == len(ages)
    assert state.breaker.suspect == (counted > 0)


def test_a_replacement_that_dies_within_the_burst_window_still_counts() -> None:
    """The hole of issue 8.1: deaths less than 2 s apart counted once, so a crash loop whose
    instances die within a second never counted its later generations."""
    s = settings()
    state = observed_state(s, ["i-1"], first_seen=99.0)
    observe(s, state, [], 100.0, 100.0, random.Random(0))  # i-1 dies young: counted
    assert state.breaker.failures == 1 and state.breaker.burst_at == 100.0
    # Its replacement, created after that death, dies 1 s later: within EARLY_DEATH_BURST of it.
    state.health["i-2"] = InstanceHealth(first_seen=100.5, created_by_us=True)
    state.last_seen = {"i-2": None}
    assert EARLY_DEATH_BURST > 101.0 - 100.0
    observe(s, state, [], 101.0, 101.0, random.Random(0))
    assert state.breaker.failures == 2


def test_a_probe_that_stayed_up_lets_the_rest_be_created() -> None:
    s = settings()
    state = GroupState()
    state.breaker.suspect = True
    state.health["i-1"] = InstanceHealth(first_seen=10.0, probe_until=12.0)
    state.last_seen = {"i-1": None}
    observe(s, state, [member("i-1", s)], 11.0, 11.0, random.Random(0))
    assert state.breaker.suspect  # not yet
    observe(s, state, [member("i-1", s)], 12.0, 12.0, random.Random(0))
    assert not state.breaker.suspect and state.health["i-1"].probe_until is None


def test_an_instance_we_destroyed_is_hidden_while_still_listed_then_back() -> None:
    s = settings()
    state = GroupState()
    state.destroyed_until["i-1"] = 50.0
    obs = observe(s, state, [member("i-1", s)], 40.0, 40.0, random.Random(0))
    assert obs.members == [] and obs.visible == []
    obs = observe(s, state, [member("i-1", s)], 51.0, 51.0, random.Random(0))
    assert [m.id for m in obs.members] == ["i-1"]  # the destroy silently failed: it is back


# --- rollout ---------------------------------------------------------------------------------


def test_rollout_starts_a_record_when_members_are_at_another_config() -> None:
    old, new = settings(note="v1"), settings(note="v2")
    state = GroupState()
    step = rollout.advance(new, state, [member("i-1", old)], old.raw, 1.0, 1000.0)
    assert state.update is not None and state.update.total == 1
    assert state.update.previous == old.raw and step.persist
    assert [n.type for n in step.notices] == ["update-started"]


def test_rollout_finishes_when_only_new_members_remain() -> None:
    old, new = settings(size=1, note="v1"), settings(size=1, note="v2")
    state = GroupState()
    rollout.advance(new, state, [member("i-1", old)], old.raw, 1.0, 1000.0)
    step = rollout.advance(new, state, [member("i-2", new)], old.raw, 2.0, 1001.0)
    assert state.update is None and step.persist
    assert [n.type for n in step.notices] == ["update-done"]


@pytest.mark.parametrize(
    ("auto_rollback", "paused", "rollback"), [(False, True, False), (True, False, True)]
)
def test_rollout_stops_at_the_progress_deadline(
    auto_rollback: bool, paused: bool, rollback: bool
) -> None:
    updating = {"ProgressDeadline": "10s", "AutoRollback": auto_rollback}
    old = settings(note="v1", Updating=updating)
    new = settings(note="v2", Updating=updating)
    state = GroupState()
    members = [member("i-1", old)]
    rollout.advance(new, state, members, old.raw, 0.0, 1000.0)
    assert rollout.advance(new, state, members, old.raw, 5.0, 1005.0).rollback_to is None
    step = rollout.advance(new, state, members, old.raw, 11.0, 1011.0)
    assert state.update is not None and state.update.paused == paused
    assert (step.rollback_to == old.raw) == rollback
    assert "no progress for 10s" in state.update.reason


def test_rollout_controls_refuse_when_there_is_nothing_to_control() -> None:
    state = GroupState()
    with pytest.raises(ConflictError, match="no rolling update to pause"):
        rollout.pause(state, "g")
    with pytest.raises(ConflictError, match="no canary update"):
        rollout.promote(settings(), state, 0.0)


@pytest.mark.parametrize(
    ("record", "control", "refusal"),
    [
        ({"paused": True, "reason": "paused by user"}, "pause", "already paused (paused by user)"),
        ({"failed": True, "reason": "rolling back"}, "pause", "already stopped (rolling back)"),
        ({"promoted": True}, "resume", "is not paused (it is rolling); nothing to resume"),
        ({}, "resume", "its canary waits for `infrakit group promote g`); nothing to resume"),
        ({"promoted": True}, "promote", "canary of g is already promoted"),
    ],
)
def test_rollout_controls_refuse_when_the_update_is_already_there(
    record: dict[str, Any], control: str, refusal: str
) -> None:
    state = GroupState(update=UpdateProgress(target="h", **record))
    before = copy.deepcopy(state.update)
    canary = settings(Updating={"Canary": 1})
    with pytest.raises(ConflictError, match=re.escape(refusal)):
        if control == "pause":
            rollout.pause(state, "g")
        elif control == "resume":
            rollout.resume(state, "g", 0.0)
        else:
            rollout.promote(canary, state, 0.0)
    assert state.update == before  # nothing changed


@pytest.mark.parametrize(
    ("breaker", "at_rest"),
    [
        (Breaker(), True),
        (Breaker(failures=1, level=1, next_create_at=5.0), False),  # backing off
        (Breaker(suspect=True), False),  # probing
        (Breaker(failures=5, opened_at=0.0), False),  # open
        (Breaker(failures=4), False),  # recovered, one failure from opening again
    ],
)
def test_a_breaker_has_something_to_reset_unless_at_rest(breaker: Breaker, at_rest: bool) -> None:
    assert breaker.at_rest is at_rest


# --- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("breaker", "creates"),
    [
        (Breaker(), 2),  # healthy: everything missing at once
        (Breaker(level=1, next_create_at=5.0, failures=1), 0),  # backing off
        (Breaker(level=1, failures=1, suspect=True), 1),  # probing: one
        (Breaker(failures=5, opened_at=0.0), 0),  # open, before the first trial
        (Breaker(failures=5, opened_at=-20.0), 1),  # open, trial due
    ],
)
def test_decide_creates_within_backoff_probing_and_the_breaker(
    breaker: Breaker, creates: int
) -> None:
    s = settings(size=3)
    state = GroupState(breaker=breaker)
    d = decide(s, [member("i-1", s)], state, 1.0)
    assert len(d.creates) == creates
    if creates < 2:  # and the decision says why the rest wait
        assert any(" wait: " in note for note in d.notes), d.notes


def test_decide_never_creates_while_a_probe_is_on_trial() -> None:
    s = settings(size=3)
    state = GroupState(breaker=Breaker(suspect=True, failures=1, level=1))
    state.health["i-1"] = InstanceHealth(first_seen=0.5, probe_until=2.5)
    d = decide(s, [member("i-1", s)], state, 1.0)
    assert d.creates == [] and d.requeue_after == pytest.approx(1.5)


@pytest.mark.parametrize(("policy", "victim"), [("Newest", "c"), ("Oldest", "a")])
def test_decide_scales_in_by_delete_policy(policy: str, victim: str) -> None:
    s = settings(size=2, Provisioning={"DeletePolicy": policy})
    members = [member(iid, s) for iid in ("a", "b", "c")]
    state = GroupState()
    for n, m in enumerate(members):
        state.health[m.id] = InstanceHealth(first_seen=0.0, created=float(n))
    d = decide(s, members, state, 1.0)
    assert [(v.id, r) for v, r in d.destroys] == [(victim, "scale_down")]


def test_decide_scales_in_the_old_config_before_any_policy() -> None:
    old, new = settings(size=1, note="v1"), settings(size=1, note="v2")
    members = [member("a", new), member("b", new), member("c", old)]
    state = GroupState()
    for n, m in enumerate(members):
        state.health[m.id] = InstanceHealth(first_seen=0.0, created=float(-n))  # c oldest
    d = decide(new, members, state, 1.0)
    assert [v.id for v, r in d.destroys if r == "scale_down"] == ["c"]
