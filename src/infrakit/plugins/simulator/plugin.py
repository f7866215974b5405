"""The simulator's implementation: instances as in-memory records, faults applied on every call.

:class:`SimulatorInstancePlugin` holds the instances and the fault layers and implements the
Instance SPI, the event source and the run-time control API; :class:`SimulatorFlavorPlugin` is a
pass-through flavor over the same state whose ``Healthy`` answer follows the fault settings.

Fault layers, lowest first (a field set in a higher layer wins, see :mod:`.faults`):

1. the ``faults`` option (start-time defaults for every group);
2. the control file's ``Faults`` (run time, every group);
3. the group's spec: ``Faults`` in the instance Properties (remembered per ``infrakit.group`` at
   each Provision), then - for flavor calls - ``Faults`` in the flavor Properties;
4. the control file's ``Groups.<group>`` (run time, one group);
5. per instance: the control file's ``Health.<instance ID>`` (Healthy answers only).

The control file (``-o simulator.control=PATH``) is polled; when it changes it replaces every
run-time setting (layers 2, 4 and 5, and what the Python API set), and the instances named in its
``Kill`` list die. Time is wall-clock time: deaths and visibility are kept as epoch seconds so a
state file (``-o simulator.state=PATH``) restores them across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrakit._utils.aio import Broker
from infrakit._utils.duration import format_duration
from infrakit._utils.private import private_dir, write_private
from infrakit.errors import NotFoundError, PluginError, SpecError
from infrakit.plugins.simulator.faults import (
    FAULTS_EXAMPLE,
    FAULTS_SCHEMA,
    Faults,
    Op,
    parse_faults,
    parse_health,
)
from infrakit.spi.event import TOPIC_INSTANCE_CHANGE, Event
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Context, Description, Spec, spec_to_wire, tags_match
from infrakit.spi.types import GROUP_TAG, JSON, Era, Health, Tags, ci_get, ci_view

__all__ = ["Control", "SimulatorFlavorPlugin", "SimulatorInstancePlugin", "parse_control"]

log = logging.getLogger(__name__)

INSTANCE_EXAMPLE: dict[str, Any] = {"Note": "any other keys are kept", "Faults": FAULTS_EXAMPLE}
FLAVOR_EXAMPLE: dict[str, Any] = {"Faults": {"Healthy": "unhealthy"}}
CONTROL_EXAMPLE: dict[str, Any] = {
    "Faults": {"ProvisionFailureRate": 1},
    "Groups": {"cattle": {"DescribeLag": "2s"}},
    "Health": {"sim-0a1b2c3d4e5f": "unhealthy"},
    "Kill": ["sim-0a1b2c3d4e5f"],
}
STATE_VERSION = 1


def _properties_schema(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": {"Faults": FAULTS_SCHEMA},
        "additionalProperties": True,
        "examples": [example],
    }


def faults_of_properties(properties: JSON, what: str) -> Faults:
    """The ``Faults`` of instance or flavor Properties (other keys are the user's own)."""
    if properties is not None and not isinstance(properties, dict):
        raise SpecError(
            f"{what}: expected a JSON object or null, got {type(properties).__name__}; "
            f"e.g. {json.dumps(FLAVOR_EXAMPLE)}"
        )
    return parse_faults(ci_get(ci_view(properties, what), "Faults"), f"{what}.Faults")


@dataclass
class Control:
    """The run-time settings: what the control file (or the Python API) says now."""

    faults: Faults = field(default_factory=Faults)
    groups: dict[str, Faults] = field(default_factory=dict)
    health: dict[str, Health] = field(default_factory=dict)
    kill: list[str] = field(default_factory=list)


def parse_control(document: Any, what: str = "control file") -> Control:
    """Validate a control document (see :data:`CONTROL_EXAMPLE`)."""
    view = ci_view(document, what)
    unknown = sorted(set(view) - {"faults", "groups", "health", "kill"})
    if unknown:
        raise SpecError(
            f"{what}: unknown key {unknown[0]!r}; expected Faults, Groups, Health or Kill, "
            f"e.g. {json.dumps(CONTROL_EXAMPLE)}"
        )
    control = Control(faults=parse_faults(ci_get(view, "Faults"), f"{what}: Faults"))
    groups = ci_get(view, "Groups") or {}
    if not isinstance(groups, dict):
        raise SpecError(f'{what}: Groups: expected {{"<group ID>": {{...faults...}}}}')
    for gid, faults in groups.items():
        control.groups[gid] = parse_faults(faults, f"{what}: Groups.{gid}")
    health = ci_get(view, "Health") or {}
    if not isinstance(health, dict):
        raise SpecError(f'{what}: Health: expected {{"<instance ID>": "unhealthy"}}')
    for iid, word in health.items():
        control.health[iid] = parse_health(word, f"{what}: Health.{iid}")
    kill = ci_get(view, "Kill") or []
    if not isinstance(kill, list) or not all(isinstance(i, str) for i in kill):
        raise SpecError(f'{what}: Kill: expected a list of instance IDs, e.g. ["sim-0a1b2c3d"]')
    control.kill = list(kill)
    return control


@dataclass(slots=True)
class _Instance:
    """One simulated instance. Times are wall-clock epoch seconds (they survive restarts)."""

    id: str
    logical_id: str | None
    tags: Tags
    spec: JSON
    created_at: float
    visible_at: float
    dies_at: float | None = None
    #: (Lifetime, MeanLifetime) that ``dies_at`` was drawn for; a change draws again.
    death_rule: tuple[float, float] = (0.0, 0.0)

    @property
    def group(self) -> str:
        return self.tags.get(GROUP_TAG, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "LogicalID": self.logical_id,
            "Tags": self.tags,
            "Spec": self.spec,
            "CreatedAt": self.created_at,
            "VisibleAt": self.visible_at,
            "DiesAt": self.dies_at,
            "DeathRule": list(self.death_rule),
        }

    @classmethod
    def from_json(cls, doc: Any) -> _Instance:
        rule = doc.get("DeathRule") or [0.0, 0.0]
        return cls(
            id=str(doc["ID"]),
            logical_id=doc.get("LogicalID"),
            tags=dict(doc.get("Tags") or {}),
            spec=doc.get("Spec"),
            created_at=float(doc["CreatedAt"]),
            visible_at=float(doc.get("VisibleAt") or doc["CreatedAt"]),
            dies_at=None if doc.get("DiesAt") is None else float(doc["DiesAt"]),
            death_rule=(float(rule[0]), float(rule[1])),
        )


class SimulatorInstancePlugin:
    """Simulated instances with injectable faults. Serve with ``infrakit plugin start simulator``.

    Run-time control from Python (the same settings the control file holds): :meth:`set_faults`,
    :meth:`set_health`, :meth:`kill`; :meth:`faults_for` shows what is in effect for a group.
    """

    def __init__(
        self,
        defaults: Faults | None = None,
        *,
        seed: int | None = None,
        state: Path | str | None = None,
        control: Path | str | None = None,
        control_poll: float = 0.25,
        state_hint: str = "use another state file",
    ) -> None:
        self.defaults = defaults or Faults()
        self.state_path = Path(state) if state is not None else None
        self.control_path = Path(control) if control is not None else None
        self.control_poll = control_poll
        self.control = Control()
        self._rng = random.Random(seed)
        self._instances: dict[str, _Instance] = {}
        #: Faults of each group's instance Properties, as of its latest Provision.
        self._group_faults: dict[str, Faults] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._broker: Broker[Event] = Broker()
        self._changed = asyncio.Event()
        self._control_stamp: tuple[int, int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self.flavor = SimulatorFlavorPlugin(self)
        if self.state_path is not None:
            self._load_state(self.state_path, state_hint)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Apply the control file, schedule restored instances' deaths, watch the control file."""
        if self.control_path is not None:
            private_dir(self.control_path.parent)
            self._check_control_file()
            self._watcher = asyncio.create_task(self._watch_control(), name="simulator control")
        for record in list(self._instances.values()):
            if record.visible_at > time.time():
                self._at(record.visible_at, "visible", record.id)
            self._schedule_death(record)
        log.info(
            "simulating %d instance(s)%s; faults: %s; control file: %s",
            len(self._instances),
            f" (state {self.state_path})" if self.state_path else "",
            json.dumps(self.defaults.to_wire()) if self.defaults.to_wire() else "none",
            self.control_path or "none",
        )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._stopping = True
        self._changed.set()  # hung calls fail now: the plugin is going away

    # --- the Instance SPI -----------------------------------------------------------------------

    async def validate(self, properties: JSON) -> None:
        faults_of_properties(properties, "simulator instance Properties")
        await self._unless_hung(Op.VALIDATE, "")

    async def provision(self, spec: Spec) -> str:
        spec_faults = faults_of_properties(spec.properties, "simulator instance Properties")
        group = spec.tags.get(GROUP_TAG, "")
        if self._group_faults.get(group) != spec_faults:
            self._group_faults[group] = spec_faults
            self._faults_changed()
        await self._unless_hung(Op.PROVISION, group)
        faults = self.faults_for(group)
        if faults.provision_latency:
            await asyncio.sleep(faults.provision_latency)
            faults = self.faults_for(group)
        if self._roll(faults.provision_failure_rate):
            message = (
                f"simulator: injected Provision failure (ProvisionFailureRate "
                f"{faults.provision_failure_rate:g}{_in_group(group)})"
            )
            log.info("%s", message)
            raise PluginError(message)
        instance_id = self._new_id()
        now = time.time()
        record = _Instance(
            id=instance_id,
            logical_id=spec.logical_id,
            tags=dict(spec.tags),
            spec=spec_to_wire(spec, Era.HEAD),
            created_at=now,
            visible_at=now + (faults.describe_lag or 0.0),
        )
        self._instances[instance_id] = record
        self._schedule_death(record)
        self._save()
        log.info("provisioned %s%s", instance_id, _in_group(group))
        if record.visible_at > now:
            self._at(record.visible_at, "visible", instance_id)
        else:
            self._publish("created", instance_id, "provisioned")
        return instance_id

    async def label(self, instance_id: str, labels: Tags) -> None:
        record = self._get(instance_id)
        await self._unless_hung(Op.LABEL, record.group)
        record = self._get(instance_id)
        record.tags = {**record.tags, **labels}
        self._save()
        if record.visible_at <= time.time():  # else its "created" event is still to come
            self._publish("changed", instance_id, "labelled")

    async def destroy(self, instance_id: str, context: Context | None = None) -> None:
        group = self._get(instance_id).group
        await self._unless_hung(Op.DESTROY, group)
        faults = self.faults_for(group)
        if self._roll(faults.destroy_failure_rate):
            raise PluginError(
                f"simulator: injected Destroy failure for {instance_id} (DestroyFailureRate "
                f"{faults.destroy_failure_rate:g}{_in_group(group)})"
            )
        self._get(instance_id)
        reason = context.reason if context is not None and context.reason else "no reason given"
        self._remove(instance_id, f"destroyed ({reason})")

    async def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        await self._unless_hung(Op.DESCRIBE, tags.get(GROUP_TAG, ""))
        now = time.time()
        return [
            Description(
                id=r.id,
                logical_id=r.logical_id,
                tags=dict(r.tags),
                properties=copy.deepcopy(r.spec) if properties else None,
            )
            for r in self._instances.values()
            if r.visible_at <= now and (not tags or tags_match(r.tags, tags))
        ]

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": _properties_schema(INSTANCE_EXAMPLE), "example": INSTANCE_EXAMPLE}

    # --- events ---------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC_INSTANCE_CHANGE]

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        return self._broker.subscribe(topic)

    def _publish(self, change: str, instance_id: str, message: str) -> None:
        self._broker.publish(
            TOPIC_INSTANCE_CHANGE,
            Event(topic=TOPIC_INSTANCE_CHANGE, type=change, id=instance_id, message=message),
        )

    # --- run-time control -----------------------------------------------------------------------

    def faults_for(self, group: str = "", flavor: Faults | None = None) -> Faults:
        """The faults in effect for ``group`` (all fields set), optionally under flavor Faults."""
        faults = self.defaults
        faults = self.control.faults.over(faults)
        faults = self._group_faults.get(group, Faults()).over(faults)
        if flavor is not None:
            faults = flavor.over(faults)
        faults = self.control.groups.get(group, Faults()).over(faults)
        return faults.resolved()

    def set_faults(
        self, faults: Faults | Mapping[str, Any] | None, group: str | None = None
    ) -> None:
        """Set the run-time faults of every group (``group=None``) or of one group.

        ``faults`` is a :class:`Faults` or its JSON form (validated: SpecError); ``None`` clears
        that layer. Takes effect at once, hung calls included.
        """
        parsed = faults if isinstance(faults, Faults) else parse_faults(dict(faults or {}))
        if group is None:
            self.control.faults = parsed
        elif faults is None:
            self.control.groups.pop(group, None)
        else:
            self.control.groups[group] = parsed
        self._faults_changed()

    def set_health(self, instance_id: str, health: Health | str | None) -> None:
        """Make the simulator flavor answer ``health`` for one instance (``None``: follow faults)."""
        if health is None:
            self.control.health.pop(instance_id, None)
        else:
            self.control.health[instance_id] = (
                health if isinstance(health, Health) else parse_health(health, "health")
            )
        self._faults_changed()

    def kill(self, instance_id: str, why: str = "killed") -> None:
        """The instance dies now, out of band (published on ``instance/change``)."""
        self._get(instance_id)
        self._remove(instance_id, why)

    # --- internals ------------------------------------------------------------------------------

    def _get(self, instance_id: str) -> _Instance:
        record = self._instances.get(instance_id)
        if record is None:
            raise NotFoundError(
                f"instance {instance_id} not found in the simulator; "
                f"list instances with: infrakit instance describe"
            )
        return record

    def _new_id(self) -> str:
        while True:
            candidate = f"sim-{random.getrandbits(48):012x}"
            if candidate not in self._instances:
                return candidate

    def _roll(self, rate: float | None) -> bool:
        """True when a fault of this ``rate`` strikes (rates 0 and 1 draw no random number)."""
        if not rate:
            return False
        return rate >= 1.0 or self._rng.random() < rate

    def _remove(self, instance_id: str, why: str) -> None:
        self._instances.pop(instance_id, None)
        for kind in ("visible", "death"):
            handle = self._timers.pop((kind, instance_id), None)
            if handle is not None:
                handle.cancel()
        self._save()
        log.info("%s %s", instance_id, why)
        self._publish("deleted", instance_id, why)

    async def _unless_hung(self, op: Op, group: str, flavor: Faults | None = None) -> None:
        """Block while ``op`` is in the effective ``Hang`` list; return once it is lifted."""
        while self.faults_for(group, flavor).hangs(op):
            if self._stopping:
                raise PluginError(f"simulator: {op.value} was hanging and the simulator stopped")
            changed = self._changed
            log.debug("%s hangs%s", op.value, _in_group(group))
            await changed.wait()

    def _faults_changed(self) -> None:
        """Wake hung calls to re-check, and re-draw deaths whose rule changed."""
        self._changed.set()
        self._changed = asyncio.Event()
        for record in list(self._instances.values()):
            self._schedule_death(record)
        self._save()

    def _schedule_death(self, record: _Instance) -> None:
        """Draw the instance's death again if its rule changed, and keep its timer armed."""
        faults = self.faults_for(record.group)
        rule = (faults.lifetime or 0.0, faults.mean_lifetime or 0.0)
        if rule != record.death_rule:
            record.death_rule = rule
            lifetime, mean = rule
            if lifetime:
                record.dies_at = record.created_at + lifetime
            elif mean:
                record.dies_at = time.time() + self._rng.expovariate(1.0 / mean)
            else:
                record.dies_at = None
            handle = self._timers.pop(("death", record.id), None)
            if handle is not None:
                handle.cancel()
        if record.dies_at is not None and ("death", record.id) not in self._timers:
            self._at(record.dies_at, "death", record.id)

    def _at(self, when: float, kind: str, instance_id: str) -> None:
        """Run the ``kind`` timer of an instance at wall time ``when``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: start() schedules it
            return
        old = self._timers.pop((kind, instance_id), None)
        if old is not None:
            old.cancel()
        delay = max(0.0, when - time.time())
        self._timers[(kind, instance_id)] = loop.call_later(delay, self._fire, kind, instance_id)

    def _fire(self, kind: str, instance_id: str) -> None:
        self._timers.pop((kind, instance_id), None)
        record = self._instances.get(instance_id)
        if record is None:
            return
        if kind == "visible":
            self._publish("created", instance_id, "now visible in DescribeInstances")
            return
        lifetime, mean = record.death_rule
        age = time.time() - record.created_at
        rule = (
            f"Lifetime {format_duration(lifetime)}"
            if lifetime
            else f"MeanLifetime {format_duration(mean)}"
        )
        self._remove(instance_id, f"died at age {age:.1f}s ({rule})")

    # --- the control file -----------------------------------------------------------------------

    async def _watch_control(self) -> None:
        while True:
            await asyncio.sleep(self.control_poll)
            self._check_control_file()

    def _check_control_file(self) -> None:
        """Apply the control file if it changed since the last look (removed = no settings)."""
        assert self.control_path is not None
        try:
            st = os.stat(self.control_path)
        except FileNotFoundError:
            if self._control_stamp is not None:
                self._control_stamp = None
                log.info("control file %s removed: run-time settings cleared", self.control_path)
                self._apply_control(Control())
            return
        except OSError as exc:
            log.warning("cannot read control file %s: %s", self.control_path, exc)
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._control_stamp:
            return
        self._control_stamp = stamp
        try:
            document = json.loads(self.control_path.read_bytes() or b"null")
            control = parse_control(document, f"control file {self.control_path}")
        except (OSError, ValueError) as exc:
            log.warning(
                "ignoring control file %s: %s; keeping the previous settings",
                self.control_path,
                exc,
            )
            return
        log.info("control file %s applied", self.control_path)
        self._apply_control(control)

    def _apply_control(self, control: Control) -> None:
        self.control = control
        for instance_id in control.kill:
            if instance_id in self._instances:
                self._remove(instance_id, "killed through the control file")
        self._faults_changed()

    # --- the state file -------------------------------------------------------------------------

    def _load_state(self, path: Path, hint: str) -> None:
        """Load the state file; a bad one is one line ending in ``hint`` (the kind names the
        option as the user gave it, e.g. ``pass another -o simulator.state=PATH``)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SpecError(f"simulator state file {path}: {exc}; {hint}") from None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("Version") != STATE_VERSION:
                raise ValueError(f"expected a simulator state document, Version {STATE_VERSION}")
            for item in document.get("Instances") or []:
                record = _Instance.from_json(item)
                self._instances[record.id] = record
            for gid, faults in (document.get("Groups") or {}).items():
                self._group_faults[gid] = parse_faults(faults, f"Groups.{gid}")
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                f"simulator state file {path} is not usable ({exc}); move it away to start "
                f"with no instances, or {hint}"
            ) from None

    def _save(self) -> None:
        """Write the state file atomically (temporary file + rename), if there is one."""
        if self.state_path is None:
            return
        document = {
            "Version": STATE_VERSION,
            "Instances": [r.to_json() for r in self._instances.values()],
            "Groups": {gid: f.to_wire() for gid, f in self._group_faults.items()},
        }
        path = self.state_path
        private_dir(path.parent)
        write_private(path, json.dumps(document, indent=1).encode())


class SimulatorFlavorPlugin:
    """A pass-through flavor whose ``Healthy`` answer (and hangs) follow the simulator's faults.

    Prepare returns the spec unchanged (combine with vanilla through ``flavor-combo`` for Init
    lines and tags). Its Properties may hold ``Faults`` like the instance Properties; they apply
    to flavor calls (Healthy, Prepare, Drain) of the group.
    """

    def __init__(self, simulator: SimulatorInstancePlugin) -> None:
        self.simulator = simulator

    async def validate(self, properties: JSON, allocation: AllocationMethod) -> None:
        faults = faults_of_properties(properties, "simulator flavor Properties")
        await self.simulator._unless_hung(Op.VALIDATE, "", faults)

    async def prepare(
        self, properties: JSON, spec: Spec, allocation: AllocationMethod, index: Index
    ) -> Spec:
        faults = faults_of_properties(properties, "simulator flavor Properties")
        await self.simulator._unless_hung(Op.PREPARE, index.group, faults)
        return copy.deepcopy(spec)

    async def healthy(self, properties: JSON, instance: Description) -> Health:
        faults = faults_of_properties(properties, "simulator flavor Properties")
        group = instance.tags.get(GROUP_TAG, "")
        await self.simulator._unless_hung(Op.HEALTHY, group, faults)
        override = self.simulator.control.health.get(instance.id)
        if override is not None:
            return override
        return self.simulator.faults_for(group, faults).healthy or Health.UNKNOWN

    async def drain(self, properties: JSON, instance: Description) -> None:
        faults = faults_of_properties(properties, "simulator flavor Properties")
        await self.simulator._unless_hung(Op.DRAIN, instance.tags.get(GROUP_TAG, ""), faults)

    def info(self) -> dict[str, Any]:
        return {"schema": _properties_schema(FLAVOR_EXAMPLE), "example": FLAVOR_EXAMPLE}


def _in_group(group: str) -> str:
    return f" in group {group}" if group else ""
