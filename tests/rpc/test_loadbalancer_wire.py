"""The L4 SPI on the wire: Go InfraKit HEAD's method names and field shapes, a plugin author's
plain-``def`` balancer served as is, and a Go balancer without ``L4.BackendStates``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.rpc.client import Client
from infrakit.rpc.loadbalancer import LoadBalancerClient
from infrakit.rpc.loadbalancer import service as l4_service
from infrakit.rpc.server import PluginServer
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.adapt import AsyncLoadBalancer
from infrakit.testing import serve_plugin
from infrakit.testing.harness import short_tempdir


class PlainBalancer:
    """An L4 balancer written with plain ``def`` methods and no ``backend_states``."""

    def __init__(self) -> None:
        self.routes_: list[spi_lb.Route] = []
        self.pool: dict[str, str] = {}
        self.check: spi_lb.HealthCheck | None = None

    def name(self) -> str:
        return "plain"

    def routes(self) -> list[spi_lb.Route]:
        return self.routes_

    def publish(self, route: spi_lb.Route) -> str:
        self.routes_.append(route)
        return "ok"

    def unpublish(self, ext_port: int) -> str:
        self.routes_ = [r for r in self.routes_ if r.load_balancer_port != ext_port]
        return "ok"

    def configure_health_check(self, check: spi_lb.HealthCheck) -> str:
        self.check = check
        return "configured"

    def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        self.pool.update({i: addresses.get(i, "") for i in ids})
        return f"registered {len(ids)}"

    def deregister_backends(self, ids: list[str]) -> str:
        for i in ids:
            self.pool.pop(i, None)
        return "ok"

    def backends(self) -> list[str]:
        return sorted(self.pool)


async def test_go_shapes_on_the_wire() -> None:
    plugin = PlainBalancer()
    async with serve_plugin(plugin, "l4") as h:
        call = h.client.call
        assert await call("L4.Name", {"Type": ""}) == {"Type": "", "Name": "plain"}
        route = {
            "Port": 8080,
            "Protocol": "http",
            "LoadBalancerPort": 80,
            "LoadBalancerProtocol": "HTTP",
            "Certificate": None,
            "HealthMonitorPath": "/health",
        }
        assert await call("L4.Publish", {"Type": "", "Route": route}) == {
            "Type": "",
            "Result": "ok",
        }
        (listed,) = (await call("L4.Routes", {"Type": ""}))["Routes"]
        assert listed == {**route, "Protocol": "HTTP"}  # Go's Protocol is upper case
        # Go encodes time.Duration as integer nanoseconds, inline in the request.
        hc = {"Type": "", "BackendPort": 8080, "Healthy": 2, "Unhealthy": 3}
        hc |= {"Interval": 500_000_000, "Timeout": 2_000_000_000}
        assert (await call("L4.ConfigureHealthCheck", hc))["Result"] == "configured"
        assert plugin.check == spi_lb.HealthCheck(8080, 2, 3, 0.5, 2.0)
        # A Go client sends IDs only; infrakit's Addresses ride along.
        await call("L4.RegisterBackends", {"Type": "", "IDs": ["i-1"]})
        await call(
            "L4.RegisterBackends",
            {"Type": "", "IDs": ["i-2"], "Addresses": {"i-2": "10.0.0.2:80"}},
        )
        assert await call("L4.Backends", {"Type": ""}) == {"Type": "", "IDs": ["i-1", "i-2"]}
        # Without backend_states the adapter lists every backend as up.
        states = (await call("L4.BackendStates", {"Type": ""}))["Backends"]
        assert [s["State"] for s in states] == ["up", "up"]
        assert (await call("L4.DeregisterBackends", {"Type": "", "IDs": ["i-1"]}))["Result"]
        assert plugin.pool == {"i-2": "10.0.0.2:80"}
        assert await call("L4.Unpublish", {"Type": "", "ExtPort": 80}) == {
            "Type": "",
            "Result": "ok",
        }
        with pytest.raises(errors.NotFoundError, match="no-plugin:other"):
            await call("L4.Name", {"Type": "other"})
        with pytest.raises(errors.SpecError, match="HTTPS but no certificate"):
            await call(
                "L4.Publish",
                {"Type": "", "Route": {**route, "LoadBalancerProtocol": "HTTPS"}},
            )
        with pytest.raises(errors.SpecError, match="IDs: expected an array"):
            await call("L4.RegisterBackends", {"Type": "", "IDs": "i-1"})


async def test_a_go_balancer_without_backend_states_counts_every_backend_up() -> None:
    """A HEAD Go plugin answers ``rpc: can't find method`` to infrakit's extension."""
    plugin = AsyncLoadBalancer(PlainBalancer(), "go")
    svc = l4_service({"": plugin})
    del svc.handlers["L4.BackendStates"]
    directory = short_tempdir("ikl4")
    server = PluginServer("go", [svc])
    await server.start(Path(directory) / "go")
    client = Client("go", Path(directory) / "go")
    try:
        l4 = LoadBalancerClient(client)
        await l4.register_backends(["a"], {"a": "127.0.0.1:1"})
        assert await l4.backend_states() == [spi_lb.Backend("a")]
        assert await l4.backend_states() == [spi_lb.Backend("a")]  # asked once, remembered
    finally:
        await client.close()
        await server.stop()


def test_wire_round_trips() -> None:
    route = spi_lb.Route(port=80, load_balancer_port=8080, health_monitor_path="/h")
    assert spi_lb.route_from_wire(spi_lb.route_to_wire(route)) == route
    check = spi_lb.HealthCheck(0, 2, 2, 0.5, 1.5)
    assert spi_lb.health_check_from_wire(spi_lb.health_check_to_wire(check)) == check
    backend = spi_lb.Backend("a", "127.0.0.1:1", spi_lb.BACKEND_DRAINING, 3)
    assert spi_lb.backend_from_wire(spi_lb.backend_to_wire(backend)) == backend
    bad: list[tuple[Any, str]] = [
        ({"Port": 0, "LoadBalancerPort": 80}, "Route.Port"),
        ({"Port": 80, "LoadBalancerPort": 80, "Protocol": "quic"}, "not valid protocol"),
        ({"Port": 80, "LoadBalancerPort": 80, "HealthMonitorPath": "health"}, "URL path"),
    ]
    for wire, message in bad:
        with pytest.raises(errors.SpecError, match=message):
            spi_lb.route_from_wire(wire)
