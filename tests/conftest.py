"""Shared fixtures: every test gets its own short INFRAKIT_HOME and plugin directory.

Nothing a test does may touch the real ~/.infrakit: HOME-derived paths are redirected to a fresh
directory directly under /tmp (UNIX socket paths must stay under 107 bytes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrakit.testing import short_tempdir
from infrakit.testing.etcd import EtcdServer, EtcdUnavailable


@pytest.fixture(autouse=True)
def infrakit_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private INFRAKIT_HOME (with plugins/ inside) for each test."""
    home = short_tempdir("ikh")
    for name in [k for k in os.environ if k.startswith("INFRAKIT_")]:
        monkeypatch.delenv(name)  # a developer's own settings never leak into a test
    monkeypatch.setenv("INFRAKIT_HOME", str(home))
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(home / "plugins"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def plugin_dir(infrakit_home: Path) -> Path:
    path = infrakit_home / "plugins"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    """A real etcd on 127.0.0.1 (free ports, temp data dir), per test module; stopped by PID.

    Skips only when no etcd binary is installed (scripts/system-deps could not install
    etcd-server); an installed etcd that cannot start fails the tests instead, so a broken set-up
    never hides behind a row of skips."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed and scripts/system-deps could not install etcd-server")
    try:
        server = EtcdServer().start()
    except EtcdUnavailable as exc:
        pytest.fail(f"etcd is installed but cannot run: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory directly under /tmp (short socket paths), removed after the test."""
    directory = short_tempdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
