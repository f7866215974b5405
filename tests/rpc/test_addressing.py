"""Objects inside one plugin socket (reference section 1.10): ``Type`` for instance and flavor
plugins, ``Name`` for group objects; Go-like case-insensitive keys; 63-bit integers kept exact."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.rpc.group import GroupClient
from infrakit.spi import group
from infrakit.spi.plugin import Served
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin
from tests.rpc.wire import head_call, seed_call

pytestmark = pytest.mark.timeout(30)

BIG = 9223372036854775807  # 2**63 - 1: not representable as a float


class SizedGroup:
    """A group object that reports a fixed size, so a reply tells which object answered."""

    def __init__(self, size: int) -> None:
        self._size = size

    async def commit_group(self, spec: group.Spec, pretend: bool) -> str:
        return f"object of size {self._size}"

    async def free_group(self, id: str) -> None: ...
    async def destroy_group(self, id: str) -> None: ...
    async def destroy_instances(self, id: str, instances: list[str]) -> None: ...
    async def set_size(self, id: str, size: int) -> None: ...

    async def describe_group(self, id: str) -> group.GroupDescription:
        return group.GroupDescription([], True)

    async def inspect_groups(self) -> list[group.Spec]:
        return []

    async def size(self, id: str) -> int:
        return self._size


async def sizes_by_name(sock: Any, names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        reply = await head_call(sock, "Group.Size", {"Name": name, "ID": "g"})
        out[name] = reply["result"]["Size"] if "result" in reply else reply["error"]["message"]
    return out


async def test_group_name_addressing_with_several_objects() -> None:
    served = Served(group={"workers": SizedGroup(3), "managers": SizedGroup(5)})
    async with serve_plugin(served, "mystack") as h:
        reply = await head_call(h.socket, "Handshake.Hello", {})
        objects = reply["result"]["Objects"]["Group/0.1.1"]
        assert [o["Name"] for o in objects] == ["managers", "workers"]
        assert await sizes_by_name(
            h.socket, ["mystack/workers", "mystack/managers", "./workers", "mystack", "mystack/x"]
        ) == {
            "mystack/workers": 3,
            "mystack/managers": 5,
            "./workers": 3,
            "mystack": "not found: mystack (key=)",  # several objects: a bare name is ambiguous
            "mystack/x": "not found: mystack/x (key=x)",
        }
        # The typed client sends the name it was given.
        assert await GroupClient(h.client, "mystack/managers").size("g") == 5


async def test_group_name_addressing_with_one_object() -> None:
    async with serve_plugin(Served(group={".": SizedGroup(2)}), "group") as h:
        assert await sizes_by_name(h.socket, ["", "group", ".", "group/cattle"]) == {
            "": 2,
            "group": 2,
            ".": 2,
            "group/cattle": 2,  # one object: the sub names the group, which travels in ID anyway
        }
        # SEED requests carry no Name at all.
        status, reply = await seed_call(h.socket, "Group.CommitGroup", {"Spec": {"ID": "g"}})
        assert (status, reply["result"]) == (200, {"Details": "object of size 2"})


async def test_flavor_type_addressing() -> None:
    plain, special = FakeFlavorPlugin(), FakeFlavorPlugin()
    async with serve_plugin(Served(flavor={"": plain, "manager": special}), "swarm") as h:
        desc = {"ID": "i-1", "LogicalID": None, "Tags": {}}
        for type_, target in [("manager", special), ("", plain)]:
            reply = await head_call(
                h.socket, "Flavor.Drain", {"Type": type_, "Properties": None, "Instance": desc}
            )
            assert reply["result"] == {"Type": type_, "OK": True}
            assert target.drained == ["i-1"]
        reply = await head_call(h.socket, "Flavor.Drain", {"Type": "worker", "Instance": desc})
        assert reply["error"]["message"] == "no-plugin:worker"


async def test_typed_only_instance_plugin_has_no_default_object() -> None:
    served = Served(instance={"compute": FakeInstancePlugin(), "disk": FakeInstancePlugin()})
    async with serve_plugin(served, "simulator") as h:
        reply = await head_call(h.socket, "Handshake.Hello", {})
        assert [o["Name"] for o in reply["result"]["Objects"]["Instance/0.6.1"]] == [
            "compute",
            "disk",
        ]
        reply = await head_call(h.socket, "Instance.DescribeInstances", {"Tags": {}})
        assert reply["error"]["message"] == "no-plugin:"


async def test_keys_are_matched_case_insensitively_everywhere() -> None:
    flav = FakeFlavorPlugin()
    async with serve_plugin(flav, "flav") as h:
        reply = await head_call(
            h.socket,
            "Flavor.Prepare",
            {"type": "", "PROPERTIES": {"Tags": {"t": "1"}},
             "spec": {"tags": {"a": "b"}, "init": "x"}, "allocation": {"size": 1},
             "index": {"group": "g", "sequence": 1}},
        )  # fmt: skip
        # The reply uses Go's field names whatever the request spelled.
        assert list(reply["result"]["Spec"]) == [
            "Properties", "Tags", "Init", "LogicalID", "Attachments"
        ]  # fmt: skip
        assert reply["result"]["Spec"]["Tags"] == {"a": "b", "t": "1"}
    async with serve_plugin(Served(group={".": SizedGroup(4)}), "group") as h:
        reply = await head_call(h.socket, "Group.Size", {"name": "", "id": "g"})
        assert reply["result"] == {"Name": "", "ID": "g", "Size": 4}


async def test_63_bit_integers_round_trip_exactly() -> None:
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:
        props = {"n": BIG, "m": -BIG - 1, "f": 0.5, "nested": [BIG]}
        reply = await head_call(
            h.socket, "Instance.Provision", {"Spec": {"Properties": props}}, BIG
        )
        assert reply["id"] == BIG
        (stored,) = plugin.instances.values()
        assert stored.spec.properties == props
        reply = await head_call(h.socket, "Instance.DescribeInstances", {"Properties": True}, BIG)
        (desc,) = reply["result"]["Descriptions"]
        assert desc["Properties"]["Properties"] == props
        assert isinstance(desc["Properties"]["Properties"]["n"], int)
        status, reply = await seed_call(h.socket, "Instance.Validate", {"Properties": props}, BIG)
        assert (status, reply["id"]) == (200, BIG)
    async with serve_plugin(Served(group={".": SizedGroup(BIG)}), "group") as h:
        assert await h.group.size("g") == BIG  # through the typed client as well
