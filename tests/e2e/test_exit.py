"""Stopped means gone: after SIGTERM, SIGINT or `plugin stop --all` a daemon's last log line is its
last act - the process exits, nothing of it is left (sockets, .listen files, children) - even
while a client holds an event stream, idle or half-sent connections, or a plugin call never returns.

How soon it exits is measured by ``bench.exit`` (figures in docs/benchmarks.md); these tests
bound the wait only for liveness.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from infrakit.testing.processes import Daemon, bin_path, session_members
from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

#: Generous: the process is expected gone within a fraction of a second (bench.exit).
LIVENESS = 10.0

UP_SOCKETS = ["instance-file", "flavor-vanilla", "flavor-combo", "group"]


def stop(e2e: E2E, daemon: Daemon, how: str) -> None:
    if how == "plugin stop --all":
        e2e.run("plugin", "stop", "--all")
    else:
        daemon.signal(getattr(signal, how))


def assert_gone_without_trace(e2e: E2E, daemon: Daemon) -> None:
    gone_at = daemon.wait_gone(LIVENESS)
    assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.output()
    last_line = daemon.last_log_time()
    assert last_line is not None and gone_at - last_line < LIVENESS, daemon.output()
    assert "Traceback" not in daemon.output()
    assert list(e2e.plugins.iterdir()) == [], "sockets or .listen files were left"
    assert session_members(daemon.pid) == [], "processes of the daemon outlived it"


@pytest.fixture
def holders(e2e: E2E) -> Iterator[list[socket.socket]]:
    """Open sockets a client may hold when the daemon is told to stop (closed afterwards)."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def hold_connections(e2e: E2E, held: list[socket.socket]) -> subprocess.Popen[bytes]:
    """An idle kept-alive connection and a half-sent request on every socket, and an event
    stream (``infrakit event tail``) on the file plugin."""
    for name in UP_SOCKETS:
        for data in (b"", b"POST / HTTP/1.1\r\nHost: x\r\n"):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(e2e.plugins / name))
            sock.sendall(data)
            held.append(sock)
    tail = subprocess.Popen(
        [bin_path("infrakit"), "event", "tail", "instance/", "--name", "instance-file"],
        env=e2e.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert tail.stderr is not None
    assert tail.stderr.readline().startswith(b"Following events")  # the stream is live
    return tail


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "plugin stop --all"])
def test_up_is_gone_at_its_last_log_line_with_nothing_left(
    e2e: E2E, holders: list[socket.socket], how: str
) -> None:
    up = e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: "converged" in up.output(), what="the cattle group to converge")
    tail = hold_connections(e2e, holders)
    try:
        stop(e2e, up, how)
        assert_gone_without_trace(e2e, up)
        tail.wait(timeout=LIVENESS)  # the subscriber sees its stream end
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        assert tail.stderr is not None
        tail.stderr.close()


NEVER_RETURNS = textwrap.dedent(
    """
    import logging, sys, time, infrakit
    class Stuck:
        def validate(self, properties): return None
        def provision(self, spec):
            logging.getLogger("stuck").info("provisioning")
            time.sleep(120)  # a provider SDK that never returns
            return "never"
        def destroy(self, instance, context): pass
        def describe_instances(self, tags, properties=False): return []
    infrakit.serve(Stuck(), name=sys.argv[1])
    """
)


@pytest.mark.parametrize("how", ["SIGTERM", "plugin stop --all"])
def test_a_plugin_call_that_never_returns_does_not_keep_the_process(e2e: E2E, how: str) -> None:
    """A sync method stuck in its worker thread: before, the loop's executor shutdown and the
    interpreter's exit joined that thread, so the process lived on for as long as the call."""
    script = e2e.home / "stuck.py"
    script.write_text(NEVER_RETURNS)
    daemon = Daemon([sys.executable, str(script), "stuck"], e2e.env, sockets=["stuck"])
    e2e.daemons.append(daemon)
    daemon.start()
    caller = subprocess.Popen(
        [bin_path("infrakit"), "instance", "--name", "stuck", "provision", "-"],
        env=e2e.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert caller.stdin is not None
        caller.stdin.write(b'{"Tags": {}}')
        caller.stdin.close()
        wait_for(lambda: "provisioning" in daemon.output(), what="the call to be running")
        stop(e2e, daemon, how)
        assert_gone_without_trace(e2e, daemon)
        assert caller.wait(timeout=LIVENESS) != 0  # its call was abandoned, and it says so
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
