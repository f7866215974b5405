"""``infrakit up`` and ``infrakit plugin start|stop|ls`` through the real CLI."""

from __future__ import annotations

import json
import signal
import stat

import pytest

from infrakit.testing.processes import Daemon
from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]


def instances(e2e: E2E) -> list[str]:
    directory = e2e.home / "instances"
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("instance-"))


def test_up_serves_everything_commits_specs_and_stops_cleanly(e2e: E2E) -> None:
    up = e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: len(instances(e2e)) == 5, what="5 instances in INFRAKIT_HOME/instances")
    assert "Committed cattle: Managing 5 instances" in wait_for(
        lambda: "Committed cattle" in up.output() and up.output(), what="commit line"
    )
    for name in UP_SOCKETS:
        mode = (e2e.plugins / name).stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(e2e.plugins.stat().st_mode) == 0o700
    assert e2e.lines("plugin", "ls", "-q") == sorted(UP_SOCKETS)
    log = up.output()
    assert "serving" in log and "creating 5 instance(s)" in log and "converged" in log

    up.signal(signal.SIGINT)
    assert up.wait(timeout=20) == 0
    assert [p for p in e2e.plugins.iterdir()] == []  # every socket removed
    assert len(instances(e2e)) == 5  # instances outlive the controller


def test_up_again_resumes_groups_from_the_store(e2e: E2E) -> None:
    first = e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: len(instances(e2e)) == 5, what="5 instances")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    (e2e.home / "instances" / instances(e2e)[0]).unlink()
    assert len(instances(e2e)) == 4
    e2e.start("infrakit", "up", sockets=UP_SOCKETS)  # no specs given: the store has cattle
    wait_for(lambda: len(instances(e2e)) == 5, what="healed after restart")
    assert e2e.run("group", "ls", "-q").stdout == "cattle\n"
    store = json.loads((e2e.home / "store.json").read_text())
    assert store["schema"] == 1 and "groups/cattle" in store["entries"]


def test_up_with_a_bad_spec_starts_nothing(e2e: E2E) -> None:
    bad = e2e.home / "bad.json"
    bad.write_text('{"ID": "x", "Properties": {"Allocation": {"Size": 3}')
    err = e2e.fails("up", str(bad))
    assert "bad.json: not valid JSON" in err
    assert not e2e.plugins.exists() or list(e2e.plugins.iterdir()) == []


def test_up_with_an_invalid_group_stops_and_exits_1(e2e: E2E) -> None:
    spec = e2e.spec("cattle.json")
    doc = json.loads(spec.read_text())
    doc["Properties"]["Instance"]["Plugin"] = "no-such-plugin"
    spec.write_text(json.dumps(doc))
    daemon = Daemon(["infrakit", "up", str(spec)], e2e.env, sockets=[])
    daemon.start()
    e2e.daemons.append(daemon)
    assert daemon.wait(timeout=30) == 1
    assert "Failed to find Instance plugin 'no-such-plugin'" in daemon.output()
    assert [p for p in e2e.plugins.iterdir() if not p.name.endswith(".log")] == []


def test_plugin_start_runs_a_set_in_one_process_and_stop_stops_one(e2e: E2E) -> None:
    tutorial = e2e.home / "t"
    host = e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "file:instance-file",
        "vanilla",
        "-o",
        f"file.dir={tutorial}",
        sockets=["group", "instance-file", "flavor-vanilla"],
    )
    assert e2e.lines("plugin", "ls", "-q") == ["flavor-vanilla", "group", "instance-file"]
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: len(list(tutorial.glob("instance-*"))) == 5, what="instances in -o file.dir")

    assert e2e.run("plugin", "stop", "flavor-vanilla").stdout == "Stopped flavor-vanilla\n"
    assert e2e.lines("plugin", "ls", "-q") == ["group", "instance-file"]
    assert host.proc is not None and host.proc.poll() is None  # the others keep running

    assert e2e.run("plugin", "stop", "--all").stdout.splitlines() == [
        "Stopped group",
        "Stopped instance-file",
    ]
    assert host.wait(timeout=20) == 0
    assert list(e2e.plugins.iterdir()) == []


def test_stale_socket_is_replaced_and_live_name_conflicts(e2e: E2E) -> None:
    crashed = e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    crashed.kill()  # SIGKILL: the socket file stays behind
    assert (e2e.plugins / "flavor-vanilla").exists()
    ls = e2e.run("plugin", "ls").stdout
    assert "stale" in ls
    err = e2e.fails("flavor", "--name", "flavor-vanilla", "validate", str(EXAMPLES / "cattle.json"))
    assert "not running" in err and "flavor-vanilla" in err

    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])  # replaces the stale socket
    second = Daemon(["infrakit-flavor-vanilla"], e2e.env)  # no socket to wait for: it must exit
    e2e.daemons.append(second)
    second.start()
    assert second.wait(20) != 0
    assert "already listens" in second.output()
    assert "plugin stop flavor-vanilla" in second.output()


def test_plugin_ls_json_and_kinds(e2e: E2E) -> None:
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    rows = json.loads(e2e.run("plugin", "ls", "-o", "json").stdout)
    assert rows == [
        {
            "Name": "flavor-vanilla",
            "Interfaces": "Flavor/0.1.1",
            "Listen": rows[0]["Listen"],
            "Live": True,
        }
    ]
    kinds = e2e.run("plugin", "kinds").stdout
    for kind in ("file", "vanilla", "combo", "group"):
        assert kind in kinds


def test_version_and_completion(e2e: E2E) -> None:
    assert e2e.run("version").stdout.startswith("Version: ")
    assert e2e.run("--version").stdout == e2e.run("version").stdout
    script = e2e.run("completion", "bash").stdout
    assert "_INFRAKIT_COMPLETE" in script
    e2e.start("infrakit-group-default", sockets=["group"])
    e2e.start("infrakit-instance-file", sockets=["instance-file"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    e2e.run("group", "commit", str(EXAMPLES / "cattle.json"))
    completed = e2e.run(
        "group",
        "describe",
        "",
        _INFRAKIT_COMPLETE="bash_complete",
        COMP_WORDS="infrakit group describe ",
        COMP_CWORD="3",
    )
    assert "cattle" in completed.stdout
