"""``group watch`` at 10 000 instances: Status carries one page of the instances needing
attention, and a frame of the view is bounded (summary, bars, counts, at most 10 rows, the last
8 events) whatever the size. Pure: the Status document is built by ``status_report``."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from infrakit import errors
from infrakit.cli.group import status_lines
from infrakit.cli.watch import EVENTS_SHOWN, ROWS_SHOWN, bar, event_line, watch_lines
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import GroupState, UpdateProgress
from infrakit.controller.group.status import InstancePage, instance_page, status_report
from infrakit.spi import group
from infrakit.spi.event import Event
from infrakit.spi.instance import Description
from infrakit.spi.types import CONFIG_HASH_TAG, GROUP_TAG

SIZE = 10_000
BASE: dict[str, Any] = {
    "Allocation": {"Size": SIZE},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {}},
}


def settings() -> GroupSettings:
    return parse_spec(group.Spec("big", copy.deepcopy(BASE)))


def members(s: GroupSettings, old: int) -> list[Description]:
    """SIZE members, the first ``old`` of them at an old config (a rolling update under way)."""
    out = []
    for i in range(SIZE):
        config = "stale" if i < old else s.hash.head
        out.append(
            Description(f"instance-{i:05d}", None, {GROUP_TAG: "big", CONFIG_HASH_TAG: config})
        )
    return out


def report(page: InstancePage, old: int = 4000, actual_members: int = SIZE) -> dict[str, Any]:
    s = settings()
    state = GroupState()
    state.update = UpdateProgress(target=s.hash.head, total=SIZE, replaced=SIZE - old)
    return status_report(
        s,
        state,
        members(s, old)[:actual_members],
        observed_ago=0.1,
        unknown="",
        converged=False,
        events="events",
        now=time.monotonic(),
        page=page,
    )


def test_status_carries_one_page_of_the_instances_needing_attention() -> None:
    started = time.perf_counter()
    doc = report(InstancePage(limit=ROWS_SHOWN, attention=True))
    took = time.perf_counter() - started
    assert len(doc["Instances"]) == ROWS_SHOWN
    assert doc["InstancesTotal"] == 4000  # the old-config ones
    assert doc["OldConfig"] == 4000 and doc["Actual"] == SIZE
    assert all(r["Config"] == "old" for r in doc["Instances"])
    assert took < 1.0, f"Status of 10 000 instances took {took:.3f}s"
    page = report(InstancePage(offset=9990, limit=50))
    assert [r["ID"] for r in page["Instances"]] == [f"instance-{i:05d}" for i in range(9990, SIZE)]
    assert page["InstancesTotal"] == SIZE and page["InstancesOffset"] == 9990


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"offset": -1}, "Offset -1"),
        ({"limit": "ten"}, "Limit 'ten'"),
        ({"filter": "odd"}, "Filter 'odd'"),
        ({"offset": True}, "Offset True"),
    ],
)
def test_bad_page_options_are_one_line(options: dict[str, Any], words: str) -> None:
    with pytest.raises(errors.SpecError, match=words):
        instance_page(options)


def test_a_frame_at_10000_instances_is_bounded_and_always_shows_the_last_events() -> None:
    doc = report(InstancePage(), actual_members=9000)  # an old server: every row came back
    events = [
        f"12:00:{i % 60:02d} instance-created   created instance-{i:05d}" for i in range(1000)
    ]
    header = status_lines("big", {**doc, "Instances": [], "Decisions": []})
    frame = watch_lines(header, doc, events)
    assert len(frame) <= len(header) + ROWS_SHOWN + EVENTS_SHOWN + 6, len(frame)
    assert frame[-EVENTS_SHOWN:] == [f"  {e}" for e in events[-EVENTS_SHOWN:]]
    text = "\n".join(frame)
    assert "... and 8990 more" in text  # 9000 rows, 10 shown
    assert bar("update", 6000, SIZE) in text
    assert bar("commit", 9000, SIZE) in text
    assert "Instances: 9000 - health not checked, old config 4000, destroying 0" in text


def test_a_converged_group_has_no_commit_bar_and_says_nobody_needs_attention() -> None:
    doc = {"Desired": 3, "Actual": 3, "Converged": True, "Instances": [], "InstancesTotal": 0}
    frame = watch_lines(["Group g: converged"], doc, [])
    assert frame == [
        "Group g: converged",
        "Instances: 3 - health not checked, old config 0, destroying 0",
        "Needing attention: none",
        "Last events (0 of 0):",
        "  (none yet)",
    ]


def test_bars_and_event_lines() -> None:
    assert bar("update", 3, 10, width=10) == "update   [###.......]     3/10     30%"
    assert bar("commit", 0, 0, width=4) == "commit   [####]     0/0     100%"
    ev = Event("group/g", "instance-lost", id="instance-7", message="instance-7 is gone")
    ev.stamp = "2026-01-02T03:04:05.000000Z"
    assert event_line(ev, local=lambda stamp: stamp[11:19]) == (
        "03:04:05 instance-lost        instance-7 is gone"
    )
