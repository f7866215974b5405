"""The reconciler as a user sees it: heals driven by events (not the poll), re-subscription after a
plugin restart, the controller's own events, `group watch`, structured plans, resume after restart."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from infrakit.testing.processes import bin_path, session_members
from tests.e2e.conftest import E2E, EXAMPLES, event_tail, wait_for

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

    with event_tail(e2e.env, "group/cattle", "-o", "json", "--count", "3") as tail:
        victim = instance_files(tutorial)[0]
        victim.unlink()
        out, err = tail.communicate(timeout=30)
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
    assert plan["Group"] == "cattle"
    assert plan["Sentence"] == (
        "Performing a rolling update on 5 instances, then adding 5 instances to increase the "
        "group size to 10"
    )
    assert plan["ConfigHash"] == "paoytoh5dtssp6gvpzpnv5zwqcpbstky"
    assert plan["Create"] == {"ForSize": 5, "ForReplacement": 5}
    # Every current instance is replaced, each in its own create-then-destroy batch (MaxSurge 1).
    replaced = [r["ID"] for b in plan["Replacements"] for r in b["Replace"]]
    assert sorted(replaced) == sorted(before)
    assert {b["Order"] for b in plan["Replacements"]} == {"create-then-destroy"}
    assert any("HEALTHY" in gate for gate in plan["Gates"])
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


def _hashes(tutorial: Path) -> list[str]:
    found = []
    for path in instance_files(tutorial):
        try:
            found.append(json.loads(path.read_text())["Tags"]["infrakit.config.hash"])
        except (OSError, ValueError, KeyError):  # a file being replaced right now
            continue
    return found


def test_canary_update_pause_resume_promote_and_rollback_through_the_cli(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    v1 = json.loads((EXAMPLES / "cattle.json").read_text())
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(set(_hashes(tutorial))) == 1 and len(_hashes(tutorial)) == 5, what="v1")
    (v1_hash,) = set(_hashes(tutorial))

    v2 = json.loads(json.dumps(v1))
    v2["Properties"]["Instance"]["Properties"]["Note"] = "Instance properties version 2.0"
    v2["Properties"]["Updating"] = {"Canary": 1}
    v2_file = e2e.home / "cattle-v2.json"
    v2_file.write_text(json.dumps(v2))

    # The canary: one instance replaced, then the update waits for a promote.
    e2e.run("group", "commit", str(v2_file))
    wait_for(
        lambda: sorted(_hashes(tutorial)).count(v1_hash) == 4 and len(_hashes(tutorial)) == 5,
        what="one canary at v2, four at v1",
    )
    wait_for(
        lambda: "promote" in e2e.run("group", "describe", "cattle").stdout,
        what="describe says the canary waits for `group promote`",
    )
    assert e2e.run("group", "pause", "cattle").stdout == "Paused update of cattle\n"
    assert "paused" in e2e.run("group", "describe", "cattle").stdout.lower()
    assert e2e.run("group", "resume", "cattle").stdout == "Resumed update of cattle\n"

    # Rollback before promoting: back to v1, the last spec that fully converged.
    assert e2e.run("group", "rollback", "cattle").stdout == "Rolling back cattle\n"
    wait_for(lambda: _hashes(tutorial) == [v1_hash] * 5, what="all five back at v1")
    inspected = json.loads(e2e.run("group", "inspect", "cattle").stdout)
    assert inspected["Properties"]["Instance"]["Properties"]["Note"].endswith("version 1.0")

    # The same canary again, promoted this time: every instance ends at v2.
    e2e.run("group", "commit", str(v2_file))
    wait_for(lambda: sorted(_hashes(tutorial)).count(v1_hash) == 4, what="the canary again")
    wait_for(
        lambda: "promote" in e2e.run("group", "describe", "cattle").stdout, what="canary pause"
    )
    assert e2e.run("group", "promote", "cattle").stdout == "Promoted canary of cattle\n"
    wait_for(
        lambda: len(_hashes(tutorial)) == 5 and v1_hash not in _hashes(tutorial),
        what="all five at v2 after the promote",
    )
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "cattle").stdout.lower(),
        what="converged",
    )

    # v2 is now the last converged spec: nothing to roll back to, said on one line.
    err = e2e.fails("group", "rollback", "cattle")
    assert "already runs its last converged spec" in err
    for verb in ("pause", "resume", "promote", "rollback"):
        assert "nosuch" in e2e.fails("group", verb, "nosuch")


def test_group_watch_on_a_terminal_shows_the_live_view_until_converged(e2e: E2E) -> None:
    """On a terminal `group watch` draws rich's live view: a panel with the summary, the counts,
    the instances needing attention and the last events (never a row per instance)."""
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    leader, follower = pty.openpty()
    env = {**e2e.env, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    watcher = subprocess.Popen(
        [
            *(bin_path("infrakit"), "group", "watch", "cattle", "--until-converged"),
            *("--timeout", "30", "--since", "1m"),  # the creates happened before: replayed
        ],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 35)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the watcher exited
                break
            if not chunk:
                break
            screen += chunk
        assert watcher.wait(timeout=10) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        os.close(leader)
    text = screen.decode(errors="replace")
    assert "group cattle" in text  # the panel's title
    for part in ("Instances: ", "Needing attention", "Last events", "instance-created"):
        assert part in text, part
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines


def test_a_stop_ends_a_big_scale_up_at_once(e2e: E2E) -> None:
    """SIGTERM while `infrakit up` works through a long backlog of creates: it exits promptly and
    stops creating (it used to finish the whole backlog first)."""
    instances = e2e.home / "instances"
    doc = json.loads((EXAMPLES / "cattle.json").read_text())
    doc["Properties"]["Allocation"]["Size"] = 20_000
    doc["Properties"]["Provisioning"] = {"MaxParallel": 4}
    big = e2e.home / "big.json"
    big.write_text(json.dumps(doc))
    up = e2e.start(
        "infrakit",
        "up",
        "--store",
        "memory",
        sockets=["group", "instance-file", "flavor-vanilla", "flavor-combo"],
    )
    e2e.run("group", "commit", str(big))
    wait_for(lambda: len(instance_files(instances)) >= 200, what="the scale-up under way")
    up.signal(signal.SIGTERM)
    assert up.wait(timeout=5) == 0
    stopped_at = len(instance_files(instances))
    assert stopped_at < 20_000 / 2
    # Nothing is created after the exit: no process of the stack's session is left to create one
    # (a plugin's helper or a re-parented child would still be in it).
    assert session_members(up.pid) == []
    assert len(instance_files(instances)) == stopped_at


def test_deleting_the_newest_file_again_and_again_backs_off_then_recovers_and_says_why(
    e2e: E2E,
) -> None:
    """Issue 8.1's tour: delete the newest instance file six times, 2.5 s apart. The group must
    not be left short for 5 minutes: it recovers once the deletions stop (the breaker's first
    trial comes after 10 s), and `group describe` says why creates wait."""
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    start_stack(e2e, tutorial)
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(instance_files(tutorial)) == 5, what="5 instances")
    said: list[str] = []
    for _ in range(6):
        newest = max(instance_files(tutorial), key=lambda p: p.stat().st_mtime_ns)
        newest.unlink()
        time.sleep(2.5)  # the scenario's pace, not a wait for a condition
        said.append(e2e.run("group", "describe", "cattle").stdout)
    text = "\n".join(said)
    assert "died" in text and ("one instance at a time" in text or "backing off" in text), text
    try:
        wait_for(lambda: len(instance_files(tutorial)) == 5, timeout=60, what="recovery")
    except AssertionError:
        raise AssertionError(e2e.run("group", "describe", "cattle").stdout) from None
    wait_for(
        lambda: " - converged" in e2e.run("group", "describe", "cattle").stdout,
        timeout=10,
        what="converged",
    )
