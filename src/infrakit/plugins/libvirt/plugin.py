"""The libvirt instance plugin's implementation: domains defined, listed and watched through
libvirt-python.

Every instance is a persistent libvirt domain (QEMU) named ``<group or logical id>-<8 hex>``; the
name is the instance ID. The plugin keeps no state of its own: membership and tags are the
domain's ``<metadata>`` element (:mod:`infrakit.plugins.libvirt.domain`), so a restarted plugin
lists the same instances. A domain counts as an instance while it is active (running, paused);
one that stopped (guest power-off, ``virsh destroy``, QEMU killed) is not, and the plugin reaps
it: undefines it and deletes its overlay and files, so nothing leaks while the group replaces it.

Events: libvirt's domain lifecycle events (one connection registered with the default event loop)
are published on :data:`~infrakit.spi.event.TOPIC_INSTANCE_CHANGE`, so a ``virsh destroy`` is
healed at once. A monitor thread keeps that connection (libvirt keepalive detects a dead daemon),
reconnects with a capped backoff and then publishes ``resync``, and sweeps stopped domains every
few seconds as the safety net. While libvirtd is unreachable every call raises
:class:`~infrakit.errors.PluginError` - ``DescribeInstances`` never answers "no instances".

libvirt-python is synchronous, so the SPI methods are plain ``def`` methods (the adapter runs them
in worker threads); libvirt connections may be shared between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import libvirt

from infrakit._utils.addresses import free_tcp_port
from infrakit._utils.aio import Broker
from infrakit.errors import NotFoundError, PluginError, SpecError
from infrakit.plugins.libvirt.domain import (
    METADATA_NS,
    METADATA_PREFIX,
    PROPERTIES_EXAMPLE,
    PROPERTIES_SCHEMA,
    DomainProperties,
    InstanceFiles,
    Membership,
    domain_name,
    domain_xml,
    init_via,
    metadata_xml,
    nocloud_meta_data,
    overlay_xml,
    parse_metadata,
    parse_properties,
    probe_xml,
)
from infrakit.spi.event import TOPIC_INSTANCE_CHANGE, Event
from infrakit.spi.instance import Context, Description, Spec, tags_match
from infrakit.spi.types import ADDRESS_TAG, JSON, LOGICAL_ID_TAG, Tags

__all__ = ["DEFAULT_URI", "LibvirtInstancePlugin"]

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
T = TypeVar("T")

#: Lifecycle events worth a reconcile pass, and the event type each is published as.
_EVENT_TYPES = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "paused",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "died",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "died",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "deleted",
}
_EVENT_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
}
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}

#: Monitor: reconnect backoff (first, cap), sweep interval, keepalive (interval, count).
_RECONNECT_FIRST, _RECONNECT_CAP = 0.1, 2.0
SWEEP_INTERVAL = 5.0
_KEEPALIVE = (2, 3)
#: How long the KVM probe waits for a real boot to reach its panic.
PROBE_TIMEOUT = 20.0

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """libvirt's default event loop, once per process, before the first connection is opened
    (events and keepalive need it); libvirt's own stderr error printer is silenced: errors reach
    the caller as exceptions."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt event loop", daemon=True).start()
        _event_loop_started = True


def _is_local(uri: str) -> bool:
    """True when the URI names this host (no host part): paths can be checked here."""
    return not urllib.parse.urlsplit(uri).hostname


class LibvirtInstancePlugin:
    """Instances as libvirt domains on ``uri``. Serve it with ``infrakit plugin start libvirt``.

    ``run_dir`` holds each instance's serial console log and Init file or NoCloud seed; the
    hypervisor must be able to read (and, for the console, write) it. ``domain_type`` is
    ``auto`` (probe KVM with a real boot, fall back to TCG), ``kvm`` or ``qemu`` (TCG).
    """

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        *,
        run_dir: Path,
        name: str = "instance-libvirt",
        domain_type: str = "auto",
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        _ensure_event_loop()
        self.uri = uri
        self.name = name
        self.run_dir = run_dir
        self.domain_type = domain_type
        self.sweep_interval = sweep_interval
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._probed: str | None = None if domain_type == "auto" else domain_type
        self._in_flight: set[str] = set()
        self._stopped: set[str] = set()
        self._state_lock = threading.Lock()
        self._broker: Broker[Event] = Broker()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._monitor: threading.Thread | None = None
        #: True while the event connection is up (for tests and status).
        self.events_connected = threading.Event()

    # --- libvirt access -------------------------------------------------------------------------

    def _connection(self) -> Any:
        """The API connection, (re)opened when there is none or it died."""
        with self._conn_lock:
            if self._conn is not None:
                try:
                    alive = self._conn.isAlive() == 1
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    self._drop(self._conn)
                    self._conn = None
            if self._conn is None:
                try:
                    conn = libvirt.open(self.uri)
                except libvirt.libvirtError as exc:
                    raise self._unreachable("connect", exc) from None
                with contextlib.suppress(libvirt.libvirtError):
                    conn.setKeepAlive(*_KEEPALIVE)
                self._conn = conn
            return self._conn

    @staticmethod
    def _drop(conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()

    def _unreachable(self, doing: str, exc: Exception) -> PluginError:
        detail = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else exc
        return PluginError(
            f"cannot reach libvirt at {self.uri} to {doing} ({detail}); start libvirtd, or point "
            f"-o libvirt.uri= / LIBVIRT_DEFAULT_URI at it"
        )

    def _call(self, fn: Callable[[Any], T], doing: str) -> T:
        """Run ``fn(connection)``; turn libvirt's errors into one-line infrakit errors."""
        conn = self._connection()
        try:
            return fn(conn)
        except libvirt.libvirtError as exc:
            alive = False
            with contextlib.suppress(libvirt.libvirtError):
                alive = conn.isAlive() == 1
            if not alive:
                with self._conn_lock:
                    if self._conn is conn:
                        self._drop(conn)
                        self._conn = None
                raise self._unreachable(doing, exc) from None
            raise PluginError(
                f"libvirt at {self.uri} refused to {doing}: {exc.get_error_message()}"
            ) from None

    def _membership(self, dom: Any) -> Membership | None:
        """The domain's infrakit metadata if this plugin made it (None otherwise)."""
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (
                libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                libvirt.VIR_ERR_NO_DOMAIN,
            ):
                return None
            raise
        member = parse_metadata(text)
        return member if member is not None and member.plugin == self.name else None

    # --- the Instance SPI -----------------------------------------------------------------------

    def validate(self, properties: JSON) -> None:
        """Check the Properties, the pool and base image, and (local URIs) kernel and initrd."""
        props = parse_properties(properties)
        if _is_local(self.uri):
            for what, path in (("Kernel", props.kernel), ("Initrd", props.initrd)):
                if path is not None and not Path(path).is_file():
                    raise SpecError(
                        f"libvirt Properties.{what}: {path} is not a file on this host; give the "
                        f"path of an existing file"
                    )
        if props.disk is not None:
            self._call(lambda conn: self._base_volume(conn, props), "look up the base image")

    def _base_volume(self, conn: Any, props: DomainProperties) -> tuple[Any, Any]:
        """``(pool, base volume)`` for ``props.disk``; SpecError when either is not there."""
        disk = props.disk
        assert disk is not None
        try:
            pool = conn.storagePoolLookupByName(disk.pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            raise SpecError(
                f"libvirt Properties.Disk.Pool: no storage pool {disk.pool!r} on {self.uri}; "
                f"define one (virsh pool-define-as {disk.pool} dir --target DIR) or name an "
                f"existing one (virsh pool-list)"
            ) from None
        for attempt in range(2):
            try:
                return pool, conn.storageVolLookupByPath(disk.base)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
                if attempt == 0:
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.refresh(0)
        raise SpecError(
            f"libvirt Properties.Disk.Base: {disk.base} is not a volume of any storage pool on "
            f"{self.uri}; copy the image into a pool's directory and run: virsh pool-refresh "
            f"{disk.pool}"
        )

    def provision(self, spec: Spec) -> str:
        """Define and start one domain carrying the spec's tags; return its name."""
        props = parse_properties(spec.properties)
        via = init_via(props, spec.init)
        domain_type = self._domain_type(props)
        name = domain_name(spec.logical_id, spec.tags)
        with self._state_lock:
            self._in_flight.add(name)
        files = InstanceFiles(console=str(self.run_dir / f"{name}.console"))
        try:
            self._ensure_run_dir()
            files = self._write_init(name, via, spec.init, files)
            if props.disk is not None:
                files = self._create_overlay(name, props, files)
            tags = dict(spec.tags)
            host_port = None
            if props.forward is not None:
                host_port = free_tcp_port()  # QEMU binds it moments later
                tags[ADDRESS_TAG] = f"127.0.0.1:{host_port}"  # Describe reports it: metadata
            metadata = metadata_xml(self.name, tags, spec.logical_id)
            xml = domain_xml(name, domain_type, props, metadata, files, spec.init, host_port)
            self._call(lambda conn: conn.defineXML(xml).create(), f"define and start {name}")
        except BaseException:
            self._cleanup(name, files)
            raise
        finally:
            with self._state_lock:
                self._in_flight.discard(name)
        log.info(
            "provisioned %s (%s, %d MiB, %d vCPU)", name, domain_type, props.memory, props.cpus
        )
        return name

    def _ensure_run_dir(self) -> None:
        """The run directory, created ``0711`` (whatever the umask): QEMU's user reaches the files
        it is given, nobody else lists them. An existing directory is left as it is."""
        if not self.run_dir.is_dir():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir.chmod(0o711)

    def _write_init(
        self, name: str, via: str | None, init: str, files: InstanceFiles
    ) -> InstanceFiles:
        """The Init file (fw_cfg) or NoCloud seed ISO in the run directory, as ``via`` needs."""
        if via == "fwcfg":
            path = self.run_dir / f"{name}.init"
            path.write_text(init)
            path.chmod(0o644)
            return InstanceFiles(files.overlay, files.console, init_file=str(path))
        if via == "nocloud":
            path = self.run_dir / f"{name}.seed.iso"
            _nocloud_seed(path, name, init)
            return InstanceFiles(files.overlay, files.console, seed_iso=str(path))
        return files

    def _create_overlay(
        self, name: str, props: DomainProperties, files: InstanceFiles
    ) -> InstanceFiles:
        def create(conn: Any) -> str:
            pool, base = self._base_volume(conn, props)
            base_format = _volume_format(base.XMLDesc(0))
            xml = overlay_xml(f"{name}.qcow2", base.info()[1], base.path(), base_format)
            return str(pool.createXML(xml, 0).path())

        overlay = self._call(create, f"create the overlay of {name}")
        return InstanceFiles(overlay, files.console, files.init_file, files.seed_iso)

    def destroy(self, instance_id: str, context: Context | None = None) -> None:
        """Stop the domain at once (power cut), undefine it, delete its overlay and files."""

        def remove(conn: Any) -> None:
            try:
                dom = conn.lookupByName(instance_id)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                dom = None
            if dom is None or self._membership(dom) is None:
                raise NotFoundError(
                    f"instance {instance_id!r} not found among the domains this plugin "
                    f"({self.name}) defined on {self.uri}; list them with: infrakit instance "
                    f"--name {self.name} describe"
                )
            self._remove(conn, dom)

        self._call(remove, f"destroy {instance_id}")
        reason = f" ({context.reason})" if context is not None and context.reason else ""
        log.info("destroyed %s%s", instance_id, reason)

    def _remove(self, conn: Any, dom: Any) -> None:
        """Domain gone (destroyed and undefined), its overlay volume and run-dir files deleted."""
        name = dom.name()
        disks = _file_disks(dom.XMLDesc(0))
        if dom.isActive():
            with contextlib.suppress(libvirt.libvirtError):  # it stopped meanwhile
                dom.destroy()
        try:
            dom.undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        for path in disks:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storageVolLookupByPath(path).delete(0)
        self._delete_files(name)
        with self._state_lock:
            self._stopped.discard(name)

    def _cleanup(self, name: str, files: InstanceFiles) -> None:
        """Best effort: the domain (if defined) and files of an instance that failed to start."""

        def undefine(conn: Any) -> None:
            with contextlib.suppress(libvirt.libvirtError):
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()

        with contextlib.suppress(PluginError):
            self._call(undefine, f"undefine {name}")
        if files.overlay:
            with contextlib.suppress(PluginError):
                self._call(
                    lambda conn: conn.storageVolLookupByPath(files.overlay).delete(0),
                    f"delete the overlay of {name}",
                )
        self._delete_files(name)

    def _delete_files(self, name: str) -> None:
        for suffix in (".console", ".init", ".seed.iso"):
            with contextlib.suppress(OSError):
                (self.run_dir / f"{name}{suffix}").unlink(missing_ok=True)

    def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        """Active domains of this plugin carrying all ``tags``."""

        def listing(conn: Any) -> list[Description]:
            out: list[Description] = []
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                member = self._membership(dom)
                if member is None or not tags_match(member.tags, tags):
                    continue
                out.append(
                    Description(
                        id=dom.name(),
                        logical_id=member.logical_id,
                        tags=dict(member.tags),
                        properties=_summary(dom) if properties else None,
                    )
                )
            return out

        return self._call(listing, "list domains")

    def label(self, instance_id: str, labels: Tags) -> None:
        """Merge ``labels`` into the domain's tags (its metadata, live and persistent)."""

        def relabel(conn: Any) -> None:
            try:
                dom = conn.lookupByName(instance_id)
            except libvirt.libvirtError:
                dom = None
            member = self._membership(dom) if dom is not None else None
            if dom is None or member is None:
                raise NotFoundError(
                    f"instance {instance_id!r} not found among {self.name}'s domains"
                )
            tags = {k: v for k, v in {**member.tags, **labels}.items() if k != LOGICAL_ID_TAG}
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if dom.isActive():
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            element = metadata_xml(self.name, tags, member.logical_id)
            dom.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, METADATA_PREFIX, METADATA_NS, flags
            )

        self._call(relabel, f"label {instance_id}")

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}

    # --- KVM or TCG -----------------------------------------------------------------------------

    def _domain_type(self, props: DomainProperties) -> str:
        """``kvm`` if the host offers it and a real boot works under it, else ``qemu`` (TCG)."""
        with self._probe_lock:
            if self._probed is None:
                self._probed = self._probe(props.kernel)
            return self._probed

    def _probe(self, kernel: str | None) -> str:
        caps = self._call(lambda conn: conn.getCapabilities(), "read the capabilities")
        if "type='kvm'" not in caps and 'type="kvm"' not in caps:
            log.info(
                "libvirt at %s offers no KVM: guests run under TCG (domain type qemu)", self.uri
            )
            return "qemu"
        if kernel is None and _is_local(self.uri):
            kernels = sorted(glob.glob("/boot/vmlinuz-*"), reverse=True)
            kernel = kernels[0] if kernels else None
        if kernel is None:
            log.warning("no kernel to probe KVM with: guests run under TCG (domain type qemu)")
            return "qemu"
        if self.boots(kernel, "kvm"):
            log.info("KVM boots a kernel on %s: guests run under KVM", self.uri)
            return "kvm"
        log.warning(
            "KVM is offered on %s but does not boot a kernel: guests run under TCG", self.uri
        )
        return "qemu"

    def boots(self, kernel: str, domain_type: str, timeout: float = PROBE_TIMEOUT) -> bool:
        """Boot ``kernel`` in a transient ``domain_type`` domain with no root file system: True
        when it reaches its panic (and ends itself) within ``timeout``."""
        name = f"infrakit-probe-{domain_type}-{time.monotonic_ns() % 10**8}"
        self._ensure_run_dir()
        console = self.run_dir / f"{name}.console"
        xml = probe_xml(name, domain_type, kernel, str(console))
        try:
            dom = self._call(lambda conn: conn.createXML(xml, 0), f"start the {domain_type} probe")
        except PluginError as exc:
            log.info("the %s probe did not start: %s", domain_type, exc)
            console.unlink(missing_ok=True)
            return False
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ended = not _still_active(dom)
                text = console.read_text(errors="replace") if console.exists() else ""
                if "Kernel panic" in text or ended:
                    return "Kernel panic" in text  # printed even with `quiet`
                self._stopping.wait(0.2)
            return False
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            console.unlink(missing_ok=True)

    # --- events and the safety net --------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC_INSTANCE_CHANGE]

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        return self._broker.subscribe(topic)

    async def start(self) -> None:
        """Start the monitor: lifecycle events, reconnects and sweeps, until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._monitor = threading.Thread(
            target=self._run_monitor, name=f"{self.name} monitor", daemon=True
        )
        self._monitor.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._monitor = self._monitor, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 10.0)
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._drop(conn)

    def _run_monitor(self) -> None:
        """Monitor thread: hold an event connection, reconnect when it dies, sweep."""
        delay = _RECONNECT_FIRST
        was_lost = False
        while not self._stopping.is_set():
            try:
                events = self._open_events()
            except libvirt.libvirtError as exc:
                if not was_lost:
                    log.warning("libvirt events at %s unavailable: %s; retrying", self.uri, exc)
                was_lost = True
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_CAP)
                continue
            delay = _RECONNECT_FIRST
            self.events_connected.set()
            if was_lost:
                log.info("libvirt events at %s are back", self.uri)
                self._publish(Event(TOPIC_INSTANCE_CHANGE, "resync", message="libvirt reconnected"))
            was_lost = False
            try:
                self._watch(events)
            finally:
                self.events_connected.clear()
                self._close_events(events)
            if not self._stopping.is_set():
                log.warning("libvirt event connection to %s lost; reconnecting", self.uri)
                was_lost = True

    def _open_events(self) -> tuple[Any, int]:
        conn = libvirt.open(self.uri)
        try:
            conn.setKeepAlive(*_KEEPALIVE)
            conn.registerCloseCallback(lambda *_: self._wake.set(), None)
            callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            )
        except libvirt.libvirtError:
            self._drop(conn)
            raise
        return conn, callback_id

    def _close_events(self, events: tuple[Any, int]) -> None:
        conn, callback_id = events
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(callback_id)
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        self._drop(conn)

    def _watch(self, events: tuple[Any, int]) -> None:
        """Sweep now and every ``sweep_interval`` (or when woken) while the connection lives."""
        conn = events[0]
        while not self._stopping.is_set():
            try:
                if conn.isAlive() != 1:
                    return
            except libvirt.libvirtError:
                return
            try:
                self._sweep()
            except PluginError as exc:
                log.debug("sweep skipped: %s", exc)
            self._wake.wait(self.sweep_interval)
            self._wake.clear()

    def _sweep(self) -> None:
        """Reap this plugin's stopped domains: at once when a lifecycle event saw it stop, else
        when two sweeps in a row find it stopped (a domain being provisioned is never touched)."""

        def sweep(conn: Any) -> list[str]:
            reaped = []
            seen: set[str] = set()
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE):
                name = dom.name()
                with self._state_lock:
                    if name in self._in_flight:
                        continue
                    ripe = name in self._stopped
                if self._membership(dom) is None:
                    continue
                seen.add(name)
                if ripe:
                    self._remove(conn, dom)
                    reaped.append(name)
            with self._state_lock:
                self._stopped = (self._stopped | seen) - set(reaped)
            return reaped

        for name in self._call(sweep, "sweep stopped domains"):
            log.info("reaped stopped domain %s (undefined; overlay and files deleted)", name)
            self._publish(
                Event(TOPIC_INSTANCE_CHANGE, "deleted", id=name, message=f"domain {name} reaped")
            )

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        """libvirt's event loop thread: publish, and wake the monitor to reap a stopped domain."""
        change = _EVENT_TYPES.get(event)
        if change is None:
            return
        name = dom.name()
        if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_CRASHED):
            with self._state_lock:
                self._stopped.add(name)
            self._wake.set()
        self._publish(
            Event(
                TOPIC_INSTANCE_CHANGE,
                change,
                id=name,
                message=f"domain {name} {_EVENT_NAMES[event]}",
                data={"Event": _EVENT_NAMES[event], "Detail": detail},
            )
        )

    def _publish(self, event: Event) -> None:
        self._broker.publish_from_thread(self._loop, TOPIC_INSTANCE_CHANGE, event)


def _still_active(dom: Any) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False  # a transient domain that ended is gone


def _volume_format(xml: str) -> str:
    node = ElementTree.fromstring(xml).find("./target/format")
    return node.get("type", "raw") if node is not None else "raw"


def _file_disks(xml: str) -> list[str]:
    """Paths of the domain's writable file disks (its overlay), not cdroms."""
    root = ElementTree.fromstring(xml)
    out = []
    for disk in root.findall("./devices/disk[@device='disk']"):
        source = disk.find("source")
        if source is not None and source.get("file"):
            out.append(str(source.get("file")))
    return out


def _summary(dom: Any) -> dict[str, Any]:
    """What ``DescribeInstances(properties=true)`` reports for one domain."""
    state, max_mem, _mem, vcpus, _cpu_time = dom.info()
    xml = dom.XMLDesc(0)
    return {
        "Name": dom.name(),
        "UUID": dom.UUIDString(),
        "State": _STATE_NAMES.get(state, str(state)),
        "DomainType": ElementTree.fromstring(xml).get("type"),
        "CPUs": vcpus,
        "MemoryMiB": max_mem // 1024,
        "Disks": _file_disks(xml),
    }


def _nocloud_seed(path: Path, name: str, init: str) -> None:
    """A NoCloud seed ISO (volume ``cidata``): ``user-data`` is the Init, ``meta-data`` names it."""
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        (Path(scratch) / "user-data").write_text(init)
        (Path(scratch) / "meta-data").write_text(nocloud_meta_data(name))
        argv = [
            "genisoimage",
            "-quiet",
            "-output",
            str(path),
            "-volid",
            "cidata",
            "-joliet",
            "-rock",
        ]
        try:
            done = subprocess.run(
                [*argv, "user-data", "meta-data"],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PluginError(
                f"libvirt: cannot build the NoCloud seed of {name} ({exc}); install genisoimage "
                f'or set Properties.InitVia to "fwcfg"'
            ) from None
        if done.returncode != 0:
            raise PluginError(f"libvirt: genisoimage failed for {name}: {done.stderr.strip()}")
    path.chmod(0o644)
