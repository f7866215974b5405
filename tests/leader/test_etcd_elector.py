"""etcd election against a real etcd: one leader of three, takeover after a crash, graceful
hand-over, a deleted leader key, fencing when etcd goes away, recovery after an etcd restart (the
followers' watches come back and still see the leader go)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

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


@contextlib.asynccontextmanager
async def admin_client(etcd: EtcdServer) -> AsyncIterator[aetcd.Client]:
    """An operator's own etcd client: sees what etcd holds, not what a member believes."""
    host, port = etcd.endpoint.split(":")
    admin = aetcd.Client(host=host, port=int(port))
    try:
        yield admin
    finally:
        await admin.close()


async def takeover(
    admin: aetcd.Client, key: bytes, crashed: int, others: list[EtcdElector], timeout: float = 30
) -> EtcdElector:
    """Wait until one of ``others`` leads. Meanwhile none may lead while the crashed leader's key
    (create revision ``crashed``) is still in etcd, i.e. while its lease has not expired.

    The member is read before etcd: a member that leads won a transaction that found the key gone,
    so a later read can no longer see the crashed leader's key."""

    async def poll() -> EtcdElector:
        while True:
            leading = [e for e in others if e.is_leader]
            got = await admin.get(key)
            lease_holds = got is not None and got.create_revision == crashed
            assert not (leading and lease_holds), (
                f"{leading[0].id} leads while the crashed leader's lease still holds {key!r}"
            )
            if leading:
                return leading[0]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


async def test_exactly_one_of_three_leads_and_a_crash_hands_over(etcd: EtcdServer) -> None:
    electors = members(etcd, "/e1")
    for e in electors:
        await e.start()
    try:
        await wait_until(lambda: sum(e.is_leader for e in electors) == 1, timeout=10)
        # A deliberate window in which nothing may happen: no second member starts leading.
        await asyncio.sleep(0.5)
        assert sum(e.is_leader for e in electors) == 1  # and it stays one
        leader = next(e for e in electors if e.is_leader)
        for e in electors:
            assert await e.leader() == LeaderInfo(leader.id, leader.location)

        # A crash: the task dies without resigning (no revoke); the lease must expire. Nobody
        # leads while etcd still holds the crashed leader's key, then exactly one takes over.
        crashed = leader.create_revision
        assert crashed is not None
        others = [e for e in electors if e is not leader]
        async with admin_client(etcd) as admin:
            await crash(leader)
            await takeover(admin, leader.key, crashed, others)
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
        revision = a.create_revision
        assert revision is not None
        await a.stop()  # revokes the lease: the key goes now, not after the ttl
        async with admin_client(etcd) as admin:
            got = await admin.get(a.key)
        assert got is None or got.create_revision != revision  # gone when stop() returns
        await wait_until(lambda: b.is_leader, timeout=10)
    finally:
        await b.stop()


async def test_etcd_down_fences_the_leader_before_its_lease_expires_and_recovers() -> None:
    try:
        server = EtcdServer().start()
    except EtcdUnavailable as exc:
        pytest.skip(f"etcd cannot run here: {exc}")
    # A longer lease than the default 2 s: the leader gives up 2/3 ttl after its last renewal,
    # so a 6 s lease leaves 2 s to spare for a slow machine where 2 s left only 0.7 s.
    ttl = 6
    leader = EtcdElector(server.endpoint, "/e3", id="solo", ttl=ttl)
    try:
        await leader.start()
        await wait_until(lambda: leader.is_leader, timeout=10)
        store = EtcdStore(server.endpoint, "/e3", fence=leader)
        await store.put("groups/g", {"v": 1})
        changes = leader.changes()
        assert await anext(changes) is True

        server.stop()  # etcd goes away: the last renewal was before this, at the latest
        stopped = time.monotonic()
        assert await asyncio.wait_for(anext(changes), 3 * ttl) is False
        # Fenced before its lease could expire. Not a speed target but the safety bound: past
        # `stopped + ttl` the lease may be gone and another member could already lead.
        assert time.monotonic() - stopped < ttl

        server.start()  # same data dir: etcd comes back with our data (and our old lease)
        assert await asyncio.wait_for(anext(changes), 30 + ttl) is True
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
        async with admin_client(server) as admin:

            async def settled() -> bool:
                """One member leads, etcd holds its key, and all three watch that key again."""
                leading = [e for e in electors if e.is_leader]
                if len(leading) != 1:
                    return False
                got = await admin.get(leading[0].key)
                if got is None or got.create_revision != leading[0].create_revision:
                    return False
                return await asyncio.to_thread(watchers, server) == len(electors)

            await wait_until_async(settled, timeout=30)
            leader = next(e for e in electors if e.is_leader)
            crashed = leader.create_revision
            assert crashed is not None
            await crash(leader)
            others = [e for e in electors if e is not leader]
            await takeover(admin, leader.key, crashed, others)
        assert sum(e.is_leader for e in others) == 1
    finally:
        for e in electors:
            await e.stop()
        server.close()


def watchers(etcd: EtcdServer) -> int:
    """How many watches the (restarted) etcd serves, from its metrics: each member watches the
    leader key, the leader included (for a deleted key)."""
    url = f"http://{etcd.endpoint}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return int(float(line.split()[1]))
    raise AssertionError(f"no etcd_debugging_mvcc_watcher_total in {url}")


async def wait_until_async(predicate: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
