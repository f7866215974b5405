"""The simulator plugin, driven over its real UNIX socket: records, each fault, control and state."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.plugins.simulator import KIND, SimulatorInstancePlugin, parse_faults
from infrakit.plugins.simulator.plugin import parse_control
from infrakit.spi.event import Event
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Context, Description, Spec
from infrakit.spi.plugin import Context as BuildContext
from infrakit.spi.plugin import Served
from infrakit.spi.types import Health
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import wait_until
from infrakit.testing.harness import Harness


def served(sim: SimulatorInstancePlugin) -> Served:
    return Served(
        instance={"": sim}, flavor={"": sim.flavor}, events=sim, start=sim.start, stop=sim.stop
    )


@asynccontextmanager
async def simulator(**options: Any) -> AsyncIterator[tuple[SimulatorInstancePlugin, Harness]]:
    sim = SimulatorInstancePlugin(**options)
    async with serve_plugin(served(sim), "simulator") as harness:
        yield sim, harness


def spec(group: str = "g", faults: dict[str, Any] | None = None, **props: Any) -> Spec:
    properties = {**props, **({"Faults": faults} if faults is not None else {})}
    return Spec(properties=properties or None, tags={"infrakit.group": group})


async def subscribed(h: Harness) -> AsyncIterator[Event]:
    events = h.instance.subscribe("instance/")
    assert (await asyncio.wait_for(anext(events), 5)).type == "subscribed"
    return events


async def next_event(events: AsyncIterator[Event], match: Callable[[Event], bool]) -> Event:
    async def find() -> Event:
        async for ev in events:
            if match(ev):
                return ev
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), 10)


async def ids(h: Harness, group: str = "g") -> set[str]:
    return {d.id for d in await h.instance.describe_instances({"infrakit.group": group})}


# --- records ----------------------------------------------------------------------------------


async def test_instances_are_records_with_id_logical_id_tags_and_spec() -> None:
    async with simulator() as (_sim, h):
        pet = Spec(
            properties={"Note": "kept"},
            tags={"infrakit.group": "pets", "tier": "db"},
            init="echo hi",
            logical_id="10.0.0.1",
        )
        pet_id = await h.instance.provision(pet)
        cattle_id = await h.instance.provision(spec("cattle"))
        assert pet_id and pet_id.startswith("sim-") and pet_id != cattle_id
        [desc] = await h.instance.describe_instances({"tier": "db"}, properties=True)
        assert (desc.id, desc.logical_id) == (pet_id, "10.0.0.1")
        assert desc.tags == {"infrakit.group": "pets", "tier": "db"}
        assert desc.properties["Properties"] == {"Note": "kept"}
        assert desc.properties["Init"] == "echo hi"
        assert {d.id for d in await h.instance.describe_instances({})} == {pet_id, cattle_id}
        # InfraKit's filter rule: a wanted "" also matches a missing tag.
        assert await ids(h, "cattle") == {cattle_id}
        assert len(await h.instance.describe_instances({"missing": ""})) == 2
        assert len(await h.instance.describe_instances({"tier": ""})) == 1

        await h.instance.label(pet_id, {"tier": "web", "new": "1"})
        [desc] = await h.instance.describe_instances({"new": "1"})
        assert desc.tags == {"infrakit.group": "pets", "tier": "web", "new": "1"}

        await h.instance.destroy(pet_id, Context("terminate"))
        assert await ids(h, "pets") == set()
        with pytest.raises(errors.NotFoundError, match="not found in the simulator"):
            await h.instance.destroy(pet_id, Context("terminate"))
        with pytest.raises(errors.NotFoundError):
            await h.instance.label(pet_id, {"a": "b"})


async def test_changes_are_published_on_instance_change() -> None:
    async with simulator() as (sim, h):
        assert sim.topics() == ["instance/change"]
        events = await subscribed(h)
        iid = await h.instance.provision(spec())
        created = await next_event(events, lambda e: e.id == iid)
        assert (created.topic, created.type) == ("instance/change", "created")
        await h.instance.label(iid, {"a": "b"})
        assert (await next_event(events, lambda e: e.id == iid)).type == "changed"
        await h.instance.destroy(iid, Context("scale_down"))
        gone = await next_event(events, lambda e: e.id == iid)
        assert gone.type == "deleted" and "scale_down" in gone.message


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"ProvisonLatency": "1s"}, "Faults.ProvisonLatency: unknown fault; expected one of"),
        (
            {"ProvisionFailureRate": 1.5},
            "Faults.ProvisionFailureRate: expected a number from 0 to 1",
        ),
        ({"ProvisionFailureRate": True}, "expected a number from 0 to 1"),
        ({"DescribeLag": "soon"}, "Faults.DescribeLag: duration 'soon': expected e.g. 500ms"),
        ({"Healthy": "sick"}, 'Faults.Healthy: expected "healthy", "unhealthy" or "unknown"'),
        ({"Hang": ["Reboot"]}, '"Reboot" is not a call that can hang; expected some of'),
        ({"Hang": 3}, 'Faults.Hang: expected a list of calls like ["Provision"]'),
        ({"Lifetime": "1s", "MeanLifetime": "1s"}, "give Lifetime"),
        ("fast", "Faults: expected a JSON object like"),
    ],
)
async def test_bad_faults_are_refused_by_validate_naming_the_field(
    faults: Any, message: str
) -> None:
    async with simulator() as (_sim, h):
        with pytest.raises(errors.SpecError, match=re.escape(message)):
            await h.instance.validate({"Faults": faults})
        with pytest.raises(errors.SpecError, match=r"simulator flavor Properties\.Faults"):
            await h.flavor.validate({"Faults": faults}, AllocationMethod(size=1))
        with pytest.raises(errors.SpecError):
            await h.instance.provision(spec(faults=faults))
        assert await ids(h) == set()


async def test_valid_properties_and_the_info_example_pass() -> None:
    async with simulator() as (sim, h):
        example = sim.info()["example"]
        await h.instance.validate(example)
        await h.instance.validate(None)
        await h.instance.validate({"faults": {"hang": "describe", "healthy": "UNKNOWN"}})
        await h.flavor.validate(sim.flavor.info()["example"], AllocationMethod(size=1))
        with pytest.raises(errors.SpecError, match="expected a JSON object or null, got list"):
            await h.instance.validate([1])
        parsed = parse_faults(example["Faults"])
        assert parse_faults(parsed.to_wire()) == parsed


# --- provision faults -------------------------------------------------------------------------


async def test_failure_rate_one_fails_every_provision_and_zero_none() -> None:
    async with simulator() as (_sim, h):
        for _ in range(5):
            with pytest.raises(errors.PluginError, match="injected Provision failure"):
                await h.instance.provision(spec(faults={"ProvisionFailureRate": 1}))
        assert await ids(h) == set()
        await h.instance.provision(spec(faults={"ProvisionFailureRate": 0}))
        assert len(await ids(h)) == 1


async def test_failure_rate_is_reproducible_with_a_seed() -> None:
    async def outcomes(seed: int) -> list[bool]:
        results = []
        async with simulator(seed=seed) as (_sim, h):
            for _ in range(20):
                try:
                    await h.instance.provision(spec(faults={"ProvisionFailureRate": 0.5}))
                    results.append(True)
                except errors.PluginError:
                    results.append(False)
        return results

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert True in first and False in first


async def test_provision_latency_keeps_the_call_in_flight() -> None:
    async with simulator() as (_sim, h):
        create = asyncio.create_task(h.instance.provision(spec(faults={"ProvisionLatency": "1s"})))
        assert await ids(h) == set()  # a Describe answered while Provision is still running
        assert not create.done()
        iid = await create
        assert await ids(h) == {iid}


async def test_describe_lag_hides_new_instances_until_the_created_event() -> None:
    async with simulator() as (_sim, h):
        events = await subscribed(h)
        iid = await h.instance.provision(spec(faults={"DescribeLag": "300ms"}))
        assert await ids(h) == set()
        # Destroy and Label work on it already, like a real cloud's eventual consistency.
        await h.instance.label(iid, {"seen": "no"})
        ev = await next_event(events, lambda e: e.id == iid)
        assert (ev.type, ev.message) == ("created", "now visible in DescribeInstances")
        assert await ids(h) == {iid}


async def test_hung_provision_completes_once_the_hang_is_lifted() -> None:
    async with simulator() as (sim, h):
        sim.set_faults({"Hang": ["Provision"]})
        create = asyncio.create_task(h.instance.provision(spec()))
        assert await ids(h) == set()
        await asyncio.sleep(0.05)
        assert not create.done()
        sim.set_faults(None)
        iid = await asyncio.wait_for(create, 5)
        assert await ids(h) == {iid}


async def test_hung_describe_is_per_group() -> None:
    async with simulator() as (sim, h):
        sim.set_faults({"Hang": ["DescribeInstances"]}, group="stuck")
        assert await ids(h, "fine") == set()
        listing = asyncio.create_task(h.instance.describe_instances({"infrakit.group": "stuck"}))
        await h.instance.provision(spec("fine"))
        assert not listing.done()
        sim.set_faults(None, group="stuck")
        assert await asyncio.wait_for(listing, 5) == []


async def test_destroy_failure_rate() -> None:
    async with simulator(defaults=parse_faults({"DestroyFailureRate": 1})) as (_sim, h):
        iid = await h.instance.provision(spec())
        with pytest.raises(errors.PluginError, match=f"injected Destroy failure for {iid}"):
            await h.instance.destroy(iid, Context("terminate"))
        assert await ids(h) == {iid}


# --- deaths -----------------------------------------------------------------------------------


async def test_instances_die_at_their_lifetime_with_an_event() -> None:
    async with simulator() as (_sim, h):
        events = await subscribed(h)
        iid = await h.instance.provision(spec(faults={"Lifetime": "200ms"}))
        died = await next_event(events, lambda e: e.id == iid and e.type == "deleted")
        assert "died at age" in died.message and "Lifetime 200ms" in died.message
        assert await ids(h) == set()


async def test_random_deaths_with_mean_lifetime() -> None:
    async with simulator(seed=3) as (_sim, h):
        events = await subscribed(h)
        born = {
            await h.instance.provision(spec(faults={"MeanLifetime": "100ms"})) for _ in range(3)
        }
        dead = set()
        while dead != born:
            ev = await next_event(events, lambda e: e.type == "deleted")
            assert "MeanLifetime 100ms" in ev.message
            dead.add(ev.id)
        assert await ids(h) == set()


async def test_a_lifetime_set_at_run_time_applies_to_existing_instances() -> None:
    async with simulator() as (sim, h):
        events = await subscribed(h)
        old = await h.instance.provision(spec())
        sim.set_faults({"Lifetime": "0s"}, group="g")
        sim.set_faults({"Lifetime": "50ms"}, group="g")
        assert (await next_event(events, lambda e: e.type == "deleted")).id == old


async def test_kill_removes_an_instance_out_of_band() -> None:
    async with simulator() as (sim, h):
        events = await subscribed(h)
        iid = await h.instance.provision(spec())
        sim.kill(iid)
        ev = await next_event(events, lambda e: e.type == "deleted")
        assert (ev.id, ev.message) == (iid, "killed")
        with pytest.raises(errors.NotFoundError):
            sim.kill(iid)


# --- flavor health ----------------------------------------------------------------------------


async def test_flavor_health_follows_faults_layers_and_per_instance_overrides() -> None:
    async with simulator(defaults=parse_faults({"Healthy": "unknown"})) as (sim, h):
        a = await h.instance.provision(spec("a"))
        b = await h.instance.provision(spec("b", faults={"Healthy": "unhealthy"}))
        [da] = await h.instance.describe_instances({"infrakit.group": "a"})
        [db] = await h.instance.describe_instances({"infrakit.group": "b"})
        assert await h.flavor.healthy(None, da) is Health.UNKNOWN  # the option's default
        assert await h.flavor.healthy(None, db) is Health.UNHEALTHY  # the group's spec
        flavor_props = {"Faults": {"Healthy": "healthy"}}
        assert await h.flavor.healthy(flavor_props, db) is Health.HEALTHY  # flavor over instance
        sim.set_faults({"Healthy": "unhealthy"}, group="a")
        assert await h.flavor.healthy(flavor_props, da) is Health.UNHEALTHY  # run time wins
        sim.set_health(a, "healthy")
        assert await h.flavor.healthy(None, da) is Health.HEALTHY  # per instance wins
        sim.set_health(a, None)
        assert await h.flavor.healthy(None, da) is Health.UNHEALTHY
        # Instances of another provider are judged by their group's faults too.
        stranger = Description("i-elsewhere", tags={"infrakit.group": "b"})
        assert await h.flavor.healthy(None, stranger) is Health.UNHEALTHY
        assert b


async def test_flavor_prepare_passes_the_spec_through_and_drain_succeeds() -> None:
    async with simulator() as (_sim, h):
        given = Spec(properties={"x": 1}, tags={"infrakit.group": "g"}, init="echo hi")
        prepared = await h.flavor.prepare(None, given, AllocationMethod(size=1), Index("g", 1))
        assert (prepared.properties, prepared.tags, prepared.init) == (
            {"x": 1},
            given.tags,
            "echo hi",
        )
        await h.flavor.drain(None, Description("sim-1", tags={"infrakit.group": "g"}))


async def test_hung_healthy_answers_after_the_hang_is_lifted() -> None:
    async with simulator() as (sim, h):
        iid = await h.instance.provision(spec(faults={"Hang": ["Healthy"]}))
        [desc] = await h.instance.describe_instances({"infrakit.group": "g"})
        answer = asyncio.create_task(h.flavor.healthy(None, desc))
        await h.instance.describe_instances({})
        assert not answer.done()
        sim.set_faults({"Hang": []}, group="g")
        assert await asyncio.wait_for(answer, 5) is Health.HEALTHY
        assert iid


# --- control file -----------------------------------------------------------------------------


def write_json(path: Path, document: Any) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(document))
    os.replace(temp, path)


async def test_control_file_sets_faults_health_and_kills_at_run_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control = tmp_path / "control.json"
    async with simulator(control=control, control_poll=0.02) as (sim, h):
        events = await subscribed(h)
        keep = await h.instance.provision(spec())
        doomed = await h.instance.provision(spec())

        write_json(control, {"Faults": {"ProvisionFailureRate": 1}, "Health": {keep: "unhealthy"}})
        await wait_until(lambda: sim.faults_for("g").provision_failure_rate == 1)
        with pytest.raises(errors.PluginError, match="injected Provision failure"):
            await h.instance.provision(spec())
        desc = next(d for d in await h.instance.describe_instances({}) if d.id == keep)
        assert await h.flavor.healthy(None, desc) is Health.UNHEALTHY

        write_json(control, {"Groups": {"g": {"Healthy": "unknown"}}, "Kill": [doomed, "sim-gone"]})
        ev = await next_event(events, lambda e: e.type == "deleted")
        assert (ev.id, ev.message) == (doomed, "killed through the control file")
        assert await h.flavor.healthy(None, desc) is Health.UNKNOWN
        await h.instance.provision(spec())  # the global failure rate was replaced

        write_json(control, {"Faults": {"Bogus": 1}})  # a broken file keeps the settings
        await wait_until(lambda: "Faults.Bogus: unknown fault" in caplog.text)
        assert "keeping the previous settings" in caplog.text
        assert await h.flavor.healthy(None, desc) is Health.UNKNOWN

        control.unlink()
        await wait_until(lambda: sim.control.groups == {})
        assert await h.flavor.healthy(None, desc) is Health.HEALTHY


def test_parse_control_errors_name_the_key_and_the_shape() -> None:
    with pytest.raises(errors.SpecError, match="unknown key 'kil'; expected Faults, Groups"):
        parse_control({"Kil": []})
    with pytest.raises(errors.SpecError, match="Kill: expected a list of instance IDs"):
        parse_control({"Kill": "sim-1"})
    with pytest.raises(errors.SpecError, match=r"Groups\.web\.Slow: unknown fault"):
        parse_control({"Groups": {"web": {"Slow": 1}}})
    with pytest.raises(errors.SpecError, match=r"Health.sim-1: expected \"healthy\""):
        parse_control({"Health": {"sim-1": 1}})


# --- state file -------------------------------------------------------------------------------


async def test_a_restarted_simulator_keeps_its_instances(tmp_path: Path) -> None:
    state = tmp_path / "sim" / "state.json"
    async with simulator(state=state) as (_sim, h):
        kept = await h.instance.provision(
            Spec(
                properties={"Faults": {"DescribeLag": "0s"}},
                tags={"infrakit.group": "g"},
                logical_id="a",
            )
        )
        mortal = await h.instance.provision(spec("short", faults={"Lifetime": "400ms"}))
        gone = await h.instance.provision(spec())
        await h.instance.destroy(gone, Context("terminate"))
        await h.instance.label(kept, {"labelled": "yes"})
        assert sorted(os.listdir(state.parent)) == ["state.json"]  # no temporary file left
    async with simulator(state=state) as (_sim, h):
        events = await subscribed(h)
        [desc] = await h.instance.describe_instances({"infrakit.group": "g"})
        assert (desc.id, desc.logical_id, desc.tags["labelled"]) == (kept, "a", "yes")
        assert await ids(h, "short") in ({mortal}, set())  # it may have died already
        if await ids(h, "short"):
            ev = await next_event(events, lambda e: e.type == "deleted")
            assert ev.id == mortal  # its death was restored with it


async def test_an_unusable_state_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"Version": 99}')
    with pytest.raises(errors.SpecError, match=r"is not usable .*move it away"):
        SimulatorInstancePlugin(state=state)


# --- the kind ---------------------------------------------------------------------------------


def build(tmp_path: Path, **options: Any) -> Served:
    ctx = BuildContext(
        name="simulator",
        options=options,
        home=tmp_path,
        instance_lookup=lambda n: None,  # type: ignore[arg-type,return-value]
        flavor_lookup=lambda n: None,  # type: ignore[arg-type,return-value]
        group_lookup=lambda n: None,  # type: ignore[arg-type,return-value]
    )
    result = KIND.build(ctx)
    assert isinstance(result, Served)
    return result


async def test_kind_serves_instance_and_flavor_with_options(tmp_path: Path) -> None:
    result = build(tmp_path, faults='{"ProvisionFailureRate": 1}', seed="4")
    sim = result.instance[""]
    assert isinstance(sim, SimulatorInstancePlugin)
    assert result.flavor[""] is sim.flavor and result.events is sim
    assert sim.control_path == tmp_path / "simulator" / "simulator.control.json"
    async with serve_plugin(result, "simulator") as h:
        with pytest.raises(errors.PluginError, match="ProvisionFailureRate 1"):
            await h.instance.provision(spec())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"faults": "{nope"}, "simulator option faults: not JSON"),
        ({"faults": '{"Lag": 1}'}, "simulator option faults.Lag: unknown fault"),
        ({"seed": "x"}, "simulator option seed: got 'x', expected an integer, e.g. 1"),
        ({"control-poll": "0s"}, "control-poll: got '0s', expected a Go duration above 0"),
    ],
)
def test_kind_refuses_bad_options(tmp_path: Path, options: dict[str, str], message: str) -> None:
    with pytest.raises(errors.SpecError, match=message):
        build(tmp_path, **options)
