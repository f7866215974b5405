"""The etcd store against a real etcd: round trips, fencing by the leader key, etcd down/restart."""

from __future__ import annotations

import pytest

from infrakit import errors
from infrakit.leader.etcd import EtcdElector
from infrakit.store import open_store
from infrakit.store.etcd import EtcdStore
from infrakit.testing.etcd import EtcdServer
from infrakit.testing.fakes import wait_until

pytestmark = pytest.mark.timeout(60)


async def test_round_trip_and_prefix_listing(etcd: EtcdServer, infrakit_home) -> None:
    store = open_store(f"etcd://{etcd.endpoint}/t1", infrakit_home)
    assert isinstance(store, EtcdStore)
    try:
        assert await store.get("groups/cattle") is None
        await store.put(
            "groups/cattle", {"ID": "cattle", "Properties": {"Allocation": {"Size": 5}}}
        )
        await store.put("groups/pets", {"ID": "pets"})
        await store.put("updates/cattle", {"step": 2})
        assert (await store.get("groups/cattle"))["Properties"]["Allocation"]["Size"] == 5
        assert sorted(await store.list("groups/")) == ["groups/cattle", "groups/pets"]
        await store.delete("groups/pets")
        await store.delete("groups/pets")  # absent: no error
        assert list(await store.list("groups/")) == ["groups/cattle"]
        assert store.describe() == f"etcd://{etcd.endpoint}/t1"
    finally:
        await store.close()


async def test_a_deposed_leaders_writes_are_rejected_by_etcd(etcd: EtcdServer) -> None:
    first = EtcdElector(etcd.endpoint, "/t2", id="a", ttl=2)
    second = EtcdElector(etcd.endpoint, "/t2", id="b", ttl=2)
    await first.start()
    await wait_until(lambda: first.is_leader, timeout=10)
    store_a = EtcdStore(etcd.endpoint, "/t2", fence=first)
    await store_a.put("groups/x", {"v": 1})
    # Freeze what `a` believes (its revision), then depose it behind its back.
    stale_revision = first.create_revision
    await first.stop()
    await second.start()
    try:
        await wait_until(lambda: second.is_leader, timeout=10)
        first.create_revision = stale_revision
        first._leadership.leading = True  # a paused process that still believes it leads
        with pytest.raises(errors.NotLeaderError, match="rejected by etcd"):
            await EtcdStore(etcd.endpoint, "/t2", fence=first).put("groups/x", {"v": 666})
        store_b = EtcdStore(etcd.endpoint, "/t2", fence=second)
        await store_b.put("groups/x", {"v": 2})
        assert await store_b.get("groups/x") == {"v": 2}
    finally:
        first._leadership.leading = False
        await second.stop()


async def test_unreachable_etcd_is_a_store_error_not_empty(infrakit_home) -> None:
    store = EtcdStore("127.0.0.1:9", "/x")  # nothing listens on port 9
    with pytest.raises(errors.StoreError, match="check that etcd runs"):
        await store.list("groups/")
    await store.close()


async def test_check_fails_at_once_when_etcd_is_unreachable() -> None:
    store = EtcdStore("127.0.0.1:9", "/x")
    with pytest.raises(errors.StoreError, match=r"check that etcd runs at 127\.0\.0\.1:9"):
        await store.check()
    await store.close()


async def test_check_passes_against_a_running_etcd(etcd: EtcdServer) -> None:
    store = EtcdStore(etcd.endpoint, "/check")
    try:
        await store.check()
    finally:
        await store.close()
