"""A client with a token talks only to a peer that proved it holds the same token, for the address
dialled: a rogue listener, a relay to the real plugin, a token-less server and a replayed request
all fail, and nothing that lets an attacker act ever reaches them (real listeners record every
byte they receive)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.rpc import instance as rpc_instance
from infrakit.rpc.client import Client, SyncClient
from infrakit.rpc.instance import InstanceClient
from infrakit.rpc.server import PluginServer
from infrakit.spi.adapt import AsyncInstance
from infrakit.spi.instance import Spec
from infrakit.testing import short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin

pytestmark = pytest.mark.timeout(30)

TOKEN = "the-real-shared-token-" + secrets.token_hex(8)


@pytest.fixture
def directory() -> Iterator[Path]:
    d = short_tempdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def real_plugin(
    directory: Path, port: int = 0, **options: Any
) -> AsyncIterator[tuple[PluginServer, FakeInstancePlugin]]:
    plugin = FakeInstancePlugin()
    server = PluginServer("inst", [rpc_instance.service({"": AsyncInstance(plugin)})])
    await server.start(directory / f"inst-{port}", tcp=("127.0.0.1", port), **options)
    try:
        yield server, plugin
    finally:
        await server.stop()


class Recorder:
    """A real TCP listener on 127.0.0.1 that keeps every byte a client sends it.

    ``mode``: ``"404"`` answers every request ``404``; ``"forge"`` answers the challenge with
    made-up proofs; ``"relay"`` forwards both ways to ``upstream`` (a relay attack).
    """

    def __init__(self, mode: str, upstream: tuple[str, int] | None = None) -> None:
        self.mode = mode
        self.upstream = upstream
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def request_lines(self) -> list[str]:
        return [
            line.decode()
            for line in bytes(self.received).split(b"\r\n")
            if line.split(b" ")[0] in (b"GET", b"POST", b"PUT", b"DELETE")
        ]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.mode == "relay":
                await self._relay(reader, writer)
                return
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.received += head
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.received += body
                if self.mode == "forge":
                    doc = {
                        "Proofs": [
                            {"Address": f"127.0.0.1:{self.port}", "Proof": secrets.token_hex(32)}
                        ],
                        "ServerNonce": secrets.token_hex(40),
                    }
                    reply = json.dumps(doc).encode()
                    status = b"200 OK"
                else:
                    reply, status = b"404: Not Found", b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(reply) + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.upstream is not None
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await src.read(65536):
                    if keep:
                        self.received += data
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


async def attempt_both_clients(address: str, token: str = TOKEN) -> list[str]:
    """Every client path with ``token`` against ``address``: the errors, one line each."""
    messages = []
    client = Client("inst", address, token=token)
    try:
        with pytest.raises(errors.PeerNotVerifiedError) as caught:
            await InstanceClient(client).provision(Spec(tags={"secret": "spec"}))
        messages.append(str(caught.value))
        with pytest.raises(errors.PeerNotVerifiedError):
            await anext(aiter(client.subscribe("instance/")))
    finally:
        await client.close()

    def sync() -> str:
        with (
            pytest.raises(errors.PeerNotVerifiedError) as caught,
            SyncClient("inst", address, token=token) as sync_client,
        ):
            sync_client.call("Instance.DescribeInstances", {})
        return str(caught.value)

    messages.append(await asyncio.to_thread(sync))
    return messages


def assert_nothing_useful_reached(recorder: Recorder) -> None:
    """Only challenges arrived: no token, no signed request, no spec."""
    data = bytes(recorder.received)
    assert recorder.request_lines(), "the rogue was never dialled: the test proves nothing"
    assert TOKEN.encode() not in data
    assert b"authorization" not in data.lower()
    assert b"secret" not in data and b"Instance." not in data
    assert all(line.startswith("POST /_infrakit/auth ") for line in recorder.request_lines())


@pytest.mark.parametrize("mode", ["404", "forge"])
async def test_a_rogue_listener_gets_only_a_challenge(mode: str) -> None:
    async with Recorder(mode) as rogue:
        messages = await attempt_both_clients(rogue.address)
    assert_nothing_useful_reached(rogue)
    for message in messages:
        assert message.startswith(
            f"{rogue.address} (plugin inst) could not prove it holds the shared token: "
        )
        assert "nothing was sent to it" in message
        assert "\n" not in message
    expected = "HTTP 404" if mode == "404" else "its proof does not match"
    assert expected in messages[0]


async def test_a_relay_to_the_real_plugin_fails(directory: Path) -> None:
    """The real plugin answers the relayed challenge, but for its own address: rejected."""
    async with real_plugin(directory, token=TOKEN) as (server, plugin):
        assert server.tcp_address is not None
        async with Recorder("relay", server.tcp_address) as relay:
            messages = await attempt_both_clients(relay.address)
        assert_nothing_useful_reached(relay)
        real = f"127.0.0.1:{server.tcp_address[1]}"
        for message in messages:
            assert f"it answers for {real}, not for the address dialled" in message
        assert plugin.instances == {}  # nothing was provisioned through the relay


async def test_a_server_without_a_token_is_not_trusted_with_one(directory: Path) -> None:
    async with real_plugin(directory, insecure=True) as (server, plugin):
        assert server.tcp_address is not None
        address = f"tcp://127.0.0.1:{server.tcp_address[1]}"
        messages = await attempt_both_clients(address)
        assert all("it serves without a token" in m for m in messages)
        assert plugin.instances == {}
        tokenless = Client("inst", address, token="")  # no token: no proof asked for
        try:
            assert await InstanceClient(tokenless).describe_instances({}) == []
        finally:
            await tokenless.close()


async def test_a_signed_request_cannot_be_replayed_or_altered(directory: Path) -> None:
    async with real_plugin(directory, token=TOKEN) as (server, plugin):
        assert server.tcp_address is not None
        upstream = server.tcp_address
        # A request signed in a real session, as a network tap on plain TCP would capture it.
        client = SyncClient("inst", f"tcp://127.0.0.1:{upstream[1]}", token=TOKEN)
        with client:
            await asyncio.to_thread(client.call, "Instance.DescribeInstances", {})
        proof = client._proof
        assert proof is not None
        body = b'{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{},"id":7}'
        header = proof.authorization("POST", "/", body)

        def send(auth: str, payload: bytes) -> tuple[int, Any]:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", upstream[1], timeout=5)
            try:
                conn.request("POST", "/", payload, {"Authorization": auth})
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        status, doc = await asyncio.to_thread(send, header, body)
        assert status == 200 and doc["result"]["Descriptions"] == []
        status, doc = await asyncio.to_thread(send, header, body)  # the same request again
        assert status == 401
        assert "replayed request" in doc["error"]["message"]
        altered = body.replace(b"DescribeInstances", b"Destroy")
        status, doc = await asyncio.to_thread(send, proof.authorization("POST", "/", body), altered)
        assert status == 401 and "signature wrong" in doc["error"]["message"]
        assert plugin.instances == {}


async def test_a_restarted_plugin_gets_a_new_session_transparently(directory: Path) -> None:
    async with real_plugin(directory, token=TOKEN) as (server, _plugin):
        assert server.tcp_address is not None
        port = server.tcp_address[1]
        address = f"tcp://127.0.0.1:{port}"
        client = Client("inst", address, token=TOKEN)
        sync = SyncClient("inst", address, token=TOKEN)
        await InstanceClient(client).describe_instances({})
        await asyncio.to_thread(sync.call, "Instance.DescribeInstances", {})
    try:
        # The same port, a new process: a new secret, so the old sessions are unknown to it.
        async with real_plugin(directory, port, token=TOKEN) as (_again, plugin):
            iid = await InstanceClient(client).provision(Spec())
            found = await asyncio.to_thread(sync.call, "Instance.DescribeInstances", {})
            assert [d["ID"] for d in found["Descriptions"]] == [iid]
            assert list(plugin.instances) == [iid]
    finally:
        await client.close()
        sync.close()
