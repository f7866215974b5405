"""What Go InfraKit HEAD's CLI reads, through our CLI and HEAD's own requests, against real
processes: `infrakit up` serves ``Metadata/0.1.1`` and ``Stack/0.1.1`` on ``group`` (HEAD's
``infrakit local group keys``, ``... group specs``, ``infrakit manager leader``), and in a real
leader/follower pair (file election) the follower says it does not lead and where the leader is,
and forwards the Stack's Enforce/Terminate to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.e2e.test_managers import Member, instance_files
from tests.rpc.wire import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
GO_ID = 5577006791947779410


def head(sock: Path, method: str, params: Any) -> Any:
    """One request as HEAD's Go client sends it; the decoded reply."""
    body = json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params, "id": GO_ID}, separators=(",", ":")
    ).encode()
    reply = http(sock, body)
    assert reply.status == 200, reply
    return reply.json()


def test_up_serves_heads_metadata_and_stack(e2e: E2E) -> None:
    e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    sock = e2e.plugins / "group"
    wait_for(
        lambda: e2e.run("group", "get", "counts/cattle/Instances").stdout == "5\n",
        what="5 instances",
    )
    # What HEAD's CLI finds in the handshake, and so the verbs it offers on `group`.
    objects = head(sock, "Handshake.Hello", {})["result"]["Objects"]
    assert {"Group/0.1.1", "Metadata/0.1.1", "Stack/0.1.1"} <= set(objects)

    # `infrakit local group keys` / `cat` (HEAD) and ours.
    assert head(sock, "Metadata.Keys", {"Name": "group", "Path": "."})["result"] == {
        "Name": "group",
        "Nodes": ["counts", "groups", "specs"],
    }
    assert e2e.run("group", "keys").stdout == "counts\ngroups\nspecs\n"
    assert e2e.run("group", "keys", "specs").stdout == "cattle\n"
    assert e2e.run("group", "keys", "-a", "counts").stdout == "cattle/Desired\ncattle/Instances\n"
    assert e2e.run("group", "keys", "-l", "counts/cattle").stdout == (
        "total 2:\nDesired\nInstances\n"
    )
    assert json.loads(e2e.run("group", "get", "counts/cattle").stdout) == {
        "Desired": 5,
        "Instances": 5,
    }
    assert e2e.run("group", "get", "specs/cattle/Properties/Allocation/Size").stdout == "5\n"
    assert e2e.run("group", "get", "specs/cattle/ID").stdout == "cattle\n"
    assert e2e.run("group", "get", "nope/nothing").stdout == "null\n"
    assert e2e.run("group", "keys", "nope").stdout == ""
    assert "drop the leading '/'" in e2e.fails("group", "get", "/specs")

    # `infrakit local group specs` (HEAD): Manager.Specs {} -> the stored specs as types.Spec.
    (spec,) = head(sock, "Manager.Specs", {})["result"]["Specs"]
    assert list(spec) == ["kind", "version", "metadata", "properties"]
    assert spec["kind"] == "group" and spec["metadata"] == {"name": "cattle", "tags": None}
    assert spec["properties"]["Allocation"] == {"Size": 5}
    specs = json.loads(e2e.run("manager", "specs").stdout)
    assert [s["ID"] for s in specs] == ["cattle"] and specs[0]["Properties"] == spec["properties"]

    # `infrakit manager leader` (HEAD): its pre-run asks IsLeader, then prints both lines.
    assert head(sock, "Manager.IsLeader", {})["result"] == {"Leader": True}
    location = head(sock, "Manager.LeaderLocation", {})["result"]["Location"]
    assert (location["Scheme"], location["Host"], location["Path"]) == ("unix", "", str(sock))
    assert e2e.run("manager", "leader").stdout == (
        f"IsLeader       : true\nLeaderLocation : unix://{sock}\n"
    )
    assert json.loads(e2e.run("manager", "leader", "-o", "json").stdout) == {
        "IsLeader": "true",
        "LeaderLocation": f"unix://{sock}",
    }


def test_a_plain_group_controller_has_metadata_but_no_stack(e2e: E2E) -> None:
    e2e.start("infrakit", "plugin", "start", "group", sockets=["group"])
    assert e2e.run("group", "keys").stdout == "counts\ngroups\nspecs\n"
    err = e2e.fails("manager", "leader")
    assert "is a plain group controller, not a manager" in err, err


def test_a_follower_is_not_the_leader_and_points_at_it(e2e: E2E) -> None:
    a, b = Member(e2e, "a", "s3cret"), Member(e2e, "b", "s3cret")
    a.start()
    wait_for(lambda: a.status()["Leading"], what="a leads")
    b.start()
    leader_url = f"tcp://127.0.0.1:{a.port}"
    sock_a, sock_b = (
        Path(a.env["INFRAKIT_PLUGINS_DIR"]) / "group",
        Path(b.env["INFRAKIT_PLUGINS_DIR"]) / "group",
    )

    assert head(sock_a, "Manager.IsLeader", {})["result"] == {"Leader": True}
    assert head(sock_b, "Manager.IsLeader", {})["result"] == {"Leader": False}
    for sock in (sock_a, sock_b):
        location = head(sock, "Manager.LeaderLocation", {})["result"]["Location"]
        assert (location["Scheme"], location["Host"]) == ("tcp", f"127.0.0.1:{a.port}")
    assert b.cli("manager", "leader") == f"IsLeader       : false\nLeaderLocation : {leader_url}\n"
    assert a.cli("manager", "leader") == f"IsLeader       : true\nLeaderLocation : {leader_url}\n"

    # Enforce sent to the follower is done by the leader; the metadata reads are forwarded too.
    cattle = json.loads((EXAMPLES / "cattle.json").read_text())
    spec = {"kind": "group", "metadata": {"name": "cattle"}, "properties": cattle["Properties"]}
    assert head(sock_b, "Manager.Enforce", {"Specs": [spec]}) == {
        "jsonrpc": "2.0",
        "result": {},
        "id": GO_ID,
    }
    instances = e2e.home / "instances"
    wait_for(lambda: len(instance_files(instances)) == 5, what="5 instances")
    wait_for(lambda: b.cli("group", "get", "counts/cattle/Instances") == "5\n", what="b reads 5")
    (obj,) = head(sock_b, "Manager.Inspect", {})["result"]["Objects"]
    assert obj["metadata"]["name"] == "cattle" and len(obj["state"]["Instances"]) == 5

    assert head(sock_b, "Manager.Terminate", {"Specs": [spec]})["result"] == {}
    wait_for(lambda: not instance_files(instances), what="the group destroyed")
    assert head(sock_a, "Manager.Specs", {})["result"] == {"Specs": []}
