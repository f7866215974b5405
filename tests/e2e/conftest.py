"""End-to-end rig: real console scripts, real processes, real sockets, an isolated INFRAKIT_HOME."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from infrakit.testing.processes import Daemon, bin_path, isolated_env, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.e2e


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (real time, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def read_line(stream: IO[str], timeout: float = 15.0, what: str = "a line") -> str:
    """The next line of a child's pipe, waiting at most ``timeout``."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"timed out after {timeout}s waiting for {what}"
    return stream.readline()


@contextlib.contextmanager
def event_tail(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """``infrakit event tail ARGS`` as a process, yielded once its subscription is live (it says
    so on stderr); killed if still running, and reaped, afterwards."""
    proc = subprocess.Popen(
        [bin_path("infrakit"), "event", "tail", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        announced = read_line(proc.stderr, what="the subscription")
        assert announced.startswith("Following events on "), announced
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class E2E:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = isolated_env(home)
        self.plugins = home / "plugins"
        self.daemons: list[Daemon] = []

    def start(self, *argv: str, sockets: list[str], cwd: Path | None = None, **env: str) -> Daemon:
        daemon = Daemon(list(argv), {**self.env, **env}, sockets=sockets, cwd=cwd)
        self.daemons.append(daemon)
        return daemon.start()

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = run_cli(list(args), {**self.env, **env}, timeout=timeout)
        if check:
            assert result.returncode == 0, (
                f"infrakit {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def lines(self, *args: str) -> list[str]:
        return [line for line in self.run(*args).stdout.splitlines() if line.strip()]

    def fails(self, *args: str, **env: str) -> str:
        """Run a command that must fail: exit 1, nothing on stdout, one line on stderr."""
        result = self.run(*args, check=False, **env)
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        err = result.stderr.strip()
        assert err.startswith("Error: "), err
        assert len(err.splitlines()) == 1, err
        return err

    def spec(self, name: str, **changes: Any) -> Path:
        """Copy an example spec into the home dir (optionally changed) and return its path."""
        doc = json.loads((EXAMPLES / name).read_text())
        for key, value in changes.items():
            doc[key] = value
        path = self.home / name
        path.write_text(json.dumps(doc))
        return path

    def stop_all(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


def running(pid: int) -> bool:
    """``pid`` is a live process (not a zombie)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def state_dir(e2e: E2E) -> Iterator[Path]:
    """The process plugin's records; whatever instance is left at the end is killed while its
    parent (the plugin daemon, stopped after this fixture) can still reap it."""
    directory = e2e.home / "processes"
    yield directory
    leftover = []
    for record in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            leftover.append(json.loads(record.read_text())["Pid"])
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(running(p) for p in leftover), timeout=10)


@pytest.fixture
def e2e(infrakit_home: Path) -> Iterator[E2E]:
    rig = E2E(infrakit_home)
    try:
        yield rig
    finally:
        rig.stop_all()
        shutil.rmtree(infrakit_home / "tutorial", ignore_errors=True)
