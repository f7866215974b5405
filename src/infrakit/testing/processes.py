"""Run infrakit's real commands and daemons from tests, and clean them up by PID.

End-to-end tests use these instead of mocks::

    env = isolated_env(tmp_dir)                     # INFRAKIT_HOME / plugin dir of the test only
    with Daemon(["infrakit-instance-file", "--dir", d], env, sockets=["instance-file"]) as file:
        out = run_cli(["instance", "--name", "instance-file", "describe", "-q"], env)

A :class:`Daemon` starts the console script from the current virtualenv in its own session,
waits until its sockets accept connections (or fails with its log), and on exit sends SIGTERM,
waits, then SIGKILL - and always reaps the child, because PID 1 here does not.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infrakit._utils.addresses import free_tcp_port

__all__ = [
    "Daemon",
    "HttpAnswer",
    "bin_path",
    "http_get",
    "isolated_env",
    "log_line_time",
    "run_cli",
    "session_members",
]


def bin_path(name: str) -> str:
    """The console script ``name`` installed next to this Python."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment whose INFRAKIT_HOME and plugin dir are ``home`` and ``home/plugins``.

    Every other ``INFRAKIT_*`` variable of the caller (a developer's own plugin directories,
    tokens, timeouts) is dropped, so a test never touches real state.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    env["INFRAKIT_PLUGINS_DIR"] = str(home / "plugins")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], env: dict[str, str], *, input: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``infrakit ARGS`` and return the completed process (text mode)."""
    return subprocess.run(
        [bin_path("infrakit"), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _connectable(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


class Daemon:
    """A long-running infrakit process started for a test."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        sockets: Sequence[str] = (),
        cwd: str | Path | None = None,
        log: Path | None = None,
        start_timeout: float = 20.0,
        umask: int = -1,
    ) -> None:
        self.argv = [bin_path(argv[0]), *argv[1:]]
        self.env = env
        self.sockets = list(sockets)
        self.cwd = cwd
        self.start_timeout = start_timeout
        #: The daemon's umask (-1: inherit the test's), e.g. 0 to show modes do not depend on it.
        self.umask = umask
        plugins = Path(env.get("INFRAKIT_PLUGINS_DIR", Path(env["INFRAKIT_HOME"]) / "plugins"))
        self.plugin_dir = plugins
        self.log = (
            log or Path(env["INFRAKIT_HOME"]) / f"{Path(argv[0]).name}-{time.monotonic_ns()}.log"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=self.umask,
        )
        handle.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(self.argv)} exited with {self.proc.returncode}:\n{self.output()}"
                )
            if all(_connectable(self.plugin_dir / s) for s in self.sockets):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{' '.join(self.argv)} did not listen in time:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def wait_gone(self, timeout: float = 10.0) -> float:
        """Wait until the process has exited (and reap it); the wall-clock time it was seen gone.

        Polls every 5 ms, so the time is within a few ms of the real exit. Raises
        ``subprocess.TimeoutExpired`` if it is still running after ``timeout`` seconds.
        """
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.argv, timeout)
            time.sleep(0.005)
        return time.time()

    def last_log_time(self) -> float | None:
        """Wall-clock time of the last log line the daemon wrote (its ``asctime`` prefix)."""
        stamps = [log_line_time(line) for line in self.output().splitlines()]
        found = [t for t in stamps if t is not None]
        return found[-1] if found else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; always reap. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash): sockets are left behind, stale."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def log_line_time(line: str) -> float | None:
    """The time of a log line that starts with logging's ``asctime`` (``2026-12-02 05:02:13,053``,
    local time), as a timestamp; None for any other line."""
    try:
        return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def session_members(session: int) -> list[int]:
    """PIDs of the processes still in ``session`` (a :class:`Daemon` leads its own): what a
    stopped daemon left running - its plugins' children included, even once re-parented."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        # After "pid (comm)": state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_tcp_port()


class HttpAnswer:
    """One HTTP response read whole: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def text(self) -> str:
        return self.body.decode()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def http_get(
    address: Path | tuple[str, int],
    path: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpAnswer:
    """``GET path`` from a plugin's UNIX socket (a Path) or a TCP ``(host, port)``: what curl
    ``--unix-socket`` or a scraper would see."""
    if isinstance(address, tuple):
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            address[0], address[1], timeout=timeout
        )
    else:
        conn = _UnixConnection(address, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()
