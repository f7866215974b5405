"""Plugin discovery: where the plugin directory is, sockets and .listen files, names with
sub-objects - and the socket's life as a plugin starts: permissions, stale files, taken names."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from infrakit import discovery, errors
from infrakit.spi.instance import Spec
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin


def test_directory_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
    assert discovery.plugins_dir() == tmp_path / "explicit"
    assert (tmp_path / "explicit").stat().st_mode & 0o777 == 0o700
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR")
    assert discovery.plugins_dir(create=False) == tmp_path / "home" / "plugins"
    monkeypatch.delenv("INFRAKIT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert discovery.plugins_dir(create=False) == tmp_path / "user" / ".infrakit" / "plugins"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777, 0o720])
@pytest.mark.parametrize("create", [True, False])
def test_our_plugin_directory_writable_by_others_is_made_private_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: int,
    create: bool,
) -> None:
    shared = tmp_path / "plugins"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(shared))
    with caplog.at_level(logging.WARNING, logger="infrakit.discovery"):
        assert discovery.plugins_dir(create=create) == shared
        assert discovery.plugins_dir(create=create) == shared  # fixed once: no second warning
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    [warning] = caplog.records
    assert f"was writable by other users (mode {mode:04o})" in warning.getMessage()
    assert "changed it to 0700" in warning.getMessage()


def test_a_private_plugin_directory_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for mode in (0o700, 0o750, 0o755):
        (tmp_path / "plugins").mkdir(exist_ok=True)
        (tmp_path / "plugins").chmod(mode)
        monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(tmp_path / "plugins"))
        discovery.plugins_dir()
        assert stat.S_IMODE((tmp_path / "plugins").stat().st_mode) == mode
    assert not caplog.records


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_another_users_plugin_directory_writable_by_others_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "plugins"
    shared.mkdir()
    shared.chmod(0o777)
    os.chown(shared, 65534, 65534)  # nobody
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(shared))
    for create in (True, False):
        with pytest.raises(errors.SpecError) as caught:
            discovery.plugins_dir(create=create)
        message = str(caught.value)
        assert "is writable by other users (mode 0777) and belongs to uid 65534, not you" in message
        assert "INFRAKIT_PLUGINS_DIR" in message and "\n" not in message
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777  # someone else's: never changed


def test_sockets_listen_files_and_sub_objects(plugin_dir: Path) -> None:
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(plugin_dir / "group"))
    live.listen()
    try:
        (plugin_dir / "aws.listen").write_text("tcp://127.0.0.1:24864\n")
        (plugin_dir / "group.listen").write_text("tcp://127.0.0.1:1")  # the socket wins
        (plugin_dir / "README").write_text("not a plugin")
        entries = discovery.list_plugins(plugin_dir)
        assert [(e.name, e.is_tcp) for e in entries] == [("aws", True), ("group", False)]
        assert discovery.find("aws/ec2-instance", plugin_dir).address == "tcp://127.0.0.1:24864"
        assert discovery.find("group/workers", plugin_dir).address == str(plugin_dir / "group")
        assert discovery.split_name("group/workers") == ("group", "workers")
        assert discovery.probe(discovery.find("group", plugin_dir))
        with pytest.raises(errors.PluginNotFoundError, match="running: aws, group"):
            discovery.find("instance-file", plugin_dir)
    finally:
        live.close()
    # The process is gone but its socket file stays: stale.
    assert not discovery.probe(discovery.find("group", plugin_dir))


def test_plugin_directory_that_is_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(tmp_path / "f"))
    with pytest.raises(errors.SpecError, match="is a file, expected a directory"):
        discovery.plugins_dir()


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", "")
    monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
    assert discovery.plugins_dir(create=False) == tmp_path / "home" / "plugins"
    monkeypatch.setenv("INFRAKIT_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert discovery.plugins_dir() == tmp_path / "user" / ".infrakit" / "plugins"
    assert (tmp_path / "user" / ".infrakit" / "plugins").stat().st_mode & 0o777 == 0o700


def test_listen_file_addresses(plugin_dir: Path) -> None:
    (plugin_dir / "tls.listen").write_text("https://[::1]:24864\n")
    (plugin_dir / "empty.listen").write_text("")  # a half-written file is not a plugin
    assert [e.name for e in discovery.list_plugins(plugin_dir)] == ["tls"]
    entry = discovery.find("tls/workers", plugin_dir)
    assert (entry.address, entry.is_tcp, entry.path) == (
        "https://[::1]:24864",
        True,
        plugin_dir / "tls.listen",
    )
    with pytest.raises(errors.PluginNotFoundError, match="plugin not found: empty"):
        discovery.find("empty", plugin_dir)
    with pytest.raises(errors.SpecError, match="plugin name is empty"):
        discovery.find("/workers", plugin_dir)


def test_tcp_entries_are_probed_over_tcp(plugin_dir: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    (plugin_dir / "remote.listen").write_text(f"tcp://127.0.0.1:{port}")
    try:
        assert discovery.probe(discovery.find("remote", plugin_dir))
    finally:
        listener.close()
    assert not discovery.probe(discovery.find("remote", plugin_dir))


def test_a_relative_plugin_directory_holds_sockets_not_tcp_addresses(
    monkeypatch: pytest.MonkeyPatch, plugin_dir: Path
) -> None:
    monkeypatch.chdir(plugin_dir.parent)
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(plugin_dir / "inst"))
    live.listen()
    try:
        (entry,) = discovery.list_plugins(Path(plugin_dir.name))
        assert not entry.is_tcp and discovery.probe(entry)
    finally:
        live.close()


# --- the socket's life: permissions, stale files, taken names ----------------------------------


async def test_sockets_are_0600_in_a_0700_directory() -> None:
    directory = short_tempdir()
    try:
        fresh = directory / "nested"
        async with serve_plugin(FakeInstancePlugin(), "inst", directory=fresh) as h:
            assert stat.S_ISSOCK(h.socket.lstat().st_mode)
            assert h.socket.stat().st_mode & 0o777 == 0o600
            assert fresh.stat().st_mode & 0o777 == 0o700
            assert [e.name for e in discovery.list_plugins(fresh)] == ["inst"]
        assert not (fresh / "inst").exists()  # removed on a clean stop
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_stale_socket_is_detected_and_replaced_on_start(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = socket.socket(socket.AF_UNIX)
    crashed.bind(str(plugin_dir / "inst"))
    crashed.listen()
    crashed.close()  # the process died: its socket file stays behind
    entry = discovery.find("inst", plugin_dir)
    assert not discovery.probe(entry)
    with caplog.at_level(logging.WARNING, logger="infrakit.rpc.server"):
        async with serve_plugin(FakeInstancePlugin(), "inst", directory=plugin_dir) as h:
            assert await h.instance.describe_instances({}) == []
            assert discovery.probe(discovery.find("inst", plugin_dir))
    assert "removing stale socket" in caplog.text


async def test_a_taken_name_is_refused_and_the_running_plugin_keeps_it(plugin_dir: Path) -> None:
    first = FakeInstancePlugin()
    async with serve_plugin(first, "inst", directory=plugin_dir) as h:
        with pytest.raises(errors.ConflictError) as caught:
            async with serve_plugin(FakeInstancePlugin(), "inst", directory=plugin_dir):
                pass
        message = str(caught.value)
        assert f"plugin inst: a running plugin already listens on {plugin_dir / 'inst'}" in message
        # serve_plugin serves an object, not a kind: no flag is named that the caller never had
        assert "infrakit plugin stop inst" in message and "under another name" in message
        assert "--name" not in message
        iid = await h.instance.provision(Spec())
        assert iid in first.instances  # the first plugin still owns the socket


async def test_a_file_in_the_way_is_not_deleted(plugin_dir: Path) -> None:
    (plugin_dir / "inst").write_text("my notes")
    with pytest.raises(errors.ConflictError, match="exists and is not a socket"):
        async with serve_plugin(FakeInstancePlugin(), "inst", directory=plugin_dir):
            pass
    assert (plugin_dir / "inst").read_text() == "my notes"


async def test_a_socket_path_too_long_is_refused_with_advice() -> None:
    deep = Path("/tmp") / ("d" * 120)
    with pytest.raises(errors.SpecError, match="longer than 107 bytes"):
        async with serve_plugin(FakeInstancePlugin(), "inst", directory=deep):
            pass
    assert not deep.exists()
