"""Bad input through the real CLI: one line on stderr, exit 1, nothing changed, no plugin crash."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from infrakit.testing.processes import Daemon
from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def stack(e2e: E2E) -> E2E:
    e2e.start("infrakit-instance-file", sockets=["instance-file"])
    e2e.start("infrakit-group-default", sockets=["group"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    return e2e


def file_count(e2e: E2E) -> int:
    d = e2e.home / "instances"
    return len(list(d.glob("instance-*"))) if d.exists() else 0


def test_spec_file_problems(stack: E2E) -> None:
    err = stack.fails("group", "commit", str(stack.home / "missing.json"))
    assert "missing.json does not exist" in err
    bad = stack.home / "bad.json"
    bad.write_text("{not json")
    assert "bad.json: not valid JSON" in stack.fails("group", "commit", str(bad))
    bad.write_text("[1, 2]")
    assert "expected a JSON object" in stack.fails("group", "commit", str(bad))
    doc = json.loads((EXAMPLES / "cattle.json").read_text())
    doc["Properties"]["Allocation"]["Size"] = "five"
    bad.write_text(json.dumps(doc))
    err = stack.fails("group", "commit", str(bad))
    assert "Properties.Allocation.Size" in err and "five" in err
    doc["Properties"]["Allocation"] = {}
    bad.write_text(json.dumps(doc))
    assert "Allocation must not be blank" in stack.fails("group", "commit", str(bad))
    doc["ID"] = ""
    bad.write_text(json.dumps(doc))
    assert "Group ID must not be blank" in stack.fails("group", "commit", str(bad))
    assert stack.run("group", "ls", "-q").stdout == ""
    assert file_count(stack) == 0


def test_unknown_plugin_and_unknown_group(stack: E2E) -> None:
    doc = json.loads((EXAMPLES / "cattle.json").read_text())
    doc["Properties"]["Flavor"]["Plugin"] = "flavor-nope"
    spec = stack.home / "s.json"
    spec.write_text(json.dumps(doc))
    err = stack.fails("group", "commit", str(spec))
    assert "Failed to find Flavor plugin 'flavor-nope'" in err and "plugin start" in err
    for verb in ("describe", "inspect", "free", "destroy", "scale"):
        err = stack.fails("group", verb, "nope")
        assert "nope" in err and "not being watched" in err
    err = stack.fails("instance", "--name", "instance-nope", "describe")
    assert "plugin not found: instance-nope" in err and "running:" in err
    assert stack.run("group", "ls", "-q").stdout == ""


def test_destroy_instances_with_unknown_ids_changes_nothing(stack: E2E) -> None:
    stack.run("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: file_count(stack) == 5, what="5 instances")
    ids = [line.split()[0] for line in stack.lines("group", "describe", "cattle", "-q")]
    err = stack.fails("group", "destroy-instances", "cattle", ids[0], "instance-404")
    assert "instance-404 not among" in err and "nothing was destroyed" in err
    assert file_count(stack) == 5
    assert stack.run("group", "scale", "cattle").stdout == "Group cattle at 5 instances\n"
    assert stack.run("group", "destroy-instances", "cattle", ids[0]).stdout == "Initiated.\n"
    assert stack.run("group", "scale", "cattle").stdout == "Group cattle at 4 instances\n"
    wait_for(lambda: file_count(stack) == 4, what="4 instances")
    assert (
        stack.run("group", "scale", "cattle", "6").stdout
        == "Group cattle at 4 instances, scale to 6\n"
    )
    wait_for(lambda: file_count(stack) == 6, what="6 instances")
    assert "size cannot be negative" in stack.fails("group", "scale", "cattle", "--", "-1")


def test_plugin_not_running_or_stale(e2e: E2E) -> None:
    err = e2e.fails("group", "ls")
    assert "plugin not found: group" in err
    daemon = e2e.start("infrakit-group-default", sockets=["group"])
    daemon.kill()
    err = e2e.fails("group", "ls")
    assert "not running" in err and "connection refused" in err and "group" in err


HANG = textwrap.dedent(
    """
    import asyncio, sys, infrakit
    class Hangs:
        async def validate(self, properties): await asyncio.sleep(3600)
        async def provision(self, spec): await asyncio.sleep(3600)
        async def destroy(self, instance, context): pass
        async def describe_instances(self, tags, properties=False): await asyncio.sleep(3600)
    infrakit.serve(Hangs(), name=sys.argv[1])
    """
)


def test_plugin_that_hangs_times_out(e2e: E2E) -> None:
    script = e2e.home / "hangs.py"
    script.write_text(HANG)
    daemon = Daemon([sys.executable, str(script), "slow"], e2e.env, sockets=["slow"])
    e2e.daemons.append(daemon)
    daemon.start()
    err = e2e.fails("instance", "--name", "slow", "describe", INFRAKIT_CLIENT_TIMEOUT="1s")
    assert "slow" in err and "Instance.DescribeInstances" in err and "no answer within 1s" in err
    # The plugin survives and still answers other requests.
    assert e2e.run("instance", "--name", "slow", "info").returncode == 0


def test_plugin_that_answers_garbage(e2e: E2E) -> None:
    e2e.plugins.mkdir(exist_ok=True)
    path = e2e.plugins / "garbage"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        err = e2e.fails("instance", "--name", "garbage", "describe")
        assert "garbage" in err and "not JSON" in err
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def test_rpc_bodies_that_would_crash_infrakit(stack: E2E) -> None:
    """Raw requests with null/missing params, wrong types, unknown methods, oversize bodies."""
    path = stack.plugins / "flavor-vanilla"

    def post(body: bytes) -> tuple[int, dict]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        header = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        length = int(header.split(b":")[1])
        while len(rest) < length:
            rest += s.recv(65536)
        s.close()
        return int(head.split()[1]), json.loads(rest)

    cases = [
        b'{"jsonrpc":"2.0","method":"Flavor.Validate","params":{"Properties":null},"id":1}',
        b'{"jsonrpc":"2.0","method":"Flavor.Validate","id":2}',
        b'{"jsonrpc":"2.0","method":"Flavor.Prepare","params":{"Spec":{"Tags":{"a":1}}},"id":3}',
        b'{"jsonrpc":"2.0","method":"Flavor.Nope","params":{},"id":4}',
        b'{"jsonrpc":"2.0","method":"Flavor.Validate","params":"x","id":5}',
        b'{"jsonrpc":"2.0","method":"Flavor.Validate","params":{"Allocation":{"Size":"five"}},"id":6}',
        b"not json at all",
    ]
    results = [post(c) for c in cases]
    assert results[0][1]["result"] == {"Type": "", "OK": True}  # null Properties is fine
    assert results[1][1]["result"] == {"Type": "", "OK": True}
    for status, reply in results[2:]:
        assert status == 200 and "error" in reply and reply["error"]["message"]
    big = (
        b'{"jsonrpc":"2.0","method":"Flavor.Validate","params":{"Properties":"'
        + b"x" * (17 << 20)
        + b'"},"id":9}'
    )
    status, reply = post(big)
    assert status == 200 and "too large" in reply["error"]["message"]
    # Still serving.
    assert post(cases[0])[1]["result"]["OK"] is True


def test_cli_usage_errors_exit_non_zero(e2e: E2E) -> None:
    result = e2e.run("group", "nosuchverb", check=False)
    assert result.returncode != 0 and "No such command" in result.stderr
    result = e2e.run("instance", "describe", check=False)
    assert result.returncode != 0 and "--name" in result.stderr


def test_daemon_flags_are_validated(e2e: E2E) -> None:
    result = subprocess.run(
        [str(Daemon(["infrakit-group-default"], e2e.env).argv[0]), "--poll-interval", "soon"],
        env=e2e.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "poll-interval" in result.stderr and "soon" in result.stderr
