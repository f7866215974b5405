"""etcd election against a real etcd: one leader of three, takeover after a crash, graceful
hand-over, fencing when etcd goes away, recovery after an etcd restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from infrakit.leader import LeaderInfo
from infrakit.leader.etcd import EtcdElector
from infrakit.store.etcd import EtcdStore
from infrakit.testing.etcd import EtcdServer
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
        assert leader._task is not None
        leader._task.cancel()
        leader._lease = None
        leader._leadership.set(False)
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
    from infrakit.testing.etcd import EtcdUnavailable

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
