"""TCP listeners (the HA manager's followers forward to the leader over them): a shared bearer token
on every TCP request, loopback-only ``insecure`` without one, optional TLS - and the clients that
send the token (``token=`` or ``$INFRAKIT_TOKEN``) only where it is asked for."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.launch.host import PluginHost
from infrakit.launch.serving import detect
from infrakit.rpc import instance as rpc_instance
from infrakit.rpc.client import Client, SyncClient
from infrakit.rpc.instance import InstanceClient
from infrakit.rpc.server import PluginServer
from infrakit.spi.adapt import AsyncInstance
from infrakit.spi.instance import Spec
from infrakit.testing import short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin
from tests.certificates import self_signed

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"
DESCRIBE = {"jsonrpc": "2.0", "method": "Instance.DescribeInstances", "params": {}, "id": 1}


@pytest.fixture
def directory() -> Iterator[Path]:
    d = short_tempdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def tcp_plugin(
    directory: Path, name: str = "inst", host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[tuple[PluginServer, FakeInstancePlugin]]:
    """A PluginServer (the API the manager uses) with a fake instance plugin, on UNIX + TCP."""
    plugin = FakeInstancePlugin()
    server = PluginServer(name, [rpc_instance.service({"": AsyncInstance(plugin)})], events=plugin)
    await server.start(directory / name, tcp=(host, 0), **options)
    try:
        yield server, plugin
    finally:
        await server.stop()


def raw(
    port: int,
    headers: dict[str, str],
    method: str = "POST",
    url: str = "/",
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        body = json.dumps(DESCRIBE) if method == "POST" else None
        conn.request(method, url, body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data.strip() else None
    finally:
        conn.close()


async def test_a_missing_or_forged_token_is_refused_and_the_right_one_works(
    directory: Path,
) -> None:
    async with tcp_plugin(directory, token=TOKEN) as (server, _plugin):
        assert server.tcp_address is not None
        port = server.tcp_address[1]
        refusals = {
            "missing": {},
            "wrong": {"Authorization": "Bearer forged"},
        }
        for reason, headers in refusals.items():
            status, doc = await asyncio.to_thread(raw, port, headers)
            assert status == 401
            assert list(doc) == ["jsonrpc", "error", "id"]
            message = doc["error"]["message"]
            assert f"plugin inst: bearer token {reason}" in message
            assert "--token-file, --token or INFRAKIT_TOKEN" in message  # how to pass one
        for headers in [
            {"Authorization": f"Bearer {TOKEN}x"},  # a longer token that starts right
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Basic {TOKEN}"},  # the right secret in the wrong scheme
            {"Authorization": TOKEN},
            {"X-Token": TOKEN},
        ]:
            status, _ = await asyncio.to_thread(raw, port, headers)
            assert status == 401, headers
        for header in [f"Bearer {TOKEN}", f"bearer {TOKEN}"]:  # the scheme is case-insensitive
            status, doc = await asyncio.to_thread(raw, port, {"Authorization": header})
            assert status == 200 and doc["result"]["Descriptions"] == []

        # Every route on TCP asks for it, not only RPC.
        for url in ["/info/api.json", "/events?topic=instance/"]:
            status, _ = await asyncio.to_thread(raw, port, {}, "GET", url)
            assert status == 401, url
        status, _ = await asyncio.to_thread(
            raw, port, {"Authorization": f"Bearer {TOKEN}"}, "GET", "/info/api.json"
        )
        assert status == 200
        # Stopping the plugin stays UNIX-only, token or not.
        status, _ = await asyncio.to_thread(
            raw, port, {"Authorization": f"Bearer {TOKEN}"}, "POST", "/_infrakit/stop"
        )
        assert status == 403


async def test_clients_prove_the_token_without_sending_it(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tcp_plugin(directory, token=TOKEN) as (server, plugin):
        assert server.tcp_address is not None
        address = f"tcp://127.0.0.1:{server.tcp_address[1]}"
        good = Client("inst", address, token=TOKEN)
        bad = Client("inst", address, token="nope")
        none = Client("inst", address)
        try:
            iid = await InstanceClient(good).provision(Spec(tags={"a": "1"}))
            assert [d.id for d in await InstanceClient(good).describe_instances({})] == [iid]
            # Another token: the server's proof does not verify, so the client sends nothing.
            with pytest.raises(errors.PeerNotVerifiedError) as caught:
                await InstanceClient(bad).describe_instances({})
            message = str(caught.value)
            assert message.startswith(f"{address} (plugin inst) could not prove it holds")
            assert "another token" in message and "nothing was sent" in message
            with pytest.raises(errors.PluginError, match="bearer token missing"):
                await InstanceClient(none).describe_instances({})
            # Events over TCP are signed too.
            events = good.subscribe("instance/")
            try:
                assert (await asyncio.wait_for(anext(events), 5)).type == "subscribed"
                plugin.kill(iid)
                assert (await asyncio.wait_for(anext(events), 5)).id == iid
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        finally:
            for client in (good, bad, none):
                await client.close()

        monkeypatch.setenv("INFRAKIT_TOKEN", TOKEN)  # the CLI's default

        def sync_calls() -> tuple[int, int, int]:
            with SyncClient("inst", directory / "inst") as local:  # UNIX: no token needed
                n_local = len(local.call("Instance.DescribeInstances", {})["Descriptions"])
            with SyncClient("inst", address) as remote:
                n_remote = len(remote.call("Instance.DescribeInstances", {})["Descriptions"])
            with (
                pytest.raises(errors.PeerNotVerifiedError, match="another token"),
                SyncClient("inst", address, token="forged") as forged,
            ):
                forged.call("Instance.DescribeInstances", {})
            with SyncClient("inst", address) as again:  # a new session per client
                n_again = len(again.call("Instance.DescribeInstances", {})["Descriptions"])
            return n_local, n_remote, n_again

        assert await asyncio.to_thread(sync_calls) == (0, 0, 0)
        env_client = Client("inst", address)  # $INFRAKIT_TOKEN for the async client as well
        try:
            assert await InstanceClient(env_client).describe_instances({}) == []
        finally:
            await env_client.close()


async def test_the_token_is_never_sent_on_a_unix_socket(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        seen.append(head if "authorization:" in head else None)
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        await reader.readexactly(length)
        body = b'{"jsonrpc":"2.0","result":{"Objects":{}},"id":1}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, str(directory / "local"))
    monkeypatch.setenv("INFRAKIT_TOKEN", TOKEN)
    client = Client("local", directory / "local", token=TOKEN)
    try:
        await client.handshake()

        def sync_hello() -> None:
            with SyncClient("local", directory / "local") as sync:
                sync.handshake()

        await asyncio.to_thread(sync_hello)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert seen == [None, None]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
async def test_loopback_without_a_token_needs_insecure(directory: Path, host: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        async with tcp_plugin(directory, host=host):
            pass
    assert f"listening on TCP {host} needs a shared token" in str(caught.value)
    assert "only loopback with --insecure" in str(caught.value)
    assert not (directory / "inst").exists()  # refused before anything was bound
    try:
        context = tcp_plugin(directory, host=host, insecure=True)
        server, _plugin = await context.__aenter__()
    except OSError as exc:  # e.g. no IPv6 on this machine
        pytest.skip(f"cannot listen on {host}: {exc}")
    try:
        assert server.tcp_address is not None
        listen = (directory / "inst.listen").read_text()
        target = "[::1]" if host == "::1" else host
        assert listen == f"tcp://{target}:{server.tcp_address[1]}"
        client = Client("inst", listen)
        try:
            assert await InstanceClient(client).describe_instances({}) == []
        finally:
            await client.close()
    finally:
        await context.__aexit__(None, None, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com"])
async def test_insecure_is_refused_off_loopback(directory: Path, host: str) -> None:
    """Checked before binding: nothing listens, even for a moment."""
    with pytest.raises(errors.SpecError, match=f"listening on TCP {host} needs a shared token"):
        async with tcp_plugin(directory, host=host, insecure=True):
            pass
    assert not (directory / "inst").exists()


async def test_plugin_host_passes_the_tcp_options(directory: Path) -> None:
    """``Served.tcp*`` (what a plugin kind such as the manager sets) reach the server."""
    host = PluginHost(directory, home=directory)
    served = detect(FakeInstancePlugin(), "inst")
    served.tcp, served.tcp_token = ("127.0.0.1", 0), TOKEN
    await host.serve("inst", served)
    try:
        address = (directory / "inst.listen").read_text()
        assert address.startswith("tcp://127.0.0.1:")
        port = int(address.rsplit(":", 1)[1])
        status, _ = await asyncio.to_thread(raw, port, {})
        assert status == 401
        status, _ = await asyncio.to_thread(raw, port, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
    finally:
        await host.stop_all()
    assert not (directory / "inst.listen").exists()


# --- TLS ---------------------------------------------------------------------------------------


async def test_tls_with_a_self_signed_certificate(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(directory)
    other_ca, _ = self_signed(directory, "other-")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=cert)
    async with tcp_plugin(directory, token=TOKEN, ssl=server_context) as (server, _plugin):
        assert server.tcp_address is not None
        port = server.tcp_address[1]
        url = f"https://127.0.0.1:{port}"
        assert (directory / "inst.listen").read_text() == url

        # The token is still checked inside TLS.
        status, _ = await asyncio.to_thread(raw, port, {}, context=trust)
        assert status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, doc = await asyncio.to_thread(raw, port, auth, context=trust)
        assert status == 200 and doc["result"]["Descriptions"] == []

        # An https:// address with no CA to verify it: one line, before any connection.
        for make in (Client, SyncClient):
            with pytest.raises(errors.SpecError) as caught:
                make("inst", url, token=TOKEN)
            assert str(caught.value) == (
                f"plugin inst at {url}: an https:// address needs a CA bundle to verify its "
                "certificate; set INFRAKIT_TLS_CA=ca.pem (or pass --tls-ca) with the CA that "
                "signed it"
            )

        trusting = Client("inst", url, token=TOKEN, ssl=trust)
        # ssl= on a tcp:// address means TLS as well.
        implied = Client("inst", f"tcp://127.0.0.1:{port}", token=TOKEN, ssl=trust)
        monkeypatch.setenv("INFRAKIT_TLS_CA", str(cert))
        from_env = Client("inst", url, token=TOKEN)
        monkeypatch.setenv("INFRAKIT_TLS_CA", str(other_ca))
        untrusting = Client("inst", url, token=TOKEN)
        plain = Client("inst", f"tcp://127.0.0.1:{port}", token=TOKEN)
        try:
            iid = await InstanceClient(trusting).provision(Spec())
            assert [d.id for d in await InstanceClient(implied).describe_instances({})] == [iid]
            assert [d.id for d in await InstanceClient(from_env).describe_instances({})] == [iid]
            with pytest.raises(errors.ProtocolError, match="TLS handshake failed") as caught_tls:
                await InstanceClient(untrusting).describe_instances({})
            assert "certificate" in str(caught_tls.value)
            with pytest.raises(errors.TransportError):  # plain HTTP to a TLS port
                await InstanceClient(plain).describe_instances({})
        finally:
            for client in (trusting, implied, from_env, untrusting, plain):
                await client.close()

        def sync_calls() -> int:
            with (
                pytest.raises(errors.ProtocolError, match="TLS handshake failed"),
                SyncClient("inst", url, token=TOKEN) as sync,  # $INFRAKIT_TLS_CA: the other CA
            ):
                sync.call("Instance.DescribeInstances", {})
            with SyncClient("inst", url, token=TOKEN, ssl=trust) as sync:
                return len(sync.call("Instance.DescribeInstances", {})["Descriptions"])

        assert await asyncio.to_thread(sync_calls) == 1


async def test_a_taken_tcp_port_fails_cleanly(directory: Path) -> None:
    async with tcp_plugin(directory, "first", token=TOKEN) as (first, _plugin):
        assert first.tcp_address is not None
        port = first.tcp_address[1]
        server = PluginServer(
            "second", [rpc_instance.service({"": AsyncInstance(FakeInstancePlugin())})]
        )
        with pytest.raises(
            errors.ConflictError, match=f"plugin second: cannot listen on TCP 127.0.0.1:{port}"
        ):
            await server.start(directory / "second", tcp=("127.0.0.1", port), token=TOKEN)
        # Nothing half-started is left: no socket file, no .listen file.
        assert sorted(p.name for p in directory.iterdir()) == ["first", "first.listen"]
