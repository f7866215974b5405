"""The HTTP listener (``launch.http.StatusServer``) on a real socket: its guard (off loopback: the
token or TLS; a guarded listener answers 401 without the bearer token, ``/healthz`` stays open),
readiness as 200/503 with reasons, ``/metrics`` from the recorder it is given (404 without one),
and errors as one JSON line - never a crash."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from infrakit import errors
from infrakit.launch.http import StatusServer, check_guard
from infrakit.spi.group import GroupSnapshot

pytestmark = pytest.mark.timeout(30)

SNAP = GroupSnapshot("web", 3, None, 0, 0, 0, 0, 3, False, "closed", actual_unknown="no answer")


class Source:
    """A group controller as the page reads it."""

    def snapshots(self) -> list[GroupSnapshot]:
        return [SNAP]

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        if id != "web":
            raise errors.NotFoundError(f"Group '{id}' is not being watched")
        return {"Desired": 3, "Options": options}


class Recorder:
    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        return b"infrakit_up 1\n", "text/plain; version=0.0.4"

    def rpc_request(self, method: str, code: str) -> None:
        return None


async def not_ready() -> dict[str, str]:
    return {"leader": "", "store": "", "group/web": "no answer"}


@pytest.fixture
async def guarded() -> AsyncIterator[str]:
    server = StatusServer("group", Source(), ready=not_ready, recorder=Recorder())
    await server.start("127.0.0.1", 0, token="s3cret", guarded=True)
    assert server.address is not None
    try:
        yield f"http://127.0.0.1:{server.address[1]}"
    finally:
        await server.stop()


async def _get(url: str, **headers: str) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        body = await answer.read()
        doc: Any = body
        if answer.content_type == "application/json":
            doc = await answer.json()
        return answer.status, doc, dict(answer.headers)


async def test_a_guarded_listener_needs_the_bearer_token_but_for_healthz(guarded: str) -> None:
    status, doc, headers = await _get(f"{guarded}/api/groups")
    assert status == 401 and "bearer token missing" in doc["error"]
    assert headers["WWW-Authenticate"] == 'Bearer realm="infrakit"'
    status, doc, _ = await _get(f"{guarded}/metrics", Authorization="Bearer nope")
    assert status == 401 and "bearer token wrong" in doc["error"]
    status, doc, _ = await _get(f"{guarded}/healthz")
    assert (status, doc) == (200, {"ok": True, "plugin": "group"})
    status, body, _ = await _get(f"{guarded}/metrics", Authorization="Bearer s3cret")
    assert (status, body) == (200, b"infrakit_up 1\n")


async def test_readiness_names_what_is_not_ready(guarded: str) -> None:
    status, doc, _ = await _get(f"{guarded}/readyz", Authorization="Bearer s3cret")
    assert status == 503
    assert doc == {
        "ready": False,
        "plugin": "group",
        "checks": {"leader": "ok", "store": "ok", "group/web": "no answer"},
        "not_ready": {"group/web": "no answer"},
    }


async def test_api_pages_and_errors_are_json(guarded: str) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    status, doc, _ = await _get(f"{guarded}/api/groups", **auth)
    assert status == 200
    assert doc["Groups"][0]["actual"] is None and doc["Groups"][0]["actual_unknown"] == "no answer"
    status, doc, _ = await _get(f"{guarded}/api/groups/web?offset=100&filter=attention", **auth)
    assert status == 200
    assert doc["Options"] == {"offset": 100, "limit": 50, "filter": "attention"}
    for query, words in [
        ("limit=501", "limit='501': expected a whole number at most 500"),
        ("offset=-1", "offset='-1': expected a whole number"),
        ("filter=x", "filter='x': expected all or attention"),
    ]:
        status, doc, _ = await _get(f"{guarded}/api/groups/web?{query}", **auth)
        assert (status, doc["error"]) == (400, words)
    status, doc, _ = await _get(f"{guarded}/api/groups/nope", **auth)
    assert status == 404 and "not being watched" in doc["error"]
    status, doc, _ = await _get(f"{guarded}/no/such/page", **auth)
    assert status == 404 and "error" in doc
    status, doc, _ = await _get(f"{guarded}/events", **auth)
    assert status == 404 and "publishes no events" in doc["error"]


async def test_without_a_recorder_metrics_is_404() -> None:
    server = StatusServer("group", Source())
    await server.start("127.0.0.1", 0)
    assert server.address is not None
    try:
        status, doc, headers = await _get(f"http://127.0.0.1:{server.address[1]}/metrics")
        assert status == 404 and doc == {"error": "plugin group serves no metrics"}
        assert headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("host", "token", "tls", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("::1", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("10.0.0.5", None, False, True),
        ("0.0.0.0", "t", False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_off_loopback_needs_the_token_or_tls(
    host: str, token: str | None, tls: bool, refused: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    if refused:
        with pytest.raises(errors.SpecError, match=f"--http {host} is off loopback"):
            check_guard("group", host, token, tls)
        return
    check_guard("group", host, token, tls)
    plain_token = bool(token) and not tls
    assert ("travels in clear" in caplog.text) == plain_token
