"""The Group SPI: commit a desired group spec, and ask how it is doing.

A group plugin (the default one is :mod:`infrakit.controller.group`) keeps a set of instances equal
to a committed spec. The spec's ``properties`` are opaque at this level: the default controller's
schema (Allocation, Instance, Flavor, Updating, Health) lives with the controller.

Wire shapes are InfraKit's ``Group/0.1.1``: SEED has five methods, HEAD adds DestroyInstances, Size
and SetSize and echoes ``Name``/``ID``. infrakit adds a few methods of its own (status, pause,
resume, promote, rollback, reset) under the same ``Group.`` service; Go clients never call them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from infrakit.spi.event import Event
from infrakit.spi.instance import Description, description_from_wire, description_to_wire
from infrakit.spi.types import JSON, Era, InterfaceSpec, ci_get, ci_view, want_str

__all__ = [
    "BLANK_ID",
    "EXTENSIONS",
    "INTERFACE",
    "Description",
    "Extensions",
    "GroupControl",
    "GroupDescription",
    "GroupSnapshot",
    "Plugin",
    "Spec",
    "group_description_from_wire",
    "group_description_to_wire",
    "spec_from_wire",
    "spec_to_wire",
]

INTERFACE = InterfaceSpec("Group", "0.1.1")

#: InfraKit's message for a spec without an ID, and the next step: the controller's validation and
#: the CLI (which refuses such a file before calling any plugin) say it the same way.
BLANK_ID = 'Group ID must not be blank (set "ID" at the top of the spec)'


@dataclass(slots=True)
class Spec:
    """A group spec as committed: an ID and plugin-defined properties."""

    id: str
    properties: JSON = None


@dataclass(slots=True)
class GroupDescription:
    """The members of a group right now, and whether it has converged to its spec."""

    instances: list[Description] = field(default_factory=list)
    converged: bool = False


@runtime_checkable
class Plugin(Protocol):
    """A group controller."""

    async def commit_group(self, spec: Spec, pretend: bool) -> str:
        """Adopt ``spec``; return the plan sentence (``Managing 5 instances`` ...)."""

    async def free_group(self, id: str) -> None:
        """Stop managing the group; leave its instances alone."""

    async def describe_group(self, id: str) -> GroupDescription: ...

    async def destroy_group(self, id: str) -> None:
        """Stop managing the group and destroy all of its instances."""

    async def inspect_groups(self) -> list[Spec]: ...

    async def destroy_instances(self, id: str, instances: list[str]) -> None:
        """Destroy these members and shrink the group by as many."""

    async def size(self, id: str) -> int: ...

    async def set_size(self, id: str, size: int) -> None: ...


#: infrakit's extensions of the Group interface: Python method -> wire method. Each takes the
#: group ID and the request's other fields, and answers a JSON object (see docs/protocol.md).
EXTENSIONS = {
    "status": "Group.Status",
    "plan": "Group.Plan",
    "pause": "Group.Pause",
    "resume": "Group.Resume",
    "promote": "Group.Promote",
    "rollback": "Group.Rollback",
    "reset": "Group.Reset",
}


class Extensions(Protocol):
    """infrakit's extensions of the Group interface (``EXTENSIONS``)."""

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Desired / actual / healthy / updating / degraded, and per-instance state."""

    async def plan(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The structured plan of committing ``options["spec"]``."""

    async def pause(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def resume(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def promote(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def rollback(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def reset(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GroupSnapshot:
    """One group's numbers as a controller knows them now, without asking any plugin: what
    metrics and the status page read (``actual`` is None while the provider cannot be
    observed; ``update_total`` None without a rolling update)."""

    id: str
    desired: int
    actual: int | None
    pending: int
    destroying: int
    healthy: int
    unhealthy: int
    unknown: int
    converged: bool
    #: closed, probing (one create at a time after young deaths), open, half-open.
    breaker: str
    passes: int = 0
    update_total: int | None = None
    update_replaced: int = 0
    update_paused: bool = False
    #: Why ``actual`` is None ("" while the provider is observed): readiness and the page say it.
    actual_unknown: str = ""


class GroupControl(Plugin, Extensions, Protocol):
    """A running group controller as its owner (the manager) drives it: the Group interface,
    the extensions, its events and its lifecycle."""

    async def start(self) -> None:
        """Resume every stored group and start reconciling."""

    async def stop(self) -> None:
        """Stop reconciling (instances are untouched)."""

    def group_ids(self) -> list[str]:
        """The IDs of the groups it manages now."""

    def snapshots(self) -> list[GroupSnapshot]:
        """Every managed group's numbers, from memory (no plugin is called)."""

    def topics(self) -> list[str]: ...

    def subscribe(self, topic: str) -> AsyncIterator[Event]: ...


def spec_to_wire(spec: Spec) -> dict[str, Any]:
    return {"ID": spec.id, "Properties": spec.properties}


def spec_from_wire(obj: Any, what: str = "Spec") -> Spec:
    view = ci_view(obj, what)
    return Spec(
        id=want_str(ci_get(view, "ID"), f"{what}.ID"), properties=ci_get(view, "Properties")
    )


def group_description_to_wire(desc: GroupDescription, era: Era = Era.HEAD) -> dict[str, Any]:
    return {
        "Instances": [description_to_wire(d, era) for d in desc.instances],
        "Converged": desc.converged,
    }


def group_description_from_wire(obj: Any, what: str = "Description") -> GroupDescription:
    view = ci_view(obj, what)
    raw = ci_get(view, "Instances") or []
    return GroupDescription(
        instances=[description_from_wire(d, f"{what}.Instances[{i}]") for i, d in enumerate(raw)],
        converged=bool(ci_get(view, "Converged", False)),
    )
