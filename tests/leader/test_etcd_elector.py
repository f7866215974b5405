"""etcd election against a real etcd: one leader of three, takeover after a crash, graceful
hand-over, a deleted leader key, fencing when etcd goes away, recovery after an etcd restart (the
followers' watches come back and still see the leader go)."""

from __future__ import annotations

import asyncio
import time

import aetcd
import pytest

from infrakit._utils.aio import cancel_and_wait
from infrakit.leader import LeaderInfo
from infrakit.leader.etcd import EtcdElector
from infrakit.store.etcd import EtcdStore
from infrakit.testing.etcd import EtcdServer, EtcdUnavailable
from infrakit.testing.fakes import wait_until

pytestmark = pytest.mark.timeout(90)


def members(etcd: EtcdServer, prefix: str, n: int = 3) -> list[EtcdElector]:
    return [
        EtcdElector(etcd.endpoint, prefix, id=f"m{i}", location=f"tcp://127.0.0.1:{9000 + i}")
        for i in range(n)
    ]


async def test_exactly_one_of_three_leads_and_a_crash_hands_over(etcd: EtcdServer) -> None:
    electors = members(etcd, "/e1")
    for e in electors:
        await e.start()
    try:
        await wait_until(lambda: sum(e.is_leader for e in electors) == 1, timeout=10)
        await asyncio.sleep(0.5)
        assert sum(e.is_leader for e in electors) == 1  # and it stays one
        leader = next(e for e in electors if e.is_leader)
        for e in electors:
            assert await e.leader() == LeaderInfo(leader.id, leader.location)

        # A crash: the task dies without resigning (no revoke); the lease must expire.
        await crash(leader)
        started = time.monotonic()
        others = [e for e in electors if e is not leader]
        await wait_until(lambda: any(e.is_leader for e in others), timeout=10)
        assert time.monotonic() - started < 5  # ~ttl (2 s), never much more
        assert sum(e.is_leader for e in others) == 1
    finally:
        for e in electors:
            await e.stop()


async def test_graceful_stop_hands_over_at_once(etcd: EtcdServer) -> None:
    a, b = members(etcd, "/e2", 2)
    await a.start()
    await wait_until(lambda: a.is_leader, timeout=10)
    await b.start()
    try:
        started = time.monotonic()
        await a.stop()  # revokes the lease: the key goes now, not after the ttl
        await wait_until(lambda: b.is_leader, timeout=10)
        assert time.monotonic() - started < 1.5
    finally:
        await b.stop()


async def test_etcd_down_fences_the_leader_before_its_lease_expires_and_recovers() -> None:
    try:
        server = EtcdServer().start()
    except EtcdUnavailable as exc:
        pytest.skip(f"etcd cannot run here: {exc}")
    leader = EtcdElector(server.endpoint, "/e3", id="solo", ttl=2)
    try:
        await leader.start()
        await wait_until(lambda: leader.is_leader, timeout=10)
        store = EtcdStore(server.endpoint, "/e3", fence=leader)
        await store.put("groups/g", {"v": 1})
        changes = leader.changes()
        assert await anext(changes) is True

        server.stop()  # etcd goes away
        stopped = time.monotonic()
        assert await asyncio.wait_for(anext(changes), 10) is False
        assert time.monotonic() - stopped < 2.0  # fenced before a 2 s lease could expire

        server.start()  # same data dir: etcd comes back with our data
        assert await asyncio.wait_for(anext(changes), 20) is True
        assert await store.get("groups/g") == {"v": 1}
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await leader.stop()
        server.close()


async def crash(elector: EtcdElector) -> None:
    """What SIGKILL does to a member: its task dies without revoking the lease."""
    assert elector._task is not None
    await cancel_and_wait(elector._task)
    elector._lease = None
    elector._leadership.set(False)


async def test_a_leader_whose_key_is_deleted_steps_down_and_an_election_follows(
    etcd: EtcdServer,
) -> None:
    a, b = members(etcd, "/e4", 2)
    await a.start()
    await wait_until(lambda: a.is_leader, timeout=10)
    await b.start()
    changes = a.changes()
    assert await anext(changes) is True
    first_revision = a.create_revision
    host, port = etcd.endpoint.split(":")
    admin = aetcd.Client(host=host, port=int(port))
    try:
        await admin.delete(b"/e4/leader")  # an operator's `etcdctl del /e4/leader`
        # The lease is still alive, so only the watch can tell a that it no longer leads.
        assert await asyncio.wait_for(anext(changes), 5) is False
        await wait_until(lambda: a.is_leader or b.is_leader, timeout=10)
        leader = a if a.is_leader else b
        assert leader.create_revision != first_revision
        got = await admin.get(b"/e4/leader")
        assert got is not None and got.create_revision == leader.create_revision
    finally:
        await changes.aclose()  # type: ignore[attr-defined]
        await admin.close()
        await a.stop()
        await b.stop()


async def test_after_an_etcd_restart_followers_still_see_the_leader_go() -> None:
    try:
        server = EtcdServer().start()
    except EtcdUnavailable as exc:
        pytest.skip(f"etcd cannot run here: {exc}")
    electors = members(server, "/e5")
    try:
        for e in electors:
            await e.start()
        await wait_until(lambda: sum(e.is_leader for e in electors) == 1, timeout=10)

        server.restart()  # every watch and lease stream breaks; data survives
        await asyncio.sleep(0.5)
        await wait_until(lambda: sum(e.is_leader for e in electors) == 1, timeout=20)
        await asyncio.sleep(1)  # followers are back to watching the key
        assert sum(e.is_leader for e in electors) == 1

        leader = next(e for e in electors if e.is_leader)
        await crash(leader)
        others = [e for e in electors if e is not leader]
        await wait_until(lambda: any(e.is_leader for e in others), timeout=10)
        assert sum(e.is_leader for e in others) == 1
    finally:
        for e in electors:
            await e.stop()
        server.close()
