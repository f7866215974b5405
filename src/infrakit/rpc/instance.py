"""Instance SPI over RPC: the server-side service and the async client, in one place.

Wire methods (``Instance/0.6.1``; SEED lacks ``Type``, ``Label``, ``Context`` and ``Properties``)::

    Instance.Validate          {"Type","Properties"}                 -> {"Type","OK"}
    Instance.Provision         {"Type","Spec"}                       -> {"Type","ID"}
    Instance.Label             {"Type","Instance","Labels"}          -> {"Type","OK"}
    Instance.Destroy           {"Type","Instance","Context"}         -> {"Type","OK"}
    Instance.DescribeInstances {"Type","Tags","Properties":bool}     -> {"Type","Descriptions"}

``Type`` selects an object of a multi-type plugin (``aws/ec2-instance`` sends ``"ec2-instance"``);
``""`` is the default object, and an unknown type is ``no-plugin:<type>`` as in InfraKit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from infrakit import errors
from infrakit.rpc.client import Client
from infrakit.rpc.objects import Step, object_names, typed_handlers
from infrakit.rpc.server import Service
from infrakit.spi import event as spi_event
from infrakit.spi import instance
from infrakit.spi.adapt import AsyncInstance
from infrakit.spi.types import Era, Tags, ci_get, ci_view, want_str, want_tags

__all__ = ["HANDLERS", "InstanceClient", "service"]


async def _validate(plugin: AsyncInstance, view: dict[str, Any], era: Era) -> dict[str, Any]:
    if era is Era.SEED and ci_get(view, "Properties") is None:
        raise errors.SpecError("Request Properties must be set")
    await plugin.validate(ci_get(view, "Properties"))
    return {"OK": True}


async def _provision(plugin: AsyncInstance, view: dict[str, Any], era: Era) -> dict[str, Any]:
    if ci_get(view, "Spec") is None:
        raise errors.SpecError("Instance.Provision: params.Spec must be set")
    spec = instance.spec_from_wire(ci_get(view, "Spec"), "Spec")
    return {"ID": await plugin.provision(spec)}


def _instance_id(view: dict[str, Any], method: str) -> str:
    instance_id: str = want_str(ci_get(view, "Instance"), "Instance")
    if not instance_id:
        raise errors.SpecError(f"{method}: params.Instance (an instance ID) must be set")
    return instance_id


async def _label(plugin: AsyncInstance, view: dict[str, Any], era: Era) -> dict[str, Any]:
    instance_id = _instance_id(view, "Instance.Label")
    await plugin.label(instance_id, want_tags(ci_get(view, "Labels"), "Labels"))
    return {"OK": True}


async def _destroy(plugin: AsyncInstance, view: dict[str, Any], era: Era) -> dict[str, Any]:
    instance_id = _instance_id(view, "Instance.Destroy")
    ctx_view = ci_view(ci_get(view, "Context"), "Context")
    context = instance.Context(want_str(ci_get(ctx_view, "Reason"), "Context.Reason"))
    await plugin.destroy(instance_id, context)
    return {"OK": True}


async def _describe(plugin: AsyncInstance, view: dict[str, Any], era: Era) -> dict[str, Any]:
    tags = want_tags(ci_get(view, "Tags"), "Tags")
    want_props = ci_get(view, "Properties", False)
    want_props = False if want_props is None else want_props  # JSON null leaves a Go bool false
    if not isinstance(want_props, bool):
        raise errors.SpecError(
            f"Instance.DescribeInstances: params.Properties must be true or false, "
            f"got {want_props!r}"
        )
    found = await plugin.describe_instances(tags, want_props)
    return {"Descriptions": [instance.description_to_wire(d, era) for d in found]}


#: The wire methods of ``Instance/0.6.1``.
HANDLERS: dict[str, Step[AsyncInstance]] = {
    "Instance.Validate": _validate,
    "Instance.Provision": _provision,
    "Instance.Label": _label,
    "Instance.Destroy": _destroy,
    "Instance.DescribeInstances": _describe,
}

_OK = {"Type": "", "OK": False}
#: Zero-value results per method, as Go prints them.
_RESULTS = {
    "Instance.Validate": _OK,
    "Instance.Provision": {"Type": "", "ID": None},
    "Instance.Label": _OK,
    "Instance.Destroy": _OK,
    "Instance.DescribeInstances": {"Type": "", "Descriptions": None},
}


def service(plugins: dict[str, AsyncInstance]) -> Service:
    """Serve instance plugins keyed by type (``""`` is the default object)."""
    default = plugins.get("") or next(iter(plugins.values()))
    example_props = (default.info() or {}).get("example")
    examples = {
        "Instance.Validate": {"Type": "", "Properties": example_props},
        "Instance.Provision": {
            "Type": "",
            "Spec": instance.spec_to_wire(instance.Spec(properties=example_props)),
        },
        "Instance.Label": {"Type": "", "Instance": "", "Labels": {}},
        "Instance.Destroy": {"Type": "", "Instance": "", "Context": {"Reason": ""}},
        "Instance.DescribeInstances": {"Type": "", "Tags": {}, "Properties": False},
    }
    return Service(
        instance.INTERFACE,
        typed_handlers(plugins, HANDLERS),
        object_names(plugins),
        examples,
        default.info(),
        _RESULTS,
    )


class InstanceClient:
    """An instance plugin reached over RPC; implements :class:`infrakit.spi.instance.Plugin`."""

    def __init__(self, client: Client, type_: str = "") -> None:
        self.client = client
        self.type = type_

    @property
    def name(self) -> str:
        return self.client.name + (f"/{self.type}" if self.type else "")

    def _params(self, **fields: Any) -> dict[str, Any]:
        if self.client.era is Era.SEED:
            return fields
        return {"Type": self.type, **fields}

    async def _call(self, method: str, **fields: Any) -> Any:
        await self.client.handshake(instance.INTERFACE)
        result = await self.client.call(method, self._params(**fields))
        return ci_view(result, f"{method} result")

    async def validate(self, properties: Any) -> None:
        await self._call("Instance.Validate", Properties=properties)

    async def provision(self, spec: instance.Spec) -> str | None:
        await self.client.handshake(instance.INTERFACE)
        era = self.client.era or Era.HEAD
        result = await self._call("Instance.Provision", Spec=instance.spec_to_wire(spec, era))
        return want_str(ci_get(result, "ID"), "ID", optional=True)  # type: ignore[no-any-return]

    async def label(self, instance_id: str, labels: Tags) -> None:
        if self.client.era is Era.SEED:
            raise errors.PluginError(f"plugin {self.name} is SEED-era and has no Label")
        await self._call("Instance.Label", Instance=instance_id, Labels=labels)

    async def destroy(self, instance_id: str, context: instance.Context) -> None:
        await self.client.handshake(instance.INTERFACE)
        if self.client.era is Era.SEED:
            await self._call("Instance.Destroy", Instance=instance_id)
        else:
            await self._call(
                "Instance.Destroy", Instance=instance_id, Context={"Reason": context.reason}
            )

    async def describe_instances(
        self, tags: Tags, properties: bool = False
    ) -> list[instance.Description]:
        await self.client.handshake(instance.INTERFACE)
        if self.client.era is Era.SEED:
            result = await self._call("Instance.DescribeInstances", Tags=tags)
        else:
            result = await self._call(
                "Instance.DescribeInstances", Tags=tags, Properties=properties
            )
        raw = ci_get(result, "Descriptions") or []
        return [instance.description_from_wire(d, f"Descriptions[{i}]") for i, d in enumerate(raw)]

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        """The plugin's ``/events`` stream; NotFoundError if it serves none (Go plugins)."""
        return self.client.subscribe(topic)

    async def close(self) -> None:
        await self.client.close()
