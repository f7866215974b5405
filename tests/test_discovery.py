"""Plugin discovery: where the plugin directory is, sockets and .listen files, names with sub-objects."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infrakit import discovery, errors


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
