"""Hostile requests against every daemon kind, each a real process on real sockets.

For each kind (group, manager, instance-file, simulator, process, flavor-vanilla, combo): a few
hundred hypothesis bodies built from the SPI shapes (both eras), then the HTTP garbage corpus, then
half-open connections. Survived means: every request got an HTTP answer (or a clean close, for
garbage that is not HTTP) within the deadline, a JSON-RPC body got a JSON-RPC reply (never a 500
text/plain), the daemon logged no traceback, and it still answers a real request afterwards with
its sentinel state intact. ``bench/attack.py`` runs the long version of the same attack.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.adversarial.kit import (
    GARBAGE,
    HELLO,
    KINDS,
    TOKEN,
    Body,
    Garbage,
    Running,
    bodies,
    garbage_for,
    http_post,
    judge,
    raw_exchange,
    rpc,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

#: Hypothesis bodies per kind in CI (bench/attack.py --bodies runs 10 000).
CI_BODIES = 200

#: Entries of the corpus that current main fails, with the issue item being fixed.
#: Entries that are known holes, each with an ``xfail(strict)`` reason: empty, and it must stay
#: so - a hole found later goes here until it is fixed.
KNOWN: dict[str, str] = {}


class _Started(dict[str, Running]):
    """Daemons per kind, started on first use and stopped with the module."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        super().__init__()
        self.stack = stack

    def __missing__(self, name: str) -> Running:
        self[name] = self.stack.enter_context(KINDS[name].running())
        return self[name]


@pytest.fixture(scope="module")
def kind_daemons() -> Iterator[dict[str, Running]]:
    with contextlib.ExitStack() as stack:
        yield _Started(stack)


def attack(
    running: Running, raw: bytes, era: str | None, body: bytes | None, **options: Any
) -> str | None:
    """Send one hostile request; None if the daemon answered as it must and lives, else what
    went wrong (tracebacks in its log are checked separately, see test_http_garbage_logs_no_traceback)."""
    answer = raw_exchange(running.address, raw, **options)
    problem = judge(answer, era=era, request_body=body)
    if problem is None and not running.alive():
        problem = "the daemon died"
    return problem


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hypothesis_bodies_get_json_rpc_answers_and_change_nothing(
    kind_daemons: dict[str, Running], kind: str
) -> None:
    running = kind_daemons[kind]

    @settings(
        max_examples=CI_BODIES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies(running.target))
    def one(body: Body) -> None:
        problem = attack(running, body.raw, body.era, body.body)
        assert problem is None, problem
        traceback = running.new_tracebacks()
        assert not traceback, f"a traceback in the daemon's log:\n{traceback}"

    one()
    assert running.check() is None, running.check()


def _garbage_params() -> list[object]:
    params = []
    for name in sorted(KINDS):
        for g in garbage_for(name):
            marks = []
            known = KNOWN.get(f"{name}-{g.name}") or KNOWN.get(g.name)
            if known:
                marks.append(pytest.mark.xfail(strict=True, reason=known))
            params.append(pytest.param(name, g, id=f"{name}-{g.name}", marks=marks))
    return params


@pytest.mark.parametrize(("kind", "garbage"), _garbage_params())
def test_http_garbage_gets_an_answer_or_a_clean_close(
    kind_daemons: dict[str, Running], kind: str, garbage: Garbage
) -> None:
    running = kind_daemons[kind]
    running.new_tracebacks()  # what earlier entries left is theirs
    problem = attack(
        running,
        garbage.raw,
        garbage.era,
        garbage.body,
        half_close=garbage.half_close,
        head_only=garbage.head_only,
        timeout=garbage.timeout,
    )
    assert problem is None, f"{kind} on {garbage.name}: {problem}"
    if garbage.era is not None:  # a JSON-RPC request reached infrakit's handlers: no traceback
        traceback = running.new_tracebacks()
        assert not traceback, f"a traceback in the {kind} daemon's log:\n{traceback}"
    assert running.check() is None, running.check()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_http_garbage_logs_no_traceback(kind_daemons: dict[str, Running], kind: str) -> None:
    running = kind_daemons[kind]
    running.new_tracebacks()
    for garbage in garbage_for(kind):
        if garbage.name not in KNOWN:
            raw_exchange(
                running.address,
                garbage.raw,
                half_close=garbage.half_close,
                head_only=garbage.head_only,
                timeout=garbage.timeout,
            )
    traceback = running.new_tracebacks()
    assert not traceback, f"a traceback in the {kind} daemon's log:\n{traceback}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_half_open_connections_do_not_stop_the_daemon_serving(
    kind_daemons: dict[str, Running], kind: str
) -> None:
    """Clients that send part of the headers and then wait hold a connection each, but every other
    caller is still served, and the daemon still answers once they go."""
    parts = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"POST / HTTP/1.1\r\n",
        b"P",
        http_post(HELLO)[:-5],
    ]
    running = kind_daemons[kind]
    held = []
    try:
        for i in range(60):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(str(running.address))
            sock.sendall(parts[i % len(parts)])
            held.append(sock)
        reply = rpc(running.address, "Handshake.Hello", {})
        assert reply is not None and "Objects" in reply["result"], reply
    finally:
        for sock in held:
            sock.close()
    assert running.check() is None, running.check()
    # A client hanging up mid-body logs a traceback today: test_http_garbage_logs_no_traceback.


def test_the_manager_tcp_listener_refuses_hostile_bodies_without_the_token(
    kind_daemons: dict[str, Running],
) -> None:
    """The manager's TCP listener: without the token or with a wrong one, every hostile body gets
    HTTP 401 and a JSON-RPC error; with it, hostile bodies get JSON-RPC answers like on UNIX."""
    running = kind_daemons["manager"]
    assert running.tcp is not None
    for body in (
        HELLO,
        b"{",
        b"[" * 5000,
        b'{"jsonrpc":"2.0","method":"Group.DestroyGroup","params":{"ID":"adv-sentinel-7f3a"},"id":1}',
    ):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": "Basic " + TOKEN},
        ):
            answer = raw_exchange(running.tcp, http_post(body, headers=headers))
            assert answer.status == 401, (headers, answer.describe())
            assert judge(answer, era="head", request_body=body) is None
    good = {"Authorization": f"Bearer {TOKEN}"}
    for body in (HELLO, b"{", b'{"jsonrpc":"2.0","method":"Group.Nope","params":{},"id":1}'):
        answer = raw_exchange(running.tcp, http_post(body, headers=good))
        assert answer.status == 200 and judge(answer, era="head", request_body=body) is None, (
            answer.describe()
        )
    for g in GARBAGE:
        if g.era is None and g.name not in KNOWN:
            answer = raw_exchange(running.tcp, g.raw, half_close=g.half_close, timeout=g.timeout)
            assert judge(answer, era=None) is None, (g.name, answer.describe())
    assert running.check() is None, running.check()


#: How long a client that never finishes its headers may hold a connection.
SLOW_CLIENT_LIMIT = 30.0


def test_a_client_that_never_finishes_its_headers_is_dropped(
    kind_daemons: dict[str, Running],
) -> None:
    """A TCP client that sends half its headers and waits is disconnected within the limit."""
    running = kind_daemons["manager"]
    assert running.tcp is not None
    with socket.create_connection(running.tcp, timeout=SLOW_CLIENT_LIMIT + 5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            data: bytes | None = sock.recv(1024)
        except TimeoutError:
            data = None
        assert data is not None and time.monotonic() - started <= SLOW_CLIENT_LIMIT + 1


def test_the_file_plugin_never_destroys_a_file_that_is_not_an_instance(
    kind_daemons: dict[str, Running],
) -> None:
    running = kind_daemons["instance-file"]
    readme = running.home / "instances" / "README"
    readme.write_text("not an instance")
    reply = rpc(running.address, "Instance.Destroy", {"Instance": "README"})
    assert readme.exists(), reply
    assert reply["error"] is not None
