"""TCP listeners need a shared bearer token (or loopback + an explicit insecure flag)."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.launch.host import PluginHost
from infrakit.launch.serving import detect
from infrakit.rpc.client import Client, SyncClient
from infrakit.rpc.instance import InstanceClient
from infrakit.spi.instance import Spec
from infrakit.testing import short_tempdir
from infrakit.testing.fakes import FakeInstancePlugin
from infrakit.testing.processes import free_port as _free_port

pytestmark = pytest.mark.timeout(30)


async def _serve_tcp(directory: Path, **tcp: object) -> tuple[PluginHost, int]:
    port = _free_port()
    host = PluginHost(directory, home=directory)
    served = detect(FakeInstancePlugin(), "inst")
    served.tcp = ("127.0.0.1", port)
    served.tcp_token = tcp.get("token")  # type: ignore[assignment]
    served.tcp_insecure = bool(tcp.get("insecure", False))
    served.tcp_ssl = tcp.get("ssl")
    await host.serve("inst", served)
    return host, port


@pytest.fixture
def directory() -> object:
    d = short_tempdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _raw_post(port: int, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "Instance.DescribeInstances", "params": {}, "id": 1}
        )
        conn.request("POST", "/", body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


async def test_a_missing_or_forged_token_is_refused_and_the_right_one_works(
    directory: Path,
) -> None:
    host, port = await _serve_tcp(directory, token="s3cret")
    try:
        status, doc = await asyncio.to_thread(_raw_post, port, {})
        assert status == 401 and "bearer token missing" in doc["error"]["message"]  # type: ignore[index]
        status, doc = await asyncio.to_thread(_raw_post, port, {"Authorization": "Bearer forged"})
        assert status == 401 and "bearer token wrong" in doc["error"]["message"]  # type: ignore[index]
        status, doc = await asyncio.to_thread(_raw_post, port, {"Authorization": "Bearer s3cret"})
        assert status == 200 and "result" in doc

        good = Client("inst", f"tcp://127.0.0.1:{port}", token="s3cret")
        bad = Client("inst", f"tcp://127.0.0.1:{port}", token="nope")
        try:
            iid = await InstanceClient(good).provision(Spec(tags={"a": "1"}))
            assert [d.id for d in await InstanceClient(good).describe_instances({})] == [iid]
            with pytest.raises(errors.InfrakitError, match="bearer token wrong"):
                await InstanceClient(bad).describe_instances({})
        finally:
            await good.close()
            await bad.close()

        # The UNIX socket (guarded by 0600 permissions) needs no token; the CLI's blocking
        # client sends the token on TCP.
        def sync_calls() -> tuple[int, int]:
            with SyncClient("inst", directory / "inst") as local:
                n_local = len(
                    local.call("Instance.DescribeInstances", {"Tags": {}})["Descriptions"]
                )
            with SyncClient("inst", f"tcp://127.0.0.1:{port}", token="s3cret") as remote:
                n_remote = len(
                    remote.call("Instance.DescribeInstances", {"Tags": {}})["Descriptions"]
                )
            return n_local, n_remote

        assert await asyncio.to_thread(sync_calls) == (1, 1)
    finally:
        await host.stop_all()


async def test_tcp_without_a_token_needs_loopback_and_insecure(directory: Path) -> None:
    with pytest.raises(errors.SpecError, match="needs a shared token"):
        await _serve_tcp(directory)
    host, port = await _serve_tcp(directory, insecure=True)  # loopback + explicit: allowed
    try:
        status, _ = await asyncio.to_thread(_raw_post, port, {})
        assert status == 200
    finally:
        await host.stop_all()
    host = PluginHost(directory, home=directory)
    served = detect(FakeInstancePlugin(), "inst2")
    served.tcp, served.tcp_insecure = ("0.0.0.0", _free_port()), True
    with pytest.raises(errors.SpecError, match="only loopback with --insecure"):
        await host.serve("inst2", served)
    await host.stop_all()


async def test_tls_with_a_self_signed_certificate(directory: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    host, port = await _serve_tcp(directory, token="t", ssl=server_ctx)
    assert (directory / "inst.listen").read_text() == f"https://127.0.0.1:{port}"
    trusting = Client(
        "inst", f"https://127.0.0.1:{port}", token="t", ssl=ssl.create_default_context(cafile=cert)
    )
    untrusting = Client("inst", f"https://127.0.0.1:{port}", token="t")
    try:
        assert await InstanceClient(trusting).describe_instances({}) == []
        with pytest.raises(errors.InfrakitError):
            await InstanceClient(untrusting).describe_instances({})
    finally:
        await trusting.close()
        await untrusting.close()
        await host.stop_all()
