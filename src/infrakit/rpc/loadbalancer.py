"""L4 load-balancer SPI over RPC: the server-side service and the async client.

Wire methods (``L4/0.6.1``, Go InfraKit HEAD's ``pkg/rpc/loadbalancer``; every result also
carries ``Type``)::

    L4.Name                 {"Type"}                                   -> {"Name"}
    L4.Routes               {"Type"}                                   -> {"Routes": [Route]}
    L4.Publish              {"Type","Route"}                           -> {"Result"}
    L4.Unpublish            {"Type","ExtPort"}                         -> {"Result"}
    L4.ConfigureHealthCheck {"Type","BackendPort","Healthy","Unhealthy",
                             "Interval","Timeout"}   (durations in ns)  -> {"Result"}
    L4.RegisterBackends     {"Type","IDs","Addresses"}                 -> {"Result"}
    L4.DeregisterBackends   {"Type","IDs"}                             -> {"Result"}
    L4.Backends             {"Type"}                                   -> {"IDs"}
    L4.BackendStates        {"Type"}                                   -> {"Backends": [Backend]}

``Addresses`` and ``L4.BackendStates`` are infrakit's (see :mod:`infrakit.spi.loadbalancer`); a
Go peer ignores the first and answers "method not found" to the second, which the client turns
into "every backend listed is up". L4 is a HEAD-era interface: there is no SEED shape.
"""

from __future__ import annotations

from typing import Any

from infrakit import errors
from infrakit.rpc.client import Client
from infrakit.rpc.objects import Step, object_names, typed_handlers
from infrakit.rpc.server import Service
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.adapt import AsyncLoadBalancer
from infrakit.spi.types import Era, ci_get, ci_view, want_str

__all__ = ["HANDLERS", "LoadBalancerClient", "service"]


def _ext_port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise errors.SpecError(
            f"L4.Unpublish: params.ExtPort must be the balancer port of a route (1-65535), "
            f"got {value!r}"
        )
    return value


async def _name(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    return {"Name": await plugin.name()}


async def _routes(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    return {"Routes": [spi_lb.route_to_wire(r) for r in await plugin.routes()]}


async def _publish(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    if ci_get(view, "Route") is None:
        raise errors.SpecError("L4.Publish: params.Route must be set")
    route = spi_lb.route_from_wire(ci_get(view, "Route"), "Route")
    return {"Result": await plugin.publish(route)}


async def _unpublish(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    return {"Result": await plugin.unpublish(_ext_port(ci_get(view, "ExtPort")))}


async def _configure(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    check = spi_lb.health_check_from_wire(view, "params")
    return {"Result": await plugin.configure_health_check(check)}


async def _register(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    ids = spi_lb.ids_from_wire(ci_get(view, "IDs"), "IDs")
    addresses = spi_lb.addresses_from_wire(ci_get(view, "Addresses"), "Addresses")
    return {"Result": await plugin.register_backends(ids, addresses)}


async def _deregister(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    ids = spi_lb.ids_from_wire(ci_get(view, "IDs"), "IDs")
    return {"Result": await plugin.deregister_backends(ids)}


async def _backends(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    return {"IDs": await plugin.backends()}


async def _states(plugin: AsyncLoadBalancer, view: dict[str, Any], era: Era) -> dict[str, Any]:
    return {"Backends": [spi_lb.backend_to_wire(b) for b in await plugin.backend_states()]}


#: The wire methods of ``L4/0.6.1`` (and infrakit's ``L4.BackendStates``).
HANDLERS: dict[str, Step[AsyncLoadBalancer]] = {
    "L4.Name": _name,
    "L4.Routes": _routes,
    "L4.Publish": _publish,
    "L4.Unpublish": _unpublish,
    "L4.ConfigureHealthCheck": _configure,
    "L4.RegisterBackends": _register,
    "L4.DeregisterBackends": _deregister,
    "L4.Backends": _backends,
    "L4.BackendStates": _states,
}


def service(plugins: dict[str, AsyncLoadBalancer]) -> Service:
    """Serve L4 balancers keyed by type (``""`` is the default object)."""
    handlers = typed_handlers(plugins, HANDLERS, seed_has_type=True)
    return Service(spi_lb.INTERFACE, handlers, object_names(plugins), _examples(), None, _results())


def _examples() -> dict[str, Any]:
    """Example params per method, for ``/info/api.json``."""
    route = spi_lb.route_to_wire(spi_lb.Route(port=8080, load_balancer_port=80))
    return {
        "L4.Name": {"Type": ""},
        "L4.Routes": {"Type": ""},
        "L4.Publish": {"Type": "", "Route": route},
        "L4.Unpublish": {"Type": "", "ExtPort": 80},
        "L4.ConfigureHealthCheck": {
            "Type": "",
            **spi_lb.health_check_to_wire(spi_lb.HealthCheck(8080, 2, 2, 1.0, 1.0)),
        },
        "L4.RegisterBackends": {
            "Type": "",
            "IDs": ["instance-1"],
            "Addresses": {"instance-1": "127.0.0.1:8080"},
        },
        "L4.DeregisterBackends": {"Type": "", "IDs": ["instance-1"]},
        "L4.Backends": {"Type": ""},
        "L4.BackendStates": {"Type": ""},
    }


def _results() -> dict[str, Any]:
    """Zero-value results per method, as Go prints them."""
    result = {"Type": "", "Result": ""}
    return {
        "L4.Name": {"Type": "", "Name": ""},
        "L4.Routes": {"Type": "", "Routes": None},
        "L4.Publish": result,
        "L4.Unpublish": result,
        "L4.ConfigureHealthCheck": result,
        "L4.RegisterBackends": result,
        "L4.DeregisterBackends": result,
        "L4.Backends": {"Type": "", "IDs": None},
        "L4.BackendStates": {"Type": "", "Backends": None},
    }


class LoadBalancerClient:
    """An L4 balancer reached over RPC; implements :class:`infrakit.spi.loadbalancer.Plugin`
    and ``backend_states``."""

    def __init__(self, client: Client, type_: str = "") -> None:
        self.client = client
        self.type = type_
        #: False once the peer said it has no ``L4.BackendStates`` (a Go balancer).
        self._has_states = True

    @property
    def label(self) -> str:
        return self.client.name + (f"/{self.type}" if self.type else "")

    async def _call(self, method: str, **fields: Any) -> dict[str, Any]:
        await self.client.handshake(spi_lb.INTERFACE)
        result = await self.client.call(method, {"Type": self.type, **fields})
        return ci_view(result, f"{method} result")

    async def _result(self, method: str, **fields: Any) -> str:
        found = await self._call(method, **fields)
        return want_str(ci_get(found, "Result"), "Result")  # type: ignore[no-any-return]

    async def name(self) -> str:
        found = await self._call("L4.Name")
        return want_str(ci_get(found, "Name"), "Name")  # type: ignore[no-any-return]

    async def routes(self) -> list[spi_lb.Route]:
        raw = ci_get(await self._call("L4.Routes"), "Routes") or []
        return [spi_lb.route_from_wire(r, f"Routes[{i}]") for i, r in enumerate(raw)]

    async def publish(self, route: spi_lb.Route) -> str:
        return await self._result("L4.Publish", Route=spi_lb.route_to_wire(route))

    async def unpublish(self, ext_port: int) -> str:
        return await self._result("L4.Unpublish", ExtPort=ext_port)

    async def configure_health_check(self, check: spi_lb.HealthCheck) -> str:
        return await self._result("L4.ConfigureHealthCheck", **spi_lb.health_check_to_wire(check))

    async def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        return await self._result("L4.RegisterBackends", IDs=ids, Addresses=addresses)

    async def deregister_backends(self, ids: list[str]) -> str:
        return await self._result("L4.DeregisterBackends", IDs=ids)

    async def backends(self) -> list[str]:
        return spi_lb.ids_from_wire(ci_get(await self._call("L4.Backends"), "IDs"), "IDs")

    async def backend_states(self) -> list[spi_lb.Backend]:
        """``L4.BackendStates``; a peer without it (Go) lists ``Backends``, each counted up."""
        if self._has_states:
            try:
                raw = ci_get(await self._call("L4.BackendStates"), "Backends") or []
            except errors.PluginError as exc:
                if "can't find method" not in str(exc):  # Go's and ours: rpc: can't find method
                    raise
                self._has_states = False
            else:
                return [spi_lb.backend_from_wire(b, f"Backends[{i}]") for i, b in enumerate(raw)]
        return [spi_lb.Backend(id=i) for i in await self.backends()]

    async def close(self) -> None:
        await self.client.close()
