"""A real container engine for the docker plugin's tests: podman's Docker-compatible API service.

No Docker engine exists on infrakit's machines and no registry is reachable, so the tests run the
docker plugin against ``podman system service`` (Debian's podman 4.3) with everything private to
the test session:

* a temporary directory (under /tmp: socket paths stay short) holds podman's storage (``--root``),
  run state (``--runroot``), tmp dir (events file, locks) and a ``containers.conf`` with the two
  settings this machine needs: ``runtime = "runc"`` (crun refuses the hybrid cgroup layout) and
  lowered ``default_ulimits`` (podman asks for more open files than the hard limit allows);
* a ``localhost/busybox:latest`` image made from the busybox-static binary with ``podman import``
  (never pulled);
* ``podman system service --time=0 unix://<dir>/podman.sock``, started as our child and stopped by
  PID (SIGTERM, then SIGKILL) and reaped at the end; every container is removed and the storage
  reset before the directory is deleted.

When podman, runc or busybox cannot be installed here, :func:`podman_session` calls
``pytest.skip`` with the exact reason (the failing command and its error), so the tests report as
skipped, never as passed. Once they are installed, a podman that cannot start or run a container
is a failure of the test set-up (``pytest.fail`` with the reason), not a skip: it would otherwise
hide a broken configuration behind a row of "s". Used by tests/plugins/test_docker.py, tests/e2e/test_docker.py and
bench/heal_docker.py (which calls :meth:`Podman.start` itself).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.shared_component import SharedComponent

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/busybox:latest"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
"""


class PodmanUnavailable(Exception):
    """Podman cannot be used on this machine; the message says why, exactly."""


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PodmanUnavailable(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise PodmanUnavailable(
            f"`{' '.join(argv)}` exited {done.returncode}: {' | '.join(detail)}"
        )
    return done.stdout


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if _busybox() is None:
        missing.append("busybox (busybox-static)")
    return missing


def _busybox() -> str | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_tools() -> None:
    """podman, runc and a static busybox, installed by scripts/system-deps when missing."""
    if not _missing_tools():
        return
    deps = REPO / "scripts" / "system-deps"
    try:
        _run(["bash", str(deps)], timeout=600)
    except PodmanUnavailable as exc:
        raise PodmanUnavailable(
            f"{', '.join(_missing_tools())} not installed and scripts/system-deps could not "
            f"install them: {exc}"
        ) from None
    still = _missing_tools()
    if still:
        raise PodmanUnavailable(f"{', '.join(still)} still missing after scripts/system-deps")


class Podman:
    """One private podman: storage, image and API service, all under :attr:`directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="ikpod", dir="/tmp"))
        self.socket = self.directory / "podman.sock"
        self.host = f"unix://{self.socket}"
        self.image = IMAGE
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.directory / "containers.conf")}
        self.service: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "service.log"

    # --- podman CLI on the private storage ------------------------------------------------------

    @property
    def argv(self) -> list[str]:
        d = self.directory
        return [
            "podman",
            "--root",
            str(d / "root"),
            "--runroot",
            str(d / "run"),
            "--tmpdir",
            str(d / "tmp"),
            "--storage-driver",
            "overlay",
        ]

    def cli(self, *args: str, timeout: float = 60) -> str:
        """Run ``podman ARGS`` against this private storage; raise PodmanUnavailable on failure."""
        return _run([*self.argv, *args], self.env, timeout=timeout)

    # --- set-up ---------------------------------------------------------------------------------

    def start(self) -> Podman:
        """Prepare everything and start the API service; PodmanUnavailable says what failed."""
        ensure_tools()
        (self.directory / "containers.conf").write_text(CONTAINERS_CONF)
        self._import_busybox()
        self.cli("run", "--rm", "--network", "none", self.image, "true")  # can it run at all?
        self.start_service()
        return self

    def _import_busybox(self) -> None:
        busybox = _busybox()
        assert busybox is not None
        rootfs = self.directory / "rootfs"
        for sub in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = _run([busybox, "--list"]).split()
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                (rootfs / "bin" / applet).symlink_to("busybox")
        tarball = self.directory / "busybox-rootfs.tar"
        _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
        shutil.rmtree(rootfs)
        self.cli(
            "import",
            "--change",
            "ENV PATH=/bin",
            "--change",
            'CMD ["sh"]',
            str(tarball),
            self.image,
        )

    def start_service(self, timeout: float = 20.0) -> None:
        """``podman system service --time=0 unix://<dir>/podman.sock`` as our child process."""
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.service = subprocess.Popen(
                [*self.argv, "system", "service", "--time=0", self.host],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise PodmanUnavailable(
                    f"podman system service exited {self.service.returncode}: "
                    f"{self.log.read_text(errors='replace')[-400:]}"
                )
            if self._answers():
                return
            time.sleep(0.05)  # noqa: TID251 - polls a real process, bounded by the deadline
        self.stop_service()
        raise PodmanUnavailable(f"podman system service did not answer on {self.socket} in time")

    def _answers(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect(str(self.socket))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.")
        except OSError:
            return False
        finally:
            s.close()

    def stop_service(self) -> None:
        """SIGTERM the service (SIGKILL after 10 s) and reap it."""
        proc, self.service = self.service, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def restart_service(self) -> None:
        self.stop_service()
        self.start_service()

    # --- helpers for tests ----------------------------------------------------------------------

    def client(self) -> Any:
        import docker

        return docker.APIClient(base_url=self.host, version="auto", timeout=30)

    def containers(self, *, all: bool = False, label: str | None = None) -> list[dict[str, Any]]:
        """The engine's container list (running only unless ``all``), optionally by label."""
        api = self.client()
        try:
            filters = {"label": [label]} if label else None
            rows: list[dict[str, Any]] = api.containers(all=all, filters=filters)
            return rows
        finally:
            api.close()

    def kill_and_remove(self, container_id: str) -> None:
        """What a user's ``podman rm -f -t 0 ID`` does: the container dies at once and is gone."""
        self.cli("rm", "--force", "--time", "0", container_id)

    def remove_all_containers(self) -> None:
        self.cli("rm", "--all", "--force", "--time", "0")

    def close(self) -> None:
        """Remove every container, stop the service, reset the storage, delete the directory."""
        try:
            if self.service is not None and self.service.poll() is None:
                self.remove_all_containers()
        except PodmanUnavailable:
            pass
        finally:
            self.stop_service()
            with contextlib.suppress(PodmanUnavailable):
                self.cli("system", "reset", "--force", timeout=60)
            shutil.rmtree(self.directory, ignore_errors=True)


_podman = SharedComponent(
    "podman", "cannot run containers", ensure_tools, Podman, PodmanUnavailable
)


def podman_session() -> Iterator[Podman]:
    """Body of a session fixture: one private podman per test process, shared by modules.

    Skips (``pytest.skip`` with the exact reason) only when podman cannot be installed; fails
    when it is installed but cannot run a container.
    """
    yield from _podman.session()
