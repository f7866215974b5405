"""launch/stack.py: what ``up`` and ``plugin start|stop`` do between parsing and printing, as a
library - plans checked before anything exists, spec files checked before any plugin starts,
specs dry-run before any is committed, plugins served and stopped over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infrakit import discovery, errors
from infrakit.launch import stack
from infrakit.launch.host import PluginHost
from infrakit.spi import group as spi_group
from infrakit.testing.processes import Daemon, isolated_env
from tests.certificates import self_signed
from tests.e2e.conftest import wait_for
from tests.threaded_host import ThreadedHost

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# --- plan ---------------------------------------------------------------------------------------


def test_plan_finds_kinds_names_and_parses_their_options(plugin_dir: Path) -> None:
    starts = stack.plan(
        ["group", "file:my-files", "vanilla"],
        {"group": {"poll-interval": "1m30s", "store": "memory"}, "file": {"dir": "~/x"}},
    )
    assert [(s.kind.name, s.name) for s in starts] == [
        ("group", "group"),
        ("file", "my-files"),
        ("vanilla", "flavor-vanilla"),
    ]
    assert starts[0].options == {"poll-interval": 90.0, "store": "memory", "http": None}
    assert starts[1].options == {"dir": Path("~/x").expanduser()}
    assert starts[2].options == {}


@pytest.mark.parametrize(
    ("specs", "options", "error", "message"),
    [
        (["nope"], {}, errors.NotFoundError, "unknown plugin kind 'nope' (available: aws, combo"),
        (["file:"], {}, errors.SpecError, "'file:': the plugin name after ':' is empty"),
        (["file:a/b"], {}, errors.SpecError, "plugin name 'a/b': expected a plain socket name"),
        (["file"], {"vanilla": {"x": "1"}}, errors.SpecError, "-o given for vanilla, which is not"),
        (["file"], {"file": {"nosuch": "1"}}, errors.SpecError, "unknown option file.nosuch"),
        (
            ["vanilla", "group"],
            {"group": {"poll-interval": "soon"}},
            errors.SpecError,
            "group option poll-interval: got 'soon'",
        ),
    ],
)
def test_plan_refuses_bad_input_before_anything_exists(
    infrakit_home: Path, specs: list[str], options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as caught:
        stack.plan(specs, options)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert not (infrakit_home / "plugins").exists()


def test_up_plan_runs_the_manager_file_and_both_flavors() -> None:
    starts = stack.up_plan({"manager": {"ttl": "5s"}, "file": {}})
    assert [(s.kind.name, s.name) for s in starts] == list(stack.UP_PLUGINS)
    assert starts[-1].options["ttl"] == 5.0
    assert starts[-1].options["poll-interval"] == 10.0


def test_tcp_settings_are_checked_before_anything_starts(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    token_file.chmod(0o600)
    assert stack.tcp_settings("127.0.0.1", None, str(token_file), False, (None,) * 3).token == (
        "s3cret"
    )
    with pytest.raises(errors.SpecError, match="--token and --token-file both given"):
        stack.tcp_settings("127.0.0.1", "x", str(token_file), False, (None,) * 3)
    cert, key = self_signed(tmp_path)
    with pytest.raises(errors.SpecError, match="given without --listen-tcp"):
        stack.tcp_settings(None, None, None, False, (str(cert), str(key), None))
    served = stack.tcp_settings("127.0.0.1", "t", None, False, (str(cert), str(key), None))
    assert served.server_ssl is not None


# --- up's spec files ----------------------------------------------------------------------------


def spec_file(directory: Path, name: str, **changes: Any) -> Path:
    doc = json.loads((EXAMPLES / "cattle.json").read_text())
    doc.update(changes)
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


def test_up_specs_are_read_and_checked(tmp_path: Path) -> None:
    first = spec_file(tmp_path, "a.json")
    second = spec_file(tmp_path, "b.json", ID="other")
    specs = stack.read_up_specs([str(first), str(second)])
    assert [(s.source, s.document["ID"]) for s in specs] == [
        (str(first), "cattle"),
        (str(second), "other"),
    ]


def test_each_bad_up_spec_is_one_line_naming_its_file(tmp_path: Path, infrakit_home: Path) -> None:
    good = spec_file(tmp_path, "good.json")
    array = tmp_path / "array.json"
    array.write_text("[]")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    blank = spec_file(tmp_path, "blank.json", ID="")
    twin = spec_file(tmp_path, "twin.json")
    elsewhere = json.loads(good.read_text())
    elsewhere["Properties"]["Instance"]["Plugin"] = "instance-aws"
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(elsewhere))
    cases = [
        ([str(tmp_path / "missing.json")], "spec file {d}/missing.json does not exist"),
        ([str(array)], 'spec file {d}/array.json: expected a JSON object {{"ID": ..., '),
        ([str(broken)], "spec file {d}/broken.json: not valid JSON"),
        ([str(blank)], "spec file {d}/blank.json: "),
        ([str(good), str(twin)], "spec files {d}/good.json and {d}/twin.json both define group"),
        (
            [str(foreign)],
            "spec file {d}/foreign.json: Failed to find Instance plugin 'instance-aws'",
        ),
    ]
    for paths, message in cases:
        with pytest.raises(errors.SpecError) as caught:
            stack.read_up_specs(paths)
        assert str(caught.value).startswith(message.format(d=tmp_path)), str(caught.value)
        assert "\n" not in str(caught.value)
    assert not (infrakit_home / "plugins").exists()


def test_up_reads_yaml_templates_with_vars_and_lists_every_problem(
    tmp_path: Path, infrakit_home: Path
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(
        "Vars: {size: 2}\nID: web-{{ region }}\nProperties:\n  Allocation: {Size: {{ size }}}\n"
        "  Instance: {Plugin: instance-file}\n  Flavor: {Plugin: flavor-vanilla}\n"
    )
    (up,) = stack.read_up_specs([str(spec)], {"region": "eu", "size": "3"})
    assert up.document == {
        "ID": "web-eu",
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "instance-file"},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "ID: bad\nProperties:\n  Allocation: {Size: '5'}\n  Instance: {Plugin: instance-file}\n"
        "  Flavor: {}\n"
    )
    with pytest.raises(errors.SpecError) as caught:
        stack.read_up_specs([str(bad)])
    assert str(caught.value) == (
        f"spec file {bad}: Invalid properties: Properties.Allocation.Size: Input should be a "
        f"valid integer, got '5'; fix the spec and commit again (at {bad}:3:16; and 1 more: 2. "
        f"{bad}:5:3: Properties.Flavor.Plugin: expected the name of the flavor plugin, found "
        "nothing; name it, e.g. flavor-vanilla)"
    )
    with pytest.raises(errors.SpecError, match=r"web.yaml:2: undefined variable 'region'"):
        stack.read_up_specs([str(spec)])


# --- committing ---------------------------------------------------------------------------------


class RecordingGroup:
    """A group plugin that records commits; ``refuse`` maps an ID to the error its dry run gets,
    ``elect`` is how many commits answer "no leader" before one is accepted."""

    def __init__(self, refuse: dict[str, Exception] | None = None, elect: int = 0) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.refuse = refuse or {}
        self.elect = elect

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str:
        if self.elect:
            self.elect -= 1
            raise errors.NotLeaderError("no leader yet")
        if pretend and spec.id in self.refuse:
            raise self.refuse[spec.id]
        self.calls.append((spec.id, pretend))
        return f"{'would manage' if pretend else 'Managing'} {spec.id}"


def up_specs(tmp_path: Path, *ids: str) -> list[stack.UpSpec]:
    return stack.read_up_specs([str(spec_file(tmp_path, f"{i}.json", ID=i)) for i in ids])


async def test_every_spec_is_dry_run_before_the_first_is_committed(tmp_path: Path) -> None:
    group = RecordingGroup()
    committed: list[tuple[str, str]] = []
    await stack.commit_specs(group, up_specs(tmp_path, "a", "b"), lambda *c: committed.append(c))
    assert group.calls == [("a", True), ("b", True), ("a", False), ("b", False)]
    assert committed == [("a", "Managing a"), ("b", "Managing b")]


async def test_a_spec_a_plugin_refuses_stops_before_anything_is_committed(tmp_path: Path) -> None:
    group = RecordingGroup(refuse={"b": errors.SpecError("flavor says no")})
    with pytest.raises(errors.SpecError, match=r"^spec file .*/b.json: flavor says no$"):
        await stack.commit_specs(group, up_specs(tmp_path, "a", "b"))
    assert group.calls == [("a", True)]


async def test_commits_wait_for_the_election_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = RecordingGroup(elect=3)
    await stack.commit_specs(group, up_specs(tmp_path, "a"))
    assert group.calls == [("a", True), ("a", False)]
    monkeypatch.setattr(stack, "UP_LEADER_WAIT", 0.0)
    with pytest.raises(errors.SpecError, match=r"^spec file .*/a.json: no leader yet$"):
        await stack.commit_specs(RecordingGroup(elect=1_000_000), up_specs(tmp_path, "a"))


# --- serving ------------------------------------------------------------------------------------


async def test_serve_builds_serves_commits_and_stops(plugin_dir: Path, tmp_path: Path) -> None:
    instances = tmp_path / "instances"
    starts = stack.plan(
        ["file", "vanilla", "group"],
        {"file": {"dir": str(instances)}, "group": {"store": "memory"}},
    )
    host = PluginHost(plugin_dir, home=tmp_path)
    committed: list[tuple[str, str]] = []
    serving = asyncio.create_task(
        stack.serve(
            starts,
            commit=up_specs(tmp_path, "cattle"),
            on_commit=lambda *c: committed.append(c),
            host=host,
        )
    )
    for _ in range(500):
        if len(list(instances.glob("instance-*"))) == 5:
            break
        assert not serving.done(), serving
        await asyncio.sleep(0.02)
    assert len(list(instances.glob("instance-*"))) == 5
    assert committed == [("cattle", "Managing 5 instances")]
    assert sorted(e.name for e in discovery.list_plugins(plugin_dir)) == [
        "flavor-vanilla",
        "group",
        "instance-file",
    ]
    await host.stop_all()
    await asyncio.wait_for(serving, 10)
    assert discovery.list_plugins(plugin_dir) == []


async def test_a_plugin_that_fails_to_build_leaves_no_socket(
    plugin_dir: Path, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    starts = stack.plan(["vanilla", "file"], {"file": {"dir": str(taken)}})
    host = PluginHost(plugin_dir, home=tmp_path)
    with pytest.raises(errors.SpecError, match=f"instance directory {taken} is a file"):
        await stack.serve(starts, host=host)
    assert host.running == {}
    assert list(plugin_dir.iterdir()) == []


# --- stopping -----------------------------------------------------------------------------------


def entry(plugin_dir: Path, name: str) -> discovery.Entry:
    return discovery.Entry(name, str(plugin_dir / name), plugin_dir / name)


def test_stop_plugins_stops_live_ones_over_their_socket(infrakit_home: Path) -> None:
    """As `infrakit plugin stop` does: the plugins run in another process (`plugin start`)."""
    plugin_dir = infrakit_home / "plugins"
    argv = ["infrakit", "plugin", "start", "vanilla", "combo"]
    sockets = ["flavor-vanilla", "flavor-combo"]
    with Daemon(argv, isolated_env(infrakit_home), sockets=sockets) as daemon:
        outcomes = list(stack.stop_plugins(["flavor-combo"], timeout=10))
        assert outcomes == [stack.Stopped("flavor-combo")]
        assert not discovery.probe(entry(plugin_dir, "flavor-combo"))  # it no longer listens
        assert discovery.probe(entry(plugin_dir, "flavor-vanilla"))  # the other one still does
        # The stopped plugin removes its socket file itself, right after it stops listening.
        wait_for(lambda: not (plugin_dir / "flavor-combo").exists(), what="its socket removed")
        assert list(stack.stop_plugins(None, timeout=10)) == [stack.Stopped("flavor-vanilla")]
        assert daemon.wait(timeout=10) == 0  # every plugin stopped: the process ends
    assert discovery.list_plugins(plugin_dir) == []


def test_stop_plugins_refuses_unknown_names_before_stopping_any(
    plugin_dir: Path, infrakit_home: Path
) -> None:
    with ThreadedHost(plugin_dir, infrakit_home) as threaded:
        threaded.start_kind("vanilla", "flavor-vanilla")
        with pytest.raises(
            errors.NotFoundError, match=f"^no plugin named nope in {plugin_dir}; see"
        ):
            list(stack.stop_plugins(["flavor-vanilla", "nope"], timeout=10))
        assert [e.name for e in discovery.list_plugins(plugin_dir)] == ["flavor-vanilla"]


def test_a_stale_socket_is_removed(plugin_dir: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(plugin_dir / "gone"))
    dead.close()  # the file stays, nobody listens
    (plugin_dir / "gone.listen").write_text("tcp://127.0.0.1:1\n")
    assert list(stack.stop_plugins(["gone"], timeout=1)) == [
        stack.Stopped("gone", ("socket", ".listen file"), stale=True)
    ]
    assert list(plugin_dir.iterdir()) == []


LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen()
print("up", flush=True)
while True:
    conn, _ = s.accept(); conn.close()  # not infrakit: hangs up on every request
"""


def test_a_foreign_plugin_gets_sigterm_from_its_pid_file_or_a_clear_error(plugin_dir: Path) -> None:
    path = plugin_dir / "foreign"
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        entry = discovery.Entry("foreign", str(path), path)
        why = stack.stop_plugin(entry, timeout=1)
        assert why == (
            "not an infrakit plugin (it did not accept POST /_infrakit/stop) and no foreign.pid "
            "file; stop its process yourself"
        )
        assert proc.poll() is None
        (plugin_dir / "foreign.pid").write_text(f"{proc.pid}\n")
        assert stack.stop_plugin(entry, timeout=10) is None
        assert proc.wait(10) == -15
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_plugin_that_ignores_sigterm_is_reported_after_the_timeout(plugin_dir: Path) -> None:
    path = plugin_dir / "stubborn"
    code = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + LISTENER
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        (plugin_dir / "stubborn.pid").write_text(str(proc.pid))
        why = stack.stop_plugin(discovery.Entry("stubborn", str(path), path), timeout=0.3)
        assert why == (
            f"sent SIGTERM to pid {proc.pid} from stubborn.pid, but it still listens after 0.3s; "
            "check its log or stop its process"
        )
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert os.path.exists(path)
