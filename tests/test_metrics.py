"""The metrics a scrape sees, from the recorder's plain numbers (exposition parsed back)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from infrakit.metrics import Recorder, timed_lookups
from infrakit.spi.group import GroupSnapshot
from infrakit.testing import FakeFlavorPlugin, FakeInstancePlugin, lookup


def samples(recorder: Recorder) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = recorder.exposition("")
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_group_gauges_come_from_the_snapshot_at_scrape_time() -> None:
    recorder = Recorder()
    snapshot = GroupSnapshot(
        id="web", desired=5, actual=4, pending=1, destroying=0, healthy=3, unhealthy=1,
        unknown=0, converged=False, breaker="probing", update_total=5, update_replaced=2,
    )  # fmt: skip
    recorder.snapshots = lambda: [snapshot]
    got = samples(recorder)
    assert got[("infrakit_group_instances", (("group", "web"), ("state", "actual")))] == 4
    assert got[("infrakit_group_instances", (("group", "web"), ("state", "pending")))] == 1
    assert got[("infrakit_group_converged", (("group", "web"),))] == 0
    assert got[("infrakit_group_breaker_state", (("group", "web"), ("state", "probing")))] == 1
    assert got[("infrakit_group_update_instances", (("group", "web"), ("state", "remaining")))] == 3
    recorder.snapshots = lambda: [GroupSnapshot("web", 5, None, 0, 0, 0, 0, 0, False, "open")]
    got = samples(recorder)
    assert ("infrakit_group_instances", (("group", "web"), ("state", "actual"))) not in got
    assert got[("infrakit_group_degraded", (("group", "web"),))] == 1


def test_counters_and_histograms_from_the_hooks() -> None:
    recorder = Recorder()
    recorder.reconciled("web", 0.003, False)
    recorder.reconciled("web", 0.2, True)
    for type_ in ("instance-created", "instance-created", "backoff", "instance-destroyed"):
        recorder.group_event("web", type_)
    recorder.rpc_request("Group.CommitGroup", "ok")
    got = samples(recorder)
    assert got[("infrakit_group_reconcile_total", (("group", "web"), ("result", "success")))] == 1
    assert got[("infrakit_group_reconcile_total", (("group", "web"), ("result", "error")))] == 1
    assert got[("infrakit_group_reconcile_duration_seconds_count", (("group", "web"),))] == 2
    bucket = (
        "infrakit_group_reconcile_duration_seconds_bucket",
        (("group", "web"), ("le", "0.005")),
    )
    assert got[bucket] == 1
    assert got[("infrakit_group_creates_total", (("group", "web"), ("result", "success")))] == 2
    assert got[("infrakit_group_creates_total", (("group", "web"), ("result", "error")))] == 1
    assert got[("infrakit_group_destroys_total", (("group", "web"), ("result", "success")))] == 1
    assert (
        got[("infrakit_rpc_requests_total", (("code", "ok"), ("method", "Group.CommitGroup")))] == 1
    )
    assert any(name.startswith("process_") for name, _ in got)


def test_plugin_calls_are_timed_by_plugin_method_and_result() -> None:
    recorder = Recorder()
    inst = FakeInstancePlugin()
    instances, _flavors = timed_lookups(
        lookup({"inst": inst}), lookup({"f": FakeFlavorPlugin()}), recorder
    )

    async def run() -> None:
        await instances("inst").describe_instances({})
        inst.describe_error = RuntimeError("down")
        with contextlib.suppress(RuntimeError):
            await instances("inst").describe_instances({})

    asyncio.run(run())
    got = samples(recorder)
    key = "infrakit_plugin_call_duration_seconds_count"
    assert (
        got[(key, (("method", "DescribeInstances"), ("plugin", "inst"), ("result", "success")))]
        == 1
    )
    assert (
        got[(key, (("method", "DescribeInstances"), ("plugin", "inst"), ("result", "error")))] == 1
    )


def test_recording_does_not_import_prometheus_client() -> None:
    """The daemons' start-up must not pay for it: only a scrape imports it."""
    code = (
        "import sys; from infrakit.metrics import Recorder; r = Recorder(); "
        "r.reconciled('g', 0.1, False); r.group_event('g', 'instance-created'); "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
