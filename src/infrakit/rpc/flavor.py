"""Flavor SPI over RPC: the server-side service and the async client.

Wire methods (``Flavor/0.1.1``; SEED lacks ``Type`` and ``Index``)::

    Flavor.Validate  {"Type","Properties","Allocation"}                  -> {"Type","OK"}
    Flavor.Prepare   {"Type","Properties","Spec","Allocation","Index"}   -> {"Type","Spec"}
    Flavor.Healthy   {"Type","Properties","Instance":<Description>}      -> {"Type","Health":0|1|2}
    Flavor.Drain     {"Type","Properties","Instance":<Description>}      -> {"Type","OK"}

``"Properties": null`` is accepted everywhere (InfraKit SEED flavors crashed on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from infrakit.rpc.client import Client
from infrakit.rpc.objects import Step, object_names, typed_handlers
from infrakit.rpc.server import Service
from infrakit.spi import event as spi_event
from infrakit.spi import flavor, instance
from infrakit.spi.adapt import AsyncFlavor
from infrakit.spi.types import Era, Health, ci_get, ci_view

__all__ = ["HANDLERS", "FlavorClient", "service"]


async def _validate(plugin: AsyncFlavor, view: dict[str, Any], era: Era) -> dict[str, Any]:
    alloc = flavor.allocation_from_wire(ci_get(view, "Allocation"), "Allocation")
    await plugin.validate(ci_get(view, "Properties"), alloc)
    return {"OK": True}


async def _prepare(plugin: AsyncFlavor, view: dict[str, Any], era: Era) -> dict[str, Any]:
    spec = instance.spec_from_wire(ci_get(view, "Spec"), "Spec")
    alloc = flavor.allocation_from_wire(ci_get(view, "Allocation"), "Allocation")
    index = flavor.index_from_wire(ci_get(view, "Index"), "Index")
    result = await plugin.prepare(ci_get(view, "Properties"), spec, alloc, index)
    return {"Spec": instance.spec_to_wire(result, era)}


async def _healthy(plugin: AsyncFlavor, view: dict[str, Any], era: Era) -> dict[str, Any]:
    desc = instance.description_from_wire(ci_get(view, "Instance"), "Instance")
    return {"Health": int(await plugin.healthy(ci_get(view, "Properties"), desc))}


async def _drain(plugin: AsyncFlavor, view: dict[str, Any], era: Era) -> dict[str, Any]:
    desc = instance.description_from_wire(ci_get(view, "Instance"), "Instance")
    await plugin.drain(ci_get(view, "Properties"), desc)
    return {"OK": True}


#: The wire methods of ``Flavor/0.1.1``.
HANDLERS: dict[str, Step[AsyncFlavor]] = {
    "Flavor.Validate": _validate,
    "Flavor.Prepare": _prepare,
    "Flavor.Healthy": _healthy,
    "Flavor.Drain": _drain,
}


def service(plugins: dict[str, AsyncFlavor]) -> Service:
    """Serve flavor plugins keyed by type (``""`` is the default object)."""
    default = plugins.get("") or next(iter(plugins.values()))
    example = (default.info() or {}).get("example")
    alloc = {"Size": 0, "LogicalIDs": None}
    spec = instance.spec_to_wire(instance.Spec())
    desc: dict[str, Any] = {"ID": "", "LogicalID": None, "Tags": {}}
    examples = {
        "Flavor.Validate": {"Type": "", "Properties": example, "Allocation": alloc},
        "Flavor.Prepare": {
            "Type": "",
            "Properties": example,
            "Spec": spec,
            "Allocation": alloc,
            "Index": {"Group": "", "Sequence": 0},
        },
        "Flavor.Healthy": {"Type": "", "Properties": example, "Instance": desc},
        "Flavor.Drain": {"Type": "", "Properties": example, "Instance": desc},
    }
    ok = {"Type": "", "OK": False}
    results = {
        "Flavor.Validate": ok,
        "Flavor.Prepare": {"Type": "", "Spec": spec},
        "Flavor.Healthy": {"Type": "", "Health": 0},
        "Flavor.Drain": ok,
    }
    return Service(
        flavor.INTERFACE,
        typed_handlers(plugins, HANDLERS),
        object_names(plugins),
        examples,
        default.info(),
        results,
    )


class FlavorClient:
    """A flavor plugin reached over RPC; implements :class:`infrakit.spi.flavor.Plugin`."""

    def __init__(self, client: Client, type_: str = "") -> None:
        self.client = client
        self.type = type_

    @property
    def name(self) -> str:
        return self.client.name + (f"/{self.type}" if self.type else "")

    async def _call(self, method: str, **fields: Any) -> dict[str, Any]:
        await self.client.handshake(flavor.INTERFACE)
        params = fields if self.client.era is Era.SEED else {"Type": self.type, **fields}
        result = await self.client.call(method, params)
        return ci_view(result, f"{method} result")

    async def validate(self, properties: Any, allocation: flavor.AllocationMethod) -> None:
        await self._call(
            "Flavor.Validate",
            Properties=properties,
            Allocation=flavor.allocation_to_wire(allocation),
        )

    async def prepare(
        self,
        properties: Any,
        spec: instance.Spec,
        allocation: flavor.AllocationMethod,
        index: flavor.Index,
    ) -> instance.Spec:
        await self.client.handshake(flavor.INTERFACE)
        era = self.client.era or Era.HEAD
        fields: dict[str, Any] = {
            "Properties": properties,
            "Spec": instance.spec_to_wire(spec, era),
            "Allocation": flavor.allocation_to_wire(allocation),
        }
        if era is Era.HEAD:
            fields["Index"] = flavor.index_to_wire(index)
        result = await self._call("Flavor.Prepare", **fields)
        return instance.spec_from_wire(ci_get(result, "Spec"), "Spec")

    async def healthy(self, properties: Any, desc: instance.Description) -> Health:
        await self.client.handshake(flavor.INTERFACE)
        era = self.client.era or Era.HEAD
        result = await self._call(
            "Flavor.Healthy",
            Properties=properties,
            Instance=instance.description_to_wire(desc, era),
        )
        return flavor.health_from_wire(ci_get(result, "Health"))

    async def drain(self, properties: Any, desc: instance.Description) -> None:
        await self.client.handshake(flavor.INTERFACE)
        era = self.client.era or Era.HEAD
        await self._call(
            "Flavor.Drain", Properties=properties, Instance=instance.description_to_wire(desc, era)
        )

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        """The plugin's ``/events`` stream; NotFoundError if it serves none (Go plugins)."""
        return self.client.subscribe(topic)

    async def close(self) -> None:
        await self.client.close()
