"""The attack kit: hostile requests, the daemons they are thrown at, and the judge of each answer.

One home for everything ``tests/adversarial/`` and ``bench/attack.py`` share:

* :func:`raw_exchange` - raw bytes to a UNIX socket (or TCP port) and whatever comes back, with a
  deadline: an HTTP answer, a clean close, a reset, or a hang;
* :data:`KINDS` / :class:`Target` - the daemon kinds attacked (group, manager, instance-file,
  simulator, process, flavor-vanilla, combo), each a real console script on real sockets with a
  sentinel state planted before the attack and checked after it;
* :func:`bodies` - hypothesis strategies built from the SPI shapes (every method of every interface
  a kind serves, both eras: HEAD ``POST /`` JSON-RPC 2.0 and SEED ``POST /rpc`` with params as a
  one-element array), valid requests with one field given a wrong type, dropped or doubled,
  envelopes broken, bodies truncated or made invalid UTF-8;
* :data:`GARBAGE` - a corpus of HTTP-level garbage (wrong Content-Length, chunked garbage, broken
  gzip, nesting 1000-100 000 deep, huge numbers, NUL and 5000-character IDs ...);
* :func:`judge` - "survived" or what went wrong: every request gets an HTTP answer (or, for garbage
  that is not HTTP, a clean close) within the deadline; a JSON-RPC-shaped body gets a JSON-RPC
  result or error (never a 500 text/plain); the daemon logs no traceback;
* :func:`kill_round` with :class:`UpRig` and :class:`Sampler` - kill -9 of ``infrakit up`` at a
  random point of a commit, a heal or a rolling update, and the invariants: the instance directory
  listed every ~10 ms (never above Size + MaxSurge), exactly Size at the end, planted files
  untouched, the committed spec kept;
* :class:`HostileInstance` - a tiny instance plugin on a real socket that lists its instances 50
  times or answers garbage (:data:`GARBAGE_REPLIES`).

Nothing here asserts: tests assert on what these return, the bench counts it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, bin_path, free_port, isolated_env, run_cli

__all__ = [
    "GARBAGE",
    "GARBAGE_REPLIES",
    "KINDS",
    "SCENARIOS",
    "Answer",
    "Body",
    "Garbage",
    "HostileInstance",
    "KillRound",
    "Running",
    "Sampler",
    "Target",
    "UpRig",
    "bodies",
    "draw_bodies",
    "garbage_for",
    "group_files",
    "http_post",
    "judge",
    "kill_round",
    "raw_exchange",
    "rpc",
    "wait_until",
]

#: Seconds a request may take before it counts as a hang.
DEADLINE = 10.0
#: A request that never ends is cut at the server's header timeout (10 s); answer within this.
SLOW_CLIENT_DEADLINE = 10.0 + DEADLINE
#: The sentinel group every group/manager daemon holds while it is attacked.
SENTINEL_GROUP = "adv-sentinel-7f3a"
#: The sentinel instance's tag on instance plugins.
SENTINEL_TAGS = {"adversarial": "sentinel-7f3a"}
#: The TCP token of the manager's listener.
TOKEN = "adversarial-token"

Address = Path | tuple[str, int]


# --- raw HTTP ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What came back for one raw request."""

    data: bytes = b""
    #: The peer closed the connection (EOF), with or without an answer.
    closed: bool = False
    #: The peer reset the connection (or the connect failed): how, in words.
    error: str = ""
    #: Nothing (or not all of it) came within the deadline.
    hung: bool = False

    @property
    def status(self) -> int | None:
        head = self.data.split(b"\r\n", 1)[0].split()
        if len(head) >= 2 and head[0].startswith(b"HTTP/") and head[1].isdigit():
            return int(head[1])
        return None

    @property
    def headers(self) -> dict[str, str]:
        head = self.data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}

    @property
    def body(self) -> bytes:
        rest = self.data.partition(b"\r\n\r\n")[2]
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            length = self.headers.get("content-length")
            return rest[: int(length)] if length and length.isdigit() else rest
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        return out

    def describe(self) -> str:
        if self.hung:
            return f"no complete answer within the deadline (got {self.data[:80]!r})"
        if self.error:
            return f"connection {self.error} (got {self.data[:80]!r})"
        return f"HTTP {self.status}: {self.body[:200]!r}"


def _connect(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(address))
    return sock


def _complete(data: bytes, *, head_only: bool = False) -> bool:
    """True once ``data`` holds one whole HTTP response (by Content-Length or final chunk), or
    its head only when ``head_only`` (an event stream never ends)."""
    _, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    answer = Answer(data)
    length = answer.headers.get("content-length")
    if length is not None and length.isdigit():
        return len(rest) >= int(length)
    if answer.headers.get("transfer-encoding", "").lower() == "chunked":
        return rest.endswith(b"0\r\n\r\n")
    return False


def raw_exchange(
    address: Address,
    raw: bytes,
    *,
    timeout: float = DEADLINE,
    half_close: bool = False,
    head_only: bool = False,
) -> Answer:
    """Send ``raw`` on a fresh connection and read until one whole response, EOF or the deadline.

    ``half_close`` shuts our sending side after ``raw`` (the server sees EOF where it waits for
    more body), as a client that lied about Content-Length and gave up would.
    """
    deadline = time.monotonic() + timeout
    answer = Answer()
    try:
        sock = _connect(address, timeout)
    except OSError as exc:
        answer.error = f"refused ({exc})"
        return answer
    with sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the server answered and closed before reading all of it
            answer.error = f"closed while sending ({exc.__class__.__name__})"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                answer.hung = True
                return answer
            sock.settimeout(left)
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                answer.hung = True
                return answer
            except OSError as exc:
                answer.error = answer.error or f"reset ({exc.__class__.__name__})"
                return answer
            if not chunk:
                answer.closed = True
                return answer
            answer.data += chunk
            if _complete(answer.data, head_only=head_only):
                answer.error = ""  # a whole answer came: a send error was the server closing
                return answer


def http_post(
    body: bytes, url: str = "/", headers: dict[str, str] | None = None, *, length: int | None = None
) -> bytes:
    """A well-formed HTTP/1.1 POST of ``body`` (``Connection: close``)."""
    given = {"Content-Type": "application/json", **(headers or {})}
    extra = "".join(f"{k}: {v}\r\n" for k, v in given.items())
    size = len(body) if length is None else length
    return (
        f"POST {url} HTTP/1.1\r\nHost: infrakit\r\n{extra}"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def rpc(
    address: Address,
    method: str,
    params: Any,
    *,
    url: str = "/",
    headers: dict[str, str] | None = None,
    timeout: float = DEADLINE,
) -> Any:
    """One real JSON-RPC call (HEAD at ``/``, SEED elsewhere); the decoded reply, or None."""
    if url == "/":
        doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    else:
        doc = {"method": method, "params": [params], "id": 1}
    answer = raw_exchange(
        address, http_post(json.dumps(doc).encode(), url, headers), timeout=timeout
    )
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


# --- the judge -----------------------------------------------------------------------------------


def _json_rpc_shaped(raw_body: bytes) -> Any:
    """The request document if the body decodes as JSON (else None): what the reply must echo."""
    try:
        return json.loads(raw_body)
    except (ValueError, RecursionError):
        return None


def judge(answer: Answer, *, era: str | None, request_body: bytes | None = None) -> str | None:
    """None when the daemon answered ``answer`` as it must, else what was wrong, in words.

    ``era`` is ``"head"`` or ``"seed"`` for a well-framed HTTP request carrying a JSON-RPC body
    (it must get a JSON-RPC reply), ``None`` for HTTP garbage (any HTTP answer but a 5xx, or a
    clean close, is fine).
    """
    if answer.hung:
        return "hang: " + answer.describe()
    status = answer.status
    if era is None:
        if status is None:
            if answer.data:
                return "answered garbage with non-HTTP bytes: " + answer.describe()
            return None  # closed (or reset) without an answer: fine for non-HTTP garbage
        if status >= 500:
            return f"HTTP {status} for garbage: " + answer.describe()
        return None
    if status is None:
        return "no HTTP answer to a well-formed request: " + answer.describe()
    content_type = answer.headers.get("content-type", "")
    if status >= 500 or content_type.startswith("text/plain"):
        return f"HTTP {status} {content_type}: " + answer.describe()
    body = answer.body
    sent = _json_rpc_shaped(request_body) if request_body is not None else None
    if not body.strip():
        # A HEAD notification (an object without "id") is answered with an empty body, like Go.
        if era == "head" and status == 200 and isinstance(sent, dict) and "id" not in sent:
            return None
        return f"empty HTTP {status} body for a JSON-RPC request"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"HTTP {status} reply is not JSON: {body[:200]!r}"
    if not isinstance(doc, dict) or "id" not in doc:
        return f"HTTP {status} reply is not a JSON-RPC object: {body[:200]!r}"
    if "error" not in doc and "result" not in doc:
        return f"HTTP {status} reply has neither result nor error: {body[:200]!r}"
    return None


# --- the daemons ---------------------------------------------------------------------------------


@dataclass
class Running:
    """A kind's daemons, started for an attack: the attacked address, the log and the home."""

    target: Target
    home: Path
    daemons: list[Daemon]
    address: Path
    tcp: tuple[str, int] | None = None
    #: The sentinel's identity, set by the kind's ``plant`` (an instance ID, a spec ...).
    sentinel: Any = None
    _log_offsets: dict[Path, int] = field(default_factory=dict)

    @property
    def plugins(self) -> Path:
        return self.home / "plugins"

    def alive(self) -> bool:
        return all(d.proc is not None and d.proc.poll() is None for d in self.daemons)

    def new_tracebacks(self) -> str:
        """Log text with a traceback written since the last call ('' when none)."""
        found = []
        for daemon in self.daemons:
            offset = self._log_offsets.get(daemon.log, 0)
            try:
                with daemon.log.open("rb") as handle:
                    handle.seek(offset)
                    text = handle.read()
            except OSError:
                continue
            self._log_offsets[daemon.log] = offset + len(text)
            if b"Traceback" in text:
                start = text.index(b"Traceback")
                found.append(text[max(0, start - 300) : start + 1500].decode(errors="replace"))
        return "\n".join(found)

    def check(self) -> str | None:
        """None when the daemons still run, answer a real request and hold the sentinel."""
        if not self.alive():
            codes = [d.proc.returncode for d in self.daemons if d.proc is not None]
            return f"a daemon of {self.target.name} died (exit {codes}):\n" + self.logs()
        try:
            problem = self.target.verify(self)
        except RuntimeError as exc:
            problem = str(exc)
        return None if problem is None else f"{problem}\nlog:\n{self.logs()}"

    def logs(self) -> str:
        return "\n".join(d.output()[-3000:] for d in self.daemons)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.target.cleanup(self)
        for daemon in reversed(self.daemons):
            daemon.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class Target:
    """One daemon kind: how to start it, which interfaces its attacked socket serves, and the
    sentinel state planted before the attack and checked after it."""

    name: str
    #: argv of each daemon and the sockets it must listen on: (argv, sockets).
    argv: Callable[[Path], list[tuple[list[str], list[str]]]]
    #: The socket attacked.
    socket: str
    interfaces: tuple[str, ...]
    plant: Callable[[Running], None]
    verify: Callable[[Running], str | None]
    cleanup: Callable[[Running], None] = lambda running: None
    #: Valid params per method (what the hostile bodies start from).
    examples: dict[str, Any] = field(default_factory=dict)
    tcp: bool = False

    @contextlib.contextmanager
    def running(self) -> Iterator[Running]:
        """Start the daemons in a fresh short home, plant the sentinel, stop and reap after."""
        home = short_tempdir("adv")
        env = isolated_env(home)
        daemons = []
        port = free_port() if self.tcp else None
        runner = Running(self, home, daemons, home / "plugins" / self.socket)
        try:
            for template, sockets in self.argv(home):
                argv = [a.replace("{port}", str(port)) for a in template]
                daemon = Daemon(
                    argv,
                    env,
                    sockets=sockets,
                    log=home / f"{Path(argv[0]).name}-{len(daemons)}.log",
                )
                daemons.append(daemon)
                daemon.start()
            if port is not None:
                runner.tcp = ("127.0.0.1", port)
            self.plant(runner)
            runner.new_tracebacks()  # start counting after the set-up
            yield runner
        finally:
            runner.stop()


def _result(reply: Any) -> Any:
    if not isinstance(reply, dict) or reply.get("error") is not None or "result" not in reply:
        raise RuntimeError(f"unexpected reply: {reply!r}")
    return reply["result"]


# Instance plugins: one sentinel instance, tagged, that must still be listed after the attack.


def _plant_instance(properties: Any) -> Callable[[Running], None]:
    def plant(running: Running) -> None:
        spec = {"Properties": properties, "Tags": SENTINEL_TAGS, "Init": ""}
        running.sentinel = _result(rpc(running.address, "Instance.Provision", {"Spec": spec}))["ID"]

    return plant


def _verify_instance(running: Running) -> str | None:
    reply = rpc(running.address, "Instance.DescribeInstances", {"Tags": SENTINEL_TAGS})
    try:
        ids = [d["ID"] for d in _result(reply)["Descriptions"] or []]
    except (RuntimeError, KeyError, TypeError):
        return f"DescribeInstances after the attack: {reply!r}"
    if ids != [running.sentinel]:
        return f"the sentinel instance {running.sentinel} is gone or doubled: {ids}"
    return None


def _destroy_all_instances(running: Running) -> None:
    """Destroy every instance the attack left (process instances are real processes)."""
    reply = rpc(running.address, "Instance.DescribeInstances", {"Tags": {}})
    for desc in _result(reply)["Descriptions"] or []:
        rpc(running.address, "Instance.Destroy", {"Instance": desc["ID"]}, timeout=30)


# Group controllers: one sentinel group of 2 file instances, which must still be committed as it
# was and keep its members.

SENTINEL_SPEC: dict[str, Any] = {
    "ID": SENTINEL_GROUP,
    "Properties": {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "instance-file", "Properties": {"Note": "sentinel"}},
        "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Tags": {"role": "sentinel"}}},
    },
}


def _members(address: Path, group_id: str) -> list[str] | None:
    reply = rpc(address, "Group.DescribeGroup", {"ID": group_id})
    try:
        return sorted(i["ID"] for i in _result(reply)["Description"]["Instances"] or [])
    except (RuntimeError, KeyError, TypeError):
        return None


def _plant_group(running: Running) -> None:
    # A manager that has just started may be elected but not acting yet ("retry in a moment").
    def committed() -> bool:
        reply = rpc(running.address, "Group.CommitGroup", {"Spec": SENTINEL_SPEC, "Pretend": False})
        error = (reply or {}).get("error") or {}
        if (error.get("data") or {}).get("kind") == "NotLeaderError":
            return False
        _result(reply)
        return True

    if not wait_until(committed, 20):
        raise RuntimeError(f"the manager never took the sentinel commit:\n{running.logs()}")
    if not wait_until(lambda: len(_members(running.address, SENTINEL_GROUP) or []) == 2, 20):
        raise RuntimeError(f"the sentinel group did not converge:\n{running.logs()}")
    members = _members(running.address, SENTINEL_GROUP)
    running.sentinel = (_specs(running.address)[SENTINEL_GROUP], members)


def _specs(address: Path) -> dict[str, Any]:
    reply = rpc(address, "Group.InspectGroups", {"ID": ""})
    try:
        return {g["ID"]: g for g in _result(reply)["Groups"] or []}
    except (RuntimeError, KeyError, TypeError):
        raise RuntimeError(f"InspectGroups: {reply!r}") from None


def _verify_group(running: Running) -> str | None:
    spec, members = running.sentinel
    try:
        now = _specs(running.address).get(SENTINEL_GROUP)
    except RuntimeError as exc:
        return f"after the attack: {exc}"
    if now != spec:
        return f"the sentinel spec changed: {spec!r} -> {now!r}"
    found = _members(running.address, SENTINEL_GROUP)
    if found != members:
        return f"the sentinel group's members changed: {members} -> {found}"
    return None


# Flavors: stateless; Prepare of a known spec must give the known answer.

_VANILLA_PROPS = {"Init": ["echo sentinel"], "Tags": {"role": "sentinel"}}
_PREPARE = {
    "Properties": _VANILLA_PROPS,
    "Spec": {"Properties": {}, "Tags": {}, "Init": "", "LogicalID": None, "Attachments": None},
    "Allocation": {"Size": 1},
    "Index": {"Group": "g", "Sequence": 0},
}


def _verify_flavor(properties: Any) -> Callable[[Running], str | None]:
    def verify(running: Running) -> str | None:
        reply = rpc(running.address, "Flavor.Prepare", {**_PREPARE, "Properties": properties})
        try:
            spec = _result(reply)["Spec"]
        except (RuntimeError, KeyError, TypeError):
            return f"Flavor.Prepare after the attack: {reply!r}"
        if spec.get("Init") != "echo sentinel" or spec.get("Tags", {}).get("role") != "sentinel":
            return f"Flavor.Prepare answers differently after the attack: {spec!r}"
        return None

    return verify


def _nothing(running: Running) -> None:
    return None


_INSTANCE_EXAMPLES: dict[str, Any] = {
    "Instance.Validate": {"Type": "", "Properties": {"Note": "x"}},
    "Instance.Provision": {
        "Type": "",
        "Spec": {
            "Properties": {"Note": "x"},
            "Tags": {"adversarial": "fuzz"},
            "Init": "",
            "LogicalID": None,
            "Attachments": [{"ID": "a", "Type": "t"}],
        },
    },
    "Instance.Label": {"Type": "", "Instance": "instance-1", "Labels": {"a": "b"}},
    "Instance.Destroy": {"Type": "", "Instance": "instance-1", "Context": {"Reason": "terminate"}},
    "Instance.DescribeInstances": {"Type": "", "Tags": {"adversarial": "fuzz"}, "Properties": True},
}
_FLAVOR_EXAMPLES: dict[str, Any] = {
    "Flavor.Validate": {"Type": "", "Properties": _VANILLA_PROPS, "Allocation": {"Size": 1}},
    "Flavor.Prepare": {"Type": "", **_PREPARE},
    "Flavor.Healthy": {
        "Type": "",
        "Properties": _VANILLA_PROPS,
        "Instance": {"ID": "i-1", "LogicalID": None, "Tags": {"a": "b"}},
    },
    "Flavor.Drain": {
        "Type": "",
        "Properties": _VANILLA_PROPS,
        "Instance": {"ID": "i-1", "LogicalID": "l", "Tags": {}},
    },
}
_FUZZ_SPEC: dict[str, Any] = {
    "ID": "adv-fuzz",
    "Properties": {
        "Allocation": {"Size": 1},
        "Instance": {"Plugin": "instance-file", "Properties": {"Note": "fuzz"}},
        "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo fuzz"]}},
        "Updating": {"MaxSurge": 1},
        "Provisioning": {"MaxParallel": 2},
    },
}
_GROUP_EXAMPLES: dict[str, Any] = {
    "Group.CommitGroup": {"Name": "", "Spec": _FUZZ_SPEC, "Pretend": True},
    "Group.FreeGroup": {"Name": "", "ID": "adv-fuzz"},
    "Group.DescribeGroup": {"Name": "", "ID": "adv-fuzz"},
    "Group.DestroyGroup": {"Name": "", "ID": "adv-fuzz"},
    "Group.InspectGroups": {"Name": "", "ID": ""},
    "Group.DestroyInstances": {"Name": "", "ID": "adv-fuzz", "Instances": ["instance-1"]},
    "Group.Size": {"Name": "", "ID": "adv-fuzz"},
    "Group.SetSize": {"Name": "", "ID": "adv-fuzz", "Size": 1},
    "Group.Status": {"Name": "", "ID": "adv-fuzz"},
    "Group.Plan": {"Name": "", "ID": "adv-fuzz"},
    "Group.Pause": {"Name": "", "ID": "adv-fuzz"},
    "Group.Resume": {"Name": "", "ID": "adv-fuzz"},
    "Group.Promote": {"Name": "", "ID": "adv-fuzz"},
    "Group.Rollback": {"Name": "", "ID": "adv-fuzz"},
    "Group.Reset": {"Name": "", "ID": "adv-fuzz"},
}
_HANDSHAKE_EXAMPLES: dict[str, Any] = {
    "Handshake.Hello": {},
    "Handshake.Implements": {},
    "Handshake.Types": {},
    "Plugin.Implements": {},
    "Event.List": {},
}
_MANAGER_EXAMPLES: dict[str, Any] = {
    "Manager.Status": {"Name": "", "ID": ""},
    # Stack/0.1.1 (HEAD's shapes); Enforce/Terminate name a kind the manager refuses.
    "Manager.Specs": {},
    "Manager.IsLeader": {},
    "Manager.LeaderLocation": {},
    "Manager.Inspect": {},
    "Manager.Enforce": {"Specs": [{"kind": "fuzz", "metadata": {"name": "adv-fuzz"}}]},
    "Manager.Terminate": {"Specs": [{"kind": "fuzz", "metadata": {"name": "adv-fuzz"}}]},
}
_METADATA_EXAMPLES: dict[str, Any] = {
    "Metadata.Keys": {"Name": "", "Path": "."},
    "Metadata.Get": {"Name": "", "Path": "specs/adv-fuzz/Properties"},
}

_FILE_HELPERS = ["infrakit", "plugin", "start", "file:instance-file", "vanilla:flavor-vanilla"]

KINDS: dict[str, Target] = {
    "group": Target(
        "group",
        lambda home: [
            (
                [*_FILE_HELPERS, "-o", f"file.dir={home / 'instances'}"],
                ["instance-file", "flavor-vanilla"],
            ),
            (["infrakit-group-default", "--poll-interval", "1s", "--store", "memory"], ["group"]),
        ],
        "group",
        ("Group",),
        _plant_group,
        _verify_group,
        examples={**_GROUP_EXAMPLES, **_METADATA_EXAMPLES, **_HANDSHAKE_EXAMPLES},
    ),
    "manager": Target(
        "manager",
        lambda home: [
            (
                [
                    "infrakit",
                    "up",
                    "--poll-interval",
                    "1s",
                    "--listen",
                    "127.0.0.1:{port}",
                    "--token",
                    TOKEN,
                ],
                ["group", "instance-file", "flavor-vanilla", "flavor-combo"],
            )
        ],
        "group",
        ("Group",),
        _plant_group,
        _verify_group,
        examples={
            **_GROUP_EXAMPLES,
            **_MANAGER_EXAMPLES,
            **_METADATA_EXAMPLES,
            **_HANDSHAKE_EXAMPLES,
        },
        tcp=True,
    ),
    "instance-file": Target(
        "instance-file",
        lambda home: [
            (["infrakit-instance-file", "--dir", str(home / "instances")], ["instance-file"])
        ],
        "instance-file",
        ("Instance",),
        _plant_instance({"Note": "sentinel"}),
        _verify_instance,
        examples={**_INSTANCE_EXAMPLES, **_HANDSHAKE_EXAMPLES},
    ),
    "simulator": Target(
        "simulator",
        lambda home: [(["infrakit", "plugin", "start", "simulator"], ["simulator"])],
        "simulator",
        ("Instance", "Flavor"),
        _plant_instance({"Note": "sentinel"}),
        _verify_instance,
        examples={
            **_INSTANCE_EXAMPLES,
            **_FLAVOR_EXAMPLES,
            "Flavor.Validate": {
                "Type": "",
                "Properties": {"Faults": {}},
                "Allocation": {"Size": 1},
            },
            **_HANDSHAKE_EXAMPLES,
        },
    ),
    "process": Target(
        "process",
        lambda home: [
            (
                [
                    "infrakit",
                    "plugin",
                    "start",
                    "process",
                    "-o",
                    f"process.dir={home / 'proc'}",
                    "-o",
                    "process.grace=2s",
                ],
                ["instance-process"],
            )
        ],
        "instance-process",
        ("Instance",),
        _plant_instance({"Command": ["sleep", "600"]}),
        _verify_instance,
        _destroy_all_instances,
        examples={
            **_INSTANCE_EXAMPLES,
            # A Command that never exists: a hostile Provision never runs anything (nor its Init).
            "Instance.Validate": {"Type": "", "Properties": {"Command": ["/nonexistent/adv"]}},
            "Instance.Provision": {
                "Type": "",
                "Spec": {
                    **_INSTANCE_EXAMPLES["Instance.Provision"]["Spec"],
                    "Properties": {"Command": ["/nonexistent/adv"], "Env": {"A": "b"}},
                },
            },
            **_HANDSHAKE_EXAMPLES,
        },
    ),
    "flavor-vanilla": Target(
        "flavor-vanilla",
        lambda home: [(["infrakit-flavor-vanilla"], ["flavor-vanilla"])],
        "flavor-vanilla",
        ("Flavor",),
        _nothing,
        _verify_flavor(_VANILLA_PROPS),
        examples={**_FLAVOR_EXAMPLES, **_HANDSHAKE_EXAMPLES},
    ),
    "combo": Target(
        "combo",
        lambda home: [
            (
                ["infrakit", "plugin", "start", "combo:flavor-combo", "vanilla:flavor-vanilla"],
                ["flavor-combo", "flavor-vanilla"],
            )
        ],
        "flavor-combo",
        ("Flavor",),
        _nothing,
        _verify_flavor([{"Plugin": "flavor-vanilla", "Properties": _VANILLA_PROPS}]),
        examples={
            **{
                method: {
                    **params,
                    "Properties": [{"Plugin": "flavor-vanilla", "Properties": _VANILLA_PROPS}],
                }
                for method, params in _FLAVOR_EXAMPLES.items()
            },
            **_HANDSHAKE_EXAMPLES,
        },
    ),
}


# --- hostile bodies (hypothesis) -----------------------------------------------------------------

#: Strings a parser or a provider may choke on.
NASTY_STRINGS = [
    "",
    "\x00",
    "instance-\x00-1",
    "x" * 5000,
    "../../etc/passwd",
    "/",
    ".",
    "..",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "\u202e\u0000\uffff",
    "%s%n%x",
    "Instance.Provision",
    " ",
    "\n\r\t",
    "☃" * 100,
]
NASTY_NUMBERS = [0, -1, 2**63, 2**64 + 1, -(2**63) - 1, 10**30, 1e308, -1e308, 0.5, 1e-300]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(NASTY_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc`` (dict keys and list indexes), the root excluded."""
    out = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.append((*prefix, index))
            out.extend(_paths(value, (*prefix, index)))
    return out


def _replace(doc: Any, path: tuple[Any, ...], how: Callable[[Any, Any], None]) -> Any:
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in path[:-1]:
        node = node[key]
    how(node, path[-1])
    return copy


@st.composite
def _mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one field given a wrong type, dropped, re-cased, or a key added."""
    paths = _paths(valid)
    if not paths:
        return draw(json_values)
    path = draw(st.sampled_from(paths))
    action = draw(
        st.sampled_from(["wrong-type", "wrong-type", "wrong-type", "drop", "recase", "add"])
    )
    if action == "wrong-type":
        value = draw(json_values)

        def set_value(node: Any, key: Any) -> None:
            node[key] = value

        return _replace(valid, path, set_value)
    if action == "drop":
        return _replace(valid, path, lambda node, key: node.pop(key))
    if action == "recase" and isinstance(path[-1], str):

        def recase(node: Any, key: Any) -> None:
            node[key.upper() if draw(st.booleans()) else key.lower()] = node.pop(key)

        return _replace(valid, path, recase)
    extra = draw(json_values)

    def add(node: Any, key: Any) -> None:
        if isinstance(node, dict):
            node[draw(st.text(max_size=10))] = extra
        else:
            node.append(extra)

    return _replace(valid, path, add)


def _params(target: Target) -> st.SearchStrategy[tuple[str, Any]]:
    methods = sorted(target.examples)
    method = st.sampled_from(methods)
    return method.flatmap(
        lambda m: st.tuples(
            st.just(m),
            st.one_of(
                st.just(target.examples[m]),
                _mutated(target.examples[m]),
                _mutated(target.examples[m]).flatmap(_mutated),
                json_values,
            ),
        )
    )


@st.composite
def _envelope(draw: st.DrawFn, target: Target, era: str) -> tuple[str, Any]:
    """(url, document) of one request in ``era``, its envelope sometimes broken."""
    method, params = draw(_params(target))
    method_value: Any = method
    if draw(st.integers(0, 9)) == 0:
        method_value = draw(
            st.one_of(
                json_values, st.sampled_from([method.lower(), method + "x", "Nope.Do", "Provision"])
            )
        )
    request_id = draw(
        st.one_of(
            st.integers(0, 2**63 - 1), st.sampled_from([None, "x", 1.5, 2**64, -1]), json_values
        )
    )
    if era == "head":
        doc: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": method_value,
            "params": params,
            "id": request_id,
        }
        url = "/"
    else:
        doc = {"method": method_value, "params": [params], "id": request_id}
        url = draw(st.sampled_from(["/rpc", "/rpc", "/rpc", "/x/y"]))  # SEED: any path but /
    if draw(st.integers(0, 9)) == 0:
        doc = draw(_mutated(doc))
    return url, doc


@dataclass(frozen=True)
class Body:
    """One hostile request: its era, the bytes, and a word on what it is (for reports)."""

    era: str
    raw: bytes
    body: bytes
    what: str

    def __repr__(self) -> str:  # hypothesis prints this when a body fails
        return f"Body({self.era}, {self.raw[:600]!r}{'...' if len(self.raw) > 600 else ''})"


@st.composite
def _encoded(draw: st.DrawFn, target: Target, era: str) -> Body:
    url, doc = draw(_envelope(target, era))
    body = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "bad-utf8", "trailing", "bom"]))
    if damage == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "bad-utf8":
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at]
            + draw(
                st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            )
            + body[at:]
        )
    elif damage == "trailing":
        body += draw(st.sampled_from([b" {}", b"\x00", b"garbage", b"\n\n"]))
    elif damage == "bom":
        body = b"\xef\xbb\xbf" + body
    return Body(era, http_post(body, url), body, f"{era} {damage}")


def bodies(target: Target) -> st.SearchStrategy[Body]:
    """Hostile JSON-RPC requests for ``target``, both eras, every method it serves."""
    return st.one_of(_encoded(target, "head"), _encoded(target, "seed"))


# --- the HTTP garbage corpus ---------------------------------------------------------------------


@dataclass(frozen=True)
class Garbage:
    """One hand-written hostile request. ``era`` set: a well-framed JSON-RPC request (it must get
    a JSON-RPC reply); None: HTTP garbage (an HTTP error or a clean close will do)."""

    name: str
    raw: bytes
    era: str | None = None
    half_close: bool = False
    #: The answer is a stream (Server-Sent Events): its head within the deadline is enough.
    head_only: bool = False
    #: Kinds this entry is aimed at (empty: all).
    kinds: tuple[str, ...] = ()
    body: bytes | None = None
    #: How long to wait for the answer: a client that never finishes its request is answered
    #: only when the server's admission timeout (10 s) runs out, so it gets that much more.
    timeout: float = DEADLINE


def _nested(depth: int) -> bytes:
    return (
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{"x":'
        + b"[" * depth
        + b"]" * depth
        + b'},"id":1}'
    )


def _head(method: str, params: Any, request_id: Any = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
    ).encode()


HELLO = _head("Handshake.Hello", {})


def _rpc_entry(
    name: str,
    body: bytes,
    *,
    kinds: tuple[str, ...] = (),
    url: str = "/",
    headers: dict[str, str] | None = None,
) -> Garbage:
    return Garbage(
        name,
        http_post(body, url, headers),
        "head" if url == "/" else "seed",
        kinds=kinds,
        body=body,
    )


GARBAGE: list[Garbage] = [
    # Well-framed HTTP, hostile JSON: a JSON-RPC answer is owed.
    *(_rpc_entry(f"nested-{depth}", _nested(depth)) for depth in (1000, 10_000, 100_000)),
    _rpc_entry(
        "nested-params-array-5000",
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":'
        + b"[" * 5000
        + b"]" * 5000
        + b',"id":1}',
    ),
    _rpc_entry(
        "huge-integer-id",
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":' + b"9" * 5000 + b"}",
    ),
    _rpc_entry(
        "huge-exponent",
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{"x":1e999999},"id":1}',
    ),
    _rpc_entry(
        "invalid-utf8-in-string",
        b'{"jsonrpc":"2.0","method":"Handshake.\xff\xfe","params":{},"id":1}',
    ),
    _rpc_entry(
        "lone-surrogate-escape",
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{"\\ud800":"\\udfff"},"id":1}',
    ),
    _rpc_entry("truncated-json", HELLO[:-7]),
    _rpc_entry("empty-body", b""),
    _rpc_entry("nul-bytes-body", b"\x00" * 64),
    _rpc_entry(
        "seed-on-root", json.dumps({"method": "Handshake.Hello", "params": [{}], "id": 1}).encode()
    ),
    _rpc_entry(
        "seed-nested",
        b'{"method":"Handshake.Hello","params":[' + b"[" * 5000 + b"]" * 5000 + b'],"id":1}',
        url="/rpc",
    ),
    _rpc_entry(
        "duplicate-keys",
        b'{"jsonrpc":"2.0","method":"Handshake.Hello","method":"Nope.Do","params":{},"params":[],"id":1}',
    ),
    _rpc_entry("content-type-text", HELLO, headers={"Content-Type": "text/plain"}),
    _rpc_entry("gzip-valid", gzip.compress(HELLO), headers={"Content-Encoding": "gzip"}),
    _rpc_entry(
        "gzip-broken", b"\x1f\x8b\x08garbage-not-gzip", headers={"Content-Encoding": "gzip"}
    ),
    _rpc_entry("gzip-truncated", gzip.compress(HELLO)[:20], headers={"Content-Encoding": "gzip"}),
    _rpc_entry("deflate-broken", b"\x78\x9cnot-deflate", headers={"Content-Encoding": "deflate"}),
    _rpc_entry("unknown-encoding", HELLO, headers={"Content-Encoding": "x-adversarial"}),
    _rpc_entry(
        "gzip-bomb-20MiB",
        gzip.compress(
            b'{"jsonrpc":"2.0","method":"Handshake.Hello","params":{"x":"'
            + b"a" * (20 << 20)
            + b'"},"id":1}'
        ),
        headers={"Content-Encoding": "gzip"},
    ),
    *(
        _rpc_entry(
            f"{method}-nul-id",
            _head(method, {"Instance": "instance-\x00", "Labels": {}}),
            kinds=("instance-file", "simulator", "process"),
        )
        for method in ("Instance.Destroy", "Instance.Label")
    ),
    *(
        _rpc_entry(
            f"{method}-5000-char-id",
            _head(method, {"Instance": "i" * 5000, "Labels": {}}),
            kinds=("instance-file", "simulator", "process"),
        )
        for method in ("Instance.Destroy", "Instance.Label")
    ),
    _rpc_entry(
        "group-nul-id", _head("Group.DescribeGroup", {"ID": "g\x00"}), kinds=("group", "manager")
    ),
    _rpc_entry(
        "group-5000-char-id",
        _head("Group.CommitGroup", {"Spec": {**_FUZZ_SPEC, "ID": "g" * 5000}, "Pretend": True}),
        kinds=("group", "manager"),
    ),
    _rpc_entry(
        "combo-names-itself",
        _head(
            "Flavor.Prepare",
            {
                **_PREPARE,
                "Properties": [
                    {
                        "Plugin": "flavor-combo",
                        "Properties": [{"Plugin": "flavor-combo", "Properties": []}],
                    }
                ],
            },
        ),
        kinds=("combo",),
    ),
    # HTTP framing garbage: any 4xx or a clean close will do, but never a 5xx or a hang.
    Garbage("content-length-too-long", http_post(HELLO, length=len(HELLO) + 100), half_close=True),
    Garbage("content-length-too-short", http_post(HELLO, length=5)),
    Garbage("content-length-negative", http_post(HELLO, length=-5)),
    Garbage(
        "content-length-not-a-number",
        http_post(HELLO).replace(b"Content-Length: ", b"Content-Length: x", 1),
    ),
    Garbage(
        "content-length-twice",
        http_post(HELLO).replace(
            b"Connection: close", b"Content-Length: 3\r\nConnection: close", 1
        ),
    ),
    Garbage("content-length-huge", http_post(b"", length=10**30)),
    Garbage(
        "chunked-garbage-size",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ),
    Garbage(
        "chunked-size-too-long",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffff\r\n{}\r\n",
        half_close=True,
    ),
    Garbage(
        "chunked-huge-size",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"f" * 40
        + b"\r\nx\r\n0\r\n\r\n",
    ),
    Garbage(
        "chunked-and-length",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
    Garbage(
        "chunked-no-final-chunk",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n",
        half_close=True,
    ),
    Garbage("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
    Garbage("binary-noise", bytes(range(256)) * 4),
    Garbage("request-line-only", b"POST /\r\n\r\n"),
    Garbage(  # a slow client: one kind will do
        "http-0.9", b"GET /\r\n", kinds=("manager",), timeout=SLOW_CLIENT_DEADLINE
    ),
    Garbage("bad-method", b"P\x00ST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    Garbage(
        "bad-version",
        b"POST / HTTP/9.9\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage(
        "nul-in-header",
        b"POST / HTTP/1.1\r\nHost: x\x00y\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage(
        "header-without-colon",
        b"POST / HTTP/1.1\r\nHost x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage(
        "header-100KiB",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: "
        + b"a" * (100 << 10)
        + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage(
        "headers-5000",
        b"POST / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(5000))
        + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage(
        "url-10KiB",
        b"POST /"
        + b"a" * (10 << 10)
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ),
    Garbage("bare-lf", b"POST / HTTP/1.1\nHost: x\nContent-Length: 2\nConnection: close\n\n{}"),
    Garbage(
        "pipelined-garbage",
        http_post(HELLO).replace(b"Connection: close\r\n", b"") + b"\x00garbage\r\n\r\n",
    ),
    Garbage("expect-100-continue", http_post(HELLO, headers={"Expect": "100-continue"})),
    Garbage(
        "upgrade-websocket",
        b"GET /events?topic=instance/change HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        head_only=True,
    ),
    Garbage(
        "events-bad-topic",
        b"GET /events?topic=%ff%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        head_only=True,
    ),
    Garbage(
        "stop-over-get", b"GET /_infrakit/stop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ),
    Garbage(
        "half-request-then-close", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le", half_close=True
    ),
]


def garbage_for(kind: str) -> list[Garbage]:
    return [g for g in GARBAGE if not g.kinds or kind in g.kinds]


# --- kill -9 invariants ----------------------------------------------------------------------------


def group_files(directory: Path, planted: set[str]) -> list[str]:
    """Instance files in ``directory`` that the test did not plant (the group's candidates)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith("instance-") and n not in planted)


class Sampler:
    """Lists an instance directory every ~10 ms in a thread: the most group files ever seen at
    once, every name ever seen, and whether the planted files stayed byte for byte."""

    def __init__(self, directory: Path, planted: dict[str, bytes]) -> None:
        self.directory = directory
        self.planted = planted
        self.most = 0
        self.ever: set[str] = set()
        self.touched: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            files = group_files(self.directory, set(self.planted))
            self.most = max(self.most, len(files))
            self.ever.update(files)
            for name, content in self.planted.items():
                try:
                    if (self.directory / name).read_bytes() != content:
                        self.touched.add(name)
                except OSError:
                    self.touched.add(name)
            self.samples += 1
            self._stop.wait(0.01)


def kill9(daemon: Daemon) -> None:
    """SIGKILL the daemon's whole session (it runs plugins in-process, but be sure) and reap it."""
    if daemon.proc is None or daemon.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait(timeout=10)


# --- kill -9 rounds against `infrakit up` ----------------------------------------------------------

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
KILL_GROUP = "adv-kill"
#: The scenarios of :func:`kill_round`.
SCENARIOS = ("commit", "heal", "rolling")
#: Files planted in the instance directory that the group must never touch: another group's
#: member and an instance without any group tag.
PLANTED = {
    "instance-1000000000000000001": {"infrakit.group": "someone-else", "owner": "adversarial"},
    "instance-1000000000000000002": {"owner": "adversarial"},
}


def kill_spec(size: int, surge: int, note: str) -> dict[str, Any]:
    return {
        "ID": KILL_GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Tags": {"tier": "kill"}}},
            "Updating": {"MaxSurge": surge, "MaxUnavailable": 0},
        },
    }


class UpRig:
    """``infrakit up`` on the file plugin in a short home: started, SIGKILLed, restarted."""

    def __init__(self) -> None:
        self.home = short_tempdir("k9")
        self.env = isolated_env(self.home)
        self.instances = self.home / "instances"
        self.daemon: Daemon | None = None
        self.starts = 0
        self.planted: dict[str, bytes] = {}

    def plant(self) -> None:
        self.instances.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, tags in PLANTED.items():
            doc = {
                "ID": name,
                "LogicalID": None,
                "Tags": tags,
                "Spec": {"Properties": {}, "Tags": tags},
            }
            content = json.dumps(doc).encode()
            (self.instances / name).write_bytes(content)
            self.planted[name] = content

    def start(self) -> Daemon:
        self.starts += 1
        self.daemon = Daemon(
            ["infrakit", "up", "--poll-interval", "200ms"],
            self.env,
            sockets=UP_SOCKETS,
            log=self.home / f"up-{self.starts}.log",
        )
        return self.daemon.start()

    def kill(self) -> None:
        if self.daemon is not None:
            kill9(self.daemon)

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env, timeout=timeout)

    def commit(self, spec: dict[str, Any], name: str) -> subprocess.CompletedProcess[str]:
        path = self.home / name
        path.write_text(json.dumps(spec))
        return self.cli("group", "commit", str(path))

    def files(self) -> list[str]:
        return group_files(self.instances, set(self.planted))

    def hashes(self) -> dict[str, str]:
        """Config hash of every group file (files vanishing while read are left out)."""
        out = {}
        for name in self.files():
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((self.instances / name).read_bytes())
                out[name] = doc["Tags"].get("infrakit.config.hash", "")
        return out

    def inspect(self) -> dict[str, Any] | None:
        result = self.cli("group", "inspect", KILL_GROUP, "-o", "json")
        if result.returncode != 0:
            return None
        doc = json.loads(result.stdout)
        return doc[0] if isinstance(doc, list) else doc

    def converged(self, size: int, old_hash: str | None = None) -> bool:
        hashes = self.hashes()
        if len(hashes) != size or len(set(hashes.values())) > 1:
            return False
        if old_hash is not None and old_hash in hashes.values():
            return False
        result = self.cli("group", "describe", KILL_GROUP)
        return result.returncode == 0 and "converged" in result.stdout

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-2000:] for p in sorted(self.home.glob("up-*.log"))
        )

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
    """Poll ``predicate`` every 20 ms until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@dataclass
class KillRound:
    """What one kill -9 round saw: the problem (None: every invariant held) and the figures."""

    scenario: str
    kill_point: str
    problem: str | None = None
    most: int = 0
    limit: int = 0
    samples: int = 0


def kill_round(
    scenario: str, rng: Any, *, size: int = 4, surge: int = 2, timeout: float = 30
) -> KillRound:
    """One ``infrakit up`` life: bring a group to ``scenario`` (commit / heal / rolling), SIGKILL
    the process at a random point of it, start it again and check the invariants: never above
    Size + MaxSurge (sampled every ~10 ms throughout), exactly Size at the end at one config, the
    planted files untouched, the committed spec kept."""
    rig = UpRig()
    result = KillRound(scenario, "", limit=size + surge)
    try:
        rig.plant()
        rig.start()
        v1 = kill_spec(size, surge, "version 1")
        committed: dict[str, Any] | None = None
        old_hash = None
        with Sampler(rig.instances, rig.planted) as sampler:
            if scenario == "commit":
                k = rng.randint(0, size)
                result.kill_point = f"after {k} of {size} creates"
                (rig.home / "v1.json").write_text(json.dumps(v1))
                cli = subprocess.Popen(
                    [bin_path("infrakit"), "group", "commit", str(rig.home / "v1.json")],
                    env=rig.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                if k:
                    wait_until(lambda: len(rig.files()) >= k, timeout)
                rig.kill()
                cli.communicate(timeout=30)
                if cli.returncode == 0:
                    committed = v1  # the commit was acknowledged: it must survive the kill
            else:
                if rig.commit(v1, "v1.json").returncode != 0:
                    result.problem = "the first commit failed:\n" + rig.logs()
                    return result
                committed = v1
                if not wait_until(lambda: rig.converged(size), timeout):
                    result.problem = f"v1 never converged: {rig.files()}\n{rig.logs()}"
                    return result
                if scenario == "heal":
                    victims = rng.sample(rig.files(), rng.randint(1, size))
                    k = rng.randint(0, len(victims) - 1)
                    result.kill_point = f"after {k} of {len(victims)} replacements"
                    before = set(rig.files())
                    for name in victims:
                        (rig.instances / name).unlink()
                    if k:
                        wait_until(lambda: len(set(rig.files()) - before) >= k, timeout)
                    rig.kill()
                else:
                    old_hash = next(iter(rig.hashes().values()))
                    old = set(rig.files())
                    v2 = kill_spec(size, surge, "version 2")
                    if rig.commit(v2, "v2.json").returncode != 0:
                        result.problem = "the update commit failed:\n" + rig.logs()
                        return result
                    committed = v2
                    k = rng.randint(0, size - 1)
                    result.kill_point = f"after {k} of {size} new instances"
                    if k:
                        wait_until(lambda: len(set(rig.files()) - old) >= k, timeout)
                    rig.kill()
            rig.start()
            if committed is None:
                # The commit was not acknowledged: nothing, or the whole group, is fine.
                if rig.inspect() is None:
                    settled = rig.files() == []  # and no orphan members of an unstored group
                else:
                    committed, settled = v1, wait_until(lambda: rig.converged(size), timeout)
            else:
                settled = wait_until(lambda: rig.converged(size, old_hash), timeout)
            result.most, result.samples = sampler.most, sampler.samples
            touched = set(sampler.touched)
        problems = []
        if not settled:
            problems.append(f"did not settle at exactly {size}: {rig.hashes()}")
        if result.most > size + surge:
            problems.append(
                f"{result.most} instances at once, above Size + MaxSurge = {size + surge}"
            )
        if touched or any((rig.instances / n).read_bytes() != c for n, c in rig.planted.items()):
            problems.append(f"planted files touched: {sorted(touched)}")
        if committed is not None:
            spec = rig.inspect()
            got = spec and {k: spec["Properties"].get(k) for k in ("Instance", "Flavor")}
            want = {k: committed["Properties"][k] for k in ("Instance", "Flavor")}
            if got != want:
                problems.append(f"the committed spec was not kept: {got} != {want}")
        if problems:
            result.problem = "; ".join(problems) + "\n" + rig.logs()
        return result
    finally:
        rig.close()


# --- a hostile instance plugin -------------------------------------------------------------------


class HostileInstance:
    """A tiny instance plugin on a real UNIX socket whose replies the test chooses.

    It keeps instances in a dict like a sane provider, but ``duplicates`` lists every instance that
    many times in DescribeInstances, and ``describe_reply`` (raw HTTP bytes, or None for the
    honest answer) replaces its DescribeInstances answer with garbage. ``calls`` records
    ``(monotonic time, method, params)`` of every request."""

    def __init__(self, directory: Path, name: str = "hostile") -> None:
        import http.server
        import socketserver

        self.path = directory / name
        self.instances: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[float, str, Any]] = []
        self.duplicates = 1
        self.describe_reply: bytes | None = None
        self._lock = threading.Lock()
        self._counter = 0
        plugin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # /events: none, poll instead
                self._send(404, b'{"error":"no events"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                doc = json.loads(self.rfile.read(length) or b"null")
                raw = plugin.answer(doc)
                if raw is None:
                    self.close_connection = True
                    return
                if raw.startswith(b"HTTP/"):
                    self.wfile.write(raw)
                    self.close_connection = True
                    return
                self._send(200, raw)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a caller that hung up (the group controller timing out) is no news

        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.server = Server(str(self.path), Handler)
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="hostile", daemon=True
        )

    def __enter__(self) -> HostileInstance:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def count(self, method: str, instance: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for _, m, p in self.calls
                if m == method and (instance is None or (p or {}).get("Instance") == instance)
            )

    def answer(self, doc: Any) -> bytes | None:
        method, params, request_id = doc.get("method"), doc.get("params") or {}, doc.get("id")
        with self._lock:
            self.calls.append((time.monotonic(), method, params))

        def ok(result: Any) -> bytes:
            return json.dumps({"jsonrpc": "2.0", "result": result, "id": request_id}).encode()

        if method == "Handshake.Hello":
            return ok({"Objects": {"Instance/0.6.1": [{"Name": ".", "ProxyFor": ""}]}})
        if method == "Instance.Validate":
            return ok({"Type": "", "OK": True})
        if method == "Instance.Provision":
            with self._lock:
                self._counter += 1
                instance_id = f"hostile-{self._counter}"
                spec = params.get("Spec") or {}
                self.instances[instance_id] = {
                    "ID": instance_id,
                    "LogicalID": spec.get("LogicalID"),
                    "Tags": spec.get("Tags") or {},
                }
            return ok({"Type": "", "ID": instance_id})
        if method == "Instance.Destroy":
            with self._lock:
                gone = self.instances.pop(params.get("Instance"), None)
            if gone is None:
                error = {"code": -32000, "message": "not found", "data": {"kind": "NotFoundError"}}
                return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_id}).encode()
            return ok({"Type": "", "OK": True})
        if method == "Instance.Label":
            return ok({"Type": "", "OK": True})
        if method == "Instance.DescribeInstances":
            if self.describe_reply is not None:
                return self.describe_reply or None
            wanted = params.get("Tags") or {}
            with self._lock:
                found = [
                    d
                    for d in self.instances.values()
                    if all(d["Tags"].get(k) == v for k, v in wanted.items())
                ]
            return ok(
                {"Type": "", "Descriptions": [d for d in found for _ in range(self.duplicates)]}
            )
        error = {"code": -32000, "message": f"rpc: can't find method {method}"}
        return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_id}).encode()


#: DescribeInstances answers no controller may take for "zero instances" (or crash on).
GARBAGE_REPLIES: dict[str, bytes] = {
    "not-json": b"this is not json",
    "http-500-text": b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
    "descriptions-a-string": b'{"jsonrpc":"2.0","result":{"Descriptions":"x"},"id":1}',
    "description-id-a-number": b'{"jsonrpc":"2.0","result":{"Descriptions":[{"ID":5,"Tags":{}}]},"id":1}',
    "tags-a-list": b'{"jsonrpc":"2.0","result":{"Descriptions":[{"ID":"x","Tags":["a"]}]},"id":1}',
    "truncated": b'{"jsonrpc":"2.0","result":{"Descriptions":[{"ID":"x"',
    "nested-deep": b'{"jsonrpc":"2.0","result":{"Descriptions":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b'},"id":1}',
    "connection-closed": b"",
}


def draw_bodies(target: Target, count: int, seed: int) -> list[Body]:
    """``count`` hostile bodies for ``target`` from :func:`bodies`, reproducibly from ``seed``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    drawn: list[Body] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(bodies(target))
    def collect(body: Body) -> None:
        drawn.append(body)

    collect()
    return drawn
