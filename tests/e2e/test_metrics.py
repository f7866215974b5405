"""``GET /metrics`` on a running infrakit, as a Prometheus scrape sees it: the group's numbers
from the controller at scrape time, and the counters the hooks fed (creates, plugin calls, store
writes, RPC requests)."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infrakit.testing.processes import free_port, http_get
from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.e2e.test_managers import Member, instance_files
from tests.prometheus_fixture import prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(e2e: E2E, socket: str = "group", plugins: Path | None = None) -> Samples:
    answer = http_get((plugins or e2e.plugins) / socket, "/metrics")
    assert answer.status == 200, answer.text()
    assert answer.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(answer.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_up_serves_the_groups_numbers_and_counters_at_metrics_on_its_socket(e2e: E2E) -> None:
    daemon = e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: "converged" in daemon.output(), what="the group to converge")
    # Converged also means no pass queued or running: the one that logged it may still be
    # finishing, or a create's echo may have queued one more.
    wait_for(
        lambda: value(scrape(e2e), "infrakit_group_converged", group="cattle") == 1,
        what="the converged gauge",
    )
    got = scrape(e2e)
    instances = "infrakit_group_instances"
    assert value(got, instances, group="cattle", state="desired") == 5
    assert value(got, instances, group="cattle", state="actual") == 5
    assert value(got, "infrakit_group_breaker_state", group="cattle", state="closed") == 1
    assert value(got, "infrakit_group_creates_total", group="cattle", result="success") == 5
    provisions = "infrakit_plugin_call_duration_seconds_count"
    assert value(got, provisions, plugin="instance-file", method="Provision", result="success") == 5
    assert (
        value(got, "infrakit_group_reconcile_total", group="cattle", result="success") or 0
    ) >= 1
    assert (value(got, "infrakit_store_write_duration_seconds_count") or 0) >= 1
    assert [k for k in got if k[0] == "infrakit_leader"] and all(
        v == 1 for k, v in got.items() if k[0] == "infrakit_leader"
    )
    assert (value(got, "process_resident_memory_bytes") or 0) > 0

    # A heal shows: one more create, actual back to 5.
    victim = sorted((e2e.home / "instances").glob("instance-*"))[0]
    victim.unlink()
    wait_for(
        lambda: (
            value(scrape(e2e), "infrakit_group_creates_total", group="cattle", result="success")
            == 6
        ),
        what="the heal to be counted",
    )
    wait_for(
        lambda: value(scrape(e2e), instances, group="cattle", state="actual") == 5,
        what="actual back to 5",
    )

    # RPC requests by method and code; unknown methods share one label. `group describe` asks
    # Status (with Tags) alone; for a group it does not know, DescribeGroup says why.
    e2e.run("group", "describe", "cattle")
    e2e.run("group", "describe", "nosuch", check=False)
    got = scrape(e2e)
    assert (value(got, "infrakit_rpc_requests_total", method="Group.Status", code="ok") or 0) >= 1
    assert any(
        k[0] == "infrakit_rpc_requests_total"
        and dict(k[1])["method"] == "Group.DescribeGroup"
        and dict(k[1])["code"] != "ok"
        for k in got
    ), "the failed describe is counted with its error kind"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


def test_metrics_answer_openmetrics_when_asked_and_healthz_says_alive(e2e: E2E) -> None:
    e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    answer = http_get(
        e2e.plugins / "group",
        "/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0"},
    )
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text().rstrip().endswith("# EOF")
    health = http_get(e2e.plugins / "group", "/healthz")
    assert health.status == 200 and b'"ok":true' in health.body.replace(b" ", b"")
    # An instance plugin serves no metrics of its own: a clear 404, not a crash.
    missing = http_get(e2e.plugins / "instance-file", "/metrics")
    assert missing.status == 404 and b"serves no metrics" in missing.body


def test_the_group_kind_alone_serves_metrics_too(e2e: E2E) -> None:
    e2e.start("infrakit", "plugin", "start", "file", "vanilla", "group", sockets=["group"])
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(
        lambda: value(scrape(e2e), "infrakit_group_instances", group="cattle", state="actual") == 5,
        what="five instances in the gauge",
    )
    got = scrape(e2e)
    assert value(got, "infrakit_group_converged", group="cattle") in (0, 1)
    assert not [k for k in got if k[0] == "infrakit_leader"], "no election in a plain group"


@pytest.mark.parametrize("listener", ["http", "listen-with-token"])
def test_a_real_prometheus_scrapes_up_and_sees_the_size_and_a_heal(e2e: E2E, listener: str) -> None:
    """Prometheus cannot read UNIX sockets. It scrapes ``infrakit up`` over TCP: the listener for
    scrapers, ``--http 127.0.0.1:PORT`` (open on loopback), or the manager's token-guarded
    ``--listen`` with ``authorization: {type: Bearer, credentials_file: ...}``. Either way it
    sees the group's size and the group, idle seconds after converging (the first scrape comes
    ~6 s after Prometheus starts), as converged; then the heal as one more create."""
    port = free_port()
    token_file: Path | None = None
    if listener == "http":
        flags = ["--http", f"127.0.0.1:{port}"]
    else:
        token_file = e2e.home / "token"
        token_file.write_text(secrets.token_hex(16) + "\n")
        token_file.chmod(0o600)
        flags = ["--listen", f"127.0.0.1:{port}", "--token-file", str(token_file)]
    daemon = e2e.start("infrakit", "up", *flags, str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: "converged" in daemon.output(), what="the group to converge")
    with prometheus([f"127.0.0.1:{port}"], token_file=token_file) as prom:
        prom.wait_for('up{job="infrakit"}', 1)
        prom.wait_for('infrakit_group_instances{group="cattle",state="desired"}', 5)
        prom.wait_for('infrakit_group_instances{group="cattle",state="actual"}', 5)
        prom.wait_for('infrakit_group_converged{group="cattle"}', 1)
        prom.wait_for('infrakit_group_creates_total{group="cattle",result="success"}', 5)
        sorted((e2e.home / "instances").glob("instance-*"))[0].unlink()
        prom.wait_for('infrakit_group_creates_total{group="cattle",result="success"}', 6)
        prom.wait_for('infrakit_group_instances{group="cattle",state="actual"}', 5)
        prom.wait_for('infrakit_group_converged{group="cattle"}', 1)
        prom.wait_for('infrakit_leader{job="infrakit"}', 1)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


def test_the_leader_gauge_is_per_member_and_follows_a_failover(e2e: E2E) -> None:
    """Two managers sharing a store and a lock: the leader says 1 and serves the group's gauges,
    the follower says 0 and none (its groups live on the leader); once the leader is killed, the
    follower says 1 and serves them."""
    a, b = Member(e2e, "a", "s3cret"), Member(e2e, "b", "s3cret")
    a.start()
    wait_for(lambda: a.status()["Leading"], what="a leads")
    b.start()
    a.cli("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(e2e.home / "instances")) == 5, what="5 instances")
    at_a, at_b = e2e.home / "p-a", e2e.home / "p-b"

    def actual(plugins: Path) -> float | None:
        return value(scrape(e2e, plugins=plugins), "infrakit_group_instances", group="cattle",
                     state="actual")  # fmt: skip

    wait_for(lambda: actual(at_a) == 5, what="5 in the leader's gauge")
    got_a, got_b = scrape(e2e, plugins=at_a), scrape(e2e, plugins=at_b)
    assert value(got_a, "infrakit_leader", member="a") == 1
    assert value(got_b, "infrakit_leader", member="b") == 0
    assert not [k for k in got_b if k[0] == "infrakit_group_instances"], "a follower has no groups"

    assert a.daemon is not None
    a.daemon.kill()
    wait_for(lambda: b.status()["Leading"], timeout=30, what="b leads")
    wait_for(lambda: actual(at_b) == 5, what="5 in the new leader's gauge")
    assert value(scrape(e2e, plugins=at_b), "infrakit_leader", member="b") == 1
