"""The bench rig: run infrakit the way a user does and watch it from outside, through its sockets.

* :class:`Stack` starts ``infrakit up`` (``layout="up"``, one process) or the SEED-era console
  scripts ``infrakit-instance-file`` + ``infrakit-flavor-vanilla`` + ``infrakit-group-default``
  (``layout="daemons"``) with a private ``INFRAKIT_HOME`` under /tmp, and stops them by PID (SIGTERM,
  wait, SIGKILL, reap) - :class:`infrakit.testing.processes.Daemon` does the process work.
* :class:`RawClient` is a keep-alive HTTP/1.1 JSON-RPC client over a UNIX socket that writes
  prebuilt requests and reads replies by Content-Length, so the load generator is not the
  bottleneck (stdlib ``http.client``, :class:`StdlibClient`, is: it caps near 4000 calls/s here).
* :class:`EventStream` follows a plugin's ``GET /events?topic=...`` stream in a thread and stamps
  each event with ``time.perf_counter()`` on arrival, so "converged" is observed without polling
  (polling 1000 instances would steal CPU from the 2-core machine we measure on).
* :func:`commit_and_wait` measures commit -> converged: from just before the ``Group.CommitGroup``
  request to the group's ``converged`` event, then checks through ``Instance.DescribeInstances``
  that the file plugin really holds N instances at the spec's config hash.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from infrakit.testing.processes import Daemon, bin_path, isolated_env

__all__ = [
    "EXAMPLES",
    "EventStream",
    "RawClient",
    "Stack",
    "StdlibClient",
    "UnixHTTPConnection",
    "commit_and_wait",
    "desired_hash",
    "group_spec",
    "instance_files",
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GROUP_TAG = "infrakit.group"
HASH_TAG = "infrakit.config.hash"


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over an AF_UNIX socket (keep-alive HTTP/1.1)."""

    def __init__(self, path: str | Path, timeout: float | None = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class RPCError(RuntimeError):
    """The plugin answered with a JSON-RPC error."""


class RawClient:
    """JSON-RPC 2.0 (InfraKit HEAD) calls on one kept-alive HTTP/1.1 connection, plain socket.

    The request is one ``sendall`` of prebuilt bytes and the reply is read by Content-Length,
    nothing else: about 30 us of client CPU per call, where stdlib ``http.client`` spends ~200 us
    parsing headers with the email package and would cap a sequential loop near 4000 calls/s
    (measured here; see :class:`StdlibClient` and docs/benchmarks.md).
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self._buf = b""
        self._id = 0

    def post(self, body: bytes) -> bytes:
        """POST ``body`` to ``/`` and return the reply body (HTTP 200 expected)."""
        self.sock.sendall(
            b"POST / HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        buf = self._buf
        recv = self.sock.recv
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = recv(262144)
            if not chunk:
                raise ConnectionError(f"{self.path}: connection closed before a reply")
            buf += chunk
        head = buf[:end]
        at = head.lower().find(b"content-length:")
        if at < 0:
            raise RuntimeError(f"{self.path}: reply without Content-Length: {head[:200]!r}")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        total = end + 4 + length
        while len(buf) < total:
            chunk = recv(max(262144, total - len(buf)))
            if not chunk:
                raise ConnectionError(f"{self.path}: connection closed mid-reply")
            buf += chunk
        self._buf = buf[total:]
        if not head.startswith(b"HTTP/1.1 200"):
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            raise RPCError(f"{self.path}: {status}: {buf[end + 4 : total]!r}")
        return buf[end + 4 : total]

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": self._id})
        reply = json.loads(self.post(body.encode()))
        if reply.get("error"):
            raise RPCError(f"{method} on {self.path}: {reply['error']}")
        return reply.get("result")

    def close(self) -> None:
        self.sock.close()


class StdlibClient:
    """The same calls through stdlib ``http.client`` (keep-alive), for comparison."""

    HEADERS = {"Content-Type": "application/json"}

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = str(path)
        self.conn = UnixHTTPConnection(path, timeout)

    def post(self, body: bytes) -> bytes:
        self.conn.request("POST", "/", body=body, headers=self.HEADERS)
        return self.conn.getresponse().read()

    def close(self) -> None:
        self.conn.close()


class EventStream:
    """Events of one topic from a plugin's SSE endpoint, stamped on arrival (perf_counter)."""

    def __init__(self, socket_path: str | Path, topic: str) -> None:
        self.topic = topic
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._conn = UnixHTTPConnection(socket_path, timeout=None)
        self._conn.request("GET", f"/events?topic={quote(topic)}")
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            raise RuntimeError(f"GET /events?topic={topic}: HTTP {self._resp.status}")
        line = self._resp.readline()  # ": subscribed <topic>": live from here on
        if not line.startswith(b": subscribed"):
            raise RuntimeError(f"unexpected first SSE line {line!r}")
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"sse {topic}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while True:
                line = self._resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    stamp = time.perf_counter()
                    doc = json.loads(line[6:])
                    with self._cond:
                        self.events.append((stamp, doc))
                        self._cond.notify_all()
        except Exception:  # the stream was closed under us (close()) or the plugin went away
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def wait_for(self, type_: str, *, after: float, timeout: float) -> tuple[float, dict[str, Any]]:
        """The first event of ``type_`` that arrived after ``after`` (perf_counter seconds)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for stamp, doc in self.events:
                    if stamp > after and doc.get("Type") == type_:
                        return stamp, doc
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    seen = [d.get("Type") for _, d in self.events if _ > after]
                    raise TimeoutError(
                        f"no {type_!r} event on {self.topic} within {timeout} s (saw {seen[-10:]})"
                    )
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._conn.sock is not None:
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: When set (``--instance-dir-base DIR``), instance files go to a fresh directory under DIR
#: (e.g. /dev/shm, to take this VM's slow and noisy disk out of the figures) instead of the
#: stack's INFRAKIT_HOME/instances under /tmp.
INSTANCE_BASE: Path | None = None
#: When set (``--profile DIR``), every stack process runs under pyinstrument, reporting into DIR.
PROFILE_DIR: Path | None = None
#: When set, the stack's commands come from this directory (another venv's ``bin``, e.g. main's,
#: to compare two builds side by side in one run) instead of this Python's.
BIN_DIR: Path | None = None
_profiled = 0

#: Directories of written instance files, removed only when the bench ends (``remove_later``).
_to_remove: list[Path] = []


def remove_later(directory: Path) -> None:
    """Remove ``directory`` when the bench ends, not now. The root filesystem here is mounted with
    ``discard``: deleting a trial's 1000 files makes the journal send discards to the virtual disk
    for the next second or so, and file creation in the *next* trial then ran 5-15x slower
    (writing 1000 files: 0.07 s steady when nothing was deleted in between, 0.6-0.9 s right after
    deleting the previous 1000). Deferring the removal keeps one trial's clean-up out of the next
    trial's clock; a user committing a group is not deleting 1000 files at the same moment."""
    _to_remove.append(directory)


def remove_deferred() -> None:
    """Remove every directory handed to ``remove_later`` (called once the figures are taken)."""
    while _to_remove:
        shutil.rmtree(_to_remove.pop(), ignore_errors=True)


class Stack:
    """A running infrakit stack in a private INFRAKIT_HOME; a context manager that cleans up."""

    def __init__(self, layout: str = "up", *, extra_args: tuple[str, ...] = ()) -> None:
        if layout not in ("up", "daemons"):
            raise ValueError(f"layout {layout!r}: expected 'up' or 'daemons'")
        self.layout = layout
        self.home = Path(tempfile.mkdtemp(prefix="ikb", dir="/tmp"))
        self.env = user_env(self.home)
        self.plugins = self.home / "plugins"
        self.instances = self.home / "instances"
        if INSTANCE_BASE is not None:
            self.instances = Path(tempfile.mkdtemp(prefix="iki", dir=INSTANCE_BASE))
            self.env["INFRAKIT_INSTANCE_FILE_DIR"] = str(self.instances)
        self.extra_args = extra_args
        self.daemons: list[Daemon] = []
        self._clients: dict[str, RawClient] = {}

    def start(self) -> Stack:
        try:
            if self.layout == "up":
                self._daemon(
                    ["infrakit", "up", *self.extra_args],
                    ["instance-file", "flavor-vanilla", "flavor-combo", "group"],
                )
            else:
                self._daemon(
                    ["infrakit-instance-file", "--dir", str(self.instances)], ["instance-file"]
                )
                self._daemon(["infrakit-flavor-vanilla"], ["flavor-vanilla"])
                self._daemon(["infrakit-group-default", *self.extra_args], ["group"])
        except BaseException:
            self.stop()
            raise
        return self

    def _daemon(self, argv: list[str], sockets: list[str]) -> None:
        log = self.home / f"{argv[0]}.log"
        if BIN_DIR is not None:
            argv = [str(BIN_DIR / argv[0]), *argv[1:]]
        if PROFILE_DIR is not None:
            global _profiled
            _profiled += 1
            PROFILE_DIR.mkdir(parents=True, exist_ok=True)
            report = PROFILE_DIR / f"{_profiled:02d}-{Path(argv[0]).name}.txt"
            print(f"  profiling {argv[0]} (pid below) into {report}", flush=True)
            argv = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-o",
                str(report),
                bin_path(argv[0]),
                *argv[1:],
            ]
        daemon = Daemon(argv, self.env, sockets=sockets, log=log)
        self.daemons.append(daemon)
        daemon.start()

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for daemon in reversed(self.daemons):
            daemon.stop()
        remove_later(self.home)
        remove_later(self.instances)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- talking to it ------------------------------------------------------------------------

    def socket(self, name: str) -> Path:
        return self.plugins / name

    def client(self, name: str) -> RawClient:
        """A kept-alive raw client for plugin ``name`` (one per stack and name)."""
        if name not in self._clients:
            self._clients[name] = RawClient(self.socket(name))
        return self._clients[name]

    def events(self, topic: str, plugin: str = "group") -> EventStream:
        return EventStream(self.socket(plugin), topic)

    def commit(self, doc: dict[str, Any], *, pretend: bool = False) -> Any:
        return self.client("group").call(
            "Group.CommitGroup", {"Name": "", "Spec": doc, "Pretend": pretend}
        )

    def describe(self, gid: str) -> list[dict[str, Any]]:
        result = self.client("instance-file").call(
            "Instance.DescribeInstances",
            {"Type": "", "Tags": {GROUP_TAG: gid}, "Properties": False},
        )
        return list(result.get("Descriptions") or [])

    # --- watching it from outside -------------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        """Every process of the stack: the daemons and all their children."""
        procs: list[psutil.Process] = []
        for daemon in self.daemons:
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(daemon.pid)
                procs.append(top)
                procs.extend(top.children(recursive=True))
        return procs

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by every process of the stack."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total


#: Bytecode cache for the processes we start (outside the source tree; kept between runs).
PYCACHE = "/tmp/ikb-pycache"


def user_env(home: Path) -> dict[str, str]:
    """The environment a user's shell would give infrakit, with a private INFRAKIT_HOME.

    This machine exports ``PYTHONDONTWRITEBYTECODE=1``, so every start of an editable install would
    recompile infrakit's sources (~60 ms more per CLI call); a user's install has bytecode, so the
    processes we start cache theirs under ``/tmp/ikb-pycache``.
    """
    env = isolated_env(home)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def group_spec(
    gid: str, size: int, *, init: list[str] | None = None, health: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The tutorial's cattle spec (examples/cattle.json) with another ID, size, Init or Health."""
    doc: dict[str, Any] = json.loads((EXAMPLES / "cattle.json").read_text())
    doc = copy.deepcopy(doc)
    doc["ID"] = gid
    doc["Properties"]["Allocation"] = {"Size": size}
    if init is not None:
        doc["Properties"]["Flavor"]["Properties"]["Init"] = init
    if health is not None:
        doc["Properties"]["Health"] = health
    return doc


def desired_hash(doc: dict[str, Any]) -> str:
    """The config hash the group controller tags instances of ``doc`` with."""
    from infrakit.controller.group.spec import parse_spec
    from infrakit.spi import group as spi_group

    return parse_spec(spi_group.spec_from_wire(doc, "bench")).hash.head


def at_hash(members: list[dict[str, Any]], want: str) -> int:
    return sum(1 for m in members if (m.get("Tags") or {}).get(HASH_TAG) == want)


def commit_and_wait(
    stack: Stack, doc: dict[str, Any], *, timeout: float = 120.0, warm: bool = False
) -> float:
    """Seconds from just before ``Group.CommitGroup`` to the group's ``converged`` event.

    ``warm`` first commits the same spec with ``Pretend`` (a dry run: checked, nothing created),
    outside the clock, so a stack that has just started has loaded its spec models (pydantic,
    ~0.1 s in the background once it answers) as a running site's has.

    After the event, ``Instance.DescribeInstances`` must show exactly Size instances at the spec's
    config hash; if it does not (a premature event), the next ``converged`` event is awaited.
    """
    gid = doc["ID"]
    size = doc["Properties"]["Allocation"]["Size"]
    want = desired_hash(doc)
    if warm:
        stack.commit(doc, pretend=True)
    with stack.events(f"group/{gid}") as events:
        started = time.perf_counter()
        stack.commit(doc)
        after = started
        deadline = time.monotonic() + timeout
        while True:
            stamp, _ = events.wait_for(
                "converged", after=after, timeout=max(0.1, deadline - time.monotonic())
            )
            members = stack.describe(gid)
            if len(members) == size and at_hash(members, want) == size:
                return stamp - started
            print(
                f"  warning: {gid} reported converged with {len(members)} instances, "
                f"{at_hash(members, want)} at the new hash; waiting for the next report",
                flush=True,
            )
            after = stamp


def instance_files(directory: Path) -> list[str]:
    """Names of the instance files in ``directory`` (the file plugin's ``instance-<n>``)."""
    try:
        return [e.name for e in os.scandir(directory) if e.name.startswith("instance-")]
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def running(layout: str = "up", *, extra_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    """``with running("up") as stack:`` - a started :class:`Stack`, stopped and removed after."""
    stack = Stack(layout, extra_args=extra_args)
    with stack:
        yield stack
