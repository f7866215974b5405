"""``infrakit up`` and ``infrakit plugin start|stop|ls`` through the real CLI."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from infrakit.store.file import FileStore
from infrakit.testing.etcd import EtcdServer
from infrakit.testing.processes import Daemon, free_port
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
    assert "groups/cattle" in FileStore(e2e.home / "store.json").load()


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
    err = e2e.fails("up", str(spec))  # before any plugin starts: one line, nothing logged
    assert f"spec file {spec}: Failed to find Instance plugin 'no-such-plugin'" in err
    assert "fix Properties.Instance.Plugin" in err
    assert not e2e.plugins.exists() or list(e2e.plugins.iterdir()) == []
    assert not (e2e.home / "store.json").exists() and not (e2e.home / "store.json.journal").exists()


def write_spec(e2e: E2E, name: str, **changes: Any) -> str:
    """cattle.json as ``name`` with ``changes`` applied to its Properties (dotted keys)."""
    doc = json.loads((EXAMPLES / "cattle.json").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    path = e2e.home / name
    path.write_text(json.dumps(doc))
    return str(path)


def nothing_started_or_committed(e2e: E2E) -> None:
    assert instances(e2e) == []
    assert not (e2e.home / "store.json").exists() and not (e2e.home / "store.json.journal").exists()
    assert not e2e.plugins.exists() or list(e2e.plugins.iterdir()) == []


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"ID": "other", "Properties.Allocation": {}}, "Allocation must not be blank"),
        ({"ID": "other", "Properties.Allocation.Size": "five"}, "Properties.Allocation.Size"),
        ({"ID": "other", "Properties": []}, "Properties must be a JSON object"),
        ({"ID": "other", "Properties.Flavor.Plugin": "flavor-nope"}, "Flavor plugin 'flavor-nope'"),
        ({}, "good.json and BAD both define group cattle"),
    ],
    ids=["blank-allocation", "wrong-type", "properties-not-object", "unknown-plugin", "dup-id"],
)
def test_up_checks_every_spec_file_before_starting_anything(
    e2e: E2E, bad: dict[str, Any], expected: str
) -> None:
    good = write_spec(e2e, "good.json")
    second = write_spec(e2e, "second.json", **bad)
    err = e2e.fails("up", good, second)
    assert err.startswith(f"Error: spec file {second}: ") or "both define" in err, err
    assert expected.replace("BAD", second) in err, err
    nothing_started_or_committed(e2e)


def test_up_with_an_invalid_json_second_file_names_it_and_commits_nothing(e2e: E2E) -> None:
    good = write_spec(e2e, "good.json")
    bad = e2e.home / "bad.json"
    bad.write_text('{"ID": "x",')
    err = e2e.fails("up", good, str(bad))
    assert f"spec file {bad}: not valid JSON" in err
    nothing_started_or_committed(e2e)


def test_up_dry_runs_every_spec_through_the_plugins_before_committing_any(e2e: E2E) -> None:
    """A spec only a plugin can reject (vanilla's Init must be strings) stops `up` before the
    good file before it is committed, and the error names the bad file."""
    good = write_spec(e2e, "good.json")
    bad = write_spec(e2e, "bad.json", **{"ID": "other", "Properties.Flavor.Properties.Init": 7})
    daemon = Daemon(["infrakit", "up", good, bad], e2e.env, sockets=[])
    e2e.daemons.append(daemon)
    daemon.start()
    assert daemon.wait(timeout=30) == 1
    last = daemon.output().strip().splitlines()[-1]
    assert last.startswith(f"Error: spec file {bad}: ") and "Properties.Init" in last, last
    assert "Traceback" not in daemon.output()
    assert "Committed" not in daemon.output()
    assert instances(e2e) == []
    assert [p for p in e2e.plugins.iterdir() if not p.name.endswith(".log")] == []
    assert FileStore(e2e.home / "store.json").load() == {}


def test_up_listen_without_a_token_fails_before_any_plugin_starts(e2e: E2E) -> None:
    err = e2e.fails("up", "--listen", f"127.0.0.1:{free_port()}")
    assert "--listen 127.0.0.1:" in err and "needs a shared token" in err
    nothing_started_or_committed(e2e)


def test_up_store_in_a_missing_directory_fails_and_creates_nothing(e2e: E2E) -> None:
    store = e2e.home / "nonexistent" / "dir" / "x.json"
    err = e2e.fails("up", "--store", str(store))
    assert err == (
        f"Error: store {store}: directory {store.parent} does not exist; "
        "create it or pass another --store"  # the flag up was given, not -o manager.store
    )
    assert not (e2e.home / "nonexistent").exists()
    nothing_started_or_committed(e2e)


def test_up_creates_the_default_store_and_its_home(e2e: E2E) -> None:
    home = e2e.home / "fresh"  # INFRAKIT_HOME does not exist yet: the default store may create it
    e2e.start(
        "infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS, INFRAKIT_HOME=str(home)
    )
    wait_for(
        lambda: "groups/cattle" in FileStore(home / "store.json").load(), what="the default store"
    )


@pytest.mark.parametrize("problem", ["invalid-json", "directory"])
def test_up_with_an_unreadable_store_refuses_to_start_and_leaves_it_alone(
    e2e: E2E, problem: str
) -> None:
    if problem == "directory":
        store = e2e.home / "store-dir"
        store.mkdir()
        (store / "keep").write_text("mine")
        err = e2e.fails("up", "--store", str(store))
        assert f"store {store} is a directory; expected a JSON file" in err
        assert [p.name for p in store.iterdir()] == ["keep"]
    else:
        store = e2e.home / "store.json"  # the default store
        store.write_text('{"schema": 1, "entries": {')
        err = e2e.fails("up", str(EXAMPLES / "cattle.json"))
        assert f"store {store}: not valid JSON" in err and "left untouched" in err
        assert store.read_text() == '{"schema": 1, "entries": {'
    assert instances(e2e) == []
    assert not e2e.plugins.exists() or list(e2e.plugins.iterdir()) == []


def test_up_with_an_unreachable_etcd_store_fails_at_once(e2e: E2E) -> None:
    port = free_port()
    # It exits (a hang fails on the CLI's run timeout); how fast is not asserted here.
    err = e2e.fails("up", "--store", f"etcd://127.0.0.1:{port}", str(EXAMPLES / "cattle.json"))
    # An etcd store implies the etcd election (so the store can fence writes): it finds etcd down.
    assert f"no answer from etcd at 127.0.0.1:{port}" in err and "check that etcd runs" in err
    nothing_started_or_committed(e2e)


def test_up_with_an_unreachable_etcd_leader_gives_up_in_bounded_time(e2e: E2E) -> None:
    port = free_port()
    started = time.monotonic()
    err = e2e.fails("up", "--leader", "etcd", INFRAKIT_ETCD_ENDPOINT=f"127.0.0.1:{port}")
    elapsed = time.monotonic() - started
    assert f"leader etcd: no answer from etcd at 127.0.0.1:{port} within 5s" in err
    assert "check that etcd runs there" in err
    # It waits for etcd (which may be starting too) before it gives up: a lower bound, which a
    # slow machine cannot break. That it gives up at all is the run timeout's job, not a figure.
    assert elapsed > 4
    nothing_started_or_committed(e2e)


def test_up_with_etcd_for_store_and_election_commits_and_serves(e2e: E2E, etcd: EtcdServer) -> None:
    e2e.start(
        "infrakit",
        "up",
        "--leader",
        "etcd",
        "--store",
        f"etcd://{etcd.endpoint}/up",
        str(EXAMPLES / "cattle.json"),
        sockets=UP_SOCKETS,
    )
    wait_for(lambda: len(instances(e2e)) == 5, what="5 instances")
    status = json.loads(e2e.run("manager", "status", "-o", "json").stdout)
    assert status["Leading"] is True and status["Store"] == f"etcd://{etcd.endpoint}/up"


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
            "Interfaces": ["Flavor/0.1.1"],
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


def test_plugin_start_completes_kinds_without_importing_them(e2e: E2E, tmp_path: Path) -> None:
    # An installed kind whose module cannot even be imported: completion still names it (it
    # reads entry-point names only), and says nothing about it failing to load.
    dist = tmp_path / "broken_kind-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kind\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[infrakit.plugins]\nbroken = broken_kind:KIND\n")
    (tmp_path / "broken_kind.py").write_text("raise RuntimeError('imported by completion')\n")

    def complete(words: str) -> subprocess.CompletedProcess[str]:
        return e2e.run(
            *words.split()[1:],
            _INFRAKIT_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            PYTHONPATH=str(tmp_path),
        )

    every = complete("infrakit plugin start ")
    kinds = [line.removeprefix("plain,") for line in every.stdout.splitlines()]
    assert {"file", "vanilla", "combo", "group", "manager", "broken"} <= set(kinds)
    assert kinds == sorted(kinds) and every.stderr == ""
    after_one = complete("infrakit plugin start group f")
    assert after_one.stdout.splitlines() == ["plain,file"] and after_one.stderr == ""
    assert complete("infrakit plugin start file:").stdout.strip() == ""  # NAME: the user's


def test_insecure_warns_who_can_reach_the_port_can_run_code(e2e: E2E) -> None:
    port = free_port()
    up = e2e.start(
        "infrakit", "up", "--listen", f"127.0.0.1:{port}", "--insecure",
        "--listen-tcp", "127.0.0.1", sockets=UP_SOCKETS,
    )  # fmt: skip

    def warnings() -> list[str]:
        lines = up.output().splitlines()
        return [line for line in lines if "WARNING" in line and "--insecure" in line]

    # Every TCP listener warns (one line per plugin), the manager's --listen among them.
    wait_for(lambda: len(warnings()) == len(UP_SOCKETS), what="a warning per TCP listener")
    assert any(f"TCP 127.0.0.1:{port} takes requests without a token" in w for w in warnings())
    assert all("can commit specs and so run code as uid" in w for w in warnings())


def test_plugin_tcp_over_tls_with_a_token_file_through_the_cli(e2e: E2E) -> None:
    from tests.certificates import self_signed

    cert, key = self_signed(e2e.home)
    token = e2e.home / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    e2e.start(
        "infrakit", "plugin", "start", "file:instance-file", "--listen-tcp", "127.0.0.1",
        "--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(key),
        sockets=["instance-file"],
    )  # fmt: skip
    listen = (e2e.plugins / "instance-file.listen").read_text()
    assert listen.startswith("https://127.0.0.1:")
    # A plugin directory with only the .listen file: the CLI must go over TCP.
    remote = e2e.home / "remote"
    remote.mkdir(mode=0o700)
    (remote / "instance-file.listen").write_text(listen)
    describe = ("instance", "--name", "instance-file", "describe", "-q")
    env = {"INFRAKIT_PLUGINS_DIR": str(remote), "INFRAKIT_TOKEN_FILE": str(token)}
    err = e2e.fails(*describe, **env)
    assert err == (
        f"Error: plugin instance-file at {listen}: an https:// address needs a CA bundle to "
        "verify its certificate; set INFRAKIT_TLS_CA=ca.pem (or pass --tls-ca) with the CA that "
        "signed it"
    )
    assert e2e.run(*describe, INFRAKIT_TLS_CA=str(cert), **env).stdout == ""
    token.chmod(0o644)
    err = e2e.fails(*describe, INFRAKIT_TLS_CA=str(cert), **env)
    assert f"INFRAKIT_TOKEN_FILE {token}: group or others may read it (mode 0644)" in err
    err = e2e.fails(
        "plugin", "start", "vanilla", "--listen-tcp", "127.0.0.1", "--token-file", str(token)
    )
    assert f"--token-file {token}: group or others may read it (mode 0644); chmod 600" in err
