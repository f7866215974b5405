"""The vanilla and combo flavors over real sockets: InfraKit's Prepare results, health, drain."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit import errors
from infrakit.plugins.combo import ComboFlavor
from infrakit.plugins.vanilla import VanillaFlavor
from infrakit.spi.flavor import AllocationMethod, Health, Index
from infrakit.spi.instance import Attachment, Description, Spec
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeFlavorPlugin, lookup

ALLOC = AllocationMethod(size=5)
INDEX = Index("cattle", 5)
CAPTURED_PROPS = {
    "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"],
    "Tags": {"tier": "web", "project": "infrakit"},
    "Attachments": [{"ID": "attachid", "Type": "attachtype"}],
}


async def test_vanilla_prepare_matches_infrakit_captured_exchange() -> None:
    """Reference §1.7: the HEAD Flavor.Prepare request and answer captured from Go InfraKit."""
    spec = Spec(
        properties={"Note": "Instance properties version 1.0"},
        tags={
            "infrakit.config.hash": "x4nrsdaibscmj7awpkxzx5vvpt6pilw2",
            "infrakit.group": "cattle",
        },
    )
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        await h.flavor.validate(CAPTURED_PROPS, ALLOC)
        prepared = await h.flavor.prepare(CAPTURED_PROPS, spec, ALLOC, INDEX)
    assert prepared.init == "docker pull nginx:alpine\ndocker run -d -p 80:80 nginx-alpine"
    assert prepared.tags == {
        "infrakit.config.hash": "x4nrsdaibscmj7awpkxzx5vvpt6pilw2",
        "infrakit.group": "cattle",
        "tier": "web",
        "project": "infrakit",
    }
    assert prepared.attachments == [Attachment("attachid", "attachtype")]
    assert prepared.properties == {"Note": "Instance properties version 1.0"}


async def test_vanilla_appends_to_existing_init_and_flavor_tags_win() -> None:
    flavor = VanillaFlavor()
    spec = Spec(init="first", tags={"tier": "db"}, attachments=[Attachment("a")])
    props = {"Init": "second", "Tags": {"tier": "web"}, "Attachments": ["b"]}
    prepared = await flavor.prepare(props, spec, ALLOC, INDEX)
    assert prepared.init == "first\nsecond"
    assert prepared.tags == {"tier": "web"}
    assert [a.id for a in prepared.attachments or []] == ["a", "b"]
    assert spec.init == "first"  # the caller's spec is not modified


async def test_vanilla_init_is_the_same_for_every_instance_until_the_properties_change() -> None:
    flavor = VanillaFlavor()
    props = {"Init": ["a", "b"], "Tags": {"tier": "web"}}
    first = await flavor.prepare(props, Spec(), ALLOC, INDEX)
    second = await flavor.prepare(props, Spec(tags={"x": "1"}), ALLOC, INDEX)
    assert first.init == second.init == "a\nb"
    assert (first.tags, second.tags) == ({"tier": "web"}, {"x": "1", "tier": "web"})
    assert (await flavor.prepare(props, Spec(init="z"), ALLOC, INDEX)).init == "z\na\nb"
    changed = await flavor.prepare({"Init": ["c"]}, Spec(), ALLOC, INDEX)
    assert changed.init == "c"
    assert (await flavor.prepare(props, Spec(), ALLOC, INDEX)).init == "a\nb"


async def test_vanilla_null_properties_are_empty_not_a_crash() -> None:
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        await h.flavor.validate(None, ALLOC)
        prepared = await h.flavor.prepare(None, Spec(init="x"), ALLOC, INDEX)
        assert prepared.init == "x"
        assert await h.flavor.healthy(None, Description("i-1")) is Health.HEALTHY
        await h.flavor.drain(None, Description("i-1"))


async def test_vanilla_init_script_url(tmp_path: Path) -> None:
    script = tmp_path / "init.sh"
    script.write_text("#!/bin/sh\necho from file\n")
    flavor = VanillaFlavor()
    prepared = await flavor.prepare(
        {"InitScriptTemplateURL": f"file://{script}"}, Spec(), ALLOC, INDEX
    )
    assert prepared.init == "#!/bin/sh\necho from file\n"
    inline = await flavor.prepare({"InitScriptTemplateURL": "str://echo hi"}, Spec(), ALLOC, INDEX)
    assert inline.init == "echo hi"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"Init": ["a"], "InitScriptTemplateURL": "str://b"},
            'Either "Init" or "InitScriptTemplateURL" can be specified but not both',
        ),
        ({"Init": [1, 2]}, "Properties.Init: expected an array of strings"),
        ({"Tags": {"a": 1}}, "Properties.Tags.a: expected a string tag value"),
        ({"InitScriptTemplateURL": "http://x/y"}, "scheme 'http' is not supported"),
        ({"InitScriptTemplateURL": "file:///nonexistent/x.sh"}, "cannot read /nonexistent/x.sh"),
        ([1], "vanilla Properties: expected a JSON object"),
    ],
)
async def test_vanilla_rejects_bad_properties_over_the_wire(props: object, message: str) -> None:
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        with pytest.raises(errors.SpecError, match=message.replace("(", r"\(")):
            await h.flavor.validate(props, ALLOC)


def _raise_health(desc: Description) -> Health:
    raise RuntimeError("health endpoint down")


def _combo_with(**flavors: object) -> ComboFlavor:
    return ComboFlavor(lookup(dict(flavors)))


async def test_combo_merges_sub_flavors_in_order_and_does_not_duplicate_init() -> None:
    combo = _combo_with(**{"flavor-vanilla": VanillaFlavor()})
    props = [
        {"Plugin": "flavor-vanilla", "Properties": {"Init": ["one"], "Tags": {"a": "1", "b": "1"}}},
        {
            "Plugin": "flavor-vanilla",
            "Properties": {"Init": ["two"], "Tags": {"b": "2"}, "Attachments": ["vol"]},
        },
    ]
    spec = Spec(init="base", tags={"infrakit.group": "g"})
    prepared = await combo.prepare(props, spec, ALLOC, INDEX)
    assert prepared.init == "base\none\ntwo"
    assert prepared.tags == {"infrakit.group": "g", "a": "1", "b": "2"}
    assert [a.id for a in prepared.attachments or []] == ["vol"]
    # SEED's {"Flavors": [...]} shape means the same.
    seed = await combo.prepare({"Flavors": props}, spec, ALLOC, INDEX)
    assert seed == prepared


async def test_combo_served_with_vanilla_over_sockets() -> None:
    """combo reaches vanilla through the lookup it is given, as `infrakit up` wires them."""
    async with (
        serve_plugin(VanillaFlavor(), "flavor-vanilla") as vanilla,
        serve_plugin(_combo_with(**{"flavor-vanilla": vanilla.flavor}), "flavor-combo") as h,
    ):
        props = [{"Plugin": "flavor-vanilla", "Properties": {"Init": ["x"]}}]
        await h.flavor.validate(props, ALLOC)
        prepared = await h.flavor.prepare(props, Spec(), ALLOC, INDEX)
        assert prepared.init == "x"
        with pytest.raises(errors.SpecError, match=r"combo Properties\[0\] \(flavor-vanilla\)"):
            await h.flavor.validate(
                [{"Plugin": "flavor-vanilla", "Properties": {"Init": 5}}], ALLOC
            )
        with pytest.raises(errors.SpecError, match=r"combo Properties\[0\].Plugin: required"):
            await h.flavor.validate([{"Properties": {}}], ALLOC)


async def test_combo_health_is_the_worst_answer_and_errors_count_as_unknown() -> None:
    good, bad, broken = FakeFlavorPlugin(), FakeFlavorPlugin(), FakeFlavorPlugin()
    bad.health["i-1"] = Health.UNHEALTHY
    broken.health_fn = _raise_health
    combo = _combo_with(good=good, bad=bad, broken=broken)
    inst = Description("i-1")
    both = [{"Plugin": "good"}, {"Plugin": "broken"}]
    assert await combo.healthy(both, inst) is Health.UNKNOWN
    assert await combo.healthy([*both, {"Plugin": "bad"}], inst) is Health.UNHEALTHY
    assert await combo.healthy([{"Plugin": "good"}], inst) is Health.HEALTHY


async def test_combo_drains_every_sub_flavor_and_reports_all_failures() -> None:
    ok, bad1, bad2 = FakeFlavorPlugin(), FakeFlavorPlugin(), FakeFlavorPlugin()
    bad1.drain_error = RuntimeError("no")
    bad2.drain_error = RuntimeError("nope")
    combo = _combo_with(ok=ok, bad1=bad1, bad2=bad2)
    props = [{"Plugin": "bad1"}, {"Plugin": "ok"}, {"Plugin": "bad2"}]
    with pytest.raises(errors.PluginError, match="bad1: no, bad2: nope"):
        await combo.drain(props, Description("i-1"))
    assert ok.drained == ["i-1"]
