"""InfraKit HEAD's ``Metadata/0.1.1`` (group plugin) and ``Stack/0.1.1`` (manager, served as the
``Manager`` service), byte for byte: the requests as HEAD's Go clients encode them (gorilla json2:
``jsonrpc``, ``method``, ``params``, ``id``; ``KeysRequest{Name, Path}``, empty structs for the
Stack), the replies compared as the exact bytes on the socket - through a real socket with a real
group controller (and a real manager over a fake election) behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infrakit._utils.aio import Broker
from infrakit.controller.group.controller import GroupController
from infrakit.controller.group.metadata import GroupMetadata
from infrakit.manager.manager import Manager
from infrakit.manager.stack import ManagerStack
from infrakit.spi.event import Event
from infrakit.spi.plugin import Served
from infrakit.store import Store
from infrakit.store.memory import MemoryStore
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import (
    FakeElection,
    FakeFlavorPlugin,
    FakeInstancePlugin,
    lookup,
    wait_until,
)
from tests.rpc.wire import http

pytestmark = pytest.mark.timeout(30)

#: The first id Go's math/rand gives (seen in every capture of the reference).
GO_ID = 5577006791947779410
PROPS = {
    "Allocation": {"Size": 2},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {}},
}
PROPS_JSON = json.dumps(PROPS, separators=(",", ":"))


def request(method: str, params: str, request_id: int = GO_ID) -> bytes:
    """What ``json2.EncodeClientRequest`` writes."""
    return f'{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":{request_id}}}'.encode()


def ok(result: str, request_id: int = GO_ID) -> bytes:
    return f'{{"jsonrpc":"2.0","result":{result},"id":{request_id}}}\n'.encode()


async def post(sock: Path, body: bytes) -> bytes:
    reply = await asyncio.to_thread(http, sock, body)
    assert reply.status == 200, reply
    return reply.body


async def commit(sock: Path, gid: str = "cattle") -> None:
    spec = f'{{"ID":"{gid}","Properties":{PROPS_JSON}}}'
    body = await post(
        sock, request("Group.CommitGroup", f'{{"Name":"","Spec":{spec},"Pretend":false}}')
    )
    assert b'"Details"' in body, body


@pytest.fixture
async def group_plugin() -> AsyncIterator[tuple[Path, FakeInstancePlugin]]:
    """The group kind's objects: a controller with its metadata tree, served as ``group``."""
    inst, flav = FakeInstancePlugin(), FakeFlavorPlugin()
    ctl = GroupController(
        lookup({"inst": inst}), lookup({"flav": flav}), store=MemoryStore(), poll_interval=0.05
    )
    served = Served(
        group={".": ctl},
        metadata={".": GroupMetadata(ctl)},
        events=ctl,
        start=ctl.start,
        stop=ctl.stop,
    )
    async with serve_plugin(served, "group") as h:
        yield h.socket, inst


async def test_metadata_keys_and_get_as_head_asks(
    group_plugin: tuple[Path, FakeInstancePlugin],
) -> None:
    sock, inst = group_plugin
    hello = await post(sock, request("Handshake.Hello", "{}", 1))
    assert json.loads(hello)["result"]["Objects"]["Metadata/0.1.1"] == [
        {"Name": ".", "ProxyFor": ""}
    ]
    # Nothing committed: the top nodes exist, the groups under them do not.
    assert await post(sock, request("Metadata.Keys", '{"Name":"group","Path":"."}')) == ok(
        '{"Name":"group","Nodes":["counts","groups","specs"]}'
    )
    assert await post(sock, request("Metadata.Keys", '{"Name":"group","Path":"specs"}')) == ok(
        '{"Name":"group","Nodes":[]}'
    )
    await commit(sock)
    await wait_until(lambda: len(inst.instances) == 2)

    assert await post(sock, request("Metadata.Keys", '{"Name":"group","Path":"specs"}')) == ok(
        '{"Name":"group","Nodes":["cattle"]}'
    )
    # specs/<gid> is the spec as InspectGroups answers it (re-serialised, defaults filled in).
    inspected = await post(sock, request("Group.InspectGroups", '{"Name":"group","ID":""}'))
    prefix = b'{"jsonrpc":"2.0","result":{"Name":"group","ID":"","Groups":['
    assert inspected.startswith(prefix) and inspected.endswith(b']},"id":%d}\n' % GO_ID)
    spec_bytes = inspected[len(prefix) : -len(b']},"id":%d}\n' % GO_ID)]
    assert spec_bytes.startswith(b'{"ID":"cattle","Properties":{"Instance":')
    assert await post(
        sock, request("Metadata.Get", '{"Name":"group","Path":"specs/cattle"}', 2)
    ) == ok('{"Name":"group","Value":' + spec_bytes.decode() + "}", 2)
    assert await post(
        sock, request("Metadata.Get", '{"Name":"group","Path":"specs/cattle/Properties/Allocation/Size"}')
    ) == ok('{"Name":"group","Value":2}')  # fmt: skip
    assert await post(
        sock, request("Metadata.Get", '{"Name":"group","Path":"counts/cattle"}')
    ) == ok('{"Name":"group","Value":{"Desired":2,"Instances":2}}')
    assert await post(
        sock, request("Metadata.Keys", '{"Name":"group","Path":"groups/cattle"}')
    ) == ok('{"Name":"group","Nodes":["Converged","Instances"]}')
    assert await post(
        sock, request("Metadata.Keys", '{"Name":"group","Path":"groups/cattle/Instances"}')
    ) == ok('{"Name":"group","Nodes":["[0]","[1]"]}')
    body = await post(
        sock,
        request("Metadata.Get", '{"Name":"group","Path":"groups/cattle/Instances[-1]/Tags/infrakit.group"}'),
    )  # fmt: skip
    assert body == ok('{"Name":"group","Value":"cattle"}')
    described = json.loads(
        await post(sock, request("Metadata.Get", '{"Name":"group","Path":"groups/cattle"}'))
    )["result"]["Value"]
    assert list(described) == ["Instances", "Converged"] and len(described["Instances"]) == 2


async def test_unknown_paths_answer_null_and_empty_not_errors(
    group_plugin: tuple[Path, FakeInstancePlugin],
) -> None:
    sock, _ = group_plugin
    await commit(sock)
    for path in ("nope", "specs/nope", "specs/cattle/Nope", "groups/cattle/Instances/[9]", ".."):
        params = f'{{"Name":"group","Path":"{path}"}}'
        assert await post(sock, request("Metadata.Get", params)) == ok(
            '{"Name":"group","Value":null}'
        ), path
        assert await post(sock, request("Metadata.Keys", params)) == ok(
            '{"Name":"group","Nodes":[]}'
        ), path
    # Path as Go cleans it: leading and doubled slashes, "." and ".." collapse.
    params = '{"Name":"group","Path":"/specs//./nope/../cattle/ID"}'
    assert await post(sock, request("Metadata.Get", params)) == ok(
        '{"Name":"group","Value":"cattle"}'
    )
    # No Path at all (Go's zero value) is the top.
    assert await post(sock, request("Metadata.Keys", '{"Name":""}')) == ok(
        '{"Name":"","Nodes":["counts","groups","specs"]}'
    )
    whole = json.loads(await post(sock, request("Metadata.Get", '{"Name":"","Path":"."}')))
    assert list(whole["result"]["Value"]) == ["counts", "groups", "specs"]
    assert list(whole["result"]["Value"]["specs"]) == ["cattle"]


async def test_metadata_bad_requests_are_one_clear_error(
    group_plugin: tuple[Path, FakeInstancePlugin],
) -> None:
    sock, _ = group_plugin
    reply = json.loads(await post(sock, request("Metadata.Keys", '{"Name":"group","Path":5}')))
    assert reply["error"]["code"] == -32000
    assert reply["error"]["message"].startswith("Path: expected a slash path string")
    reply = json.loads(await post(sock, request("Metadata.Get", '{"Name":"group/a/b","Path":"."}')))
    assert "result" in reply  # one object: any sub resolves to it, as for groups
    reply = json.loads(await post(sock, request("Metadata.Changes", '{"Name":"group"}')))
    assert reply["error"]["message"] == 'rpc: can\'t find method "Metadata.Changes"'  # read-only


@dataclass
class ManagerSocket:
    sock: Path
    inst: FakeInstancePlugin
    election: FakeElection
    manager: Manager


@pytest.fixture
async def manager_plugin() -> AsyncIterator[ManagerSocket]:
    """The manager kind's objects over a fake election in which ``m1`` (this one) leads."""
    inst, flav = FakeInstancePlugin(), FakeFlavorPlugin()
    election = FakeElection()
    elector = election.member("m1", location="tcp://127.0.0.1:24864")
    election.member("m2", location="")

    def make_controller(store: Store, events: Broker[Event]) -> GroupController:
        return GroupController(
            lookup({"inst": inst}),
            lookup({"flav": flav}),
            store=store,
            poll_interval=0.05,
            events=events,
        )

    manager = Manager(elector, MemoryStore(), make_controller, start_timeout=1.0)
    election.elect("m1")
    directory = short_tempdir()
    served = Served(
        group={".": manager},
        metadata={".": GroupMetadata(manager)},
        stack=ManagerStack(manager, directory / "group"),
        events=manager,
        start=manager.start,
        stop=manager.stop,
    )
    async with serve_plugin(served, "group", directory=directory) as h:
        yield ManagerSocket(h.socket, inst, election, manager)


async def test_stack_methods_as_head_asks(manager_plugin: ManagerSocket) -> None:
    m = manager_plugin
    hello = json.loads(await post(m.sock, request("Handshake.Hello", "{}", 1)))["result"]
    assert hello["Objects"]["Stack/0.1.1"] == [{"Name": ".", "ProxyFor": ""}]
    assert "Metadata/0.1.1" in hello["Objects"] and "Group/0.1.1" in hello["Objects"]

    assert await post(m.sock, request("Manager.IsLeader", "{}")) == ok('{"Leader":true}')
    assert await post(m.sock, request("Manager.LeaderLocation", "{}")) == ok(
        '{"Location":{"Scheme":"tcp","Opaque":"","User":null,"Host":"127.0.0.1:24864","Path":"",'
        '"RawPath":"","OmitHost":false,"ForceQuery":false,"RawQuery":"","Fragment":"",'
        '"RawFragment":""}}'
    )
    assert await post(m.sock, request("Manager.Specs", "{}")) == ok('{"Specs":[]}')

    spec = f'{{"kind":"group","version":"","metadata":{{"name":"cattle","tags":null}},"properties":{PROPS_JSON}}}'
    assert await post(m.sock, request("Manager.Enforce", f'{{"Specs":[{spec}]}}')) == ok("{}")
    await wait_until(lambda: len(m.inst.instances) == 2)
    # Specs answers what HEAD's manager stored for a group: kind, version "", name, tags null.
    assert await post(m.sock, request("Manager.Specs", "{}")) == ok(f'{{"Specs":[{spec}]}}')

    objects = json.loads(await post(m.sock, request("Manager.Inspect", "{}")))["result"]["Objects"]
    (obj,) = objects
    assert list(obj) == ["kind", "version", "metadata", "properties", "state"]
    assert obj["metadata"] == {"name": "cattle", "tags": None}
    assert list(obj["state"]) == ["Instances", "Converged"] and len(obj["state"]["Instances"]) == 2

    assert await post(m.sock, request("Manager.Terminate", f'{{"Specs":[{spec}]}}')) == ok("{}")
    await wait_until(lambda: not m.inst.instances)
    assert await post(m.sock, request("Manager.Specs", "{}")) == ok('{"Specs":[]}')


async def test_enforce_checks_every_spec_before_committing_any(
    manager_plugin: ManagerSocket,
) -> None:
    m = manager_plugin
    good = f'{{"kind":"group","metadata":{{"name":"ok"}},"properties":{PROPS_JSON}}}'
    bad = '{"kind":"ingress","metadata":{"name":""}}'
    reply = json.loads(
        await post(m.sock, request("Manager.Enforce", f'{{"Specs":[{good},{bad},{good}]}}'))
    )
    message = reply["error"]["message"]
    assert message.startswith("Manager.Enforce: Specs[1].kind is 'ingress'"), message
    assert "Specs[1].metadata.name must be set" in message
    assert "Specs[2].metadata.name 'ok' appears twice" in message
    assert reply["error"]["data"]["kind"] == "SpecError"
    assert await post(m.sock, request("Manager.Specs", "{}")) == ok('{"Specs":[]}')  # nothing
    reply = json.loads(await post(m.sock, request("Manager.Terminate", '{"Specs":[]}')))
    assert reply["error"]["message"].startswith("Manager.Terminate: Specs is empty")
    reply = json.loads(await post(m.sock, request("Manager.Enforce", '{"Specs":{}}')))
    assert reply["error"]["message"].startswith("Manager.Enforce: Specs must be an array")


async def test_a_member_without_a_leader_says_not_a_leader(manager_plugin: ManagerSocket) -> None:
    m = manager_plugin
    m.election.elect(None)
    await wait_until(lambda: m.manager.controller is None)
    assert await post(m.sock, request("Manager.IsLeader", "{}")) == ok('{"Leader":false}')
    spec = f'{{"kind":"group","metadata":{{"name":"cattle"}},"properties":{PROPS_JSON}}}'
    for method, params in (
        ("Manager.Enforce", f'{{"Specs":[{spec}]}}'),
        ("Manager.Terminate", f'{{"Specs":[{spec}]}}'),
        ("Manager.LeaderLocation", "{}"),
    ):
        reply = json.loads(await post(m.sock, request(method, params)))
        assert reply["error"]["message"].startswith("not a leader: no manager leads yet"), reply
        assert reply["error"]["data"]["kind"] == "NotLeaderError"
    # m2 leads but listens on no TCP: m1 cannot reach it, and says so.
    m.election.elect("m2")
    reply = json.loads(await post(m.sock, request("Manager.LeaderLocation", "{}")))
    assert reply["error"]["message"].startswith("not a leader: manager m1 follows m2"), reply


async def test_a_leader_without_tcp_is_located_by_its_socket(manager_plugin: ManagerSocket) -> None:
    m = manager_plugin
    m.manager.elector.location = ""  # type: ignore[attr-defined]
    expected: dict[str, Any] = {
        "Scheme": "unix",
        "Opaque": "",
        "User": None,
        "Host": "",
        "Path": str(m.sock),
    }
    reply = json.loads(await post(m.sock, request("Manager.LeaderLocation", "{}")))
    assert {k: reply["result"]["Location"][k] for k in expected} == expected


async def test_api_info_lists_both_interfaces_with_zero_requests(
    manager_plugin: ManagerSocket,
) -> None:
    reply = await asyncio.to_thread(http, manager_plugin.sock, b"", "/info/api.json", "GET")
    doc = reply.json()
    implements = [f"{i['Name']}/{i['Version']}" for i in doc["Implements"]]
    assert implements == ["Group/0.1.1", "Metadata/0.1.1", "Stack/0.1.1"]
    stack = next(i for i in doc["Interfaces"] if i["Name"] == "Stack")
    methods = {m["Request"]["method"]: m for m in stack["Methods"]}
    assert sorted(methods) == [
        "Manager.Enforce", "Manager.Inspect", "Manager.IsLeader",
        "Manager.LeaderLocation", "Manager.Specs", "Manager.Terminate",
    ]  # fmt: skip
    assert methods["Manager.Enforce"]["Request"]["params"] == {"Specs": None}
    assert methods["Manager.IsLeader"]["Response"]["result"] == {"Leader": False}
    metadata = next(i for i in doc["Interfaces"] if i["Name"] == "Metadata")
    (keys,) = [m for m in metadata["Methods"] if m["Request"]["method"] == "Metadata.Keys"]
    assert keys["Request"]["params"] == {"Name": "", "Path": "."}
