"""``Group.Status`` rows with ``Tags``: each instance's tags and its place in the observation,
so ``group describe`` prints both of its tables from one answer - the same bytes as from
DescribeGroup + Status. Pure: the Status document is built by ``status_report``, the text by
:mod:`infrakit.cli.reads`; the fast path's argument shapes are a table."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from infrakit import errors
from infrakit.cli import fastpath, reads
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import GroupState
from infrakit.controller.group.status import InstancePage, instance_page, status_report
from infrakit.spi import group
from infrakit.spi.instance import Description, description_to_wire
from infrakit.spi.types import CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG

BASE: dict[str, Any] = {
    "Allocation": {"Size": 4},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {}},
}


def settings() -> GroupSettings:
    return parse_spec(group.Spec("web", copy.deepcopy(BASE)))


def observed(s: GroupSettings) -> list[Description]:
    """Members in the order a plugin listed them: IDs out of order, two pets, one old config."""
    tag = {GROUP_TAG: "web", CONFIG_HASH_TAG: s.hash.head}
    return [
        Description("instance-9", None, {**tag, "zone": "b"}),
        Description("instance-3", "10.0.0.2", {**tag}),
        Description("instance-5", None, {**tag, CONFIG_HASH_TAG: "stale"}),
        Description("instance-1", None, {**tag, LOGICAL_ID_TAG: "10.0.0.1", "z": "1", "a": "2"}),
    ]


def report(members: list[Description], page: InstancePage) -> dict[str, Any]:
    return status_report(
        settings(),
        GroupState(),
        members,
        observed_ago=0.2,
        unknown="",
        converged=False,
        events="events",
        now=time.monotonic(),
        page=page,
    )


def test_rows_with_tags_carry_what_describe_group_lists_in_its_order() -> None:
    members = observed(settings())
    doc = report(members, InstancePage(tags=True))
    assert doc["InstancesTagged"] is True
    # Status order: logical ID (cattle's "" first), then ID; each row knows where it was seen.
    assert [(r["ID"], r["Seen"]) for r in doc["Instances"]] == [
        ("instance-5", 2),
        ("instance-9", 0),
        ("instance-1", 3),
        ("instance-3", 1),
    ]
    assert all(r["Tags"] == members[r["Seen"]].tags for r in doc["Instances"])
    # instance-1's logical ID is its tag's: DescribeGroup lists the plugin's own (none).
    pet = next(r for r in doc["Instances"] if r["ID"] == "instance-1")
    assert pet["LogicalID"] == "10.0.0.1" and pet["ListedLogicalID"] is None
    assert sum("ListedLogicalID" in r for r in doc["Instances"]) == 1
    back = reads.observation_order(doc["Instances"])
    assert [(r["ID"], r["LogicalID"]) for r in back] == [(m.id, m.logical_id) for m in members]


def test_rows_without_the_option_keep_their_shape() -> None:
    doc = report(observed(settings()), InstancePage())
    assert "InstancesTagged" not in doc
    assert all("Tags" not in r and "Seen" not in r for r in doc["Instances"])
    assert list(doc["Instances"][0]) == [
        "ID",
        "LogicalID",
        "Config",
        "Health",
        "HealthSince",
        "Destroying",
        "Note",
    ]


def test_a_page_of_tagged_rows_still_says_where_each_was_seen() -> None:
    doc = report(observed(settings()), InstancePage(offset=1, limit=2, tags=True))
    assert [(r["ID"], r["Seen"]) for r in doc["Instances"]] == [
        ("instance-9", 0),
        ("instance-1", 3),
    ]
    assert doc["InstancesTotal"] == 4


def test_cattle_rows_come_in_id_order() -> None:
    s = settings()
    tag = {GROUP_TAG: "web", CONFIG_HASH_TAG: s.hash.head}
    members = [Description(f"instance-{i}", None, dict(tag)) for i in (7, 2, 30, 11)]
    doc = report(members, InstancePage(tags=True))
    assert [r["ID"] for r in doc["Instances"]] == sorted(m.id for m in members)
    assert [r["Seen"] for r in doc["Instances"]] == [3, 1, 2, 0]  # 11, 2, 30, 7


@pytest.mark.parametrize(
    ("options", "tags"),
    [({}, False), ({"tags": True}, True), ({"tags": False}, False), ({"tags": None}, False)],
)
def test_the_tags_option(options: dict[str, Any], tags: bool) -> None:
    assert instance_page(options).tags is tags


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_a_bad_tags_option_is_one_line(value: Any) -> None:
    with pytest.raises(errors.SpecError, match=r"Group.Status: Tags .*: expected true or false"):
        instance_page({"tags": value})


@pytest.mark.parametrize("quiet", [False, True])
def test_one_call_prints_the_bytes_of_describe_group_and_status(quiet: bool) -> None:
    """The fallback (an older server: DescribeGroup's instances, Status without tags) and the one
    call print the same text."""
    members = observed(settings())
    tagged = report(members, InstancePage(tags=True))
    plain = report(members, InstancePage())
    described = [description_to_wire(m) for m in members]
    one_call = reads.describe_lines(
        "web", reads.observation_order(tagged["Instances"]), tagged, quiet
    )
    fallback = reads.describe_lines("web", described, plain, quiet)
    assert one_call == fallback
    lines = one_call.splitlines()
    assert lines[int(not quiet)].startswith("instance-9  ")  # DescribeGroup's order
    assert "a=2,infrakit.config.hash=" in lines[-1 if quiet else 4]


def test_no_status_prints_the_table_alone() -> None:
    described = [description_to_wire(m) for m in observed(settings())]
    text = reads.describe_lines("web", described, None, quiet=False)
    assert text.count("\n") == 5 and text.startswith("ID  ") and text.endswith("\n")
    assert reads.describe_lines("web", [], None, quiet=True) == ""


@pytest.mark.parametrize(
    ("argv", "read"),
    [
        (["group", "describe", "web"], fastpath.Read("group", "group", "web")),
        (["group", "describe", "web", "-q"], fastpath.Read("group", "group", "web", True)),
        (
            ["group", "--name", "g2", "describe", "--quiet", "web"],
            fastpath.Read("group", "g2", "web", True),
        ),
        (["group", "describe", "web", "--name=g3"], fastpath.Read("group", "g3", "web")),
        (
            ["instance", "--name", "instance-file", "describe"],
            fastpath.Read("instance", "instance-file"),
        ),
        (
            ["instance", "describe", "-q", "--name", "aws/ec2"],
            fastpath.Read("instance", "aws/ec2", quiet=True),
        ),
        # Left to click: anything else.
        (["group", "describe"], None),
        (["group", "describe", "web", "other"], None),
        (["group", "describe", "web", "-o", "json"], None),
        (["group", "describe", "--help"], None),
        (["group", "describe", "--", "web"], None),
        (["group", "-q", "describe", "web"], None),
        (["group", "ls"], None),
        (["instance", "describe"], None),  # --name is required: click says so
        (["instance", "--name", "f", "describe", "--tags", "a=b"], None),
        (["instance", "--name", "f", "describe", "-p"], None),
        (["instance", "--name=", "describe"], None),
        (["--plugins-dir", "/tmp", "group", "describe", "web"], None),
        ([], None),
    ],
)
def test_what_the_fast_path_takes(argv: list[str], read: fastpath.Read | None) -> None:
    assert fastpath.parse(argv) == read
