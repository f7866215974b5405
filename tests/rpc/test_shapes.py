"""Request/response shapes of every Instance, Flavor and Group method, as InfraKit captured them
(reference sections 1.4-1.8): member order, ``Type``/``Name``/``ID`` echoes, null vs [] - for both
eras, through a real socket with the real group controller behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infrakit.controller.group.controller import GroupController
from infrakit.spi.instance import Attachment, Spec
from infrakit.spi.types import Health
from infrakit.store.memory import MemoryStore
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin, lookup, wait_until
from tests.rpc.wire import head_call, http, seed_call

pytestmark = pytest.mark.timeout(30)

VANILLA = {"Init": ["docker pull nginx:alpine"], "Tags": {"tier": "web", "project": "infrakit"}}
INSTANCE_SPEC = {
    "Properties": {"Note": "Instance properties version 1.0"},
    "Tags": {
        "infrakit.config.hash": "x4nrsdaibscmj7awpkxzx5vvpt6pilw2",
        "infrakit.group": "cattle",
    },
    "Init": "",
    "LogicalID": None,
    "Attachments": None,
}
CATTLE = {
    "ID": "cattle",
    "Properties": {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
        "Flavor": {"Plugin": "flav", "Properties": VANILLA},
    },
}


async def test_instance_validate_and_label_head() -> None:
    plugin = FakeInstancePlugin(validate_fn=lambda p: None if p else "Properties must be set")
    async with serve_plugin(plugin, "inst") as h:
        reply = await head_call(
            h.socket, "Instance.Validate", {"Type": "", "Properties": {"Note": "x"}}, 7
        )
        assert reply == {"jsonrpc": "2.0", "result": {"Type": "", "OK": True}, "id": 7}
        reply = await head_call(h.socket, "Instance.Validate", {"Type": "", "Properties": {}}, 8)
        assert list(reply) == ["jsonrpc", "error", "id"]  # no result member on error
        assert reply["error"]["code"] == -32000
        assert reply["error"]["message"] == "Properties must be set"

        iid = plugin.add({"infrakit.group": "g"})
        labels = {"infrakit.group": "g", "infrakit.config.hash": "abc"}
        reply = await head_call(
            h.socket, "Instance.Label", {"Type": "", "Instance": iid, "Labels": labels}, 9
        )
        assert (
            json.dumps(reply) == '{"jsonrpc": "2.0", "result": {"Type": "", "OK": true}, "id": 9}'
        )
        assert plugin.instances[iid].desc.tags["infrakit.config.hash"] == "abc"


async def test_instance_describe_properties_flag_and_head_attachments() -> None:
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:
        spec = {**INSTANCE_SPEC, "Attachments": [{"ID": "attachid", "Type": "attachtype"}]}
        await head_call(h.socket, "Instance.Provision", {"Type": "", "Spec": spec})
        (stored,) = plugin.instances.values()
        assert stored.spec.attachments == [Attachment("attachid", "attachtype")]
        reply = await head_call(
            h.socket,
            "Instance.DescribeInstances",
            {"Type": "", "Tags": {"infrakit.group": "cattle"}, "Properties": True},
        )
        (desc,) = reply["result"]["Descriptions"]
        assert list(reply["result"]) == ["Type", "Descriptions"]
        assert list(desc) == ["ID", "LogicalID", "Tags", "Properties"]
        # No match: an empty array, not null (captured: "Descriptions":[]).
        reply = await head_call(
            h.socket, "Instance.DescribeInstances", {"Type": "", "Tags": {"x": "y"}}
        )
        assert reply["result"] == {"Type": "", "Descriptions": []}


async def test_instance_seed_shapes_and_string_attachments() -> None:
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:
        status, reply = await seed_call(
            h.socket, "Instance.Validate", {"Properties": {"Note": "x"}}, 7254888556419542884
        )
        assert (status, reply) == (
            200,
            {"result": {"OK": True}, "error": None, "id": 7254888556419542884},
        )
        status, reply = await seed_call(h.socket, "Instance.Validate", {"Properties": None})
        assert (status, reply["error"]) == (400, "Request Properties must be set")

        spec = {**INSTANCE_SPEC, "Attachments": ["vol-1", "vol-2"]}  # SEED attachments: strings
        status, reply = await seed_call(h.socket, "Instance.Provision", {"Spec": spec})
        assert status == 200 and list(reply["result"]) == ["ID"]
        (stored,) = plugin.instances.values()
        assert [a.id for a in stored.spec.attachments] == ["vol-1", "vol-2"]

        status, reply = await seed_call(
            h.socket, "Instance.DescribeInstances", {"Tags": {"infrakit.group": "cattle"}}
        )
        (desc,) = reply["result"]["Descriptions"]
        assert list(desc) == ["ID", "LogicalID", "Tags"]  # SEED descriptions have no Properties

        status, reply = await seed_call(h.socket, "Instance.Destroy", {"Instance": desc["ID"]})
        assert (status, reply["result"]) == (200, {"OK": True})


async def test_flavor_methods_head_and_seed() -> None:
    flav = FakeFlavorPlugin(health={"instance-2": Health.UNHEALTHY})
    async with serve_plugin(flav, "flav") as h:
        alloc = {"Size": 5, "LogicalIDs": None}
        reply = await head_call(
            h.socket, "Flavor.Validate", {"Type": "", "Properties": VANILLA, "Allocation": alloc}
        )
        assert reply["result"] == {"Type": "", "OK": True}

        reply = await head_call(
            h.socket,
            "Flavor.Prepare",
            {"Type": "", "Properties": VANILLA, "Spec": INSTANCE_SPEC, "Allocation": alloc,
             "Index": {"Group": "cattle", "Sequence": 5}},
            448163980760417190,
        )  # fmt: skip
        assert reply["id"] == 448163980760417190
        assert list(reply["result"]) == ["Type", "Spec"]
        prepared = reply["result"]["Spec"]
        assert list(prepared) == ["Properties", "Tags", "Init", "LogicalID", "Attachments"]
        assert prepared["Tags"] == {**INSTANCE_SPEC["Tags"], "tier": "web", "project": "infrakit"}
        assert prepared["Init"] == "docker pull nginx:alpine"
        assert prepared["LogicalID"] is None and prepared["Attachments"] is None

        desc = {"ID": "instance-2", "LogicalID": None, "Tags": {"infrakit.group": "cattle"}}
        reply = await head_call(
            h.socket, "Flavor.Healthy", {"Type": "", "Properties": VANILLA, "Instance": desc}
        )
        assert reply["result"] == {"Type": "", "Health": 2}
        reply = await head_call(
            h.socket, "Flavor.Drain", {"Type": "", "Properties": VANILLA, "Instance": desc}
        )
        assert reply["result"] == {"Type": "", "OK": True}
        assert flav.drained == ["instance-2"]

        # SEED: no Type, no Index; Health 1 for a healthy instance.
        status, reply = await seed_call(
            h.socket,
            "Flavor.Prepare",
            {"Properties": VANILLA, "Spec": INSTANCE_SPEC, "Allocation": alloc},
        )
        assert status == 200 and list(reply["result"]) == ["Spec"]
        status, reply = await seed_call(
            h.socket, "Flavor.Healthy", {"Properties": VANILLA, "Instance": {**desc, "ID": "i-1"}}
        )
        assert reply == {"result": {"Health": 1}, "error": None, "id": 1}
        status, reply = await seed_call(
            h.socket, "Flavor.Validate", {"Properties": VANILLA, "Allocation": alloc}
        )
        assert reply["result"] == {"OK": True}


@pytest.fixture
async def group_socket() -> AsyncIterator[Any]:
    """A real GroupController (fakes behind it) served as ``group``."""
    inst, flav = FakeInstancePlugin(), FakeFlavorPlugin()
    ctl = GroupController(
        lookup({"inst": inst}), lookup({"flav": flav}), store=MemoryStore(), poll_interval=0.05
    )
    async with serve_plugin(ctl, "group") as h:
        yield h.socket, inst


async def test_group_methods_head(group_socket: Any) -> None:
    sock, inst = group_socket
    reply = await head_call(sock, "Handshake.Hello", {})
    assert reply["result"]["Objects"]["Group/0.1.1"] == [{"Name": ".", "ProxyFor": ""}]

    reply = await head_call(
        sock, "Group.CommitGroup", {"Name": "group", "Spec": CATTLE, "Pretend": True}
    )
    assert list(reply["result"]) == ["Name", "ID", "Details"]
    assert reply["result"]["Name"] == "group" and reply["result"]["ID"] == "cattle"
    assert "2" in reply["result"]["Details"] and not inst.instances  # pretend: nothing made

    reply = await head_call(sock, "Group.CommitGroup", {"Name": "", "Spec": CATTLE})
    assert reply["result"]["ID"] == "cattle"
    await wait_until(lambda: len(inst.instances) == 2)

    reply = await head_call(
        sock, "Group.DescribeGroup", {"Name": "group/cattle", "ID": "cattle"}, 6
    )
    assert list(reply["result"]) == ["Name", "ID", "Description"]
    assert reply["result"]["Name"] == "group/cattle"
    description = reply["result"]["Description"]
    assert list(description) == ["Instances", "Converged"]
    assert all(list(d)[:3] == ["ID", "LogicalID", "Tags"] for d in description["Instances"])
    assert len(description["Instances"]) == 2

    reply = await head_call(sock, "Group.InspectGroups", {"Name": "", "ID": ""})
    assert list(reply["result"]) == ["Name", "ID", "Groups"]
    (spec,) = reply["result"]["Groups"]
    assert list(spec) == ["ID", "Properties"] and spec["ID"] == "cattle"
    # Re-serialised from the parsed spec, as Go does: struct order and zero values.
    assert list(spec["Properties"]) == ["Instance", "Flavor", "Allocation", "Updating"]
    assert spec["Properties"]["Allocation"] == {"Size": 2, "LogicalIDs": None}
    assert spec["Properties"]["Updating"] == {
        "Duration": "0s", "Count": 0, "SkipBeforeInstanceDestroy": None
    }  # fmt: skip

    reply = await head_call(sock, "Group.Size", {"Name": "", "ID": "cattle"}, 1)
    assert reply == {"jsonrpc": "2.0", "result": {"Name": "", "ID": "cattle", "Size": 2}, "id": 1}
    reply = await head_call(sock, "Group.SetSize", {"Name": "", "ID": "cattle", "Size": 3}, 9)
    assert reply == {"jsonrpc": "2.0", "result": {"Name": "", "ID": "cattle"}, "id": 9}
    await wait_until(lambda: len(inst.instances) == 3)

    victim = sorted(inst.instances)[0]
    reply = await head_call(
        sock, "Group.DestroyInstances", {"Name": "", "ID": "cattle", "Instances": [victim]}
    )
    assert reply["result"] == {"Name": "", "ID": "cattle"}
    assert victim in [iid for iid, _ in inst.destroyed]

    reply = await head_call(sock, "Group.FreeGroup", {"Name": "", "ID": "cattle"})
    assert reply["result"] == {"Name": "", "ID": "cattle"}
    reply = await head_call(sock, "Group.InspectGroups", {"Name": "", "ID": ""})
    assert reply["result"]["Groups"] is None  # no groups: null, as Go

    reply = await head_call(sock, "Group.DescribeGroup", {"Name": "", "ID": ""}, 8)
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "Group ID must not be blank",
                  "data": {"kind": "SpecError"}},
        "id": 8,
    }  # fmt: skip

    await head_call(sock, "Group.CommitGroup", {"Name": "", "Spec": CATTLE})
    reply = await head_call(sock, "Group.DestroyGroup", {"Name": "", "ID": "cattle"})
    assert reply["result"] == {"Name": "", "ID": "cattle"}
    await wait_until(lambda: not inst.instances)


async def test_group_methods_seed(group_socket: Any) -> None:
    sock, inst = group_socket
    status, reply = await seed_call(
        sock, "Group.CommitGroup", {"Spec": CATTLE, "Pretend": True}, 5577006791947779410
    )
    assert status == 200
    assert list(reply) == ["result", "error", "id"] and reply["id"] == 5577006791947779410
    assert list(reply["result"]) == ["Details"] and reply["error"] is None

    status, reply = await seed_call(sock, "Group.DescribeGroup", {"ID": "cattle"})
    assert status == 400 and isinstance(reply["error"], str)
    assert "cattle" in reply["error"] and reply["result"] is None

    await seed_call(sock, "Group.CommitGroup", {"Spec": CATTLE, "Pretend": False})
    status, reply = await seed_call(sock, "Group.DescribeGroup", {"ID": "cattle"})
    assert status == 200 and list(reply["result"]) == ["Description"]
    assert list(reply["result"]["Description"]) == ["Instances", "Converged"]
    status, reply = await seed_call(sock, "Group.InspectGroups", {"ID": ""})
    assert [g["ID"] for g in reply["result"]["Groups"]] == ["cattle"]
    assert list(reply["result"]) == ["Groups"]
    status, reply = await seed_call(sock, "Group.FreeGroup", {"ID": "cattle"})
    assert reply == {"result": {"OK": True}, "error": None, "id": 1}
    await seed_call(sock, "Group.CommitGroup", {"Spec": CATTLE, "Pretend": False})
    status, reply = await seed_call(sock, "Group.DestroyGroup", {"ID": "cattle"})
    assert reply == {"result": {"OK": True}, "error": None, "id": 1}
    await wait_until(lambda: not inst.instances)


async def test_typed_client_round_trip_keeps_instance_spec() -> None:
    """The typed client and server agree on every Spec field (HEAD), including attachments."""
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "inst") as h:
        spec = Spec(
            properties={"n": 1},
            tags={"a": "b"},
            init="echo hi",
            logical_id="pet-1",
            attachments=[Attachment("vol", "ebs")],
        )
        iid = await h.instance.provision(spec)
        assert iid is not None
        assert plugin.instances[iid].spec == spec


async def test_handshake_variants_and_info_endpoints() -> None:
    """Hello (HEAD), and the 2016-2017 handshakes older Go clients send, and /info/*.json."""
    async with serve_plugin(FakeInstancePlugin(), "inst") as h:
        reply = await head_call(h.socket, "Handshake.Hello", {}, 3)
        assert json.dumps(reply, separators=(",", ":")) == (
            '{"jsonrpc":"2.0","result":{"Objects":{"Instance/0.6.1":[{"Name":".","ProxyFor":""}],'
            '"Event/0.1.1":[{"Name":".","ProxyFor":""}]}},"id":3}'
        )
        apis = {"APIs": [{"Name": "Instance", "Version": "0.6.1"}]}
        assert (await head_call(h.socket, "Plugin.Implements", {}))["result"] == apis
        assert (await head_call(h.socket, "Handshake.Implements", {}))["result"] == apis
        reply = await head_call(h.socket, "Handshake.Types", {})
        assert reply["result"] == {"Types": {"Instance/0.6.1": ["."]}}
        reply = await head_call(h.socket, "Event.List", {"Topic": ""})
        assert reply["result"] == {"Nodes": ["instance/change"]}

        info = (await asyncio.to_thread(http, h.socket, b"", "/info/api.json", "GET")).json()
        assert list(info) == ["Vendor", "Implements", "Interfaces"]
        assert info["Implements"] == [{"Name": "Instance", "Version": "0.6.1", "Sub": ""}]
        (iface,) = info["Interfaces"]
        assert [iface["Name"], iface["Version"], iface["Sub"]] == ["Instance", "0.6.1", ""]
        methods = [m["Request"]["method"] for m in iface["Methods"]]
        assert methods == sorted(methods) == [
            "Instance.DescribeInstances", "Instance.Destroy", "Instance.Label",
            "Instance.Provision", "Instance.Validate",
        ]  # fmt: skip
        provision = iface["Methods"][methods.index("Instance.Provision")]["Request"]
        assert list(provision) == ["jsonrpc", "method", "params", "id"]
        assert list(provision["params"]["Spec"]) == list(INSTANCE_SPEC)  # a zero-value request
        responses = {m["Request"]["method"]: m["Response"]["result"] for m in iface["Methods"]}
        assert responses["Instance.Provision"] == {"Type": "", "ID": None}  # zero values, as Go
        assert responses["Instance.DescribeInstances"] == {"Type": "", "Descriptions": None}
        assert responses["Instance.Validate"] == {"Type": "", "OK": False}
        reply = await asyncio.to_thread(http, h.socket, b"", "/info/functions.json", "GET")
        assert reply.status == 200 and "base" in reply.json()
