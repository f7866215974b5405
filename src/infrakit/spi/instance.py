"""The Instance SPI: what a provider (file, process, docker, AWS ...) implements.

An instance plugin creates, labels, lists and destroys *instances* - whatever the provider's unit
of compute is. It is stateless towards the group controller: membership and configuration live in
the instance's tags (``infrakit.group``, ``infrakit.config.hash``), so any controller can adopt
instances it did not create.

Plugin authors implement :class:`Plugin` with ``async def`` or plain ``def`` methods (plain ones run
in a worker thread when served). Only ``validate``, ``provision``, ``destroy`` and
``describe_instances`` are required; ``label`` is optional (HEAD-era), as are ``info()`` (Properties
schema and example for ``infrakit instance info``) and ``subscribe()`` (instance-change events, see
:mod:`infrakit.spi.event`).

Wire shapes are InfraKit's (``Instance/0.6.1``); :func:`spec_to_wire` and friends convert between
them and these dataclasses for both eras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from infrakit.errors import SpecError
from infrakit.spi.types import (
    JSON,
    Era,
    InterfaceSpec,
    Tags,
    ci_get,
    ci_view,
    want_str,
    want_tags,
)

__all__ = [
    "INTERFACE",
    "Attachment",
    "Context",
    "Description",
    "Plugin",
    "Spec",
    "attachments_from_wire",
    "description_from_wire",
    "description_to_wire",
    "spec_from_wire",
    "spec_to_wire",
    "tags_match",
]

INTERFACE = InterfaceSpec("Instance", "0.6.1")

#: ``Context.reason`` values sent by the group controller.
REASON_ROLLING_UPDATE = "rolling_update"
REASON_TERMINATE = "terminate"
REASON_SCALE_DOWN = "scale_down"
REASON_UNHEALTHY = "unhealthy"


@dataclass(slots=True)
class Attachment:
    """Something attached to an instance (a volume, a network ...). SEED sends only the ID string."""

    id: str
    type: str = ""


@dataclass(slots=True)
class Spec:
    """What to provision. ``properties`` is opaque to everyone but the instance plugin."""

    properties: JSON = None
    tags: Tags = field(default_factory=dict)
    init: str = ""
    logical_id: str | None = None
    attachments: list[Attachment] | None = None


@dataclass(slots=True)
class Description:
    """One existing instance as the plugin reports it. ``properties`` is filled on request."""

    id: str
    logical_id: str | None = None
    tags: Tags = field(default_factory=dict)
    properties: JSON = None


@dataclass(frozen=True, slots=True)
class Context:
    """Why an instance is being destroyed (HEAD: ``rolling_update`` or ``terminate``)."""

    reason: str = ""


@runtime_checkable
class Plugin(Protocol):
    """An instance provider. Methods may be ``async def`` or plain ``def``.

    Errors: raise :class:`infrakit.errors.SpecError` for bad properties,
    :class:`infrakit.errors.NotFoundError` for an unknown instance ID, anything else for provider
    failures; the message reaches the user verbatim.
    """

    async def validate(self, properties: JSON) -> None:
        """Reject properties this plugin cannot provision, before anything is created."""

    async def provision(self, spec: Spec) -> str | None:
        """Create one instance carrying ``spec.tags``; return its ID."""

    async def destroy(self, instance: str, context: Context) -> None:
        """Destroy one instance. Unknown IDs raise NotFoundError."""

    async def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        """List instances carrying **all** of ``tags`` (empty = all)."""


def tags_match(have: Tags, want: Tags) -> bool:
    """InfraKit's DescribeInstances filter: every wanted tag equal (AND); a wanted ``""`` also
    matches a missing key. Every provider uses this, so all filter alike."""
    for key, value in want.items():
        got = have.get(key)
        if got is None:
            if value != "":
                return False
        elif got != value:
            return False
    return True


def attachments_from_wire(value: Any, what: str) -> list[Attachment] | None:
    """Accept HEAD objects ``{"ID","Type"}`` and SEED bare strings alike."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise SpecError(f"{what}: expected an array of attachments")
    out: list[Attachment] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(Attachment(item))
        else:
            view = ci_view(item, f"{what}[{i}]")
            out.append(
                Attachment(
                    want_str(ci_get(view, "ID"), f"{what}[{i}].ID"),
                    want_str(ci_get(view, "Type"), f"{what}[{i}].Type"),
                )
            )
    return out


def attachments_to_wire(attachments: list[Attachment] | None, era: Era) -> Any:
    if attachments is None:
        return None
    if era is Era.SEED:
        return [a.id for a in attachments]
    return [{"ID": a.id, "Type": a.type} for a in attachments]


def spec_to_wire(spec: Spec, era: Era = Era.HEAD) -> dict[str, Any]:
    """``instance.Spec`` in Go field order: Properties, Tags, Init, LogicalID, Attachments."""
    return {
        "Properties": spec.properties,
        "Tags": spec.tags,
        "Init": spec.init,
        "LogicalID": spec.logical_id,
        "Attachments": attachments_to_wire(spec.attachments, era),
    }


def spec_from_wire(obj: Any, what: str = "Spec") -> Spec:
    view = ci_view(obj, what)
    return Spec(
        properties=ci_get(view, "Properties"),
        tags=dict(want_tags(ci_get(view, "Tags"), f"{what}.Tags")),
        init=want_str(ci_get(view, "Init"), f"{what}.Init"),
        logical_id=want_str(ci_get(view, "LogicalID"), f"{what}.LogicalID", optional=True),
        attachments=attachments_from_wire(ci_get(view, "Attachments"), f"{what}.Attachments"),
    )


def description_to_wire(desc: Description, era: Era = Era.HEAD) -> dict[str, Any]:
    """``instance.Description``; HEAD adds ``Properties`` (omitted when null, as Go does)."""
    out: dict[str, Any] = {"ID": desc.id, "LogicalID": desc.logical_id, "Tags": desc.tags}
    if era is Era.HEAD and desc.properties is not None:
        out["Properties"] = desc.properties
    return out


def description_from_wire(obj: Any, what: str = "Description") -> Description:
    view = ci_view(obj, what)
    return Description(
        id=want_str(ci_get(view, "ID"), f"{what}.ID"),
        logical_id=want_str(ci_get(view, "LogicalID"), f"{what}.LogicalID", optional=True),
        tags=dict(want_tags(ci_get(view, "Tags"), f"{what}.Tags")),
        properties=ci_get(view, "Properties"),
    )
