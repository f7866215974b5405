"""One plugin, three ways to reach it - over its socket, through the in-memory transport, and
in-process through the adapter - answer the same: results, errors (class, message, remote kind)
and events. A plugin author's bug looks the same wherever the plugin runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from infrakit import errors, spi
from infrakit._utils.aio import Broker
from infrakit.rpc.client import Client
from infrakit.rpc.instance import InstanceClient
from infrakit.rpc.memory import MemoryTransport
from infrakit.rpc.server import PluginServer
from infrakit.spi.adapt import AsyncInstance
from infrakit.spi.plugin import Served
from infrakit.spi.types import Era
from infrakit.testing import Harness, serve_in_memory, serve_plugin

FAILURES: dict[str, Exception] = {
    "spec": errors.SpecError("Properties.Size: expected a number"),
    "missing": errors.NotFoundError("no such instance: i-9"),
    "bug": KeyError("region"),
    "bare-bug": RuntimeError(),
    "not-implemented": NotImplementedError(),
    "own-unreachable": errors.PluginUnreachableError("cloud API at 10.0.0.1 is down"),
    "plugin-error": errors.PluginError("quota exceeded"),
    # Passed on from another plugin, and a plugin's own subclass.
    "passed-on": errors.PluginError(
        "disk plugin: not running", remote_kind="PluginUnreachableError"
    ),
    "subclass": type("QuotaError", (errors.PluginError,), {})("quota of 5 reached"),
}


class Cloud:
    """An instance plugin whose Provision fails as its spec's ``fail`` tag says."""

    def __init__(self) -> None:
        self.instances: dict[str, spi.instance.Spec] = {}

    def validate(self, properties: Any) -> None:
        if properties == "bad":
            raise ValueError("bad properties")

    def provision(self, spec: spi.instance.Spec) -> str:
        failure = spec.tags.get("fail")
        if failure:
            raise FAILURES[failure]
        iid = f"i-{len(self.instances) + 1}"
        self.instances[iid] = spec
        return iid

    def destroy(self, instance_id: str, context: spi.instance.Context) -> None:
        self.instances.pop(instance_id)

    def describe_instances(self, tags: dict[str, str]) -> list[spi.instance.Description]:
        return [
            spi.instance.Description(id=iid, tags=spec.tags)
            for iid, spec in self.instances.items()
            if all(spec.tags.get(k) == v for k, v in tags.items())
        ]


Way = Callable[[Cloud], AbstractAsyncContextManager[spi.instance.Plugin]]


def _over(serve: Callable[..., AbstractAsyncContextManager[Harness]]) -> Way:
    async def way(plugin: Cloud) -> AsyncIterator[spi.instance.Plugin]:
        async with serve(plugin, "cloud") as h:
            yield h.instance

    import contextlib

    return contextlib.asynccontextmanager(way)


def _in_process() -> Way:
    import contextlib

    @contextlib.asynccontextmanager
    async def way(plugin: Cloud) -> AsyncIterator[spi.instance.Plugin]:
        yield AsyncInstance(plugin, "cloud")

    return way


WAYS = {
    "socket": _over(serve_plugin),
    "memory": _over(serve_in_memory),
    "in-process": _in_process(),
}


async def _outcome(way: Way, failure: str) -> tuple[type, str, str | None]:
    async with way(Cloud()) as plugin:
        with pytest.raises(errors.InfrakitError) as caught:
            await plugin.provision(spi.instance.Spec(tags={"fail": failure}))
    exc = caught.value
    return type(exc), str(exc), getattr(exc, "remote_kind", None)


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_a_failing_provision_is_the_same_error_every_way(failure: str) -> None:
    outcomes = {name: await _outcome(way, failure) for name, way in WAYS.items()}
    assert outcomes["memory"] == outcomes["socket"], outcomes
    assert outcomes["in-process"] == outcomes["socket"], outcomes


@pytest.mark.parametrize(
    ("failure", "cls", "message"),
    [
        ("spec", errors.SpecError, "Properties.Size: expected a number"),
        ("bug", errors.PluginError, "KeyError: 'region'"),
        ("bare-bug", errors.PluginError, "RuntimeError: RuntimeError"),
        ("not-implemented", errors.PluginError, "not implemented"),
        # The plugin was reached; its own backend was not: a plugin error, not a transport one
        # (the group's breaker counts it as a failed create).
        ("own-unreachable", errors.PluginError, "cloud API at 10.0.0.1 is down"),
    ],
)
async def test_what_an_in_process_caller_sees(failure: str, cls: type, message: str) -> None:
    got_cls, got_message, _ = await _outcome(WAYS["in-process"], failure)
    assert (got_cls, got_message) == (cls, message)


async def test_results_are_the_same_in_memory_and_over_the_socket() -> None:
    seen = []
    for way in (WAYS["socket"], WAYS["memory"]):
        async with way(Cloud()) as plugin:
            first = await plugin.provision(spi.instance.Spec(tags={"t": "a"}))
            await plugin.provision(spi.instance.Spec(tags={"t": "b"}))
            await plugin.validate("fine")
            found = [d.id for d in await plugin.describe_instances({"t": "a"})]
            await plugin.destroy(first, spi.instance.Context("terminate"))
            left = [d.id for d in await plugin.describe_instances({})]
            seen.append((first, found, left))
    assert seen[0] == seen[1] == ("i-1", ["i-1"], ["i-2"])


async def test_memory_speaks_both_eras() -> None:
    async with serve_in_memory(Cloud(), "cloud") as h:
        await h.client.handshake(spi.instance.INTERFACE)
        assert h.client.era is Era.HEAD
        assert "Instance/0.6.1" in (h.client.objects or {})
        seed = Client("cloud", "memory/cloud", transport=h.client.transport, era=Era.SEED)
        iid = await InstanceClient(seed).provision(spi.instance.Spec(tags={"x": "y"}))
        assert [d.id for d in await h.instance.describe_instances({"x": "y"})] == [iid]
        with pytest.raises(errors.PluginError, match="ValueError: bad properties"):
            await InstanceClient(seed).validate("bad")


async def test_an_unknown_method_is_named_in_memory_as_over_a_socket() -> None:
    messages = []
    for serve in (serve_plugin, serve_in_memory):
        async with serve(Cloud(), "cloud") as h:
            with pytest.raises(errors.PluginError) as caught:
                await h.client.call("Instance.Reboot", {"Type": ""})
            messages.append(str(caught.value))
    assert messages[0] == messages[1] == 'rpc: can\'t find method "Instance.Reboot"'


@pytest.mark.timeout(20)
async def test_events_in_memory_are_the_servers_stream() -> None:
    broker: Broker[spi.event.Event] = Broker(history=100)
    served = Served(instance={"": Cloud()}, events=broker)
    from infrakit.launch.host import services_for

    server = PluginServer("cloud", services_for("cloud", served).services, events=broker)
    client = Client("cloud", "memory/cloud", transport=MemoryTransport(server))
    earlier = spi.event.Event(topic="instance/created", type="created", message="i-0")
    broker.publish("instance/created", earlier)
    stream = client.subscribe("instance/", since="1m")
    marker = await asyncio.wait_for(anext(stream), 5)
    assert marker.type == "subscribed"
    assert (await asyncio.wait_for(anext(stream), 5)).message == "i-0"  # replayed
    later = spi.event.Event(topic="instance/gone", type="gone", message="i-1")
    broker.publish("instance/gone", later)
    assert (await asyncio.wait_for(anext(stream), 5)).message == "i-1"
    await stream.aclose()
    with pytest.raises(errors.NotFoundError, match="publishes no events"):
        quiet = Client("q", "memory/q", transport=MemoryTransport(PluginServer("q", [])))
        await anext(quiet.subscribe("x"))


def test_the_blocking_client_answers_the_same_in_memory_and_over_the_socket() -> None:
    """The CLI's client, with its server on an event loop in another thread: the same results,
    errors and events through LoopMemoryTransport as over the plugin's socket."""
    from infrakit.launch.host import services_for
    from infrakit.rpc.memory import LoopMemoryTransport
    from infrakit.rpc.sync import SyncClient
    from infrakit.testing import short_tempdir
    from tests.threaded_host import ThreadedHost

    directory = short_tempdir()
    broker: Broker[spi.event.Event] = Broker(history=100)
    served = Served(instance={"": Cloud()}, events=broker)
    with ThreadedHost(directory, directory) as host:
        host.serve("cloud", served)

        async def build() -> PluginServer:
            return PluginServer("cloud", services_for("cloud", served).services, events=broker)

        server = host.call(build())
        clients = {
            "socket": SyncClient("cloud", directory / "cloud"),
            "memory": SyncClient(
                "cloud", "memory/cloud", transport=LoopMemoryTransport.to(server, host.loop)
            ),
        }
        seen = {}
        for way, client in clients.items():
            with client:
                client.handshake(spi.instance.INTERFACE)
                made = client.call(
                    "Instance.Provision", {"Type": "", "Spec": {"Tags": {"way": way}}}
                )
                with pytest.raises(errors.PluginError) as caught:
                    client.call(
                        "Instance.Provision", {"Type": "", "Spec": {"Tags": {"fail": "bug"}}}
                    )
                listed = client.call(
                    "Instance.DescribeInstances", {"Type": "", "Tags": {"way": way}}
                )
                seen[way] = (
                    made["Type"],
                    str(caught.value),
                    [d["Tags"]["way"] for d in listed["Descriptions"]],
                )
                broker.publish(
                    "instance/x", spi.event.Event(topic="instance/x", type="x", message=way)
                )
                replayed: list[int] = []
                stream = client.events("instance/", since="1m", on_replayed=replayed.append)
                first = next(stream)
                assert first.type == "x" and replayed == []
                stream.close()
        assert seen["memory"] == ("", "KeyError: 'region'", ["memory"])
        assert seen["socket"] == ("", "KeyError: 'region'", ["socket"])


def _kind_before_the_split(exc: Exception) -> str:
    """data.kind as the server sent it before errors.as_reported (74d37d2's exception_to_error)."""
    return exc.kind if isinstance(exc, errors.InfrakitError) else "PluginError"


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_the_wire_kind_is_what_it_always_was_also_after_the_adapter(failure: str) -> None:
    from infrakit.rpc.envelope import exception_to_error

    exc = FAILURES[failure]
    _, message, data = exception_to_error(exc)
    assert data == {"kind": _kind_before_the_split(exc)}
    # The server sees what the adapter raised, already mapped: the same kind and message.
    reported = errors.as_reported(exc)
    assert exception_to_error(reported)[1:] == (message, data)
    assert errors.as_reported(reported) is reported  # mapping twice changes nothing


@pytest.mark.timeout(20)
async def test_closing_a_subscription_ends_it_on_the_server() -> None:
    from infrakit.launch.host import services_for

    broker: Broker[spi.event.Event] = Broker()
    served = Served(instance={"": Cloud()}, events=broker)
    server = PluginServer("cloud", services_for("cloud", served).services, events=broker)
    client = Client("cloud", "memory/cloud", transport=MemoryTransport(server))
    stream = client.subscribe("instance/")
    assert (await asyncio.wait_for(anext(stream), 5)).type == "subscribed"
    assert broker.subscriber_count == 1
    await stream.aclose()
    assert broker.subscriber_count == 0
