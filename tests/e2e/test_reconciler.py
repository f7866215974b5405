"""The reconciler as a user sees it: heals driven by events (not the poll), re-subscription after a
plugin restart, the controller's own events, `group watch`, structured plans, resume after restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infrakit.testing.processes import bin_path
from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: So long that only events can explain a heal within the test's time.
NO_POLL = "1h"


def instance_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("instance-"))


def start_stack(e2e: E2E, tutorial: Path) -> None:
    e2e.start("infrakit-instance-file", "--dir", str(tutorial), sockets=["instance-file"])
    e2e.start("infrakit-group-default", "--poll-interval", NO_POLL, sockets=["group"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])


def members(e2e: E2E, group: str = "cattle") -> list[str]:
    return e2e.lines("group", "describe", group, "-q")


def test_heal_is_event_driven_and_survives_a_plugin_restart(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(tutorial)) == 5, what="5 instances")

    victims = instance_files(tutorial)[:2]
    for path in victims:
        path.unlink()
    # With a one-hour poll interval, only the file plugin's events can trigger this heal.
    wait_for(
        lambda: (
            len(instance_files(tutorial)) == 5
            and not {p.name for p in victims} & {p.name for p in instance_files(tutorial)}
        ),
        what="2 replacements driven by events",
    )

    # Restart the file plugin: the controller must subscribe again to its new socket.
    file_daemon = e2e.daemons[0]
    file_daemon.stop()
    e2e.start("infrakit-instance-file", "--dir", str(tutorial), sockets=["instance-file"])
    # The controller reconnects on its own (with backoff); give it the chance, then kill one.
    wait_for(
        lambda: "events" in e2e.run("group", "describe", "cattle").stdout,
        timeout=20,
        what="controller re-subscribed to the restarted plugin",
    )
    victim = instance_files(tutorial)[0]
    victim.unlink()
    wait_for(
        lambda: (
            len(instance_files(tutorial)) == 5
            and victim.name not in {p.name for p in instance_files(tutorial)}
        ),
        what="heal after the plugin restart",
    )


def test_event_tail_shows_the_controllers_decisions(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(tutorial)) == 5, what="5 instances")

    tail = subprocess.Popen(
        [bin_path("infrakit"), "event", "tail", "group/cattle", "-o", "json", "--count", "3"],
        env=e2e.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        announced = tail.stderr.readline()  # printed once the subscription is live
        assert announced.startswith("Following events on group/cattle from group"), announced
        victim = instance_files(tutorial)[0]
        victim.unlink()
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 3
    assert all(e["Topic"] == "group/cattle" for e in events)
    assert events[0]["Type"] == "instance-lost", events
    assert events[0]["ID"] == victim.name
    assert victim.name in events[0]["Message"]


def test_group_watch_prints_progress_lines_until_converged(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    watched = e2e.run("group", "watch", "cattle", "--until-converged", "--timeout", "30")
    assert "cattle" in watched.stdout
    assert "converged" in watched.stdout.lower()
    assert len(instance_files(tutorial)) == 5


def test_pretend_json_is_a_structured_plan_and_changes_nothing(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(tutorial)) == 5, what="5 instances")
    before = {p.name for p in instance_files(tutorial)}

    plan = json.loads(
        e2e.run("group", "commit", str(EXAMPLES / "cattle2.json"), "--pretend", "-o", "json").stdout
    )
    text = json.dumps(plan)
    assert "cattle" in text
    assert {p.name for p in instance_files(tutorial)} == before
    inspected = json.loads(e2e.run("group", "inspect", "cattle").stdout)
    assert json.dumps(inspected).count("paoytoh5") == 0  # the committed spec is still cattle v1
    assert inspected["Properties"]["Allocation"]["Size"] == 5


def test_restarted_controller_resumes_from_its_store(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(tutorial)) == 5, what="5 instances")
    before = {p.name for p in instance_files(tutorial)}

    group_daemon = e2e.daemons[1]
    group_daemon.stop()
    e2e.start("infrakit-group-default", "--poll-interval", NO_POLL, sockets=["group"])
    assert e2e.run("group", "ls", "-q").stdout == "cattle\n"
    wait_for(lambda: "converged" in e2e.run("group", "describe", "cattle").stdout, what="resumed")
    assert {p.name for p in instance_files(tutorial)} == before  # adopted, nothing re-created
    victim = instance_files(tutorial)[0]
    victim.unlink()
    wait_for(
        lambda: (
            len(instance_files(tutorial)) == 5
            and victim.name not in {p.name for p in instance_files(tutorial)}
        ),
        what="the resumed controller heals",
    )
