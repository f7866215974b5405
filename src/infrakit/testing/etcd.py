"""A real etcd server for tests and benchmarks: 127.0.0.1, free ports, a temporary data dir.

::

    with EtcdServer() as etcd:          # starts Debian's `etcd` binary, waits until healthy
        store = EtcdStore(etcd.endpoint)
        etcd.restart()                  # same data dir: data survives
    # stopped by PID, reaped, data dir removed

Raises :class:`EtcdUnavailable` (with the reason) when no ``etcd`` binary is installed; the
project's ``scripts/system-deps`` installs Debian's ``etcd-server``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from types import TracebackType

from infrakit.testing.harness import short_tempdir
from infrakit.testing.processes import free_port as _free_port

__all__ = ["EtcdServer", "EtcdUnavailable"]


class EtcdUnavailable(RuntimeError):
    """etcd cannot be run here (the message says why)."""


class EtcdServer:
    def __init__(self) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise EtcdUnavailable("no etcd binary on PATH; run scripts/system-deps (etcd-server)")
        self.binary = binary
        self.data = short_tempdir("iketcd")
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.data / "etcd.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> EtcdServer:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--name",
                    "test",
                    "--data-dir",
                    str(self.data / "data"),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"test={peer}",
                    "--log-level",
                    "error",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdUnavailable(f"etcd exited with {self.proc.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    if b"true" in response.read():
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise EtcdUnavailable(f"etcd did not become healthy within {timeout:g}s: {self._tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; always reaped. The data dir stays (see :meth:`close`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
