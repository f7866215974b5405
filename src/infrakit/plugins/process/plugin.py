"""The process instance plugin's implementation: instances are local processes, state is a directory.

Every instance is one process group led by the instance's ``Command``. The plugin keeps, per
instance, a JSON record ``<dir>/<ID>.json`` (ID, logical ID, tags, the spec it was provisioned
with, pid and the process's start time) and a log ``<dir>/<ID>.log`` that receives the process's
stdout and stderr (and its Init's). Records are written atomically (temporary file + rename).

Liveness is decided by the kernel, never by the record: an instance is listed while a process with
the recorded pid *and* the recorded start time runs and is not a zombie. The start time guards
against pid reuse: a record whose pid now belongs to another process is stale and dropped.

Exits are seen as they happen. Every watched process gets a pidfd (Linux >= 5.3) registered with
the event loop, which becomes readable when the process exits - for our own children and for
processes adopted after a restart alike, with no thread and no CPU spent while nothing happens.
Where pidfds are unavailable the plugin polls (psutil) every ``poll_interval``. An exit that was
not asked for by Destroy removes the record, reaps the child when it is ours, and publishes
``deleted`` on ``instance/change``; the group controller then replaces the instance.

Processes are started in their own session (``setsid``), so they outlive the plugin: stopping or
restarting the plugin leaves them running, and the next plugin on the same directory re-adopts
them from their records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psutil

from infrakit._utils.addresses import free_tcp_port
from infrakit._utils.aio import Broker
from infrakit._utils.private import open_private, private_dir, write_private
from infrakit.errors import NotFoundError, PluginError, SpecError
from infrakit.spi.event import TOPIC_INSTANCE_CHANGE, Event
from infrakit.spi.instance import Context, Description, Spec, spec_to_wire, tags_match
from infrakit.spi.types import ADDRESS_TAG, JSON, Era, Tags

__all__ = ["ProcessCommand", "ProcessInstancePlugin", "allowed", "parse_properties"]

log = logging.getLogger(__name__)

#: Environment variable set in every instance's process (and its Init) to the instance ID.
INSTANCE_ID_ENV = "INFRAKIT_INSTANCE_ID"
#: Set as well when the instance has a logical ID (pets).
LOGICAL_ID_ENV = "INFRAKIT_LOGICAL_ID"
#: With ``"Port": "auto"``: the TCP port the plugin allocated for the instance to listen on.
PORT_ENV = "PORT"
#: The host of an allocated port's address (``infrakit.address`` = ``127.0.0.1:PORT``).
PORT_HOST = "127.0.0.1"

#: How far a process's start time may drift from the recorded one and still be the same process.
#: Linux derives it from the boot time, which moves by whole seconds when the clock is adjusted.
START_TIME_TOLERANCE = 2.0
#: How long Destroy waits for a process to go after SIGKILL before it reports a failure.
KILL_TIMEOUT = 10.0

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Command"],
    "additionalProperties": False,
    "properties": {
        "Command": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "description": "argv of the process; argv[0] is looked up on PATH (Env's PATH if set)",
        },
        "Dir": {
            "type": "string",
            "description": "absolute working directory (default: the plugin's)",
        },
        "Env": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "variables added to the plugin's environment",
        },
        "Port": {
            "enum": ["auto"],
            "description": "allocate a free 127.0.0.1 TCP port per instance: exported as $PORT, "
            "described as the tag infrakit.address=127.0.0.1:PORT",
        },
    },
}
PROPERTIES_EXAMPLE: dict[str, Any] = {
    "Command": ["sleep", "1000"],
    "Dir": "/tmp",
    "Env": {"GREETING": "hello"},
}
_EXAMPLE_TEXT = json.dumps(PROPERTIES_EXAMPLE)


# --- Properties ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessCommand:
    """Validated instance Properties: what to run, where, with which extra environment."""

    argv: list[str]
    directory: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: ``"Port": "auto"``: each instance gets a free port ($PORT, the address tag).
    allocate_port: bool = False

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The plugin's environment, then ``Env``, then ``extra`` (the instance's identity)."""
        return {**os.environ, **self.env, **extra}


def parse_properties(properties: JSON) -> ProcessCommand:
    """Check instance Properties and return them typed; :class:`SpecError` names the bad field."""
    if not isinstance(properties, dict):
        got = "nothing" if properties is None else type(properties).__name__
        raise SpecError(
            f"process instance Properties: expected an object with a Command, got {got}; "
            f"e.g. {_EXAMPLE_TEXT}"
        )
    unknown = sorted(set(properties) - {"Command", "Dir", "Env", "Port"})
    if unknown:
        raise SpecError(
            f"process instance Properties.{unknown[0]}: unknown field, expected only Command, "
            f"Dir, Env and Port; fix the spelling or remove it"
        )
    port = properties.get("Port")
    if port not in (None, "auto"):
        raise SpecError(
            f'process instance Properties.Port: expected "auto" (the plugin allocates a free port '
            f'per instance, exported as $PORT), got {json.dumps(port)}; write "auto" or '
            f"leave Port out"
        )
    argv = properties.get("Command")
    if (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(arg, str) for arg in argv)
        or not argv[0]
    ):
        raise SpecError(
            f"process instance Properties.Command: expected a non-empty array of strings like "
            f'["sleep", "1000"], got {json.dumps(argv)}; write the command as a list of arguments'
        )
    directory = properties.get("Dir")
    if directory is not None:
        if not isinstance(directory, str) or not directory:
            raise SpecError(
                f"process instance Properties.Dir: expected an absolute directory path, got "
                f"{json.dumps(directory)}; give e.g. /tmp or leave Dir out"
            )
        directory = os.path.expanduser(directory)
        if not os.path.isabs(directory) or not os.path.isdir(directory):
            raise SpecError(
                f"process instance Properties.Dir: {directory} is not an absolute path to an "
                f"existing directory; create it or fix Dir"
            )
    env = properties.get("Env")
    if env is None:
        env = {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        raise SpecError(
            f"process instance Properties.Env: expected an object of string values like "
            f'{{"GREETING": "hello"}}, got {json.dumps(env)}; quote numbers and booleans'
        )
    command = ProcessCommand(list(argv), directory, dict(env), port == "auto")
    _check_executable(command)
    return command


def _check_executable(command: ProcessCommand) -> str:
    """The executable ``Command`` runs, as an absolute path with every symlink resolved."""
    program = command.argv[0]
    if "/" in program:
        path = os.path.join(command.directory or os.getcwd(), os.path.expanduser(program))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path)
        raise SpecError(
            f"process instance Properties.Command: {program} is not an executable file; "
            f"check the path (relative paths start from Dir) and its execute permission"
        )
    search_path = command.env.get("PATH", os.environ.get("PATH", os.defpath))
    found = shutil.which(program, path=search_path)
    if found is None:
        raise SpecError(
            f"process instance Properties.Command: {program} not found on PATH; install it, "
            f"give its absolute path, or set PATH in Env"
        )
    return os.path.realpath(found)


#: What a flavor's Init runs as (``sh -c INIT``).
INIT_SHELL = "/bin/sh"


def allowed(executable: str, patterns: tuple[str, ...]) -> bool:
    """True if ``executable`` (absolute, resolved) matches a glob; ``*`` stays in one directory."""
    path = PurePosixPath(executable)
    return any(path == PurePosixPath(p) or path.match(p) for p in patterns)


# --- processes ----------------------------------------------------------------------------------


class _Child(subprocess.Popen[bytes]):
    """A process this plugin started, meant to outlive this object.

    ``Popen``'s finaliser warns about children still running and queues them for reaping by later
    ``Popen`` calls. Ours are instances: they are reaped by the plugin's exit watch while it runs
    and re-adopted by the next plugin after a restart, so the finaliser only reaps what has exited.
    """

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.poll()


def _same_process_running(pid: int, start_time: float) -> bool:
    """True when ``pid`` is alive, not a zombie, and started at ``start_time`` (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - start_time) > START_TIME_TOLERANCE:
            return False
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # someone else's process: the pid was reused
        return False


def _reap_if_our_zombie(pid: int, start_time: float) -> None:
    """Reap ``pid`` when it is an exited child of this very process (a plugin restarted in-process)."""
    try:
        process = psutil.Process(pid)
        ours = (
            process.ppid() == os.getpid()
            and abs(process.create_time() - start_time) <= START_TIME_TOLERANCE
            and process.status() == psutil.STATUS_ZOMBIE
        )
    except (psutil.Error, OSError):
        return
    if ours:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (instances are session leaders)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class _ExitWatch:
    """Resolves a future when a process exits: pidfd readiness where available, else polling."""

    def __init__(self, poll_interval: float, *, use_pidfd: bool = True) -> None:
        self.poll_interval = poll_interval
        self._pidfds: dict[asyncio.Future[None], int] = {}
        self._polled: dict[asyncio.Future[None], Callable[[], bool]] = {}
        self._poller: asyncio.Task[None] | None = None
        #: False once pidfd_open failed for lack of support; then every watch polls.
        self.pidfd_supported = use_pidfd and hasattr(os, "pidfd_open")

    def watch(self, pid: int, is_running: Callable[[], bool]) -> asyncio.Future[None]:
        """A future resolved once ``pid`` has exited; ``is_running`` confirms it is still ours."""
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        pidfd = self._open_pidfd(pid)
        if pidfd is None and self.pidfd_supported:  # the process is already gone
            exited.set_result(None)
            return exited
        # Checked after the pidfd is open: the pidfd then surely refers to the process we mean.
        if not is_running():
            if pidfd is not None:
                os.close(pidfd)
            exited.set_result(None)
            return exited
        if pidfd is not None:
            self._pidfds[exited] = pidfd
            loop.add_reader(pidfd, self._fire, exited)
        else:
            self._polled[exited] = is_running
            if self._poller is None or self._poller.done():
                self._poller = asyncio.create_task(self._poll(), name="poll process exits")
        return exited

    def _open_pidfd(self, pid: int) -> int | None:
        if not self.pidfd_supported:
            return None
        try:
            return os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError as exc:  # ENOSYS (old kernel), EPERM in some sandboxes
            log.info("pidfd_open unavailable (%s); polling for process exits", exc)
            self.pidfd_supported = False
            return None

    def unwatch(self, exited: asyncio.Future[None]) -> None:
        self._release(exited)
        exited.cancel()

    def close(self) -> None:
        for exited in [*self._pidfds, *self._polled]:
            self.unwatch(exited)
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def _release(self, exited: asyncio.Future[None]) -> None:
        pidfd = self._pidfds.pop(exited, None)
        if pidfd is not None:
            asyncio.get_running_loop().remove_reader(pidfd)
            os.close(pidfd)
        self._polled.pop(exited, None)

    def _fire(self, exited: asyncio.Future[None]) -> None:
        self._release(exited)
        if not exited.done():
            exited.set_result(None)

    async def _poll(self) -> None:
        while self._polled:
            await asyncio.sleep(self.poll_interval)
            for exited, is_running in list(self._polled.items()):
                if not is_running():
                    self._fire(exited)


# --- the plugin ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Instance:
    """One instance: its record and, while it runs, the future of its exit."""

    id: str
    logical_id: str | None
    tags: Tags
    spec: JSON
    pid: int
    start_time: float
    #: The Popen object when this plugin process started it; None when adopted from a record.
    child: _Child | None = None
    exited: asyncio.Future[None] | None = None
    #: Exit status when known (our children only).
    status: int | None = None
    #: Set once Destroy began: the exit is expected and Destroy reports it.
    destroying: bool = False


class ProcessInstancePlugin:
    """Instances as local processes; records and logs in ``directory``.

    Serve it with ``infrakit plugin start process``. ``grace`` is how long Destroy waits between
    SIGTERM and SIGKILL. Exits are watched with pidfds; where they are unavailable (or with
    ``use_pidfd=False``) running processes are polled every ``poll_interval`` seconds instead.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        grace: float = 10.0,
        poll_interval: float = 0.5,
        use_pidfd: bool = True,
        allow: tuple[str, ...] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.grace = grace
        #: ``-o process.allow``: the executables instances may run (None: any).
        self.allow = allow
        self._instances: dict[str, _Instance] = {}
        self._broker: Broker[Event] = Broker()
        self._exits = _ExitWatch(poll_interval, use_pidfd=use_pidfd)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the directory if needed and re-adopt the processes its records describe."""
        self._ensure_directory()
        adopted = 0
        for path in sorted(self.directory.glob("*.json")):
            record = self._read(path)
            if record is None or record.id in self._instances:
                continue
            if not _same_process_running(record.pid, record.start_time):
                log.info(
                    "instance %s: process %d is gone (exited, or its pid was reused); "
                    "dropping its record",
                    record.id,
                    record.pid,
                )
                _reap_if_our_zombie(record.pid, record.start_time)
                self._forget_files(record.id, keep_log=True)
                continue
            self._instances[record.id] = record
            self._watch(record)
            adopted += 1
        log.info("process instances in %s (%d running, re-adopted)", self.directory, adopted)

    async def stop(self) -> None:
        """Stop watching. The processes keep running; the next plugin re-adopts them."""
        self._exits.close()
        for instance in self._instances.values():
            instance.exited = None
            if instance.child is not None:
                instance.child.poll()
        self._instances.clear()

    def _ensure_directory(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise SpecError(
                f"process state directory {self.directory} is a file, expected a directory; "
                "use another directory"
            )
        private_dir(self.directory)

    # --- the Instance SPI -----------------------------------------------------------------------

    async def validate(self, properties: JSON) -> None:
        self._check_allowed(parse_properties(properties))

    def _check_allowed(self, command: ProcessCommand, init: str = "") -> None:
        """Refuse a Command (or an Init, which runs ``/bin/sh``) outside ``-o process.allow``."""
        if self.allow is None:
            return
        checks = [("Properties.Command", command.argv[0], _check_executable(command))]
        if init.strip():
            checks.append(("the flavor's Init (sh -c)", INIT_SHELL, os.path.realpath(INIT_SHELL)))
        for what, given, executable in checks:
            if not allowed(executable, self.allow):
                resolved = "" if given == executable else f" (resolved from {given})"
                raise SpecError(
                    f"process instance {what}: {executable}{resolved} is not allowed by -o "
                    f"process.allow={','.join(self.allow)}; run an allowed executable or ask "
                    f"the site to add it to process.allow (INFRAKIT_PROCESS_ALLOW)"
                )

    async def provision(self, spec: Spec) -> str:
        command = parse_properties(spec.properties)
        self._check_allowed(command, spec.init)
        self._ensure_directory()
        instance_id = f"process-{random.getrandbits(63)}"
        while (self.directory / f"{instance_id}.json").exists():  # pragma: no cover - 1 in 2**63
            instance_id = f"process-{random.getrandbits(63)}"
        identity = {INSTANCE_ID_ENV: instance_id}
        if spec.logical_id:
            identity[LOGICAL_ID_ENV] = spec.logical_id
        tags = dict(spec.tags)
        if command.allocate_port:
            port = self._free_port()
            identity[PORT_ENV] = str(port)
            tags[ADDRESS_TAG] = f"{PORT_HOST}:{port}"
        env = command.environment(identity)
        log_path = self._log_path(instance_id)
        log_fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            if spec.init.strip():
                await self._run_init(instance_id, spec.init, command, env, log_fd)
            child = self._spawn(instance_id, command.argv, command, env, log_fd)
        except BaseException:
            log_path.unlink(missing_ok=True)
            raise
        finally:
            os.close(log_fd)
        try:
            start_time = psutil.Process(child.pid).create_time()
        except psutil.Error:  # pragma: no cover - our unreaped child always has a /proc entry
            start_time = 0.0
        instance = _Instance(
            id=instance_id,
            logical_id=spec.logical_id,
            tags=tags,
            spec=spec_to_wire(spec, Era.HEAD),
            pid=child.pid,
            start_time=start_time,
            child=child,
        )
        self._write(instance)
        self._instances[instance_id] = instance
        self._watch(instance)
        log.info(
            "provisioned %s: pid %d runs %s (%s)",
            instance_id,
            child.pid,
            command.argv[0],
            instance.tags.get("infrakit.group", "no group"),
        )
        self._publish("created", instance_id)
        return instance_id

    async def label(self, instance_id: str, labels: Tags) -> None:
        instance = self._get(instance_id)
        instance.tags = {**instance.tags, **labels}
        self._write(instance)
        log.debug("labelled %s with %s", instance_id, labels)
        self._publish("changed", instance_id)

    async def destroy(self, instance_id: str, context: Context | None = None) -> None:
        instance = self._get(instance_id, destroying_too=True)
        if instance.destroying:  # a second Destroy joins the first
            await self._terminate(instance)
            return
        instance.destroying = True
        try:
            await self._terminate(instance)
        except BaseException:
            instance.destroying = False
            raise
        self._instances.pop(instance_id, None)
        self._forget_files(instance_id, keep_log=False)
        reason = f" ({context.reason})" if context is not None and context.reason else ""
        log.info("destroyed %s: pid %d%s", instance_id, instance.pid, reason)
        self._publish("deleted", instance_id, f"process {instance.pid} destroyed{reason}")

    async def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        return [
            Description(
                id=instance.id,
                logical_id=instance.logical_id,
                tags=dict(instance.tags),
                properties=self._properties(instance) if properties else None,
            )
            for instance in self._instances.values()
            if not instance.destroying
            and instance.exited is not None
            and not instance.exited.done()
            and (not tags or tags_match(instance.tags, tags))
        ]

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}

    def _free_port(self) -> int:
        """A TCP port on 127.0.0.1 that is free now and not allocated to another instance (the
        kernel picks it; the instance binds it moments later)."""
        taken = {i.tags.get(ADDRESS_TAG) for i in self._instances.values()}
        for _ in range(100):
            port = free_tcp_port(PORT_HOST)
            if f"{PORT_HOST}:{port}" not in taken:
                return port
        raise PluginError(  # pragma: no cover - the kernel hands out distinct ephemeral ports
            "process instance: no free TCP port on 127.0.0.1 after 100 tries; free some ports"
        )

    # --- events ---------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC_INSTANCE_CHANGE]

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        return self._broker.subscribe(topic)

    def _publish(self, change: str, instance_id: str, message: str = "", data: JSON = None) -> None:
        self._broker.publish(
            TOPIC_INSTANCE_CHANGE,
            Event(
                topic=TOPIC_INSTANCE_CHANGE, type=change, id=instance_id, message=message, data=data
            ),
        )

    # --- processes ------------------------------------------------------------------------------

    def _spawn(
        self,
        instance_id: str,
        argv: list[str],
        command: ProcessCommand,
        env: dict[str, str],
        log_fd: int,
    ) -> _Child:
        try:
            return _Child(
                argv,
                cwd=command.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise PluginError(
                f"process instance {instance_id}: cannot start {argv[0]} in "
                f"{command.directory or os.getcwd()}: {exc.strerror or exc}; "
                f"check Properties.Command and Properties.Dir"
            ) from None

    async def _run_init(
        self,
        instance_id: str,
        init: str,
        command: ProcessCommand,
        env: dict[str, str],
        log_fd: int,
    ) -> None:
        """Run the flavor's Init with ``sh -c`` in the instance's Dir and Env; it must exit 0."""
        child = self._spawn(instance_id, ["/bin/sh", "-c", init], command, env, log_fd)
        exited = self._exits.watch(child.pid, lambda: child.poll() is None)
        try:
            await exited
        except asyncio.CancelledError:
            self._exits.unwatch(exited)
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
            raise
        status = child.wait()
        if status != 0:
            last = _last_line(self._log_path(instance_id))
            raise PluginError(
                f"process instance {instance_id}: the flavor's Init exited with status {status}"
                f"{f' ({last})' if last else ''}; fix Init (it runs as sh -c in Dir before "
                f"Command)"
            )

    def _watch(self, instance: _Instance) -> None:
        child = instance.child
        if child is not None:
            exited = self._exits.watch(instance.pid, lambda: child.poll() is None)
        else:
            exited = self._exits.watch(
                instance.pid, lambda: _same_process_running(instance.pid, instance.start_time)
            )
        instance.exited = exited
        exited.add_done_callback(lambda _: self._on_exit(instance, exited))

    def _on_exit(self, instance: _Instance, exited: asyncio.Future[None]) -> None:
        """The process is gone: reap it, and unless Destroy asked for it, report the loss."""
        if exited.cancelled():
            return
        if instance.child is not None:
            instance.status = instance.child.poll()
        else:
            _reap_if_our_zombie(instance.pid, instance.start_time)
        if instance.destroying or self._instances.get(instance.id) is not instance:
            return
        del self._instances[instance.id]
        self._forget_files(instance.id, keep_log=True)
        how = "" if instance.status is None else f" with status {instance.status}"
        log.info("instance %s: process %d exited%s", instance.id, instance.pid, how)
        self._publish(
            "deleted",
            instance.id,
            f"process {instance.pid} exited{how}",
            {"Pid": instance.pid, "Status": instance.status},
        )

    async def _terminate(self, instance: _Instance) -> None:
        """SIGTERM the process group, SIGKILL it after the grace period; return once it is gone."""
        exited = instance.exited
        if exited is None or exited.done():  # already gone: nothing to signal
            return
        _signal_group(instance.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace)
        except TimeoutError:
            log.info(
                "instance %s: pid %d still running %ss after SIGTERM; sending SIGKILL",
                instance.id,
                instance.pid,
                self.grace,
            )
        # Whatever is left of the group (the leader, or children it left behind) is killed. The
        # group ID cannot be reused while any member is alive, so this reaches only our group.
        _signal_group(instance.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(exited), KILL_TIMEOUT)
        except TimeoutError:
            raise PluginError(
                f"process instance {instance.id}: pid {instance.pid} did not exit "
                f"{KILL_TIMEOUT:g}s after SIGKILL (uninterruptible?); inspect it with ps and "
                f"retry the destroy"
            ) from None

    # --- records --------------------------------------------------------------------------------

    def _get(self, instance_id: str, *, destroying_too: bool = False) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None or (instance.destroying and not destroying_too):
            raise NotFoundError(
                f"instance {instance_id} not found: no running process of that ID in "
                f"{self.directory}; list instances with: infrakit instance describe"
            )
        return instance

    def _properties(self, instance: _Instance) -> JSON:
        spec = instance.spec if isinstance(instance.spec, dict) else {}
        return {**spec, "Pid": instance.pid}

    def _record_path(self, instance_id: str) -> Path:
        return self.directory / f"{instance_id}.json"

    def _log_path(self, instance_id: str) -> Path:
        return self.directory / f"{instance_id}.log"

    def _write(self, instance: _Instance) -> None:
        """Write the instance's record atomically (temporary file + rename).

        No fsync: a power loss takes the processes with it, and a crash of the plugin leaves the
        page cache (and so the record) intact.
        """
        document = {
            "ID": instance.id,
            "LogicalID": instance.logical_id,
            "Tags": instance.tags,
            "Spec": instance.spec,
            "Pid": instance.pid,
            "StartTime": instance.start_time,
        }
        write_private(self._record_path(instance.id), json.dumps(document, indent=0).encode())

    def _forget_files(self, instance_id: str, *, keep_log: bool) -> None:
        self._record_path(instance_id).unlink(missing_ok=True)
        if not keep_log:
            self._log_path(instance_id).unlink(missing_ok=True)

    def _read(self, path: Path) -> _Instance | None:
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s is not a process instance record (%s); ignoring it", path, exc)
            return None
        problem = _record_problem(document, path.stem)
        if problem:
            log.warning("%s is not a process instance record (%s); ignoring it", path, problem)
            return None
        return _Instance(
            id=path.stem,
            logical_id=document.get("LogicalID"),
            tags=dict(document.get("Tags") or {}),
            spec=document.get("Spec"),
            pid=document["Pid"],
            start_time=float(document["StartTime"]),
        )


def _record_problem(document: Any, name: str) -> str:
    """Why ``document`` is not the record of instance ``name`` ("" when it is one)."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("ID") != name:
        return f"its ID {document.get('ID')!r} is not its file name"
    pid = document.get("Pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "Pid is not a positive integer"
    start = document.get("StartTime")
    if not isinstance(start, int | float) or isinstance(start, bool):
        return "StartTime is not a number"
    logical_id = document.get("LogicalID")
    if logical_id is not None and not isinstance(logical_id, str):
        return "LogicalID is not a string"
    tags = document.get("Tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        return "Tags is not an object of strings"
    return ""


def _last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of a log, shortened to ``limit`` characters ("" if none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""
