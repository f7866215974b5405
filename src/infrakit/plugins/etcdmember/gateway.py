"""A small client of etcd's v3 HTTP/JSON gateway (the member API, ``/health``), stdlib only.

etcd 3.4 serves its gRPC API as JSON on the client port (``POST /v3/cluster/member/list`` and
friends; 64-bit IDs are strings on the wire), and ``GET /health`` answers ``{"health": "true"}``
only when the member has a leader and can commit a quorum read. The requests are plain
``http.client`` calls run on the plugin threads (:func:`infrakit._utils.aio.ensure_async`), so the
flavor needs no HTTP library (plugins never import aiohttp) and no etcd client (aetcd stays in the
etcd store backends).

A member that has not joined a quorum yet accepts TCP connections but answers nothing: every call
has a timeout, and "no answer" (:class:`Unreachable`) is told apart from an error reply
(:class:`GatewayError`).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from infrakit._utils.aio import ensure_async

__all__ = [
    "GatewayError",
    "Member",
    "Unreachable",
    "add_member",
    "healthy",
    "list_members",
    "remove_member",
]


class Unreachable(Exception):
    """The endpoint did not answer (refused, reset, timed out)."""


class GatewayError(Exception):
    """The endpoint answered with an error (``message`` is etcd's, e.g. "etcdserver: unhealthy
    cluster")."""

    def __init__(self, endpoint: str, status: int, message: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status}: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        """The cluster refused the change for now (strict reconfiguration checks: a member joined
        less than 5 s ago, or not enough members are connected); the same call may pass later."""
        text = self.message.lower()
        return any(
            part in text
            for part in (
                "unhealthy cluster",
                "not enough started members",
                "leader changed",
                "already exists",  # a racing attempt added it: the next look reuses it
            )
        ) or ("timed out" in text or "timeout" in text)


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of the cluster's member list."""

    id: str
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()

    @property
    def started(self) -> bool:
        """A member that ran: it published its client URLs (a member added or listed in the
        initial cluster that never started has none)."""
        return bool(self.client_urls)


@dataclass(slots=True)
class _Reply:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def _request(endpoint: str, method: str, path: str, body: Any, timeout: float) -> _Reply:
    """One HTTP request to ``endpoint`` (``http://host:port``); the reply's JSON object."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{endpoint}: {exc or type(exc).__name__}") from None
    finally:
        conn.close()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw[:200].decode(errors="replace")}
    return _Reply(response.status, decoded if isinstance(decoded, dict) else {})


_call = ensure_async(_request)


async def _post(endpoint: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    reply: _Reply = await _call(endpoint, "POST", path, body, timeout)
    if reply.status != 200:
        message = reply.body.get("message") or reply.body.get("error") or "no message"
        raise GatewayError(endpoint, reply.status, str(message))
    return reply.body


async def healthy(endpoint: str, timeout: float) -> bool:
    """``GET /health``: True when the member has a leader and a quorum read passed."""
    reply: _Reply = await _call(endpoint, "GET", "/health", None, timeout)
    return reply.status == 200 and reply.body.get("health") == "true"


def _members(body: dict[str, Any]) -> list[Member]:
    return [
        Member(
            id=str(m.get("ID", "")),
            name=str(m.get("name", "")),
            peer_urls=tuple(m.get("peerURLs") or ()),
            client_urls=tuple(m.get("clientURLs") or ()),
        )
        for m in body.get("members") or ()
        if isinstance(m, dict)
    ]


async def list_members(endpoint: str, timeout: float) -> tuple[str, list[Member]]:
    """The ID of the member answering at ``endpoint``, and the cluster's members as it knows them."""
    body = await _post(endpoint, "/v3/cluster/member/list", {}, timeout)
    header = body.get("header")
    answering = str(header.get("member_id", "")) if isinstance(header, dict) else ""
    return answering, _members(body)


async def remove_member(endpoint: str, member_id: str, timeout: float) -> None:
    """Remove a member (a raft configuration change: needs a quorum)."""
    await _post(endpoint, "/v3/cluster/member/remove", {"ID": member_id}, timeout)


async def add_member(endpoint: str, peer_url: str, timeout: float) -> tuple[Member, list[Member]]:
    """Add a voting member with ``peer_url``; the new member and the member list after it."""
    body = await _post(endpoint, "/v3/cluster/member/add", {"peerURLs": [peer_url]}, timeout)
    added = _members({"members": [body.get("member") or {}]})[0]
    return added, _members(body)
