"""The Flavor SPI: what runs on an instance, and whether it is healthy.

A flavor turns the group's bare instance spec into a ready one (``prepare`` adds an init script,
tags, attachments), judges an instance's health (``healthy``) and gets it ready for removal
(``drain``). The group controller calls ``prepare`` before every Provision, ``healthy`` on members
to gate updates and remediate, and ``drain`` before every destroy it performs.

Wire shapes are InfraKit's ``Flavor/0.1.1``; HEAD adds ``Index`` to Prepare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from infrakit.errors import SpecError
from infrakit.spi.instance import Description, Spec
from infrakit.spi.types import JSON, Health, InterfaceSpec, ci_get, ci_view, want_str

__all__ = [
    "INTERFACE",
    "AllocationMethod",
    "Health",
    "Index",
    "Plugin",
    "allocation_from_wire",
    "allocation_to_wire",
    "index_from_wire",
]

INTERFACE = InterfaceSpec("Flavor", "0.1.1")


@dataclass(slots=True)
class AllocationMethod:
    """How a group allocates instances: a ``size`` (cattle) or explicit ``logical_ids`` (pets)."""

    size: int = 0
    logical_ids: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Index:
    """Which group and which position an instance being prepared takes (HEAD)."""

    group: str = ""
    sequence: int = 0


@runtime_checkable
class Plugin(Protocol):
    """A flavor. Methods may be ``async def`` or plain ``def``."""

    async def validate(self, properties: JSON, allocation: AllocationMethod) -> None:
        """Reject properties (or an allocation) this flavor cannot work with."""

    async def prepare(
        self, properties: JSON, spec: Spec, allocation: AllocationMethod, index: Index
    ) -> Spec:
        """Return the instance spec to provision (a modified copy of ``spec``)."""

    async def healthy(self, properties: JSON, instance: Description) -> Health:
        """Judge one instance: HEALTHY, UNHEALTHY or UNKNOWN (not yet known)."""

    async def drain(self, properties: JSON, instance: Description) -> None:
        """Prepare an instance for destruction (move work away); errors abort a rolling update."""


def allocation_to_wire(alloc: AllocationMethod) -> dict[str, Any]:
    return {"Size": alloc.size, "LogicalIDs": alloc.logical_ids}


def allocation_from_wire(obj: Any, what: str = "Allocation") -> AllocationMethod:
    view = ci_view(obj, what)
    size = ci_get(view, "Size", 0)
    if size is None:
        size = 0
    if isinstance(size, bool) or not isinstance(size, int):
        raise SpecError(f"{what}.Size: expected a non-negative integer, got {size!r}")
    if size < 0:
        raise SpecError(f"{what}.Size: expected a non-negative integer, got {size}")
    ids = ci_get(view, "LogicalIDs")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise SpecError(f"{what}.LogicalIDs: expected an array of strings")
    return AllocationMethod(size=size, logical_ids=ids)


def index_to_wire(index: Index) -> dict[str, Any]:
    return {"Group": index.group, "Sequence": index.sequence}


def index_from_wire(obj: Any, what: str = "Index") -> Index:
    view = ci_view(obj, what)
    seq = ci_get(view, "Sequence", 0) or 0
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise SpecError(f"{what}.Sequence: expected an integer, got {seq!r}")
    return Index(group=want_str(ci_get(view, "Group"), f"{what}.Group"), sequence=seq)


def health_from_wire(value: Any, what: str = "Health") -> Health:
    try:
        return Health(value)
    except (ValueError, TypeError):
        raise SpecError(f"{what}: expected 0, 1 or 2, got {value!r}") from None
