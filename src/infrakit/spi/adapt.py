"""Turn whatever a plugin author wrote into the uniform async SPI the rest of infrakit calls.

Authors may write ``def`` or ``async def`` methods and may leave out trailing parameters they do
not use (``def destroy(self, instance)`` without ``context``, ``def describe_instances(self, tags)``
without ``properties``). The adapters here:

* check at wrap time that the required methods exist (an error names the class and the method, so a
  broken plugin fails when it is served, not at its first call);
* run sync methods in a worker thread, so a blocking SDK never stalls the event loop;
* pass only as many arguments as the method accepts;
* turn what a method raises into what the wire would make of it (:func:`infrakit.errors.as_reported`:
  a plugin bug's ``KeyError`` is a :class:`~infrakit.errors.PluginError` naming it, logged with its
  traceback), so a caller sees the same error in-process and over a socket.

Both the RPC services (``infrakit.rpc.*``) and in-process wiring (``infrakit.launch``) use these, so
a plugin behaves the same over a socket and in-process.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from infrakit._utils.aio import ensure_async
from infrakit.errors import InfrakitError, NotFoundError, PluginError, SpecError, as_reported
from infrakit.spi import event as spi_event
from infrakit.spi import flavor, instance
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.types import JSON, Health, Tags

log = logging.getLogger(__name__)

__all__ = [
    "AsyncFlavor",
    "AsyncInstance",
    "AsyncLoadBalancer",
    "event_source_of",
    "subscribe_to",
    "wrap_method",
]


def _accepted_positional(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (bound methods: excluding self)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 99
    count = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return 99
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def wrap_method(
    plugin: object, method: str, *, required: bool, label: str, inline: bool = False
) -> Callable[..., Awaitable[Any]] | None:
    """Async wrapper of ``plugin.<method>`` taking positional args, truncated to what it accepts.
    ``inline`` runs a sync method on the event loop itself instead of a worker thread (the test
    kit does, so a fake clock fully drives a plugin author's plain ``def`` methods)."""
    fn = getattr(plugin, method, None)
    if fn is None or not callable(fn):
        if required:
            raise SpecError(
                f"{label} {type(plugin).__name__} has no method {method}(); "
                f"implement it (see docs/writing-a-plugin.md)"
            )
        return None
    call = _inline_async(fn) if inline else ensure_async(fn)
    accepted = _accepted_positional(fn)

    async def invoke(*args: Any) -> Any:
        try:
            return await call(*args[:accepted])
        except Exception as exc:
            # What a caller would get over RPC, in-process too (errors.as_reported).
            reported = as_reported(exc)
            if reported is exc:
                raise
            if not isinstance(exc, InfrakitError | NotImplementedError):
                log.error("%s %s: %s raised", label, type(plugin).__name__, method, exc_info=exc)
            raise reported from exc

    invoke.__name__ = method
    return invoke


def _inline_async(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def call_inline(*args: Any) -> Any:
        result = fn(*args)
        return await result if inspect.isawaitable(result) else result

    return call_inline


class AsyncInstance:
    """An instance plugin seen through the async :class:`infrakit.spi.instance.Plugin` protocol."""

    def __init__(
        self, plugin: object, name: str = "instance plugin", *, inline: bool = False
    ) -> None:
        self.plugin = plugin
        self.name = name
        label = "instance plugin"
        self._validate = wrap_method(plugin, "validate", required=True, label=label, inline=inline)
        self._provision = wrap_method(
            plugin, "provision", required=True, label=label, inline=inline
        )
        self._destroy = wrap_method(plugin, "destroy", required=True, label=label, inline=inline)
        self._describe = wrap_method(
            plugin, "describe_instances", required=True, label=label, inline=inline
        )
        self._label = wrap_method(plugin, "label", required=False, label=label, inline=inline)

    @property
    def supports_label(self) -> bool:
        return self._label is not None

    async def validate(self, properties: JSON) -> None:
        assert self._validate is not None
        result = await self._validate(properties)
        if result is False:
            raise SpecError(f"{self.name}: properties rejected by Validate")

    async def provision(self, spec: instance.Spec) -> str | None:
        assert self._provision is not None
        result = await self._provision(spec)
        return None if result is None else str(result)

    async def label(self, instance_id: str, labels: Tags) -> None:
        if self._label is None:
            raise PluginError(f"{self.name} does not support Label")
        await self._label(instance_id, labels)

    async def destroy(self, instance_id: str, context: instance.Context) -> None:
        assert self._destroy is not None
        await self._destroy(instance_id, context)

    async def describe_instances(
        self, tags: Tags, properties: bool = False
    ) -> list[instance.Description]:
        assert self._describe is not None
        result = await self._describe(tags, properties)
        return list(result or [])

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        return subscribe_to(self.plugin, self.name, topic)

    def info(self) -> dict[str, Any] | None:
        """The plugin's ``info()`` (Properties schema and example), if it has one."""
        fn = getattr(self.plugin, "info", None)
        if callable(fn):
            value = fn()
            return value if isinstance(value, dict) else None
        return None


class AsyncFlavor:
    """A flavor plugin seen through the async :class:`infrakit.spi.flavor.Plugin` protocol."""

    def __init__(
        self, plugin: object, name: str = "flavor plugin", *, inline: bool = False
    ) -> None:
        self.plugin = plugin
        self.name = name
        label = "flavor plugin"
        self._validate = wrap_method(plugin, "validate", required=True, label=label, inline=inline)
        self._prepare = wrap_method(plugin, "prepare", required=True, label=label, inline=inline)
        self._healthy = wrap_method(plugin, "healthy", required=False, label=label, inline=inline)
        self._drain = wrap_method(plugin, "drain", required=False, label=label, inline=inline)

    async def validate(self, properties: JSON, allocation: flavor.AllocationMethod) -> None:
        assert self._validate is not None
        result = await self._validate(properties, allocation)
        if result is False:
            raise SpecError(f"{self.name}: properties rejected by Validate")

    async def prepare(
        self,
        properties: JSON,
        spec: instance.Spec,
        allocation: flavor.AllocationMethod,
        index: flavor.Index,
    ) -> instance.Spec:
        assert self._prepare is not None
        result = await self._prepare(properties, spec, allocation, index)
        if not isinstance(result, instance.Spec):
            raise PluginError(f"{self.name}: Prepare returned {type(result).__name__}, not a Spec")
        return result

    async def healthy(self, properties: JSON, desc: instance.Description) -> Health:
        if self._healthy is None:
            return Health.HEALTHY
        return Health(await self._healthy(properties, desc))

    async def drain(self, properties: JSON, desc: instance.Description) -> None:
        if self._drain is not None:
            await self._drain(properties, desc)

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        return subscribe_to(self.plugin, self.name, topic)

    def info(self) -> dict[str, Any] | None:
        fn = getattr(self.plugin, "info", None)
        if callable(fn):
            value = fn()
            return value if isinstance(value, dict) else None
        return None


class AsyncLoadBalancer:
    """An L4 load balancer seen through the async :class:`infrakit.spi.loadbalancer.Plugin`
    protocol (plus ``backend_states``, derived from ``backends`` when the plugin has none)."""

    def __init__(
        self, plugin: object, label: str = "load balancer", *, inline: bool = False
    ) -> None:
        self.plugin = plugin
        #: Who this is in messages (``name`` is the SPI's method).
        self.label = label
        kind = "load balancer plugin"

        def method(name: str, required: bool = True) -> Callable[..., Awaitable[Any]] | None:
            return wrap_method(plugin, name, required=required, label=kind, inline=inline)

        self._name = method("name")
        self._routes = method("routes")
        self._publish = method("publish")
        self._unpublish = method("unpublish")
        self._health = method("configure_health_check")
        self._register = method("register_backends")
        self._deregister = method("deregister_backends")
        self._backends = method("backends")
        self._states = method("backend_states", required=False)

    async def name(self) -> str:
        assert self._name is not None
        return str(await self._name())

    async def routes(self) -> list[spi_lb.Route]:
        assert self._routes is not None
        return list(await self._routes() or [])

    async def publish(self, route: spi_lb.Route) -> str:
        assert self._publish is not None
        return str(await self._publish(route) or "")

    async def unpublish(self, ext_port: int) -> str:
        assert self._unpublish is not None
        return str(await self._unpublish(ext_port) or "")

    async def configure_health_check(self, check: spi_lb.HealthCheck) -> str:
        assert self._health is not None
        return str(await self._health(check) or "")

    async def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        assert self._register is not None
        return str(await self._register(ids, addresses) or "")

    async def deregister_backends(self, ids: list[str]) -> str:
        assert self._deregister is not None
        return str(await self._deregister(ids) or "")

    async def backends(self) -> list[str]:
        assert self._backends is not None
        return [str(i) for i in await self._backends() or []]

    async def backend_states(self) -> list[spi_lb.Backend]:
        if self._states is None:
            return [spi_lb.Backend(id=i) for i in await self.backends()]
        return list(await self._states() or [])


def event_source_of(plugin: object) -> spi_event.Source | None:
    """The plugin's event source (it has ``subscribe`` and ``topics``), or None."""
    subscribe = getattr(plugin, "subscribe", None)
    topics = getattr(plugin, "topics", None)
    if callable(subscribe) and callable(topics):
        return plugin  # type: ignore[return-value]
    return None


def subscribe_to(plugin: object, name: str, topic: str) -> AsyncIterator[spi_event.Event]:
    """Events of an in-process plugin, subscribed now; NotFoundError (on first iteration) if it
    publishes none."""
    source = event_source_of(plugin)
    if source is None:
        return _no_events(name)
    return source.subscribe(topic)


async def _no_events(name: str) -> AsyncIterator[spi_event.Event]:
    raise NotFoundError(f"plugin {name} publishes no events; poll it instead")
    yield  # pragma: no cover - makes this an async generator
