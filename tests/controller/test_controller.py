"""The group controller's behaviour, on fakes and a fake clock (no sockets, no real time)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from infrakit import errors
from infrakit.spi import group, instance
from infrakit.spi.types import (
    CONFIG_HASH_TAG,
    CREATE_TOKEN_TAG,
    GROUP_TAG,
    LOGICAL_ID_TAG,
    SEED_CONFIG_TAG,
    Health,
)
from tests.controller.conftest import Rig, pets_spec, spec

pytestmark = pytest.mark.timeout(10)


async def test_commit_creates_tagged_prepared_instances(rig: Rig) -> None:
    assert await rig.ctl.commit_group(spec(), False) == "Managing 5 instances"
    await rig.converge()
    assert len(rig.inst.instances) == 5
    h = rig.ctl.groups["cattle"].settings.hash.head
    for stored in rig.inst.instances.values():
        assert stored.desc.tags[GROUP_TAG] == "cattle"
        assert stored.desc.tags[CONFIG_HASH_TAG] == h
        assert stored.desc.tags["tier"] == "web"  # merged by the flavor's Prepare
        assert stored.spec.init == "echo hi"
    desc = await rig.ctl.describe_group("cattle")
    assert desc.converged and len(desc.instances) == 5
    assert rig.store.data["groups/cattle"]["Properties"]["Allocation"] == {"Size": 5}


async def test_pretend_leaves_no_state(rig: Rig) -> None:
    """InfraKit #315: a pretend commit of a new group must not register it."""
    assert await rig.ctl.commit_group(spec(), True) == "Managing 5 instances"
    await rig.clock.advance(30)
    assert rig.ctl.groups == {} and rig.inst.instances == {} and rig.store.data == {}
    assert await rig.ctl.commit_group(spec(), False) == "Managing 5 instances"
    await rig.converge()
    assert len(rig.inst.instances) == 5


async def test_free_then_recommit_adopts_without_creating(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    await rig.ctl.free_group("cattle")
    assert "groups/cattle" not in rig.store.data
    await rig.clock.advance(30)
    assert len(rig.inst.instances) == 5  # freed: untouched
    provisions = rig.inst.calls["provision"]
    assert await rig.ctl.commit_group(spec(), False) == "Managing 5 instances"
    await rig.converge()
    assert rig.inst.calls["provision"] == provisions
    assert rig.inst.destroyed == []


async def test_free_and_destroy_that_the_store_refuses_change_nothing(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()

    async def refuse(key: str) -> None:
        raise errors.NotLeaderError("store: this manager no longer leads")

    rig.store.delete = refuse  # type: ignore[method-assign]
    for action in (rig.ctl.free_group, rig.ctl.destroy_group):
        with pytest.raises(errors.NotLeaderError):
            await action("cattle")
        assert "cattle" in rig.ctl.groups and "groups/cattle" in rig.store.data
    victim = next(iter(rig.inst.instances))
    del rig.inst.instances[victim]  # still managed: a lost instance is replaced
    rig.ctl.queue.add("cattle")
    await rig.converge()
    assert len(rig.inst.instances) == 2 and rig.inst.destroyed == []


async def test_seed_era_instances_are_adopted_without_a_roll(rig: Rig) -> None:
    seed = rig.ctl  # noqa: F841 - readability
    from tests.controller.conftest import BASE  # the same config as spec()

    del BASE
    from infrakit.controller.group.spec import parse_spec

    s = parse_spec(spec())
    for _ in range(5):
        rig.inst.add({GROUP_TAG: "cattle", SEED_CONFIG_TAG: s.hash.seed})
    assert await rig.ctl.commit_group(spec(), False) == "Managing 5 instances"
    await rig.converge()
    assert rig.inst.calls["provision"] == 0 and rig.inst.destroyed == []


async def test_rolling_update_one_at_a_time_create_before_destroy(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    old = set(rig.inst.instances)
    new_hash_seen: list[int] = []

    def gate(desc):  # new instances are healthy only when the test says so
        return Health.HEALTHY if desc.id in allowed else Health.UNKNOWN

    allowed: set[str] = set()
    rig.flav.health_fn = gate
    details = await rig.ctl.commit_group(spec(note="v2"), False)
    assert details == "Performing a rolling update on 5 instances"
    for _ in range(5):
        await rig.clock.advance(2)
        # Exactly one surge instance exists and nothing old was destroyed while it is not ready.
        assert len(rig.inst.instances) == 6
        newest = sorted(set(rig.inst.instances) - old - allowed)
        assert len(newest) == 1
        new_hash_seen.append(len(rig.inst.destroyed))
        allowed.add(newest[0])
        await rig.clock.advance(2)
    await rig.converge()
    assert new_hash_seen == [0, 1, 2, 3, 4]
    assert {reason for _, reason in rig.inst.destroyed} == {"rolling_update"}
    assert sorted(i for i, _ in rig.inst.destroyed) == sorted(old)
    assert set(rig.flav.drained) == old  # drained before every destroy
    assert len(rig.hashes()) == 1 and len(rig.inst.instances) == 5
    assert rig.ctl.groups["cattle"].state.update is None
    assert "updates/cattle" not in rig.store.data


async def test_grow_and_roll_reaches_ten_at_new_config(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    await rig.ctl.commit_group(spec(size=10, note="v2"), False)
    await rig.converge()
    assert len(rig.inst.instances) == 10
    assert rig.hashes() == {rig.ctl.groups["cattle"].settings.hash.head}


async def test_heals_killed_instances_from_events(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=10), False)
    await rig.converge()
    await rig.clock.advance(31)  # older than CrashLoopWindow: a death is not a failed create
    victims = sorted(rig.inst.instances)[:3]
    for v in victims:
        rig.inst.kill(v)
    await rig.clock.settle()  # no time passes: only the event triggers the reconcile
    await rig.clock.settle()
    assert len(rig.inst.instances) == 10
    assert not set(victims) & set(rig.inst.instances)


async def test_polls_plugins_without_events(rig: Rig) -> None:
    rig.inst.publishes_events = False
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    await rig.clock.advance(31)
    rig.inst.kill(sorted(rig.inst.instances)[0])
    await rig.clock.advance(1)
    assert len(rig.inst.instances) == 4  # no event: waits for the resync
    await rig.clock.advance(10)
    assert len(rig.inst.instances) == 5
    assert rig.ctl.watch_mode["inst"] == "polling"


async def test_describe_error_is_not_zero_instances(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    provisions = rig.inst.calls["provision"]
    rig.inst.describe_error = errors.PluginTimeoutError("provider API down")
    await rig.clock.advance(120)
    assert rig.inst.calls["provision"] == provisions
    status = await_status = await rig.ctl.status("cattle")
    assert "provider API down" in status["LastError"]
    del await_status
    rig.inst.describe_error = None
    await rig.clock.advance(60)
    assert rig.inst.calls["provision"] == provisions


async def _status_now(rig: Rig, gid: str = "cattle") -> dict[str, Any]:
    """Group.Status, letting at most 0.1 s of (fake) time pass: it must not wait for a plugin."""
    task = asyncio.create_task(rig.ctl.status(gid))
    for _ in range(20):
        if task.done():
            break
        await rig.clock.advance(0.005)
    assert task.done(), "Group.Status waited for the provider"
    return task.result()


async def test_status_of_a_hung_provider_answers_at_once_and_is_not_converged(rig: Rig) -> None:
    """Issue 8.6: with DescribeInstances hanging, Status took 30 s and said Converged: true."""
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    await rig.clock.advance(5)
    rig.inst.describe_delay = 10_000
    first = await _status_now(rig)  # asks for a new observation, answers from the last one
    assert first["Actual"] == 2 and first["ObservedAgo"] >= 5
    assert first["Converged"] is False  # that observation is not fresh
    await rig.clock.advance(3)
    status = await _status_now(rig)
    assert status["Actual"] is None and status["Converged"] is False
    assert "has not answered DescribeInstances for" in status["ActualUnknown"]
    describing = asyncio.create_task(rig.ctl.describe_group("cattle"))
    await rig.clock.advance(0.1)
    assert describing.done() and describing.result().converged is False
    await rig.clock.advance(30)  # DescribeInstances times out: an error, still no guess
    status = await _status_now(rig)
    assert status["Actual"] is None and "did not answer within 30s" in status["ActualUnknown"]
    rig.inst.describe_delay = 0
    await rig.clock.advance(31)
    status = await _status_now(rig)
    assert status["Actual"] == 2 and status["Converged"] is True


async def test_status_after_a_kill_on_a_polling_provider_is_not_converged(rig: Rig) -> None:
    """Issue 8.6: `group describe` said "desired 3, actual 2 ... converged" for ~6 s."""
    rig.inst.publishes_events = False
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    await rig.clock.advance(31)
    assert (await _status_now(rig))["Converged"] is True
    rig.inst.kill(sorted(rig.inst.instances)[0])
    await rig.clock.advance(0.6)  # long before the 10 s resync
    status = await _status_now(rig)  # its own observation sees the loss (and starts the heal)
    assert status["Converged"] is False
    assert status["Actual"] == 2 or status["Pending"] == 1
    description = await rig.ctl.describe_group("cattle")  # the same observations as Status
    assert description.converged == (len(description.instances) == 3)


async def test_duplicate_ids_in_describe_count_once_and_get_no_destroy_storm(rig: Rig) -> None:
    """Issue 8.5: 50 copies of one ID for a group of 3 got 282 Destroy calls in 20 s."""
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    describe = rig.inst.describe_instances
    dup = instance.Description("dup", None, {"infrakit.group": "cattle"})

    async def with_duplicates(tags: Any, properties: bool = False) -> list[Any]:
        return [*await describe(tags, properties), *[dup] * 50]

    rig.inst.describe_instances = with_duplicates  # type: ignore[method-assign]
    await rig.clock.advance(60)
    # "dup" is one member (an old config: it is replaced); never a storm of destroys.
    assert rig.inst.calls["destroy"] <= 3
    status = await _status_now(rig)
    assert sum(1 for i in status["Instances"] if i["ID"] == "dup") <= 1


async def test_an_instance_destroy_cannot_remove_is_retried_with_backoff(rig: Rig) -> None:
    """Issue 8.5: a Destroy that says OK while the provider keeps listing the instance is
    repeated only after a doubling wait (at least 10 s), never once per VisibilityTimeout."""
    quick = {"VisibilityTimeout": "1s"}
    await rig.ctl.commit_group(spec(size=3, Provisioning=quick), False)
    await rig.converge()
    newest = max(rig.inst.instances.values(), key=lambda st: st.created_at).desc.id
    honest = rig.inst.destroy
    tries: list[float] = []

    async def destroy_but_keep(iid: str, context: Any) -> None:
        if iid == newest:
            tries.append(rig.clock.now())  # "OK", and it stays listed
        else:
            await honest(iid, context)

    rig.inst.destroy = destroy_but_keep  # type: ignore[method-assign]
    await rig.ctl.set_size("cattle", 2)  # DeletePolicy Newest: that one is the victim
    await rig.clock.advance(300)
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert 2 <= len(tries) <= 6, tries  # 10, 20, 40, 80, 160 s apart
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps


async def test_lagging_describe_never_overprovisions(rig: Rig) -> None:
    rig.inst.describe_lag = 2.0
    await rig.ctl.commit_group(spec(), False)
    for _ in range(40):
        await rig.clock.advance(0.1)
        assert rig.inst.calls["provision"] <= 5
    await rig.converge()
    assert rig.inst.calls["provision"] == 5
    # Rolling with a lagging provider stays within Size + MaxSurge.
    await rig.ctl.commit_group(spec(note="v2"), False)
    for _ in range(200):
        await rig.clock.advance(0.1)
        assert len(rig.inst.instances) <= 6
    await rig.converge()
    assert rig.inst.calls["provision"] == 10


async def test_failing_provider_backs_off_then_degrades(rig: Rig) -> None:
    rig.inst.provision_error = errors.PluginError("quota exceeded")
    await rig.ctl.commit_group(spec(Provisioning={"MaxParallel": 1, "MaxFailures": 4}), False)
    await rig.clock.advance(0.5)
    assert rig.inst.calls["provision"] == 1  # then backoff: ~1 s, 2 s, 4 s ... (20% jitter)
    await rig.clock.run_until(lambda: rig.ctl.groups["cattle"].state.breaker.open, limit=60)
    attempts = rig.inst.calls["provision"]
    assert attempts == 4
    status = await rig.ctl.status("cattle")
    assert status["Degraded"] and "quota exceeded" in status["Degraded"]["Reason"]
    assert "next trial create in 10s" in status["Degraded"]["Reason"]
    await rig.clock.advance(9)
    assert rig.inst.calls["provision"] == attempts
    await rig.clock.advance(2)  # the first trial comes 10 s after the breaker opened
    assert rig.inst.calls["provision"] == attempts + 1
    rig.inst.provision_error = None
    await rig.ctl.reset("cattle", {})
    await rig.converge()
    assert len(rig.inst.instances) == 5
    await rig.clock.advance(31)  # the new instances outlive CrashLoopWindow: nothing to reset
    with pytest.raises(errors.ConflictError, match=r"not degraded .* nothing to reset"):
        await rig.ctl.reset("cattle", {})


async def test_hung_provider_times_out_and_backs_off(rig: Rig) -> None:
    rig.inst.provision_delay = 10_000
    limits = {
        "ProvisionTimeout": "5s",
        "VisibilityTimeout": "2s",
        "MaxFailures": 3,
        "MaxParallel": 1,
    }
    await rig.ctl.commit_group(spec(size=2, Provisioning=limits), False)
    await rig.clock.advance(4)
    state = rig.ctl.groups["cattle"].state
    assert rig.inst.calls["provision"] == 1 and state.creating  # still waiting for it
    await rig.clock.advance(1.5)
    # Timed out: a failure and a backoff step - but the outcome is unknown, so it stays pending
    # (counted toward the group) until VisibilityTimeout, in case the provider finishes it.
    assert state.breaker.level == 1 and state.breaker.failures == 1
    [(first, create)] = state.creating.items()
    assert create.abandoned
    assert rig.inst.calls["provision"] == 1  # and it holds the group's only create slot
    await rig.clock.advance(2.5)
    assert first not in state.creating  # it never appeared: no longer counted
    await rig.clock.run_until(lambda: state.breaker.open, limit=120)
    assert rig.inst.calls["provision"] == 3


async def test_a_provision_that_finishes_after_its_timeout_is_adopted_not_doubled(
    rig: Rig,
) -> None:
    """A remote provider keeps working on a Provision whose caller timed out (InfraKit #858,
    #910: duplicates). The late instance carries our create token: it is matched to the
    abandoned create, and no second instance is made for it."""
    provision = rig.inst.provision
    late: set[asyncio.Task[Any]] = set()

    async def slow_remote(s: Any) -> str | None:
        async def work() -> str | None:
            await rig.clock.sleep(8)  # the provider takes 8 s; the caller gives up at 5 s
            return await provision(s)

        task = asyncio.create_task(work())
        late.add(task)
        return await asyncio.shield(task)

    rig.inst.provision = slow_remote  # type: ignore[method-assign]
    limits = {"ProvisionTimeout": "5s", "VisibilityTimeout": "30s"}
    await rig.ctl.commit_group(spec(size=2, Provisioning=limits), False)
    most = 0
    for _ in range(200):
        await rig.clock.advance(0.1)
        most = max(most, len(rig.inst.instances))
    await rig.converge(limit=60)
    assert most <= 2 and len(rig.inst.instances) == 2
    assert rig.inst.calls["provision"] == 2


async def test_a_plugin_whose_validate_hangs_is_named_and_nothing_is_committed(rig: Rig) -> None:
    async def hang(properties: Any, allocation: Any) -> None:
        await rig.clock.sleep(10_000)

    rig.flav.validate = hang  # type: ignore[method-assign]
    commit = asyncio.create_task(rig.ctl.commit_group(spec(), False))
    await rig.clock.advance(14)
    assert not commit.done()
    await rig.clock.advance(2)
    with pytest.raises(errors.PluginTimeoutError, match=r"plugin flav \(Flavor.Validate\).*15s"):
        await commit
    assert "cattle" not in rig.ctl.groups and rig.store.data == {}
    assert rig.inst.calls["provision"] == 0


async def test_crash_loop_opens_the_breaker(rig: Rig) -> None:
    rig.inst.die_after = 1.0
    await rig.ctl.commit_group(spec(size=2, Provisioning={"MaxFailures": 3}), False)
    await rig.clock.advance(30)
    status = await rig.ctl.status("cattle")
    assert status["Degraded"] and "died" in status["Degraded"]["Reason"]
    assert rig.inst.calls["provision"] <= 2 + 3  # Size + MaxFailures
    made = rig.inst.calls["provision"]
    await rig.clock.advance(9.5)
    assert rig.inst.calls["provision"] <= made + 1  # one trial create at a time


async def _provisions_until_open(rig: Rig, limit: float = 120) -> tuple[int, float]:
    breaker = rig.ctl.groups["cattle"].state.breaker
    took = await rig.clock.run_until(lambda: breaker.open, step=0.05, limit=limit)
    return rig.inst.calls["provision"], took


@pytest.mark.parametrize(
    ("lifetime", "provisioning"),
    [
        (0.3, {}),  # the defaults
        (0.9, {}),
        (0.3, {"MaxFailures": 5, "BackoffInitial": "1s", "BackoffMax": "8s", "CoolDown": "20s"}),
    ],
)
async def test_a_crash_looping_provider_gets_size_plus_max_failures_creates_then_one_per_trial(
    rig: Rig, lifetime: float, provisioning: dict[str, Any]
) -> None:
    """Issue 8.1: every instance dies within 1 s. Before: 96 Provision calls in 8.8 s."""
    rig.inst.die_after = lifetime
    rig.inst.kill_in_background = True
    await rig.ctl.commit_group(spec(size=5, Provisioning=provisioning), False)
    calls, _ = await _provisions_until_open(rig)
    max_failures = provisioning.get("MaxFailures", 5)
    assert calls <= 5 + max_failures
    # Open: the first trial after 10 s, then 20 s, 40 s ... up to CoolDown (300 s by default).
    cool_down = 20.0 if provisioning else 300.0
    waits, trials = [], 0
    breaker = rig.ctl.groups["cattle"].state.breaker
    while len(waits) < 4:
        before = rig.inst.calls["provision"]
        took = await rig.clock.run_until(
            lambda before=before: rig.inst.calls["provision"] > before, step=0.25, limit=400
        )
        assert rig.inst.calls["provision"] == before + 1  # one trial, never a batch
        waits.append(took)
        trials += 1
        await rig.clock.run_until(lambda: not breaker.half_open, step=0.25, limit=30)
    expected = [min(cool_down, 10.0 * 2**i) for i in range(len(waits))]
    for got, want in zip(waits, expected, strict=True):
        # Measured from the previous trial's start: its failure adds its lifetime.
        assert want - 0.1 <= got <= want + lifetime + 2.5, (waits, expected)
    status = await rig.ctl.status("cattle")
    assert "next trial create in" in status["Degraded"]["Reason"]
    assert status["Degraded"]["FailedTrials"] == trials


async def test_deleting_the_newest_instance_six_times_recovers_within_20s_and_says_why(
    rig: Rig,
) -> None:
    """Issue 8.1's new-user tour: delete the newest instance file six times 2.5 s apart."""
    await rig.ctl.commit_group(spec(size=5), False)
    await rig.converge()
    notes: list[str] = []
    for _ in range(6):
        newest = max(rig.inst.instances.values(), key=lambda st: st.created_at)
        rig.inst.kill(newest.desc.id)
        await rig.clock.advance(2.5)
        notes.extend(rig.ctl.groups["cattle"].state.decisions)
    took = await rig.converge(step=0.1, limit=60)
    assert len(rig.inst.instances) == 5
    assert took <= 20
    said = "\n".join(notes)
    assert "died" in said and ("one instance at a time" in said or "backing off" in said)


async def test_young_deaths_back_off_and_probe_one_create_before_the_rest(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=5), False)
    await rig.converge()
    made = rig.inst.calls["provision"]
    for iid in list(rig.inst.instances):
        rig.inst.kill(iid)  # one disaster, young instances
    await rig.clock.advance(0.7)
    assert rig.inst.calls["provision"] == made  # backoff (1 s +-20%) before any create
    await rig.clock.run_until(lambda: rig.inst.calls["provision"] > made, step=0.05, limit=5)
    await rig.clock.advance(1.5)
    assert rig.inst.calls["provision"] == made + 1  # a probe, alone until it stays up 2 s
    await rig.converge(limit=10)
    assert len(rig.inst.instances) == 5 and rig.inst.calls["provision"] == made + 5


async def test_deleting_every_young_instance_at_once_is_one_failure_not_a_crash_loop(
    rig: Rig,
) -> None:
    """README tour: `rm ~/.infrakit/instances/instance-*` right after `up` must heal."""
    await rig.ctl.commit_group(spec(size=5), False)
    await rig.converge()
    for iid in list(rig.inst.instances):
        rig.inst.kill(iid)
    await rig.converge()
    assert len(rig.inst.instances) == 5
    breaker = rig.ctl.groups["cattle"].state.breaker
    assert not breaker.open and breaker.failures == 1
    # Doing it twice more in a row (three bursts) still heals: 3 < MaxFailures (5).
    for _ in range(2):
        await rig.clock.advance(5)
        for iid in list(rig.inst.instances):
            rig.inst.kill(iid)
        await rig.converge()
    assert len(rig.inst.instances) == 5 and not breaker.open


async def test_an_instance_listed_before_provision_returns_is_not_counted_twice(rig: Rig) -> None:
    """A provider that lists (and announces) a new instance while its Provision reply is still on
    the way: the instance is matched to its create by the create-token tag, so no pass sees one
    instance too many, scales a healthy member in and creates again."""
    provision = rig.inst.provision

    async def slow_reply(s: Any) -> str | None:
        iid = await provision(s)  # listed and announced at once...
        await rig.clock.sleep(5)  # ...the reply takes 5 s
        return iid

    rig.inst.provision = slow_reply  # type: ignore[method-assign]
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    await rig.ctl.set_size("cattle", 4)
    await rig.clock.advance(12)  # events and a resync pass run while the 4th reply is pending
    await rig.converge()
    assert rig.inst.destroyed == []
    assert rig.inst.calls["provision"] == 4 and len(rig.inst.instances) == 4
    tokens = {st.desc.tags[CREATE_TOKEN_TAG] for st in rig.inst.instances.values()}
    assert len(tokens) == 4


async def test_big_scale_up_keeps_max_parallel_creates_and_never_over_creates(rig: Rig) -> None:
    """Finishing creates chain the next ones (no pass per batch) within MaxParallel, exactly."""
    rig.inst.provision_delay = 0.05
    rig.inst.describe_lag = 0.3
    await rig.ctl.commit_group(spec(size=250, Provisioning={"MaxParallel": 10}), False)
    state = rig.ctl.groups["cattle"].state
    running_max = 0
    for _ in range(400):
        await rig.clock.advance(0.01)
        running = sum(1 for c in state.creating.values() if c.instance_id is None)
        running_max = max(running_max, running)
        if len(rig.inst.instances) == 250 and not state.creating:
            break
    await rig.converge()
    assert running_max == 10
    assert len(rig.inst.instances) == 250
    assert rig.inst.calls["provision"] == 250
    # Shrinking while creates chain stops the chain at the new size.
    await rig.ctl.set_size("cattle", 100)
    await rig.converge()
    assert len(rig.inst.instances) == 100


async def test_erroring_healthy_counts_unknown_and_unhealthy_are_replaced(rig: Rig) -> None:
    health = {"CheckInterval": "1s", "UnhealthyTimeout": "10s", "StartupTimeout": "30s"}
    await rig.ctl.commit_group(spec(size=3, Health=health), False)
    await rig.converge()
    ids = sorted(rig.inst.instances)
    sick, flaky = ids[0], ids[1]

    def judge(desc):
        if desc.id == flaky:
            raise errors.PluginError("agent did not answer")
        return Health.UNHEALTHY if desc.id == sick else Health.HEALTHY

    rig.flav.health_fn = judge
    await rig.clock.advance(5)
    st = {i["ID"]: i for i in (await rig.ctl.status("cattle"))["Instances"]}
    assert st[sick]["Health"] == "unhealthy"
    assert st[flaky]["Health"] == "unknown" and "agent did not answer" in st[flaky]["Note"]
    await rig.clock.advance(10)
    assert sick not in rig.inst.instances
    assert (sick, "unhealthy") in rig.inst.destroyed
    assert len(rig.inst.instances) == 3


async def test_max_unhealthy_short_circuits_remediation(rig: Rig) -> None:
    health = {"CheckInterval": "1s", "UnhealthyTimeout": "5s", "MaxUnhealthy": "40%"}
    await rig.ctl.commit_group(spec(size=5, Health=health), False)
    await rig.converge()
    rig.flav.default_health = Health.UNHEALTHY  # everything is sick: a network blip, not 5 bad VMs
    await rig.clock.advance(30)
    assert rig.inst.destroyed == []
    status = await rig.ctl.status("cattle")
    assert "remediation stopped" in status["ShortCircuit"]


async def test_update_that_never_gets_healthy_pauses_at_the_deadline(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    old = set(rig.inst.instances)
    rig.flav.health_fn = lambda d: Health.HEALTHY if d.id in old else Health.UNHEALTHY
    await rig.ctl.commit_group(spec(note="v2", Updating={"ProgressDeadline": "60s"}), False)
    await rig.clock.advance(90)
    upd = rig.ctl.groups["cattle"].state.update
    assert upd is not None and upd.paused and "no progress" in upd.reason
    assert old <= set(rig.inst.instances)  # nothing old was destroyed
    assert rig.store.data["updates/cattle"]["paused"] is True


async def test_update_that_fails_rolls_back_automatically(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    stable_hash = rig.ctl.groups["cattle"].settings.hash.head
    old = set(rig.inst.instances)
    rig.flav.health_fn = lambda d: Health.HEALTHY if d.id in old else Health.UNHEALTHY
    await rig.ctl.commit_group(
        spec(note="v2", Updating={"ProgressDeadline": "60s", "AutoRollback": True}), False
    )
    await rig.clock.advance(120)
    await rig.converge()
    assert rig.ctl.groups["cattle"].settings.hash.head == stable_hash
    assert rig.hashes() == {stable_hash}
    assert old <= set(rig.inst.instances)


def _refuse_v2(s: Any) -> None:
    if (s.properties or {}).get("Note") == "v2":
        raise errors.PluginError("image v2 not found")


async def test_update_whose_creates_keep_failing_rolls_back_before_the_deadline(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    stable_hash = rig.ctl.groups["cattle"].settings.hash.head
    old = set(rig.inst.instances)
    rig.inst.on_provision = _refuse_v2
    events = rig.ctl.subscribe("group/cattle")
    await rig.ctl.commit_group(
        spec(note="v2", Updating={"AutoRollback": True}, Provisioning={"MaxFailures": 3}), False
    )
    # Three failed creates (backoff ~1 + 2 s) open the breaker; the default 10 min deadline
    # is far away, yet the update fails now and the last converged spec comes back.
    await rig.clock.advance(30)
    await rig.converge()
    assert rig.ctl.groups["cattle"].settings.hash.head == stable_hash
    assert set(rig.inst.instances) == old  # nothing was destroyed for the failed update
    assert rig.ctl.groups["cattle"].state.breaker.open is False  # the rollback commit reset it
    seen = []
    while True:
        ev = await asyncio.wait_for(events.__anext__(), 1)
        seen.append(ev)
        if ev.type == "rolled-back":
            break
    failed = [e for e in seen if e.type == "update-failed"]
    assert (
        failed and "keep failing" in failed[0].message and "image v2 not found" in failed[0].message
    )


async def test_update_whose_creates_keep_failing_pauses_and_resume_tries_again(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    rig.inst.on_provision = _refuse_v2
    await rig.ctl.commit_group(spec(note="v2", Provisioning={"MaxFailures": 3}), False)
    await rig.clock.advance(30)
    status = await rig.ctl.status("cattle")
    update = status["Updating"]
    assert update["Paused"] and "keep failing" in update["Reason"]
    assert "infrakit group resume cattle" in update["Reason"]
    rig.inst.on_provision = None  # the cause is fixed
    await rig.ctl.resume("cattle", {})
    await rig.converge()
    assert len(rig.hashes()) == 1 and len(rig.inst.instances) == 5
    assert rig.ctl.groups["cattle"].state.update is None


async def test_canary_pauses_until_promoted(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    await rig.ctl.commit_group(spec(note="v2", Updating={"Canary": 2}), False)
    await rig.clock.advance(30)
    new_hash = rig.ctl.groups["cattle"].settings.hash.head
    assert (
        sum(1 for s in rig.inst.instances.values() if s.desc.tags[CONFIG_HASH_TAG] == new_hash) == 2
    )
    assert len(rig.inst.destroyed) == 2
    await rig.ctl.promote("cattle", {})
    await rig.converge()
    assert rig.hashes() == {new_hash} and len(rig.inst.instances) == 5


async def test_pause_and_resume(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    rig.flav.health_fn = lambda d: Health.UNKNOWN
    await rig.ctl.commit_group(spec(note="v2"), False)
    await rig.clock.advance(1)
    await rig.ctl.pause("cattle", {})
    rig.flav.health_fn = None
    await rig.clock.advance(30)
    assert rig.inst.destroyed == []
    await rig.ctl.resume("cattle", {})
    await rig.converge()
    assert len(rig.inst.destroyed) == 5


async def test_restart_mid_update_resumes_without_duplicates(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    old = set(rig.inst.instances)
    ready: set[str] = set()
    rig.flav.health_fn = lambda d: Health.HEALTHY if d.id in old | ready else Health.UNKNOWN
    await rig.ctl.commit_group(spec(note="v2"), False)
    await rig.clock.advance(2)
    ready |= set(rig.inst.instances) - old
    await rig.clock.advance(3)  # first replacement done, second surge instance created
    assert len(rig.inst.destroyed) == 1
    assert rig.store.data["updates/cattle"]["replaced"] == 1
    provisions = rig.inst.calls["provision"]
    await rig.restart()
    rig.flav.health_fn = None
    await rig.converge()
    assert len(rig.inst.instances) == 5
    assert rig.inst.calls["provision"] == provisions + 3  # exactly the 3 still missing
    assert len({i for i, _ in rig.inst.destroyed}) == len(rig.inst.destroyed) == 5
    assert rig.hashes() == {rig.ctl.groups["cattle"].settings.hash.head}


async def test_restart_mid_update_ignores_what_it_destroyed_that_the_provider_still_lists(
    rig: Rig,
) -> None:
    """A provider that destroys asynchronously may still list an instance the update destroyed
    just before the controller restarted: the restarted one must neither destroy it again nor
    count it as an old member still to replace."""
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    old = set(rig.inst.instances)
    remembered = dict(rig.inst.instances)
    await rig.ctl.commit_group(spec(note="v2"), False)
    await rig.clock.advance(2.5)
    assert len(rig.inst.destroyed) >= 1
    gone_id, _ = rig.inst.destroyed[0]
    assert rig.store.data["updates/cattle"]["destroyed"][0] == gone_id
    await rig.ctl.stop()
    # Still listed by the provider (e.g. EC2 "shutting-down"), at the old config.
    rig.inst.instances[gone_id] = remembered[gone_id]
    await rig.restart()
    await rig.clock.advance(3)
    destroys_of_it = [i for i, _ in rig.inst.destroyed if i == gone_id]
    assert destroys_of_it == [gone_id]  # the one destroy from before the restart
    status = await rig.ctl.status("cattle")
    assert gone_id not in {i["ID"] for i in status["Instances"]}
    del rig.inst.instances[gone_id]  # the provider finishes the destroy
    await rig.converge()
    assert len(rig.inst.instances) == 5 and rig.hashes() == {
        rig.ctl.groups["cattle"].settings.hash.head
    }
    assert not old & set(rig.inst.instances)


async def test_restart_resumes_managing_committed_groups(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    await rig.restart()
    rig.inst.kill(sorted(rig.inst.instances)[0])
    await rig.converge()
    assert len(rig.inst.instances) == 3
    assert [s.id for s in await rig.ctl.inspect_groups()] == ["cattle"]


async def test_pretend_plan_names_the_instances_the_commit_then_removes(rig: Rig) -> None:
    # Two generations: i-0, i-1 first, i-2, i-3 five seconds later.
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    older = set(rig.inst.instances)
    await rig.clock.advance(5)
    await rig.ctl.commit_group(spec(size=4), False)
    await rig.converge()
    newer = set(rig.inst.instances) - older
    assert len(newer) == 2

    planned = (await rig.ctl.plan("cattle", {"spec": group.spec_to_wire(spec(size=2))}))["Plan"]
    victims = {d["ID"] for d in planned["Destroy"]}
    assert victims == newer  # DeletePolicy Newest (the default), not the lowest IDs
    assert all(d["Reason"] == "scale_down" for d in planned["Destroy"])
    assert rig.inst.destroyed == []  # planning changed nothing

    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    assert {i for i, _ in rig.inst.destroyed} == victims
    assert set(rig.inst.instances) == older


async def test_in_place_update_plan_and_run_destroy_before_create(rig: Rig) -> None:
    """MaxSurge 0 + MaxUnavailable 1: the plan says destroy-then-create one at a time, and the
    controller never has more than Size instances while doing it."""
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    in_place = {"MaxSurge": 0, "MaxUnavailable": 1}
    v2 = spec(size=3, note="v2", Updating=in_place)
    planned = (await rig.ctl.plan("cattle", {"spec": group.spec_to_wire(v2)}))["Plan"]
    assert [(b["Order"], b["Create"], len(b["Replace"])) for b in planned["Replacements"]] == [
        ("destroy-then-create", 0, 1)
    ] * 3
    await rig.ctl.commit_group(v2, False)
    most = 0
    for _ in range(40):
        await rig.clock.advance(0.5)
        most = max(most, len(rig.inst.instances) + len(rig.ctl.groups["cattle"].state.creating))
    await rig.converge()
    assert most == 3
    assert len(rig.hashes()) == 1 and len(rig.inst.instances) == 3


async def test_percentages_that_round_to_no_budget_still_make_progress(rig: Rig) -> None:
    """MaxSurge 0 with MaxUnavailable "10%" of 3 rounds down to 0 for both: the update would
    never start. As Kubernetes does, MaxUnavailable then counts as 1."""
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    await rig.ctl.commit_group(
        spec(size=3, note="v2", Updating={"MaxSurge": 0, "MaxUnavailable": "10%"}), False
    )
    await rig.converge(limit=120)
    assert len(rig.hashes()) == 1 and len(rig.inst.instances) == 3
    assert {r for _, r in rig.inst.destroyed} == {"rolling_update"}


async def test_destroy_instances_rejects_unknown_ids_and_changes_nothing(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    await rig.converge()
    victim = sorted(rig.inst.instances)[0]
    with pytest.raises(errors.NotFoundError, match="nope not among"):
        await rig.ctl.destroy_instances("cattle", [victim, "nope"])
    assert await rig.ctl.size("cattle") == 5 and victim in rig.inst.instances
    await rig.ctl.destroy_instances("cattle", [victim])
    await rig.converge()
    assert await rig.ctl.size("cattle") == 4
    assert victim not in rig.inst.instances and len(rig.inst.instances) == 4
    assert rig.store.data["groups/cattle"]["Properties"]["Allocation"]["Size"] == 4


async def test_size_and_set_size_errors(rig: Rig) -> None:
    await rig.ctl.commit_group(spec(), False)
    with pytest.raises(errors.SpecError, match="size cannot be negative"):
        await rig.ctl.set_size("cattle", -1)
    await rig.ctl.commit_group(pets_spec(["a", "b"]), False)
    with pytest.raises(errors.SpecError, match="cannot set size if logic ids are explicitly set"):
        await rig.ctl.set_size("pets", 3)
    assert await rig.ctl.size("pets") == 2
    with pytest.raises(errors.GroupNotFoundError, match="Group 'nope' is not being watched"):
        await rig.ctl.size("nope")


async def test_destroy_group_drains_and_destroys_only_members(rig: Rig) -> None:
    stranger = rig.inst.add({"team": "other"})
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    members = set(rig.inst.instances) - {stranger}
    await rig.ctl.destroy_group("cattle")
    assert set(rig.inst.instances) == {stranger}
    assert set(rig.flav.drained) == members
    assert {r for _, r in rig.inst.destroyed} == {"terminate"}
    assert rig.ctl.groups == {} and "groups/cattle" not in rig.store.data


async def test_never_touches_instances_without_the_group_tag(rig: Rig) -> None:
    class Sloppy:
        """A provider that ignores the tag filter."""

        def __init__(self, inner):
            self.inner = inner

        async def describe_instances(self, tags, properties=False):
            return await self.inner.describe_instances({}, properties)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    rig.ctl.instance_lookup = lambda name: Sloppy(rig.inst)
    for _ in range(4):
        rig.inst.add({"owner": "someone-else"})
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    assert rig.inst.destroyed == []
    assert len(rig.inst.instances) == 6


async def test_flavor_cannot_drop_membership_tags(rig: Rig) -> None:
    async def rude_prepare(properties, spec_, allocation, index):
        spec_.tags = {"only": "mine"}
        return spec_

    rig.flav.prepare = rude_prepare  # type: ignore[method-assign]
    await rig.ctl.commit_group(spec(size=3), False)
    await rig.converge()
    assert rig.inst.calls["provision"] == 3
    assert all(s.desc.tags[GROUP_TAG] == "cattle" for s in rig.inst.instances.values())


async def test_unknown_plugins_fail_validation_and_change_nothing(rig: Rig) -> None:
    bad = spec()
    bad.properties["Flavor"]["Plugin"] = "nope"
    with pytest.raises(errors.SpecError, match="Failed to find Flavor plugin 'nope'"):
        await rig.ctl.commit_group(bad, False)
    bad = spec()
    bad.properties["Instance"]["Plugin"] = "nope"
    with pytest.raises(errors.SpecError, match="Failed to find Instance plugin 'nope'"):
        await rig.ctl.commit_group(bad, False)
    assert rig.ctl.groups == {} and rig.store.data == {}


async def test_plugin_validate_errors_name_the_plugin(rig: Rig) -> None:
    rig.inst.validate_fn = lambda props: "Note must be a version"
    with pytest.raises(errors.SpecError, match="Note must be a version"):
        await rig.ctl.commit_group(spec(), False)
    rig.inst.validate_fn = None
    rig.flav.validate_error = errors.PluginError("bad Init")
    with pytest.raises(errors.PluginError, match="Flavor plugin flav rejected the spec: bad Init"):
        await rig.ctl.commit_group(spec(), False)
    assert rig.ctl.groups == {}


async def test_quorum_creates_logical_ids_and_handles_changes(rig: Rig) -> None:
    await rig.ctl.commit_group(pets_spec(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), False)
    await rig.converge("pets")
    lids = sorted(s.desc.logical_id for s in rig.inst.instances.values())
    assert lids == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert all(
        s.desc.tags[LOGICAL_ID_TAG] == s.desc.logical_id for s in rig.inst.instances.values()
    )
    details = await rig.ctl.commit_group(pets_spec(["10.0.0.1", "10.0.0.2", "10.0.0.4"]), False)
    assert "10.0.0.4" in details and "10.0.0.3" in details
    await rig.converge("pets")
    lids = sorted(s.desc.logical_id for s in rig.inst.instances.values())
    assert lids == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]
    assert "removed_from_quorum" in {r for _, r in rig.inst.destroyed}


async def test_quorum_rolls_one_member_at_a_time(rig: Rig) -> None:
    ids = ["a", "b", "c"]
    await rig.ctl.commit_group(pets_spec(ids), False)
    await rig.converge("pets")
    await rig.ctl.commit_group(pets_spec(ids, note="v2"), False)
    seen_alive: list[int] = []
    for _ in range(60):
        await rig.clock.advance(0.5)
        seen_alive.append(len(rig.inst.instances))
    await rig.converge("pets")
    assert min(seen_alive) >= 2  # never more than one member down
    assert len(rig.inst.destroyed) == 3
    assert rig.hashes() == {rig.ctl.groups["pets"].settings.hash.head}


async def test_events_describe_decisions(rig: Rig) -> None:
    seen = []

    async def collect():
        async for ev in rig.ctl.subscribe("group/"):
            seen.append(ev.type)

    import asyncio

    task = asyncio.create_task(collect())
    await rig.clock.settle()
    await rig.ctl.commit_group(spec(size=2), False)
    await rig.converge()
    rig.inst.kill(sorted(rig.inst.instances)[0])
    await rig.converge()
    task.cancel()
    assert "committed" in seen and "instance-created" in seen
    assert "instance-lost" in seen and "converged" in seen


async def test_group_spec_validation_is_reported(rig: Rig) -> None:
    with pytest.raises(errors.SpecError, match="Only one Updating method"):
        await rig.ctl.commit_group(spec(Updating={"Count": 1, "Duration": "1s"}), False)
    with pytest.raises(errors.SpecError, match="Group ID must not be blank"):
        await rig.ctl.commit_group(group.Spec("", {}), False)


async def test_snapshot_stays_converged_while_idle_and_not_once_an_event_is_pending(
    rig: Rig,
) -> None:
    """Metrics and the status page read snapshots without starting a pass: an idle converged
    group must not read as unconverged a second later (the converged gauge would alert), yet a
    change the controller has heard of but not yet handled must not read as converged."""
    await rig.ctl.commit_group(spec(size=5), False)
    await rig.converge()
    await rig.clock.advance(31)  # idle for longer than Status' 1 s freshness
    (snap,) = rig.ctl.snapshots()
    assert snap.converged and snap.actual == 5
    rig.ctl.queue.add("cattle")  # an instance event arrived: a pass is queued, not yet run
    (snap,) = rig.ctl.snapshots()
    assert not snap.converged
    await rig.clock.settle()
    (snap,) = rig.ctl.snapshots()
    assert snap.converged


async def test_snapshot_of_a_polled_provider_that_fails_is_unconverged_after_one_resync(
    rig: Rig,
) -> None:
    rig.inst.publishes_events = False
    await rig.ctl.commit_group(spec(size=5), False)
    await rig.converge()
    await rig.clock.advance(5)
    assert rig.ctl.snapshots()[0].converged  # within one resync (10 s)
    rig.inst.describe_error = errors.PluginTimeoutError("down")
    await rig.clock.advance(11)  # the resync runs and cannot list the instances
    (snap,) = rig.ctl.snapshots()
    assert not snap.converged and snap.actual is None
