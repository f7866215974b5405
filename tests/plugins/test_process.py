"""The process instance plugin, driven over its real UNIX socket like the group controller drives it.

Every process these tests start is a child of the test process (the plugin runs in-process); the
autouse fixture checks that the plugin reaped what exited, then kills and reaps whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from infrakit import errors
from infrakit.plugins.process import KIND, ProcessInstancePlugin
from infrakit.plugins.process.plugin import INSTANCE_ID_ENV
from infrakit.spi.event import Event
from infrakit.spi.instance import Context, Spec
from infrakit.spi.plugin import Context as BuildContext
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import wait_until
from infrakit.testing.harness import Harness

SLEEP = {"Command": ["sleep", "1000"]}
#: A single process that ignores SIGTERM (says "ready" once it does).
STUBBORN = {
    "Command": [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(1000)",
    ]
}


def _kill_group_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail a test whose plugin left an exited instance unreaped; kill and reap every instance."""
    yield
    zombies: list[int] = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
                continue
            instance = INSTANCE_ID_ENV in child.environ()
        except psutil.Error:
            continue
        if instance:
            _kill_group_and_reap(child.pid)
    for pid in zombies:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    assert zombies == [], f"exited processes left unreaped: {zombies}"


@pytest.fixture
def state_dir(infrakit_home: Path) -> Path:
    return infrakit_home / "processes"


@pytest.fixture
async def served(state_dir: Path) -> AsyncIterator[tuple[ProcessInstancePlugin, Harness]]:
    plugin = ProcessInstancePlugin(state_dir, grace=5.0)
    async with serve_plugin(plugin, "instance-process") as harness:
        yield plugin, harness


async def _next_event(events: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(anext(events), timeout)


async def _pid(h: Harness, instance_id: str) -> int:
    [found] = [d for d in await h.instance.describe_instances({}, True) if d.id == instance_id]
    return int(found.properties["Pid"])


def _gone(pid: int) -> bool:
    """Neither running nor left as a zombie."""
    return not psutil.pid_exists(pid)


def _log(state_dir: Path, instance_id: str) -> str:
    path = state_dir / f"{instance_id}.log"
    return path.read_text() if path.exists() else ""


async def test_provision_runs_init_then_the_command_in_its_own_session(
    served, state_dir: Path, tmp_path: Path
) -> None:
    _plugin, h = served
    spec = Spec(
        properties={
            "Command": ["sh", "-c", 'cat marker && echo "cmd $GREETING $PWD" && exec sleep 1000'],
            "Dir": str(tmp_path),
            "Env": {"GREETING": "hello"},
        },
        tags={"infrakit.group": "workers", "tier": "web"},
        init="echo from-init > marker",
        logical_id="w1",
    )
    iid = await h.instance.provision(spec)
    assert iid is not None and iid.startswith("process-")
    await wait_until(lambda: "cmd hello" in _log(state_dir, iid))
    # Init ran first, in Dir, and its effect was visible to the command; both write to the log.
    assert _log(state_dir, iid).splitlines() == ["from-init", f"cmd hello {tmp_path}"]

    pid = await _pid(h, iid)
    process = psutil.Process(pid)
    await wait_until(lambda: process.cmdline() == ["sleep", "1000"])  # sh exec'd the command
    assert os.getsid(pid) == pid  # its own session: it survives the plugin
    assert process.environ()[INSTANCE_ID_ENV] == iid
    assert process.environ()["INFRAKIT_LOGICAL_ID"] == "w1"

    record = json.loads((state_dir / f"{iid}.json").read_text())
    assert record["ID"] == iid and record["LogicalID"] == "w1"
    assert record["Tags"] == {"infrakit.group": "workers", "tier": "web"}
    assert record["Spec"]["Properties"] == spec.properties
    assert record["Spec"]["Init"] == "echo from-init > marker"
    assert record["Pid"] == pid
    assert abs(record["StartTime"] - process.create_time()) < 0.01
    # Records are written atomically: no temporary file is left behind.
    assert sorted(os.listdir(state_dir)) == [f"{iid}.json", f"{iid}.log"]


async def test_describe_filters_by_tags_and_returns_spec_and_pid_on_request(served) -> None:
    _plugin, h = served
    web = await h.instance.provision(Spec(properties=SLEEP, tags={"tier": "web", "g": "a"}))
    db = await h.instance.provision(Spec(properties=SLEEP, tags={"tier": "db", "g": "a"}))
    assert {d.id for d in await h.instance.describe_instances({"g": "a"})} == {web, db}
    only_web = await h.instance.describe_instances({"g": "a", "tier": "web"})
    assert [d.id for d in only_web] == [web]
    assert only_web[0].tags == {"tier": "web", "g": "a"}
    assert only_web[0].properties is None
    # InfraKit's rule: a wanted "" also matches a missing tag.
    assert {d.id for d in await h.instance.describe_instances({"missing": ""})} == {web, db}
    assert await h.instance.describe_instances({"missing": "x"}) == []
    [with_props] = await h.instance.describe_instances({"tier": "db"}, properties=True)
    assert with_props.properties["Properties"] == SLEEP
    child = psutil.Process(with_props.properties["Pid"])
    # A loaded machine may not have exec'd the child yet.
    await wait_until(lambda: child.cmdline() == ["sleep", "1000"], timeout=10)


async def test_label_merges_tags_into_the_record_and_is_published(served, state_dir) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(properties=SLEEP, tags={"a": "1", "b": "2"}))
    events = h.instance.subscribe("instance/")
    try:
        assert (await _next_event(events)).type == "subscribed"
        await h.instance.label(iid, {"b": "3", "c": "4"})
        event = await _next_event(events)
        assert (event.type, event.id) == ("changed", iid)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    record = json.loads((state_dir / f"{iid}.json").read_text())
    assert record["Tags"] == {"a": "1", "b": "3", "c": "4"}
    assert record["Spec"]["Tags"] == {"a": "1", "b": "2"}
    [found] = await h.instance.describe_instances({"c": "4"})
    assert found.id == iid
    with pytest.raises(errors.NotFoundError, match="process-1 not found"):
        await h.instance.label("process-1", {"a": "b"})


async def test_destroy_terminates_the_process_and_removes_its_files(served, state_dir) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(properties=SLEEP, tags={"a": "1"}))
    pid = await _pid(h, iid)
    await h.instance.destroy(iid, Context("terminate"))
    assert _gone(pid)  # terminated and reaped before Destroy returned
    assert os.listdir(state_dir) == []
    assert await h.instance.describe_instances({}) == []
    with pytest.raises(errors.NotFoundError, match=f"instance {iid} not found"):
        await h.instance.destroy(iid, Context("terminate"))
    with pytest.raises(errors.NotFoundError, match="infrakit instance describe"):
        await h.instance.destroy("process-42", Context())


async def test_destroy_kills_a_process_that_ignores_sigterm_after_the_grace(state_dir) -> None:
    plugin = ProcessInstancePlugin(state_dir, grace=0.2)
    async with serve_plugin(plugin, "instance-process") as h:
        iid = await h.instance.provision(Spec(properties=STUBBORN))
        await wait_until(lambda: "ready" in _log(state_dir, iid))
        pid = await _pid(h, iid)
        await h.instance.destroy(iid, Context("terminate"))
        assert _gone(pid)
        assert os.listdir(state_dir) == []


async def test_an_exit_is_published_and_the_instance_disappears(served, state_dir) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(properties=SLEEP, tags={"a": "1"}))
    keep = await h.instance.provision(Spec(properties=SLEEP, tags={"a": "1"}))
    pid = await _pid(h, iid)
    events = h.instance.subscribe("instance/")
    try:
        assert (await _next_event(events)).type == "subscribed"
        os.kill(pid, signal.SIGKILL)  # someone else kills it
        event = await _next_event(events)
        assert (event.topic, event.type, event.id) == ("instance/change", "deleted", iid)
        assert event.data == {"Pid": pid, "Status": -signal.SIGKILL}
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [d.id for d in await h.instance.describe_instances({"a": "1"})] == [keep]
    assert _gone(pid)  # reaped by the plugin, no zombie
    assert not (state_dir / f"{iid}.json").exists()
    assert (state_dir / f"{iid}.log").exists()  # kept for a post-mortem
    with pytest.raises(errors.NotFoundError):
        await h.instance.destroy(iid, Context("terminate"))


@pytest.mark.parametrize(
    ("properties", "field", "expected"),
    [
        (None, "Properties", "expected an object with a Command"),
        (["sleep", "1"], "Properties", "expected an object with a Command"),
        ({}, "Properties.Command", "expected a non-empty array of strings"),
        ({"Command": "sleep 1000"}, "Properties.Command", "write the command as a list"),
        ({"Command": []}, "Properties.Command", "expected a non-empty array of strings"),
        ({"Command": ["sleep", 1000]}, "Properties.Command", "expected a non-empty array"),
        ({"Command": ["no-such-program-ik"]}, "Properties.Command", "not found on PATH"),
        ({"Command": ["/tmp"]}, "Properties.Command", "not an executable file"),
        ({"Command": ["./run.sh"]}, "Properties.Command", "relative paths start from Dir"),
        ({"Command": ["sleep"], "Dir": "/no/such/dir"}, "Properties.Dir", "existing directory"),
        ({"Command": ["sleep"], "Dir": "relative"}, "Properties.Dir", "absolute path"),
        ({"Command": ["sleep"], "Dir": 7}, "Properties.Dir", "absolute directory path"),
        ({"Command": ["sleep"], "Env": {"N": 1}}, "Properties.Env", "quote numbers"),
        ({"Command": ["sleep"], "Env": ["A=1"]}, "Properties.Env", "string values"),
        ({"Command": ["sleep"], "Comand": ["x"]}, "Properties.Comand", "unknown field"),
        (
            {"Command": ["sleep"], "Env": {"PATH": "/nowhere"}},
            "Properties.Command",
            "set PATH in Env",
        ),
    ],
)
async def test_bad_properties_are_refused_with_one_line_and_nothing_is_created(
    served, state_dir: Path, properties, field: str, expected: str
) -> None:
    _plugin, h = served
    for attempt in (
        h.instance.validate(properties),
        h.instance.provision(Spec(properties=properties, tags={"a": "1"})),
    ):
        with pytest.raises(errors.SpecError) as caught:
            await attempt
        message = str(caught.value)
        assert message.startswith(f"process instance {field}:"), message
        assert expected in message
        assert "\n" not in message
    assert await h.instance.describe_instances({}) == []
    assert os.listdir(state_dir) == []


async def test_commands_are_found_relative_to_dir_and_on_envs_path(served, tmp_path: Path) -> None:
    _plugin, h = served
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexec sleep 1000\n")
    script.chmod(0o755)
    await h.instance.validate({"Command": ["./run.sh"], "Dir": str(tmp_path)})
    await h.instance.validate({"Command": ["run.sh"], "Env": {"PATH": str(tmp_path)}})
    data = tmp_path / "data.txt"
    data.write_text("not a program")
    with pytest.raises(errors.SpecError, match=r"data\.txt is not an executable file"):
        await h.instance.validate({"Command": [str(data)]})
    for properties in ({"Command": [str(script)]}, {"Command": ["./run.sh"], "Dir": str(tmp_path)}):
        iid = await h.instance.provision(Spec(properties=properties))
        process = psutil.Process(await _pid(h, iid))
        await wait_until(lambda p=process: p.cmdline() == ["sleep", "1000"])  # exec by run.sh


async def test_a_failing_init_fails_provision_and_leaves_nothing(served, state_dir: Path) -> None:
    _plugin, h = served
    with pytest.raises(errors.PluginError) as caught:
        await h.instance.provision(
            Spec(properties=SLEEP, init="echo preparing; echo disk full >&2; exit 3")
        )
    message = str(caught.value)
    assert "Init exited with status 3 (disk full)" in message
    assert "fix Init" in message
    assert await h.instance.describe_instances({}) == []
    assert os.listdir(state_dir) == []


async def test_a_restarted_plugin_re_adopts_running_processes(state_dir: Path) -> None:
    first = ProcessInstancePlugin(state_dir, grace=5.0)
    async with serve_plugin(first, "instance-process") as h:
        one = await h.instance.provision(Spec(properties=SLEEP, tags={"g": "a"}, logical_id="L1"))
        two = await h.instance.provision(Spec(properties=SLEEP, tags={"g": "a"}))
        await h.instance.label(two, {"labelled": "yes"})
        pids = {one: await _pid(h, one), two: await _pid(h, two)}
    # The plugin is gone; its processes are not.
    assert all(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids.values())

    second = ProcessInstancePlugin(state_dir, grace=5.0)
    async with serve_plugin(second, "instance-process") as h:
        found = {d.id: d for d in await h.instance.describe_instances({"g": "a"}, True)}
        assert set(found) == {one, two}
        assert found[one].logical_id == "L1"
        assert found[two].tags == {"g": "a", "labelled": "yes"}
        assert {iid: d.properties["Pid"] for iid, d in found.items()} == pids

        # Adopted processes are watched too: an exit is published at once.
        events = h.instance.subscribe("instance/")
        try:
            assert (await _next_event(events)).type == "subscribed"
            os.kill(pids[one], signal.SIGKILL)
            event = await _next_event(events)
            assert (event.type, event.id) == ("deleted", one)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        assert _gone(pids[one])
        # ... and destroyed like our own.
        await h.instance.destroy(two, Context("terminate"))
        assert _gone(pids[two])
        assert os.listdir(state_dir) == [f"{one}.log"]


async def test_records_of_dead_or_reused_pids_are_dropped_and_those_pids_left_alone(
    state_dir: Path,
) -> None:
    state_dir.mkdir(parents=True)
    # A process that merely has the recorded pid now (another start time): a reused pid.
    bystander = subprocess.Popen(["sleep", "1000"])
    # A process that exited and was never reaped: a zombie is not a running instance.
    zombie = subprocess.Popen(["true"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        await wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE)
        records = {
            "process-1": (bystander.pid, psutil.Process(bystander.pid).create_time() - 1000),
            "process-2": (zombie.pid, psutil.Process(zombie.pid).create_time()),
            "process-3": (dead.pid, 1.0),
        }
        for iid, (pid, start) in records.items():
            (state_dir / f"{iid}.json").write_text(
                json.dumps({"ID": iid, "Tags": {}, "Spec": None, "Pid": pid, "StartTime": start})
            )
        (state_dir / "notes.json").write_text('{"not": "a record"}')
        plugin = ProcessInstancePlugin(state_dir)
        async with serve_plugin(plugin, "instance-process") as h:
            assert await h.instance.describe_instances({}) == []
            with pytest.raises(errors.NotFoundError):
                await h.instance.destroy("process-1", Context("terminate"))
        assert sorted(os.listdir(state_dir)) == ["notes.json"]
        assert bystander.poll() is None  # never signalled
        assert _gone(zombie.pid)  # our own zombie was reaped on the way
    finally:
        bystander.kill()
        bystander.wait()
        zombie.wait()


async def test_without_pidfds_exits_are_polled_for_own_and_adopted_processes(
    state_dir: Path,
) -> None:
    first = ProcessInstancePlugin(state_dir, poll_interval=0.02, use_pidfd=False)
    async with serve_plugin(first, "instance-process") as h:
        adopted = await h.instance.provision(Spec(properties=SLEEP))
        adopted_pid = await _pid(h, adopted)
    second = ProcessInstancePlugin(state_dir, grace=5.0, poll_interval=0.02, use_pidfd=False)
    async with serve_plugin(second, "instance-process") as h:
        own = await h.instance.provision(Spec(properties=SLEEP))
        own_pid = await _pid(h, own)
        events = h.instance.subscribe("instance/")
        try:
            assert (await _next_event(events)).type == "subscribed"
            for iid, pid in ((own, own_pid), (adopted, adopted_pid)):
                os.kill(pid, signal.SIGKILL)
                event = await _next_event(events)
                assert (event.type, event.id) == ("deleted", iid)
                assert _gone(pid)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        assert await h.instance.describe_instances({}) == []


def _build_context(home: Path, **options: str) -> BuildContext:
    def no_lookup(name: str):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the process plugin looked up {name}")

    return BuildContext(
        name="instance-process",
        options=dict(options),
        home=home,
        instance_lookup=no_lookup,
        flavor_lookup=no_lookup,
        group_lookup=no_lookup,
    )


def test_kind_options_choose_directory_and_grace(infrakit_home: Path, monkeypatch) -> None:
    served = KIND.build(_build_context(infrakit_home))
    plugin = served.instance[""]
    assert isinstance(plugin, ProcessInstancePlugin)
    assert plugin.directory == infrakit_home / "processes"
    assert plugin.grace == 10.0
    assert served.events is plugin
    assert plugin.info()["example"]["Command"] == ["sleep", "1000"]

    monkeypatch.setenv("INFRAKIT_INSTANCE_PROCESS_DIR", str(infrakit_home / "elsewhere"))
    plugin = KIND.build(_build_context(infrakit_home, grace="1m30s")).instance[""]
    assert plugin.directory == infrakit_home / "elsewhere"
    assert plugin.grace == 90.0


def test_bad_kind_options_are_refused(infrakit_home: Path) -> None:
    with pytest.raises(
        errors.SpecError,
        match=r"process option grace: got 'soon', expected a Go duration.*, e.g. 10s",
    ):
        KIND.build(_build_context(infrakit_home, grace="soon"))
    taken = infrakit_home / "taken"
    taken.write_text("")
    with pytest.raises(errors.SpecError, match="is a file, expected a directory"):
        KIND.build(_build_context(infrakit_home, dir=str(taken)))


# --- process.allow ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executable", "patterns", "expected"),
    [
        ("/usr/bin/sleep", ("/usr/bin/*",), True),
        ("/usr/bin/sleep", ("/usr/bin/sleep",), True),
        ("/usr/bin/sub/tool", ("/usr/bin/*",), False),  # `*` stays in one directory
        ("/usr/bin/sub/tool", ("/usr/bin/*/*",), True),
        ("/usr/bin/sleep", ("/opt/app/bin/*", "/usr/bin/s*"), True),
        ("/usr/bin/sleep", ("/opt/app/bin/*",), False),
        ("/usr/bin/sleepy", ("/usr/bin/sleep",), False),
    ],
)
def test_which_executables_an_allow_list_permits(
    executable: str, patterns: tuple[str, ...], expected: bool
) -> None:
    from infrakit.plugins.process.plugin import allowed

    assert allowed(executable, patterns) is expected


def test_allow_option_parsing(infrakit_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = KIND.build(_build_context(infrakit_home, allow="/usr/bin/*, /opt/x")).instance[""]
    assert isinstance(plugin, ProcessInstancePlugin)
    assert plugin.allow == ("/usr/bin/*", "/opt/x")
    assert KIND.build(_build_context(infrakit_home)).instance[""].allow is None  # type: ignore[attr-defined]
    monkeypatch.setenv("INFRAKIT_PROCESS_ALLOW", "/bin/*")
    assert KIND.build(_build_context(infrakit_home)).instance[""].allow == ("/bin/*",)  # type: ignore[attr-defined]
    for bad in ("sleep", "/usr/bin/*,bin/*", " , "):
        with pytest.raises(errors.SpecError, match="process option allow: "):
            KIND.build(_build_context(infrakit_home, allow=bad))


async def test_a_command_or_init_outside_the_allow_list_is_refused(state_dir: Path) -> None:
    sleep = os.path.realpath(str(shutil.which("sleep")))
    plugin = ProcessInstancePlugin(state_dir, allow=(sleep,))
    async with serve_plugin(plugin, "instance-process") as h:
        await h.instance.validate(SLEEP)  # resolved from PATH, allowed
        with pytest.raises(errors.SpecError) as caught:
            await h.instance.validate({"Command": ["true"]})
        true = os.path.realpath(str(shutil.which("true")))
        assert str(caught.value).startswith(
            f"process instance Properties.Command: {true} (resolved from true) is not allowed "
            f"by -o process.allow={sleep}; "
        )
        # Init runs /bin/sh, which the list does not allow: refused before anything starts.
        with pytest.raises(
            errors.SpecError, match=r"the flavor's Init \(sh -c\): .* process.allow"
        ):
            await h.instance.provision(Spec(properties=SLEEP, init="echo hi"))
        assert await h.instance.describe_instances({}) == []
        assert list(state_dir.iterdir()) == []
        iid = await h.instance.provision(Spec(properties=SLEEP))
        await h.instance.destroy(iid, Context("terminate"))


async def test_port_auto_gives_each_instance_its_own_port_and_address(served) -> None:
    _plugin, h = served
    serve = [
        sys.executable,
        "-c",
        "import os, socket; s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT'])));"
        " s.listen()\nwhile True: s.accept()[0].close()",
    ]
    ids = [
        await h.instance.provision(Spec({"Command": serve, "Port": "auto"}, tags={"g": "web"}))
        for _ in range(2)
    ]
    found = {d.id: d for d in await h.instance.describe_instances({"g": "web"}, True)}
    addresses = {found[i].tags["infrakit.address"] for i in ids if i}
    assert len(addresses) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
    for iid in ids:
        assert iid is not None
        pid = int(found[iid].properties["Pid"])
        port = psutil.Process(pid).environ()["PORT"]
        assert found[iid].tags["infrakit.address"] == f"127.0.0.1:{port}"
        # The process got the port: it listens there.
        await wait_until(lambda p=int(port): _listening(p), timeout=10)
    with pytest.raises(errors.SpecError, match=r'Properties\.Port: expected "auto"'):
        await h.instance.validate({"Command": ["sleep", "1"], "Port": 8080})


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
