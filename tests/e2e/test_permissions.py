"""Under ``umask 000``, everything infrakit creates is still 0700 (directories) or 0600 (files,
sockets): ``infrakit up`` with TCP listeners (home and its missing parents, plugin directory,
sockets, ``.listen`` files, store, leader lock and record, member files, instance files) and the
process plugin (state directory, records, logs)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, free_port, isolated_env, run_cli
from tests.e2e.conftest import EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir("perm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def loose(root: Path) -> list[str]:
    """Everything under ``root`` (and ``root``) whose mode is not 0700 (dirs) / 0600 (others)."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a temporary file renamed meanwhile: its result is listed
            continue
        wanted = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) != wanted:
            found.append(f"{path} {stat.S_IMODE(mode):04o}")
    return found


def token_file(base: Path) -> Path:
    path = base / "token"
    path.write_text("s3cret\n")
    path.chmod(0o600)
    return path


def test_up_under_umask_000_creates_everything_private(base: Path) -> None:
    created = base / "made-by-infrakit"  # does not exist: infrakit creates it and home inside
    home = created / "home"
    env = isolated_env(home)
    sockets = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
    argv = [
        "infrakit", "up", str(EXAMPLES / "cattle.json"),
        "--listen", f"127.0.0.1:{free_port()}", "--token-file", str(token_file(base)),
        "--listen-tcp", "127.0.0.1",
    ]  # fmt: skip
    with Daemon(argv, env, sockets=sockets, log=base / "up.log", umask=0) as up:
        instances = home / "instances"
        wait_for(
            lambda: instances.is_dir() and len(list(instances.glob("instance-*"))) == 5,
            what="5 instances",
        )
        names = {p.relative_to(home).as_posix() for p in home.rglob("*")}
        for expected in (
            "plugins/group", "plugins/group.listen", "plugins/instance-file.listen",
            "store.json.journal", "leader.lock", "leader.lock.json", "leader.lock.members",
        ):  # fmt: skip
            assert expected in names, (expected, sorted(names), up.output())
        assert loose(created) == []


def test_the_process_plugin_under_umask_000_keeps_records_and_logs_private(base: Path) -> None:
    home = base / "home"
    state = base / "made-by-infrakit" / "processes"
    env = isolated_env(home)
    argv = ["infrakit", "plugin", "start", "process", "-o", f"process.dir={state}"]
    spec = base / "spec.json"
    spec.write_text(json.dumps({"Properties": {"Command": ["sleep", "1000"]}, "Init": "echo hi"}))
    with Daemon(argv, env, sockets=["instance-process"], log=base / "p.log", umask=0):
        result = run_cli(["instance", "--name", "instance-process", "provision", str(spec)], env)
        assert result.returncode == 0, result.stderr
        instance = result.stdout.split()[-1]
        try:
            assert {p.name for p in state.iterdir()} == {f"{instance}.json", f"{instance}.log"}
            assert loose(base / "made-by-infrakit") == []
            assert loose(home) == []
        finally:
            destroyed = run_cli(
                ["instance", "--name", "instance-process", "destroy", instance], env
            )
            assert destroyed.returncode == 0, destroyed.stderr
    assert not os.path.exists(state / f"{instance}.json")
