"""Config hash (byte-identical to Go InfraKit), spec validation messages, and plan sentences."""

from __future__ import annotations

import copy
import json

import pytest

from infrakit._utils.nesting import MAX_DEPTH
from infrakit.controller.group.hash import config_hash, go_float, go_marshal_indent
from infrakit.controller.group.plan import plan_sentence, structured_plan
from infrakit.controller.group.spec import parse_spec
from infrakit.errors import SpecError
from infrakit.spi import group, instance
from infrakit.spi.types import CONFIG_HASH_TAG, GROUP_TAG, SEED_CONFIG_TAG

CATTLE = {
    "Allocation": {"Size": 5},
    "Instance": {
        "Plugin": "instance-file",
        "Properties": {"Note": "Instance properties version 1.0"},
    },
    "Flavor": {
        "Plugin": "flavor-vanilla",
        "Properties": {
            "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"],
            "Tags": {"tier": "web", "project": "infrakit"},
        },
    },
}


def cattle2() -> dict:
    doc = copy.deepcopy(CATTLE)
    doc["Allocation"]["Size"] = 10
    doc["Instance"]["Properties"]["Note"] = "Instance properties version 2.0"
    return doc


def settings(props: dict, gid: str = "cattle"):
    return parse_spec(group.Spec(gid, props))


# --- hash -------------------------------------------------------------------------------------


def test_hash_vectors_match_go_infrakit() -> None:
    h1 = settings(CATTLE).hash
    assert (h1.head, h1.seed) == (
        "2nhlrx6jrrow6ic54ywvgga76wlob54g",
        "006438mMXW8gXeYtUxgf9Zbg94Y=",
    )
    h2 = settings(cattle2()).hash
    assert (h2.head, h2.seed) == (
        "paoytoh5dtssp6gvpzpnv5zwqcpbstky",
        "eB2JuP0c5Sf41X5e2vc2gJ4ZTVg=",
    )
    e2e = copy.deepcopy(CATTLE)
    e2e["Flavor"]["Properties"]["Attachments"] = [{"ID": "attachid", "Type": "attachtype"}]
    assert settings(e2e).hash.head == "x4nrsdaibscmj7awpkxzx5vvpt6pilw2"


def test_size_and_updating_changes_do_not_change_the_hash() -> None:
    other = copy.deepcopy(CATTLE)
    other["Allocation"] = {"Size": 50}
    other["Updating"] = {"MaxSurge": 3, "Count": 2}
    other["Health"] = {"CheckInterval": "1s"}
    assert settings(other).hash == settings(CATTLE).hash


def test_seed_tag_counts_as_up_to_date() -> None:
    h = settings(CATTLE).hash
    assert h.matches({SEED_CONFIG_TAG: "006438mMXW8gXeYtUxgf9Zbg94Y="})
    assert h.matches({CONFIG_HASH_TAG: "2nhlrx6jrrow6ic54ywvgga76wlob54g"})
    assert not h.matches({CONFIG_HASH_TAG: "something-else"})
    assert not h.matches({})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (12345678901234567890, "12345678901234567000"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-0.0, "-0"),
        (0, "0"),
        (123.456, "123.456"),
        (1.5e300, "1.5e+300"),
    ],
)
def test_numbers_are_formatted_like_go(value: float, text: str) -> None:
    assert go_float(value) == text


def test_marshal_indent_layout_and_escapes() -> None:
    doc = {"b": [1, {}], "a": '<x&y>\u2028\n\t"', "c": [], "é": None, "B": True}
    assert go_marshal_indent(doc) == (
        "{\n"
        '    "B": true,\n'
        '    "a": "\\u003cx\\u0026y\\u003e\\u2028\\n\\t\\"",\n'
        '    "b": [\n'
        "      1,\n"
        "      {}\n"
        "    ],\n"
        '    "c": [],\n'
        '    "é": null\n'
        "  }"
    )


def test_hash_is_order_independent_for_object_keys() -> None:
    a = config_hash("p", {"x": 1, "y": [1, 2]}, "f", None)
    b = config_hash("p", json.loads('{"y": [1, 2], "x": 1.0}'), "f", None)
    assert a == b


# --- spec validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(Allocation={}), "Allocation must not be blank"),
        (
            lambda d: d["Allocation"].update(LogicalIDs=["a"]),
            "Only one Allocation method may be used",
        ),
        (
            lambda d: d.update(Updating={"Count": 2, "Duration": "10s"}),
            "Only one Updating method may be used",
        ),
        (
            lambda d: d["Allocation"].update(Size="five"),
            "Invalid properties: Properties.Allocation.Size",
        ),
        (
            lambda d: d["Allocation"].update(Size=-1),
            "Invalid properties: Properties.Allocation.Size",
        ),
        (lambda d: d.update(Updating={"MaxSurg": 1}), "Properties.Updating.MaxSurg: unknown field"),
        (lambda d: d.update(Updating={"MaxSurge": 0, "MaxUnavailable": 0}), "cannot both be 0"),
        (lambda d: d.update(Updating={"Canary": 9}), "Canary: 9 is more than the group size 5"),
        (lambda d: d.update(Health={"CheckInterval": "soon"}), "Properties.Health.CheckInterval"),
        (lambda d: d.update(Updating={"MaxSurge": "150%"}), "Properties.Updating.MaxSurge"),
        (lambda d: d["Instance"].pop("Plugin"), "Properties.Instance.Plugin: required"),
        (lambda d: d.update(Allocation={"LogicalIDs": ["a", "a"]}), "'a' appears twice"),
        (
            lambda d: d.update(Provisioning={"DeletePolicy": "Eldest"}),
            "Properties.Provisioning.DeletePolicy",
        ),
    ],
)
def test_invalid_specs_get_infrakit_messages_with_paths(mutate, message: str) -> None:
    doc = copy.deepcopy(CATTLE)
    mutate(doc)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(doc)


def test_blank_group_id_is_the_first_error() -> None:
    with pytest.raises(SpecError, match="Group ID must not be blank"):
        parse_spec(group.Spec("", {}))


@pytest.mark.parametrize("gid", ["x y\n", "a/b", "../../etc", "-leading", "é", "g" * 129])
def test_group_ids_that_would_break_keys_topics_or_output_are_refused(gid: str) -> None:
    with pytest.raises(SpecError, match=r"Group ID .*expected 1-128 letters, digits"):
        parse_spec(group.Spec(gid, copy.deepcopy(CATTLE)))


@pytest.mark.parametrize("gid", ["cattle", "web-1", "a.b_c", "G" * 128, "9lives"])
def test_ordinary_group_ids_are_accepted(gid: str) -> None:
    assert parse_spec(group.Spec(gid, copy.deepcopy(CATTLE))).id == gid


def test_an_absurd_size_is_refused_before_anything_is_created() -> None:
    doc = copy.deepcopy(CATTLE)
    doc["Allocation"]["Size"] = 1_000_000_000_000
    with pytest.raises(SpecError, match="1000000000000 instances is more than one group may have"):
        settings(doc)
    doc["Allocation"]["Size"] = 100_000
    assert settings(doc).size == 100_000


def nested(levels: int) -> object:
    """A value nested ``levels`` objects deep."""
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_specs_nested_up_to_the_limit_are_hashed_and_deeper_ones_refused_in_one_line() -> None:
    """The spec document {ID, Properties: {Instance: {Properties: ...}}} may nest MAX_DEPTH
    levels, as a spec file may; deeper is a SpecError naming the limit, never RecursionError."""
    doc = copy.deepcopy(CATTLE)
    doc["Instance"]["Properties"] = nested(MAX_DEPTH - 3)  # document depth = MAX_DEPTH
    assert settings(doc).hash.head
    for levels in (MAX_DEPTH - 2, 600, 5000):
        doc["Instance"]["Properties"] = nested(levels)
        with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH} levels") as caught:
            settings(doc)
        assert "\n" not in str(caught.value)


def test_properties_must_be_an_object() -> None:
    with pytest.raises(SpecError, match="Properties must be a JSON object"):
        parse_spec(group.Spec("g", ["not", "an", "object"]))


def test_keys_are_case_insensitive_like_go_but_properties_stay_opaque() -> None:
    doc = {
        "allocation": {"size": 3},
        "INSTANCE": {"plugin": "instance-file", "properties": {"note": "Kept As Is"}},
        "flavor": {"Plugin": "flavor-vanilla"},
    }
    s = settings(doc)
    assert s.size == 3
    assert s.properties.instance.properties == {"note": "Kept As Is"}
    assert s.properties.flavor.properties is None


def test_normalized_spec_uses_infrakit_order_and_round_trips() -> None:
    s = settings(CATTLE)
    norm = s.normalized()
    assert list(norm) == ["Instance", "Flavor", "Allocation", "Updating"]
    assert norm["Allocation"] == {"Size": 5, "LogicalIDs": None}
    assert norm["Updating"] == {"Duration": "0s", "Count": 0, "SkipBeforeInstanceDestroy": None}
    again = settings(norm)
    assert again.hash == s.hash and again.size == s.size


def test_defaults_are_stated() -> None:
    p = settings(CATTLE).properties
    assert (p.updating.max_surge, p.updating.max_unavailable) == (1, 0)
    assert p.updating.progress_deadline == 600
    assert p.health is None
    assert (p.provisioning.max_parallel, p.provisioning.delete_policy) == (100, "Newest")
    assert p.provisioning.max_failures == 5


# --- plans --------------------------------------------------------------------------------------


def members(n: int, h: str, gid: str = "cattle") -> list[instance.Description]:
    return [
        instance.Description(f"i-{i}", None, {GROUP_TAG: gid, CONFIG_HASH_TAG: h}) for i in range(n)
    ]


def test_tutorial_pretend_sentence() -> None:
    old, new = settings(CATTLE), settings(cattle2())
    assert (
        plan_sentence(old, new, members(5, old.hash.head))
        == "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
    )


@pytest.mark.parametrize(
    ("canary", "size", "said"),
    [
        (
            1,
            5,
            "Performing a rolling update on 5 instances; canary: 1 instance first, then a "
            "pause until `infrakit group promote cattle`",
        ),
        (
            2,
            8,
            "Performing a rolling update on 5 instances, then adding 3 instances to increase the "
            "group size to 8; canary: 2 instances first, then a pause until "
            "`infrakit group promote cattle`",
        ),
        (2, 5, "Noop"),  # nothing to roll: no canary, no pause
    ],
)
def test_a_canary_update_plan_says_it_pauses_for_promote(canary: int, size: int, said: str) -> None:
    old = settings(CATTLE)
    new_conf = copy.deepcopy(CATTLE)
    if said != "Noop":
        new_conf["Instance"]["Properties"]["Note"] = "v2"
    new_conf["Allocation"]["Size"] = size
    new_conf["Updating"] = {"Canary": canary}
    assert plan_sentence(old, settings(new_conf), members(5, old.hash.head)) == said


def test_plan_sentences_follow_infrakit_head() -> None:
    old = settings(CATTLE)
    h = old.hash.head
    assert plan_sentence(None, old, []) == "Managing 5 instances"
    assert plan_sentence(old, old, members(5, h)) == "Noop"
    new_conf = copy.deepcopy(CATTLE)
    new_conf["Instance"]["Properties"]["Note"] = "v3"
    assert (
        plan_sentence(old, settings(new_conf), members(5, h))
        == "Performing a rolling update on 5 instances"
    )
    grow = copy.deepcopy(CATTLE)
    grow["Allocation"]["Size"] = 8
    assert (
        plan_sentence(old, settings(grow), members(5, h))
        == "Adding 3 instances to increase the group size to 8"
    )
    shrink = copy.deepcopy(CATTLE)
    shrink["Allocation"]["Size"] = 2
    assert (
        plan_sentence(old, settings(shrink), members(5, h))
        == "Terminating 3 instances to reduce the group size to 2"
    )
    shrink_roll = copy.deepcopy(new_conf)
    shrink_roll["Allocation"]["Size"] = 3
    assert (
        plan_sentence(old, settings(shrink_roll), members(5, h))
        == "Terminating 2 instances to reduce the group size to 3, then performing a rolling update on 3 instances"
    )


def pets(ids: list[str], note: str = "v1") -> dict:
    doc = copy.deepcopy(CATTLE)
    doc["Allocation"] = {"LogicalIDs": ids}
    doc["Instance"]["Properties"]["Note"] = note
    return doc


def test_quorum_plans() -> None:
    old = settings(pets(["a", "b", "c"]), "pets")
    current = [
        instance.Description(f"i-{x}", x, {GROUP_TAG: "pets", CONFIG_HASH_TAG: old.hash.head})
        for x in "abc"
    ]
    assert plan_sentence(old, old, current) == "Noop"
    updated = settings(pets(["a", "b", "c"], "v2"), "pets")
    assert plan_sentence(old, updated, current) == "Performing a rolling update on 3 instances"
    changed = settings(pets(["a", "b", "d"]), "pets")
    assert (
        plan_sentence(old, changed, current)
        == "Adding instances with logical IDs d; removing instances with logical IDs c"
    )


def test_structured_plan_lists_batches_and_gates() -> None:
    old, new = settings(CATTLE), settings(cattle2())
    plan = structured_plan(old, new, members(5, old.hash.head))
    assert plan["Sentence"].startswith("Performing a rolling update on 5 instances")
    assert plan["Create"] == {"ForSize": 5, "ForReplacement": 5}
    assert len(plan["Replacements"]) == 5
    assert plan["Replacements"][0]["Order"] == "create-then-destroy"
    assert [d["Reason"] for d in plan["Destroy"]] == ["rolling_update"] * 5
    assert any("HEALTHY" in g for g in plan["Gates"])
