"""The wire, byte for byte where InfraKit was captured (reference §1): HEAD JSON-RPC 2.0 at `POST /`,
SEED envelopes at any other path, Type addressing, Go-like key matching, 63-bit ids, /info/api.json,
SSE topics - and our client falling back to SEED for a seed-era Go plugin."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from infrakit import errors
from infrakit.rpc.client import Client
from infrakit.rpc.instance import InstanceClient
from infrakit.spi.event import Event
from infrakit.spi.instance import Context, Spec
from infrakit.spi.plugin import Served
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin
from tests.rpc.wire import call, exchange

pytestmark = pytest.mark.timeout(30)

CAPTURED_SPEC = {
    "Properties": {"Note": "Instance properties version 1.0"},
    "Tags": {
        "infrakit.config_sha": "006438mMXW8gXeYtUxgf9Zbg94Y=",
        "infrakit.group": "cattle",
        "project": "infrakit",
        "tier": "web",
    },
    "Init": "docker pull nginx:alpine\ndocker run -d -p 80:80 nginx-alpine",
    "LogicalID": None,
    "Attachments": None,
}


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeInstancePlugin, Path]]:
    plugin = FakeInstancePlugin()
    async with serve_plugin(plugin, "instance-file") as h:
        yield plugin, h.socket


async def test_head_exchanges_have_infrakits_shapes(
    served: tuple[FakeInstancePlugin, Path],
) -> None:
    plugin, sock = served
    status, reply = await call(
        sock, {"jsonrpc": "2.0", "method": "Handshake.Hello", "params": {}, "id": 1}
    )
    assert status == 200
    # Instance, plus Event because the fake publishes instance changes (HEAD lists both).
    assert list(reply["result"]["Objects"]) == ["Instance/0.6.1", "Event/0.1.1"]
    assert reply["result"]["Objects"]["Instance/0.6.1"][0]["Name"] == "."
    big = 1800103543865223655
    status, reply = await call(
        sock,
        {"jsonrpc": "2.0", "method": "Instance.Provision", "params": {"Type": "", "Spec": CAPTURED_SPEC}, "id": big},
    )  # fmt: skip
    assert status == 200
    assert list(reply) == ["jsonrpc", "result", "id"] and reply["id"] == big
    assert list(reply["result"]) == ["Type", "ID"] and reply["result"]["Type"] == ""
    iid = reply["result"]["ID"]
    _, reply = await call(
        sock,
        {"jsonrpc": "2.0", "method": "Instance.DescribeInstances",
         "params": {"Type": "", "Tags": {"infrakit.group": "cattle"}, "Properties": False}, "id": 2},
    )  # fmt: skip
    (desc,) = reply["result"]["Descriptions"]
    assert list(desc) == ["ID", "LogicalID", "Tags"]  # Properties omitted when null, as Go does
    assert desc["ID"] == iid and desc["LogicalID"] is None
    _, reply = await call(
        sock,
        {"jsonrpc": "2.0", "method": "Instance.Destroy",
         "params": {"Type": "", "Instance": iid, "Context": {"Reason": "rolling_update"}}, "id": 3},
    )  # fmt: skip
    assert reply["result"] == {"Type": "", "OK": True}
    assert plugin.destroyed == [(iid, "rolling_update")]


async def test_seed_requests_get_seed_answers(served: tuple[FakeInstancePlugin, Path]) -> None:
    _plugin, sock = served
    seed_id = 8181915011035341256
    status, reply = await call(
        sock,
        {"method": "Instance.Provision", "params": [{"Spec": {**CAPTURED_SPEC, "Attachments": ["vol-1"]}}], "id": seed_id},
        url="/rpc",
    )  # fmt: skip
    assert status == 200
    assert reply == {"result": {"ID": reply["result"]["ID"]}, "error": None, "id": seed_id}
    _, reply = await call(
        sock, {"method": "Instance.DescribeInstances", "params": [{"Tags": {"tier": "web"}}], "id": 5}, "/rpc"
    )  # fmt: skip
    assert set(reply) == {"result", "error", "id"} and len(reply["result"]["Descriptions"]) == 1
    # A SEED error: HTTP 400 and a string in "error".
    status, reply = await call(
        sock, {"method": "Instance.Destroy", "params": [{"Instance": "nope"}], "id": 6}, "/rpc"
    )
    assert status == 400 and isinstance(reply["error"], str) and reply["result"] is None
    assert "nope" in reply["error"]


async def test_keys_match_case_insensitively_like_go(
    served: tuple[FakeInstancePlugin, Path],
) -> None:
    _plugin, sock = served
    _, reply = await call(
        sock,
        {"jsonrpc": "2.0", "method": "Instance.Provision",
         "params": {"type": "", "spec": {"tags": {"a": "1"}, "LOGICALID": "pet-1"}}, "id": 9},
    )  # fmt: skip
    iid = reply["result"]["ID"]
    _, reply = await call(
        sock,
        {"jsonrpc": "2.0", "method": "Instance.DescribeInstances", "params": {"TAGS": {"a": "1"}}, "id": 10},
    )  # fmt: skip
    assert [(d["ID"], d["LogicalID"]) for d in reply["result"]["Descriptions"]] == [(iid, "pet-1")]


async def test_type_addressing_reaches_each_object() -> None:
    default, other = FakeInstancePlugin(), FakeInstancePlugin()
    served = Served(instance={"": default, "ec2-spot": other})
    async with serve_plugin(served, "aws") as h:
        _, reply = await call(
            h.socket, {"jsonrpc": "2.0", "method": "Handshake.Hello", "params": {}, "id": 1}
        )
        names = [o["Name"] for o in reply["result"]["Objects"]["Instance/0.6.1"]]
        assert names == [".", "ec2-spot"]
        await InstanceClient(h.client, "ec2-spot").provision(Spec(tags={"x": "1"}))
        await InstanceClient(h.client).provision(Spec(tags={"x": "2"}))
        assert len(other.instances) == 1 and len(default.instances) == 1
        _, reply = await call(
            h.socket,
            {"jsonrpc": "2.0", "method": "Instance.DescribeInstances", "params": {"Type": "nope", "Tags": {}}, "id": 2},
        )  # fmt: skip
        assert "nope" in reply["error"]["message"]


async def test_api_info_and_sse_topics(served: tuple[FakeInstancePlugin, Path]) -> None:
    plugin, sock = served
    status, info = await asyncio.to_thread(exchange, sock, b"", "/info/api.json", "GET")
    assert status == 200
    assert "Instance.Provision" in json.dumps(info)

    async with serve_plugin(plugin, "again") as h:
        events = h.client.subscribe("instance/")
        other = h.client.subscribe("group/")
        try:
            assert (await asyncio.wait_for(anext(events), 5)).type == "subscribed"
            assert (await asyncio.wait_for(anext(other), 5)).type == "subscribed"
            iid = await h.instance.provision(Spec(tags={"a": "1"}))
            got: Event = await asyncio.wait_for(anext(events), 5)
            assert (got.topic, got.id) == ("instance/change", iid)
            with pytest.raises(TimeoutError):  # not on a topic it subscribed to
                await asyncio.wait_for(anext(other), 0.3)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            await other.aclose()  # type: ignore[attr-defined]


async def test_client_falls_back_to_seed_for_a_seed_era_plugin() -> None:
    """A Go SEED plugin answers 404 on POST / and speaks SEED at /rpc: our client adapts."""
    seen: list[Any] = []

    async def rpc(request: web.Request) -> web.Response:
        doc = await request.json()
        seen.append(doc)
        assert "jsonrpc" not in doc and isinstance(doc["params"], list)
        if doc["method"] == "Instance.DescribeInstances":
            result = {"Descriptions": [{"ID": "instance-1", "LogicalID": None, "Tags": {"a": "1"}}]}
            return web.json_response({"result": result, "error": None, "id": doc["id"]})
        return web.json_response(
            {"result": None, "error": "no such thing", "id": doc["id"]}, status=400
        )

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app)
    await runner.setup()
    where = short_tempdir()
    site = web.UnixSite(runner, str(where / "seed"))
    await site.start()
    client = Client("seed", where / "seed")
    try:
        found = await InstanceClient(client).describe_instances({"a": "1"})
        assert [d.id for d in found] == ["instance-1"]
        assert seen[-1]["params"] == [{"Tags": {"a": "1"}}]
        with pytest.raises(errors.PluginError, match="no such thing"):
            await InstanceClient(client).destroy("instance-1", Context())
    finally:
        await client.close()
        await runner.cleanup()
        shutil.rmtree(where, ignore_errors=True)
