"""The clients (async and blocking): one handshake per target, SEED fallback, and errors that tell a
user which plugin, which method and which socket - for a plugin that is not running, one that
hangs, one that accepts no connections, and one that answers garbage."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from infrakit import errors
from infrakit.rpc.client import Client, SyncClient
from infrakit.rpc.instance import InstanceClient
from infrakit.spi.instance import Spec
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin

pytestmark = pytest.mark.timeout(30)

Answer = Callable[[dict[str, Any]], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def http_plugin(routes: dict[str, Answer]) -> AsyncIterator[tuple[Path, list[Any]]]:
    """A hand-written plugin on a UNIX socket: ``routes`` maps a POST path to an answer function;
    every request body is recorded (with its path) in the yielded list."""
    seen: list[Any] = []

    def handler(answer: Answer) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            doc = await request.json()
            seen.append((request.path, doc, request.headers.get("Authorization")))
            return await answer(doc)

        return handle

    app = web.Application()
    for path, answer in routes.items():
        app.router.add_post(path, handler(answer))
    runner = web.AppRunner(app)
    await runner.setup()
    directory = short_tempdir()
    await web.UnixSite(runner, str(directory / "p")).start()
    try:
        yield directory / "p", seen
    finally:
        await runner.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def head_answer(objects: dict[str, Any]) -> Answer:
    """A HEAD plugin: Hello lists ``objects``; DescribeInstances finds one instance."""

    async def answer(doc: dict[str, Any]) -> web.Response:
        if doc["method"] == "Handshake.Hello":
            result: Any = {"Objects": objects}
        else:
            result = {"Type": "", "Descriptions": [{"ID": "i-1", "LogicalID": None, "Tags": {}}]}
        return web.json_response({"jsonrpc": "2.0", "result": result, "id": doc["id"]})

    return answer


async def seed_answer(doc: dict[str, Any]) -> web.Response:
    """A SEED-era Go plugin at /rpc: ``result`` + ``error``, HTTP 400 and a string on failure."""
    assert "jsonrpc" not in doc and isinstance(doc["params"], list) and len(doc["params"]) == 1
    if doc["method"] == "Instance.DescribeInstances":
        result = {"Descriptions": [{"ID": "i-1", "LogicalID": None, "Tags": {"a": "1"}}]}
        return web.json_response({"result": result, "error": None, "id": doc["id"]})
    return web.json_response(
        {"result": None, "error": "no such thing", "id": doc["id"]}, status=400
    )


INSTANCE_OBJECTS = {"Instance/0.6.1": [{"Name": ".", "ProxyFor": ""}]}


def hellos(seen: list[Any]) -> int:
    return sum(1 for _, doc, _ in seen if doc["method"] == "Handshake.Hello")


async def test_one_handshake_per_client_even_with_concurrent_first_calls() -> None:
    async with http_plugin({"/": head_answer(INSTANCE_OBJECTS)}) as (path, seen):
        client = Client("p", path)
        try:
            plugin = InstanceClient(client)
            results = await asyncio.gather(*(plugin.describe_instances({}) for _ in range(10)))
            assert all([d.id for d in r] == ["i-1"] for r in results)
            await plugin.describe_instances({})
            assert hellos(seen) == 1 and len(seen) == 12
        finally:
            await client.close()

        def sync_calls() -> None:
            with SyncClient("p", path) as sync:
                for _ in range(3):
                    sync.call("Instance.DescribeInstances", {"Type": "", "Tags": {}})

        await asyncio.to_thread(sync_calls)
        assert hellos(seen) == 2 and len(seen) == 16  # the new client's own handshake, once


async def test_a_failed_handshake_is_tried_again_on_the_next_call(short_dir: Path) -> None:
    directory = short_dir
    client = Client("late", directory / "late")
    try:
        with pytest.raises(errors.PluginUnreachableError):
            await InstanceClient(client).describe_instances({})
        async with serve_plugin(FakeInstancePlugin(), "late", directory=directory):
            assert await InstanceClient(client).describe_instances({}) == []
    finally:
        await client.close()


async def test_interface_version_mismatch_says_both_versions() -> None:
    old = {"Instance/0.5.0": [{"Name": ".", "ProxyFor": ""}]}
    async with http_plugin({"/": head_answer(old)}) as (path, _seen):
        client = Client("old", path)
        try:
            with pytest.raises(
                errors.VersionMismatchError,
                match=re.escape("supports Instance interface version 0.5.0, client requires 0.6.1"),
            ):
                await InstanceClient(client).describe_instances({})
        finally:
            await client.close()
    flavor_only = {"Flavor/0.1.1": [{"Name": ".", "ProxyFor": ""}]}
    async with http_plugin({"/": head_answer(flavor_only)}) as (path, _seen):
        client = Client("flav", path)
        try:
            with pytest.raises(
                errors.VersionMismatchError, match=re.escape("implements Flavor/0.1.1")
            ):
                await InstanceClient(client).describe_instances({})
        finally:
            await client.close()


async def test_both_clients_fall_back_to_seed_once() -> None:
    """A SEED plugin 404s ``POST /`` (no route) and speaks SEED at /rpc: the handshake is tried
    once, then every call is SEED-shaped."""
    async with http_plugin({"/rpc": seed_answer}) as (path, seen):
        client = Client("seed", path)
        try:
            plugin = InstanceClient(client)
            assert [d.id for d in await plugin.describe_instances({"a": "1"})] == ["i-1"]
            assert [d.id for d in await plugin.describe_instances({})] == ["i-1"]
            with pytest.raises(errors.PluginError, match=r"^no such thing$"):
                await plugin.provision(Spec(tags={"a": "1"}))
        finally:
            await client.close()
        assert [p for p, _, _ in seen] == ["/rpc"] * 3  # the 404 on / is not recorded
        assert seen[0][1]["params"] == [{"Tags": {"a": "1"}}]  # no Type, no Properties flag

        def sync_calls() -> Any:
            with SyncClient("seed", path) as sync:
                first = sync.call("Instance.DescribeInstances", {"Tags": {}})
                with pytest.raises(errors.PluginError, match="no such thing"):
                    sync.call("Instance.Destroy", {"Instance": "i-1"})
                return first

        result = await asyncio.to_thread(sync_calls)
        assert result["Descriptions"][0]["ID"] == "i-1"
        assert seen[-1][1]["params"] == [{"Instance": "i-1"}]


async def test_remote_errors_come_back_as_the_same_class() -> None:
    async with serve_plugin(FakeInstancePlugin(), "inst") as h:
        with pytest.raises(errors.NotFoundError, match="no-plugin:gpu"):
            await InstanceClient(h.client, "gpu").describe_instances({})
        with pytest.raises(errors.SpecError, match=re.escape("Instance.Destroy: params.Instance")):
            await h.client.call("Instance.Destroy", {"Type": "", "Instance": ""})


# --- not running, hung, busy, garbage ----------------------------------------------------------


async def test_a_plugin_that_is_not_running(short_dir: Path) -> None:
    directory = short_dir
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(directory / "stale"))
    stale.close()  # the file stays, nobody listens: connection refused
    for name, reason in [("missing", "socket file is missing"), ("stale", "connection refused")]:
        client = Client(name, directory / name)
        try:
            with pytest.raises(errors.PluginUnreachableError) as caught:
                await InstanceClient(client).describe_instances({})
        finally:
            await client.close()
        text = str(caught.value)
        assert f"plugin {name} (Handshake.Hello) at {directory / name}" in text
        assert f"not running ({reason})" in text and "infrakit plugin start" in text

        def sync_call(name: str = name) -> str:
            with (
                pytest.raises(errors.PluginUnreachableError) as caught,
                SyncClient(name, directory / name) as sync,
            ):
                sync.call("Instance.DescribeInstances", {})
            return str(caught.value)

        assert f"not running ({reason})" in await asyncio.to_thread(sync_call)


async def test_a_plugin_that_hangs_times_out_naming_plugin_method_and_socket() -> None:
    plugin = FakeInstancePlugin(provision_delay=3600)  # Provision never finishes
    async with serve_plugin(plugin, "slow", call_timeout=0.3) as h:
        with pytest.raises(errors.PluginTimeoutError) as caught:
            await h.instance.provision(Spec())
        assert str(caught.value).startswith(
            f"plugin slow (Instance.Provision) at {h.socket}: no answer within 0.3s; "
        )
        assert "INFRAKIT_CLIENT_TIMEOUT" in str(caught.value)
        # Only that call: the plugin and the client go on serving.
        assert await h.instance.describe_instances({}) == []
        # A per-call timeout overrides the client's.
        with pytest.raises(errors.PluginTimeoutError, match=re.escape("no answer within 0.2s")):
            await h.client.call("Instance.Provision", {"Spec": {}}, timeout=0.2)

        def sync_call() -> str:
            with (
                pytest.raises(errors.PluginTimeoutError) as caught,
                SyncClient("slow", h.socket, call_timeout=0.3) as sync,
            ):
                sync.call("Instance.Provision", {"Type": "", "Spec": {}})
            return str(caught.value)

        text = await asyncio.to_thread(sync_call)
        assert text.startswith(f"plugin slow (Instance.Provision) at {h.socket}: no answer within")


@contextlib.contextmanager
def full_accept_queue(family: int, address: Any) -> Any:
    """A listener that never accepts, its queue filled: new connections cannot get in."""
    listener = socket.socket(family)
    listener.bind(address)
    listener.listen(0)
    fillers = []
    try:
        for _ in range(16):
            filler = socket.socket(family)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(listener.getsockname())
            except BlockingIOError:
                if family == socket.AF_UNIX:
                    break  # UNIX: the queue is full
            except InterruptedError:
                pass
        yield listener.getsockname()
    finally:
        for s in [*fillers, listener]:
            s.close()


@pytest.mark.parametrize("family", ["unix", "tcp"])
async def test_connect_timeout_is_told_apart_from_call_timeout(
    family: str, short_dir: Path
) -> None:
    directory = short_dir
    if family == "unix":
        queue = full_accept_queue(socket.AF_UNIX, str(directory / "busy"))
    else:
        queue = full_accept_queue(socket.AF_INET, ("127.0.0.1", 0))
    with queue as where:
        address = where if family == "unix" else f"tcp://127.0.0.1:{where[1]}"
        client = Client("busy", address, connect_timeout=0.3, call_timeout=20)
        try:
            with pytest.raises(errors.PluginTimeoutError) as caught:
                await InstanceClient(client).describe_instances({})
        finally:
            await client.close()
        assert "plugin busy (Handshake.Hello)" in str(caught.value)
        assert "no connection within 0.3s" in str(caught.value)

        def sync_call() -> str:
            with (
                pytest.raises(errors.PluginTimeoutError) as caught,
                SyncClient("busy", address, connect_timeout=0.3, call_timeout=20) as sync,
            ):
                sync.call("Instance.DescribeInstances", {})
            return str(caught.value)

        assert "no connection within 0.3s" in await asyncio.to_thread(sync_call)


@contextlib.asynccontextmanager
async def raw_server(reply: bytes | None) -> AsyncIterator[Path]:
    """Reads a request head, then writes ``reply`` and closes (None: closes without a word)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if reply is not None:
                writer.write(reply)
                await writer.drain()
        writer.close()

    path = short_tempdir() / "odd"
    server = await asyncio.start_unix_server(handle, str(path))
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(path.parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "reply is not JSON (HTTP 200)"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "unexpected reply (HTTP 200)"),
        (None, "connection dropped before a reply"),
    ],
    ids=["not-json", "not-http", "not-a-hello", "closed"],
)
async def test_garbage_replies_are_protocol_errors(reply: bytes | None, words: str) -> None:
    async with raw_server(reply) as path:
        client = Client("odd", path)
        try:
            with pytest.raises(errors.ProtocolError, match=re.escape(words)) as caught:
                await InstanceClient(client).describe_instances({})
        finally:
            await client.close()
        assert f"plugin odd (Handshake.Hello) at {path}" in str(caught.value)

        def sync_call() -> None:
            with (
                pytest.raises(errors.ProtocolError, match=re.escape(words)),
                SyncClient("odd", path) as sync,
            ):
                sync.call("Instance.DescribeInstances", {})

        await asyncio.to_thread(sync_call)


async def test_a_2017_head_plugin_without_hello_is_spoken_to_in_head() -> None:
    """Plugins from before Handshake.Hello answer it with 'can't find method': still HEAD."""

    async def answer(doc: dict[str, Any]) -> web.Response:
        if doc["method"] == "Handshake.Hello":
            error = {"code": -32000, "message": 'rpc: can\'t find method "Handshake.Hello"'}
            return web.json_response({"jsonrpc": "2.0", "error": error, "id": doc["id"]})
        result = {"Type": "", "Descriptions": []}
        return web.json_response({"jsonrpc": "2.0", "result": result, "id": doc["id"]})

    async with http_plugin({"/": answer}) as (path, seen):
        client = Client("old", path)
        try:
            assert await InstanceClient(client).describe_instances({}) == []
        finally:
            await client.close()
        assert [(p, d["method"]) for p, d, _ in seen] == [
            ("/", "Handshake.Hello"),
            ("/", "Instance.DescribeInstances"),
        ]
        assert seen[1][1]["jsonrpc"] == "2.0"
