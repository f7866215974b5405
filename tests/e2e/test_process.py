"""The process plugin as a user runs it: `infrakit plugin start group process vanilla`, a group of
3 local processes that heals when one is killed, rolls to new Properties, and is destroyed."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import E2E, EXAMPLES, running, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: So long that only the plugin's exit events can explain a heal within the test's time.
NO_POLL = "1h"


def processes(e2e: E2E) -> dict[str, dict[str, Any]]:
    """Instance ID -> described instance (with Properties and Pid) of instance-process."""
    out = e2e.run("instance", "--name", "instance-process", "describe", "-p", "-o", "json").stdout
    return {d["ID"]: d for d in json.loads(out)}


def pids(found: dict[str, dict[str, Any]]) -> set[int]:
    return {d["Properties"]["Pid"] for d in found.values()}


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make this test process the reaper of orphaned descendants for the test's duration.

    Processes that outlive the plugin daemon that started them are orphans; PID 1 here does not
    reap them, so the test adopts them as a real init would, and reaps them at the end.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(child.pid, 0)


def start_stack(e2e: E2E, state_dir: Path) -> None:
    e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "process",
        "vanilla",
        "-o",
        f"group.poll-interval={NO_POLL}",
        "-o",
        "group.store=memory",
        "-o",
        "process.grace=2s",
        sockets=["group", "instance-process", "flavor-vanilla"],
        INFRAKIT_INSTANCE_PROCESS_DIR=str(state_dir),
    )


def test_a_group_of_processes_heals_rolls_and_is_destroyed(e2e: E2E, state_dir: Path) -> None:
    start_stack(e2e, state_dir)
    info = json.loads(
        e2e.run("instance", "--name", "instance-process", "info", "-o", "json").stdout
    )
    assert info["Vendor"]["Name"] == "infrakit-instance-process"

    out = e2e.run("group", "commit", str(EXAMPLES / "process.json")).stdout
    assert out == "Committed workers: Managing 3 instances\n"
    first = wait_for(lambda: (f := processes(e2e)) and len(f) == 3 and f, what="3 processes")
    for iid, described in first.items():
        assert described["Tags"]["infrakit.group"] == "workers"
        process = psutil.Process(described["Properties"]["Pid"])
        assert process.cmdline() == ["sleep", "1000"]
        assert process.cwd() == "/tmp"
        # The flavor's Init ran first, with the instance's Env and identity.
        assert (state_dir / f"{iid}.log").read_text() == f"hello from {iid}\n"

    # Killed behind infrakit's back: with a one-hour poll, only the exit event explains a heal.
    victim = sorted(pids(first))[0]
    os.kill(victim, signal.SIGKILL)
    healed = wait_for(
        lambda: (f := processes(e2e)) and len(f) == 3 and victim not in pids(f) and f,
        what="a replacement for the killed process",
    )
    assert len(pids(first) & pids(healed)) == 2
    wait_for(lambda: not psutil.pid_exists(victim), what="the killed process reaped")

    # New Properties: a rolling update replaces every process.
    spec = json.loads((EXAMPLES / "process.json").read_text())
    spec["Properties"]["Instance"]["Properties"]["Command"] = ["sleep", "1001"]
    changed = e2e.home / "process-1001.json"
    changed.write_text(json.dumps(spec))
    e2e.run("group", "commit", str(changed))

    def rolled() -> dict[str, dict[str, Any]] | None:
        found = processes(e2e)
        hashes = {d["Tags"]["infrakit.config.hash"] for d in found.values()}
        commands = {tuple(d["Properties"]["Properties"]["Command"]) for d in found.values()}
        ok = len(found) == 3 and len(hashes) == 1 and commands == {("sleep", "1001")}
        return found if ok else None

    new = wait_for(rolled, timeout=60, what="3 processes at the new config hash")
    assert not pids(new) & pids(healed)
    assert all(psutil.Process(p).cmdline() == ["sleep", "1001"] for p in pids(new))
    wait_for(lambda: not any(running(p) for p in pids(healed)), what="old processes gone")

    assert e2e.run("group", "destroy", "workers").stdout == "Destroy workers initiated\n"
    wait_for(lambda: not processes(e2e), what="no instance left")
    wait_for(
        lambda: not any(psutil.pid_exists(p) for p in pids(first) | pids(healed) | pids(new)),
        what="every process of the group gone and reaped",
    )
    assert list(state_dir.glob("*.json")) == []


def test_processes_survive_a_plugin_restart_and_are_re_adopted(
    e2e: E2E, subreaper: None, state_dir: Path
) -> None:
    start_stack(e2e, state_dir)
    e2e.run("group", "commit", str(EXAMPLES / "process.json"))
    first = wait_for(lambda: (f := processes(e2e)) and len(f) == 3 and f, what="3 processes")

    e2e.daemons[0].stop()  # SIGTERM: the plugins stop, their processes do not
    assert all(running(p) for p in pids(first))

    start_stack(e2e, state_dir)
    e2e.run("group", "commit", str(EXAMPLES / "process.json"))
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "workers").stdout, what="re-adopted"
    )
    assert set(processes(e2e)) == set(first)  # adopted, none created

    # The adopted processes are no longer children of the plugin; it still sees them exit.
    victim = sorted(pids(first))[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (f := processes(e2e)) and len(f) == 3 and victim not in pids(f),
        what="a replacement for the killed adopted process",
    )
    e2e.run("group", "destroy", "workers")
    wait_for(lambda: not processes(e2e), what="no instance left")
    wait_for(lambda: not any(running(p) for p in pids(first)), what="the adopted processes gone")


def test_a_command_that_does_not_exist_is_refused_at_commit(e2e: E2E, state_dir: Path) -> None:
    start_stack(e2e, state_dir)
    doc = json.loads((EXAMPLES / "process.json").read_text())
    doc["Properties"]["Instance"]["Properties"]["Command"] = ["no-such-program-ik", "--serve"]
    bad = e2e.home / "bad-process.json"
    bad.write_text(json.dumps(doc))
    err = e2e.fails("group", "commit", str(bad))
    assert "no-such-program-ik" in err
    assert e2e.run("group", "ls", "-q").stdout == ""  # nothing committed
    assert processes(e2e) == {}  # nothing started


def test_a_site_allow_list_refuses_a_commit_with_one_line(e2e: E2E, state_dir: Path) -> None:
    e2e.start(
        "infrakit", "plugin", "start", "group", "process", "vanilla",
        "-o", "group.store=memory", "-o", "process.allow=/opt/app/bin/*",
        sockets=["group", "instance-process", "flavor-vanilla"],
        INFRAKIT_INSTANCE_PROCESS_DIR=str(state_dir),
    )  # fmt: skip
    err = e2e.fails("group", "commit", str(EXAMPLES / "process.json"))
    assert "Properties.Command: " in err and "(resolved from sleep) is not allowed" in err
    assert "-o process.allow=/opt/app/bin/*" in err
    assert e2e.run("group", "ls", "-q").stdout == ""
    assert not state_dir.exists() or list(state_dir.iterdir()) == []
