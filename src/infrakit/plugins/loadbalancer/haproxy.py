"""One HAProxy process owned by the load-balancer plugin, and its runtime API.

The plugin writes a configuration into its state directory, starts ``haproxy -f CFG -db`` (the
foreground, so the PID stays the one it started), and talks to it through the admin socket
(``stats socket ... mode 600 level admin``): one command per connection, the reply read until
EOF. Backends change through that socket only (``add server``, ``set server ... state``,
``del server``), never by a reload. A reload (new routes) starts a new process with the new
configuration, hands it the listening sockets (``-x`` over the old socket, ``expose-fd
listeners``) and tells the old one to finish its connections and exit (``-sf``).

Processes are stopped by PID (SIGTERM, then SIGKILL) and reaped. A process left by an earlier run
of the plugin on the same directory (its PID file, and the command line naming our
configuration) is stopped before a new one starts, so two never share a port (HAProxy binds with
SO_REUSEPORT: a stray one would silently take half the traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from infrakit._utils.private import open_private, private_dir, write_private
from infrakit.errors import PluginError, SpecError

__all__ = ["COMMAND_TIMEOUT", "HAProxy", "ServerLine", "render_config"]

log = logging.getLogger(__name__)

#: Seconds a runtime API command may take.
COMMAND_TIMEOUT = 5.0
#: Seconds a new HAProxy may take to answer on its admin socket.
START_TIMEOUT = 10.0
#: Seconds a process gets after SIGTERM before SIGKILL, and after SIGKILL.
STOP_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class ServerLine:
    """A server written into the configuration at a (re)load: ``up`` ones take traffic at once,
    the others start in maintenance with their checks running (see the plugin's promotion)."""

    name: str
    host: str
    port: int
    check: str
    up: bool


@dataclass(frozen=True, slots=True)
class Frontend:
    """One route as HAProxy sees it: a frontend on ``bind`` and the backend behind it."""

    backend: str
    bind: str
    port: int
    mode: str
    health_path: str | None
    servers: tuple[ServerLine, ...] = ()


def render_config(socket_path: Path, frontends: list[Frontend], check_timeout: float) -> str:
    """The whole configuration. Every retry option is on: a connection refused or an empty
    response (a backend killed mid-request) is retried on another server (``redispatch``)."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "defaults",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        f"    timeout check {max(1, round(check_timeout * 1000))}ms",
        "    retries 3",
        "    option redispatch 1",
    ]
    for fe in frontends:
        lines += [
            f"frontend fe_{fe.port}",
            f"    mode {fe.mode}",
            f"    bind {fe.bind}:{fe.port}",
            f"    default_backend {fe.backend}",
            f"backend {fe.backend}",
            f"    mode {fe.mode}",
            "    balance roundrobin",  # dynamic servers need a dynamic algorithm
        ]
        if fe.mode == "http":
            lines.append("    retry-on conn-failure empty-response")
        if fe.health_path:
            lines.append(f"    option httpchk GET {fe.health_path}")
        for server in fe.servers:
            state = "" if server.up else " disabled"
            lines.append(
                f"    server {server.name} {server.host}:{server.port} {server.check}{state}"
            )
    return "\n".join(lines) + "\n"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _last_lines(path: Path, count: int = 2) -> str:
    try:
        text = path.read_bytes()[-4096:].decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:])


class HAProxy:
    """The HAProxy process of one balancer: start, reload, commands, stop (module docstring)."""

    def __init__(self, directory: Path, binary: str, label: str) -> None:
        self.directory = directory
        self.binary = binary
        #: Who this is in messages (``load balancer NAME``).
        self.label = label
        self.socket_path = directory / "admin.sock"
        self.config_path = directory / "haproxy.cfg"
        self.pid_path = directory / "haproxy.pid"
        self.log_path = directory / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: Old processes finishing their connections after a reload (reaped as they exit).
        self._retiring: list[subprocess.Popen[bytes]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, config: str, ports: list[tuple[str, int]]) -> None:
        """Start HAProxy on ``config``; refuse ports someone else holds, with the reason."""
        private_dir(self.directory)
        self._stop_leftover()
        self._refuse_taken(ports)
        await asyncio.to_thread(self._check_config, config)
        self.socket_path.unlink(missing_ok=True)
        self.process = await self._spawn([])

    async def reload(self, config: str, new_ports: list[tuple[str, int]]) -> None:
        """Run ``config`` without dropping a connection: the new process takes the listening
        sockets over, the old one finishes what it serves and exits."""
        old = self.require_running()
        self._refuse_taken(new_ports)
        await asyncio.to_thread(self._check_config, config)
        # HAProxy binds the new admin socket under a temporary name and renames it over the old
        # one, so commands reach the new process as soon as it answers.
        self.process = await self._spawn(
            ["-x", str(self.socket_path), "-sf", str(old.pid)], replacing=old
        )
        self._retiring.append(old)
        self._reap_retiring()

    def _refuse_taken(self, ports: list[tuple[str, int]]) -> None:
        for host, port in ports:
            if not _port_free(host, port):
                raise SpecError(
                    f"{self.label}: port {port} on {host} is in use by another process; stop it "
                    f"or publish the route on another port"
                )

    def _check_config(self, config: str) -> None:
        write_private(self.config_path, config.encode())
        checked = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if checked.returncode != 0:
            detail = " | ".join(
                line.strip() for line in checked.stderr.splitlines() if "ALERT" in line
            )
            raise PluginError(
                f"{self.label}: haproxy refused the configuration {self.config_path} "
                f"({detail or checked.stderr.strip()[:300]}); check the route"
            )

    async def _spawn(
        self, extra: list[str], replacing: subprocess.Popen[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start HAProxy and wait until it answers on its admin socket (the new process, when
        it ``replacing`` another: ``show info`` says whose PID answered)."""
        process = self._popen(extra)
        write_private(self.pid_path, f"{process.pid}\n".encode())
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise PluginError(
                    f"{self.label}: haproxy exited at start with status {process.returncode} "
                    f"({_last_lines(self.log_path)}); see {self.log_path}"
                )
            with contextlib.suppress(OSError, TimeoutError):
                info = await self._send("show info", timeout=1.0)
                if replacing is not None and f"\nPid: {process.pid}\n" not in info:
                    raise TimeoutError  # the old one still answers
                log.info("%s: haproxy pid %d runs %s", self.label, process.pid, self.config_path)
                return process
            if time.monotonic() > deadline:
                await asyncio.to_thread(self._kill, process)
                raise PluginError(
                    f"{self.label}: haproxy did not answer on {self.socket_path} within "
                    f"{START_TIMEOUT:g}s; see {self.log_path}"
                )
            await asyncio.sleep(0.02)

    def _popen(self, extra: list[str]) -> subprocess.Popen[bytes]:
        log_fd = open_private(self.log_path, os.O_WRONLY | os.O_APPEND)
        try:
            process = subprocess.Popen(
                [self.binary, "-f", str(self.config_path), "-db", *extra],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as exc:
            raise PluginError(
                f"{self.label}: cannot start {self.binary}: {exc.strerror or exc}; install "
                f"haproxy (apt-get install haproxy) or pass -o loadbalancer.haproxy=PATH"
            ) from None
        finally:
            os.close(log_fd)
        return process

    async def stop(self) -> None:
        """Stop every process we run (by PID) and reap them."""
        for process in [*self._retiring, *([self.process] if self.process else [])]:
            await asyncio.to_thread(self._kill, process)
        self._retiring.clear()
        self.process = None
        self.pid_path.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_GRACE)

    def _reap_retiring(self) -> None:
        self._retiring = [p for p in self._retiring if p.poll() is None]

    def _stop_leftover(self) -> None:
        """Stop the HAProxy an earlier run of this plugin left running on this directory."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if str(self.config_path).encode() not in cmdline:
            return  # the PID was reused by someone else's process
        log.warning("%s: stopping haproxy pid %d left by an earlier run", self.label, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                break  # exited; its parent (gone) will never reap it
            time.sleep(0.02)  # noqa: TID251 - a one-off wait for a foreign process at start

    # --- the runtime API ------------------------------------------------------------------------

    def require_running(self) -> subprocess.Popen[bytes]:
        """The running process, or the one clear error saying it is gone and what to do."""
        self._reap_retiring()
        process = self.process
        if process is None:
            raise PluginError(
                f"{self.label}: haproxy is not running yet (the plugin is starting, or was stopped); retry once `infrakit plugin start loadbalancer` is up"
            )
        status = process.poll()
        if status is not None:
            raise PluginError(
                f"{self.label}: haproxy (pid {process.pid}) is not running: it exited with "
                f"status {status} ({_last_lines(self.log_path) or 'no log'}); nothing was "
                f"changed; restart the plugin (infrakit plugin stop/start)"
            )
        return process

    async def command(self, text: str) -> str:
        """Run one runtime API command and return its reply (stripped)."""
        process = self.require_running()
        try:
            return (await self._send(text, COMMAND_TIMEOUT)).strip()
        except (OSError, TimeoutError) as exc:
            self.require_running()  # it died meanwhile: say that
            raise PluginError(
                f"{self.label}: haproxy (pid {process.pid}) did not answer {text.split(maxsplit=1)[0]!r} "
                f"on {self.socket_path} ({exc!r}); retry, or restart the plugin"
            ) from None

    async def _send(self, text: str, timeout: float) -> str:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            try:
                writer.write(text.encode() + b"\n")
                await writer.drain()
                return await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        return (await asyncio.wait_for(exchange(), timeout)).decode(errors="replace")

    async def stats(self) -> list[dict[str, str]]:
        """``show stat`` as rows keyed by the CSV header (``pxname``, ``svname``, ``scur`` ...)."""
        text = await self.command("show stat")
        return list(csv.DictReader(io.StringIO(text.lstrip("# "))))
