"""The loadbalancer plugin against a real HAProxy, over its real UNIX socket (L4 SPI).

Backends are real HTTP servers (examples/web_server.py) on 127.0.0.1; requests go through the
HAProxy frontend. Every process is started by the test or the plugin and stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.plugins.loadbalancer import HAProxyBalancer
from infrakit.plugins.loadbalancer.kind import parse_routes
from infrakit.plugins.loadbalancer.plugin import parse_address
from infrakit.rpc.loadbalancer import LoadBalancerClient
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.plugin import Served
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import wait_until
from infrakit.testing.harness import short_tempdir
from infrakit.testing.processes import free_port

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]

SERVER = Path(__file__).resolve().parents[2] / "examples" / "web_server.py"


class Web:
    """One examples/web_server.py process on a free port."""

    def __init__(self, version: str) -> None:
        self.port = free_port()
        self.version = version
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), version],
            env={**os.environ, "PORT": str(self.port), "INFRAKIT_INSTANCE_ID": version},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def webs() -> Iterator[list[Web]]:
    started: list[Web] = []
    yield started
    for web in started:
        web.kill()


def start_web(webs: list[Web], version: str) -> Web:
    web = Web(version)
    webs.append(web)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket_to(web.port):
            return web
        assert time.monotonic() < deadline, f"web server {version} did not listen"
        time.sleep(0.02)  # noqa: TID251 - a real process coming up


@contextlib.contextmanager
def socket_to(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        yield


def get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
async def balancer() -> AsyncIterator[tuple[LoadBalancerClient, HAProxyBalancer, int]]:
    """A balancer with one HTTP route on a free port, served on a socket; stopped by PID."""
    directory = short_tempdir("iklb")
    port = free_port()
    plugin = HAProxyBalancer(
        "lb",
        directory / "state",
        routes=parse_routes(f"{port}:80"),
        drain_timeout=5.0,
    )
    served = Served(loadbalancer={"": plugin}, start=plugin.start, stop=plugin.stop)
    try:
        async with serve_plugin(served, "lb", directory=directory) as h:
            yield LoadBalancerClient(h.client), plugin, port
    finally:
        process = plugin.haproxy.process
        assert process is None or process.poll() is not None, "haproxy left running"
        shutil.rmtree(directory, ignore_errors=True)


async def states(lb: LoadBalancerClient) -> dict[str, spi_lb.Backend]:
    return {b.id: b for b in await lb.backend_states()}


async def wait_state(lb: LoadBalancerClient, iid: str, state: str | None) -> None:
    async def reached() -> bool:
        found = (await states(lb)).get(iid)
        return (found.state if found else None) == state

    await wait_until(reached, timeout=10)


async def test_add_check_drain_remove(
    balancer: tuple[LoadBalancerClient, HAProxyBalancer, int], webs: list[Web]
) -> None:
    lb, plugin, port = balancer
    assert await lb.name() == "lb"
    assert [r.load_balancer_port for r in await lb.routes()] == [port]
    a, b = start_web(webs, "a"), start_web(webs, "b")
    result = await lb.register_backends(["a", "b"], {"a": a.address, "b": b.address})
    assert "registered 2" in result
    assert sorted(await lb.backends()) == ["a", "b"]
    # Registered backends take traffic only once their health check passed.
    await wait_state(lb, "a", spi_lb.BACKEND_UP)
    await wait_state(lb, "b", spi_lb.BACKEND_UP)
    seen = {(await asyncio.to_thread(get, port))[1].split()[0] for _ in range(6)}
    assert seen == {"a", "b"}
    # Registering again changes nothing.
    assert "already registered" in await lb.register_backends(["a"], {"a": a.address})

    # Drain a while a slow request runs on it: the request completes, no new ones go to a, and
    # a leaves the pool when its connection is gone.
    slow = asyncio.create_task(asyncio.to_thread(get, a.port, "/slow?s=0.1"))  # warm-up direct
    await slow
    in_flight = [asyncio.create_task(asyncio.to_thread(get, port, "/slow?s=1.5")) for _ in range(2)]

    async def busy_now() -> bool:
        return any(s.connections for s in (await states(lb)).values())

    await wait_until(busy_now, timeout=5)
    before = await states(lb)
    busy = [iid for iid, s in before.items() if s.connections]
    assert busy, before
    draining = busy[0]
    assert "draining 1" in await lb.deregister_backends([draining])
    assert (await states(lb))[draining].state == spi_lb.BACKEND_DRAINING
    other = "b" if draining == "a" else "a"
    for _ in range(4):
        status, body = await asyncio.to_thread(get, port)
        assert (status, body.split()[0]) == (200, other)
    assert draining in await lb.backends()  # still listed while its request runs
    answers = await asyncio.gather(*in_flight)
    assert all(status == 200 for status, _ in answers), answers
    await wait_until(lambda: _gone(plugin, draining), timeout=10)
    assert await lb.backends() == [other]


def _gone(plugin: HAProxyBalancer, iid: str) -> bool:
    return iid not in plugin.backends()


async def test_dead_backend_goes_down_and_a_checking_one_gets_no_traffic(
    balancer: tuple[LoadBalancerClient, HAProxyBalancer, int], webs: list[Web]
) -> None:
    lb, _, port = balancer
    a = start_web(webs, "a")
    await lb.register_backends(["a"], {"a": a.address})
    await wait_state(lb, "a", spi_lb.BACKEND_UP)
    # Nothing listens at the second address: it stays "checking" and gets no request.
    await lb.register_backends(["ghost"], {"ghost": f"127.0.0.1:{free_port()}"})
    for _ in range(10):
        status, body = await asyncio.to_thread(get, port)
        assert (status, body.split()[0]) == (200, "a")
    assert (await states(lb))["ghost"].state == spi_lb.BACKEND_CHECKING
    # A checking backend deregistered is gone at once (it never took traffic).
    await lb.deregister_backends(["ghost"])
    assert "ghost" not in await lb.backends()
    # Killed: its check fails and it is reported down.
    a.kill()
    await wait_state(lb, "a", spi_lb.BACKEND_DOWN)


async def test_publish_and_unpublish_reload_without_dropping_backends(
    balancer: tuple[LoadBalancerClient, HAProxyBalancer, int], webs: list[Web]
) -> None:
    lb, plugin, port = balancer
    a = start_web(webs, "a")
    await lb.register_backends(["a"], {"a": a.address})
    await wait_state(lb, "a", spi_lb.BACKEND_UP)
    old_pid = plugin.haproxy.process.pid if plugin.haproxy.process else 0
    second = free_port()
    result = await lb.publish(spi_lb.Route(port=80, load_balancer_port=second))
    assert f":{second}" in result
    assert plugin.haproxy.process is not None and plugin.haproxy.process.pid != old_pid
    # Both routes answer from the backend that was up before the reload.
    for p in (port, second):
        await wait_until(lambda p=p: get(p)[0] == 200, timeout=10)
        assert get(p)[1].split()[0] == "a"
    assert "already published" in await lb.publish(spi_lb.Route(port=80, load_balancer_port=second))
    await lb.unpublish(second)
    assert [r.load_balancer_port for r in await lb.routes()] == [port]
    with pytest.raises(errors.NotFoundError, match=f"no route listens on port {second}"):
        await lb.unpublish(second)


async def test_bad_input_changes_nothing(
    balancer: tuple[LoadBalancerClient, HAProxyBalancer, int], webs: list[Web]
) -> None:
    lb, _, _ = balancer
    a = start_web(webs, "a")
    with pytest.raises(errors.SpecError, match="no address for backend b"):
        await lb.register_backends(["a", "b"], {"a": a.address})
    assert await lb.backends() == []
    with pytest.raises(errors.SpecError, match="is not HOST"):
        await lb.register_backends(["a"], {"a": "not an address"})
    with pytest.raises(errors.SpecError, match="not a TCP port"):
        await lb.register_backends(["a"], {"a": "127.0.0.1:99999"})
    await lb.register_backends(["a"], {"a": a.address})
    with pytest.raises(errors.NotFoundError, match="backend nope is not registered"):
        await lb.deregister_backends(["a", "nope"])
    assert (await states(lb))["a"].state != spi_lb.BACKEND_DRAINING
    with pytest.raises(errors.SpecError, match=r"Route\.Port"):
        await lb.client.call("L4.Publish", {"Type": "", "Route": {"LoadBalancerPort": 1}})
    with pytest.raises(errors.SpecError, match="ExtPort"):
        await lb.client.call("L4.Unpublish", {"Type": "", "ExtPort": "x"})


async def test_haproxy_died_is_one_clear_error_and_no_action(
    balancer: tuple[LoadBalancerClient, HAProxyBalancer, int], webs: list[Web]
) -> None:
    lb, plugin, _ = balancer
    a = start_web(webs, "a")
    await lb.register_backends(["a"], {"a": a.address})
    process = plugin.haproxy.process
    assert process is not None
    process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait, 10)
    for call in (
        lambda: lb.register_backends(["b"], {"b": a.address}),
        lambda: lb.deregister_backends(["a"]),
        lb.backend_states,
        lambda: lb.publish(spi_lb.Route(port=80, load_balancer_port=free_port())),
    ):
        with pytest.raises(errors.PluginError) as caught:
            await call()
        message = str(caught.value)
        assert "is not running: it exited with status" in message, message
        assert "restart the plugin" in message and "\n" not in message
    assert await lb.backends() == ["a"]  # nothing changed
    assert await lb.name() == "lb"  # the daemon itself still answers


async def test_a_restarted_plugin_keeps_its_routes_and_up_backends(webs: list[Web]) -> None:
    directory = short_tempdir("iklb")
    port = free_port()
    a, b = start_web(webs, "a"), start_web(webs, "b")
    first = HAProxyBalancer("lb", directory, routes=parse_routes(f"{port}:80"))
    await first.start()
    try:
        await first.register_backends(["a", "b"], {"a": a.address, "b": b.address})
        await wait_until(lambda: first._backends["a"].state == spi_lb.BACKEND_UP, timeout=10)
        await first.deregister_backends(["b"])  # draining: not kept
    finally:
        await first.stop()
    second = HAProxyBalancer("lb", directory)  # no routes option: the saved one
    await second.start()
    try:
        assert [r.load_balancer_port for r in second.routes()] == [port]
        assert second.backends() == ["a"]
        # Up at once, as before the restart: no empty pool while checks run.
        assert await asyncio.to_thread(get, port) == (200, "a a\n")
        assert (await second.backend_states())[0].state == spi_lb.BACKEND_UP
    finally:
        await second.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_start_refuses_a_port_in_use() -> None:
    import socket

    directory = short_tempdir("iklb")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        plugin = HAProxyBalancer("lb", directory, routes=parse_routes(f"{port}:80"))
        with pytest.raises(errors.SpecError, match=f"port {port} on 127.0.0.1 is in use"):
            await plugin.start()
    await plugin.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_route_option_and_address_parsing() -> None:
    (route,) = parse_routes("8080:80/tcp")
    assert (route.load_balancer_port, route.port, route.protocol) == (8080, 80, "TCP")
    with pytest.raises(ValueError, match="LBPORT:PORT"):
        parse_routes("8080")
    with pytest.raises(ValueError, match="not valid protocol"):
        parse_routes("8080:80/quic")
    assert parse_address("127.0.0.1:80", "a") == ("127.0.0.1", 80)
    assert parse_address("web-1.local", "a") == ("web-1.local", None)
    assert parse_address("[::1]:80", "a") == ("[::1]", 80)
