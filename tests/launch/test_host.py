"""PluginHost's lookups: a plugin running in this process is called directly, any other through an
RPC client cached per name (one cache per interface); the kinds it builds get parsed options."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit import errors
from infrakit.launch import registry
from infrakit.launch.host import PluginHost
from infrakit.rpc.flavor import FlavorClient
from infrakit.rpc.group import GroupClient
from infrakit.rpc.instance import InstanceClient
from infrakit.spi.adapt import AsyncFlavor, AsyncInstance
from infrakit.spi.plugin import Served
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def host(plugin_dir: Path, tmp_path: Path):
    host = PluginHost(plugin_dir, home=tmp_path)
    yield host
    await host.stop_all()


async def test_local_plugins_are_called_directly_by_type(host: PluginHost) -> None:
    plugin = FakeInstancePlugin()
    await host.serve(
        "cloud", Served(instance={"": plugin, "big": plugin}, flavor={"": FakeFlavorPlugin()})
    )
    found = host.instance_lookup("cloud")
    assert isinstance(found, AsyncInstance) and found is host.running["cloud"].instance[""]
    assert host.instance_lookup("cloud/big") is host.running["cloud"].instance["big"]
    assert isinstance(host.flavor_lookup("cloud"), AsyncFlavor)
    with pytest.raises(
        errors.NotFoundError, match=r"^no-plugin:small \(plugin cloud has no such type\)$"
    ):
        host.instance_lookup("cloud/small")
    with pytest.raises(errors.NotFoundError, match="no-plugin:x"):
        host.flavor_lookup("cloud/x")


async def test_other_plugins_get_one_cached_client_per_name_and_interface(host: PluginHost) -> None:
    await host.serve("elsewhere", Served(instance={"": FakeInstancePlugin()}))
    host.prefer_local = False  # as if it ran in another process
    first = host.instance_lookup("elsewhere/big")
    assert isinstance(first, InstanceClient) and first.type == "big"
    assert host.instance_lookup("elsewhere/big") is first
    assert host.instance_lookup("elsewhere") is not first
    flavor = host.flavor_lookup("elsewhere")
    assert isinstance(flavor, FlavorClient)
    group = host.group_lookup("elsewhere/workers")
    assert isinstance(group, GroupClient) and group.name == "elsewhere/workers"
    host.forget_client("elsewhere")
    assert host.instance_lookup("elsewhere/big") is not first
    assert host.flavor_lookup("elsewhere") is not flavor


async def test_a_local_instance_plugin_without_that_interface_is_reached_remotely(
    host: PluginHost,
) -> None:
    """A plugin that serves no flavor: a flavor lookup of its name goes to the socket (which then
    says what it implements), it is not silently handed the instance object."""
    await host.serve("only-instances", Served(instance={"": FakeInstancePlugin()}))
    assert isinstance(host.flavor_lookup("only-instances"), FlavorClient)


async def test_a_local_group_object_must_implement_the_group_interface(host: PluginHost) -> None:
    built = await host.build_kind(registry.get_kind("group"), "group", {"store": "memory"})
    await host.serve("group", built)
    assert host.group_lookup("group") is built.group["."]

    class NotAGroup:
        async def commit_group(self, spec: object, pretend: bool) -> str:
            return ""

    await host.serve("odd", Served(group={".": NotAGroup()}))
    with pytest.raises(errors.PluginError, match="its group object NotAGroup does not implement"):
        host.group_lookup("odd")


async def test_build_kind_hands_build_parsed_options(host: PluginHost) -> None:
    built = await host.build_kind(
        registry.get_kind("group"), "group", {"store": "memory", "poll-interval": "1m"}
    )
    assert built.group["."].poll_interval == 60.0  # type: ignore[attr-defined]
    with pytest.raises(errors.SpecError, match=r"^unknown option group\.nosuch"):
        await host.build_kind(registry.get_kind("group"), "group", {"nosuch": "1"})
    with pytest.raises(errors.SpecError, match=r"^group option poll-interval: got '0s'"):
        await host.build_kind(registry.get_kind("group"), "group", {"poll-interval": "0s"})
