"""The member list behind `infrakit manager status`: who campaigns now, on both backends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infrakit.leader import LeaderInfo
from infrakit.leader.etcd import EtcdElector
from infrakit.leader.file import FileElector
from infrakit.testing.etcd import EtcdServer
from infrakit.testing.fakes import wait_until

pytestmark = pytest.mark.timeout(30)


async def test_file_members_are_the_running_electors_and_a_dead_one_drops_out(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "leader.lock"
    a = FileElector(lock, "a", "tcp://127.0.0.1:1", poll_interval=0.05)
    b = FileElector(lock, "b", "tcp://127.0.0.1:2", poll_interval=0.05)
    await a.start()
    await b.start()
    try:
        assert await b.members() == [
            LeaderInfo("a", "tcp://127.0.0.1:1"),
            LeaderInfo("b", "tcp://127.0.0.1:2"),
        ]
        # A member killed without stopping leaves its file; its PID is gone, so it is no member.
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (a.members_dir / f"{dead.pid}-x.json").write_text(
            json.dumps({"ID": "ghost", "Location": "", "PID": dead.pid})
        )
        (a.members_dir / "garbage.json").write_text("{not json")
        assert [m.id for m in await a.members()] == ["a", "b"]
        await a.stop()
        assert [m.id for m in await b.members()] == ["b"]
    finally:
        await a.stop()
        await b.stop()


async def test_etcd_members_live_as_long_as_their_lease(etcd: EtcdServer) -> None:
    a = EtcdElector(etcd.endpoint, "/members-test", id="a", location="tcp://h1:1", ttl=2)
    b = EtcdElector(etcd.endpoint, "/members-test", id="b", location="tcp://h2:2", ttl=2)
    await a.start()
    await b.start()
    try:
        await wait_until(lambda: a.is_leader or b.is_leader, timeout=10)

        async def ids() -> list[str]:
            return [m.id for m in await b.members()]

        for _ in range(100):
            if await ids() == ["a", "b"]:
                break
            await asyncio.sleep(0.05)
        assert await b.members() == [LeaderInfo("a", "tcp://h1:1"), LeaderInfo("b", "tcp://h2:2")]
        await a.stop()  # revokes its lease: its member key goes with it
        assert await ids() == ["b"]
    finally:
        await a.stop()
        await b.stop()


async def test_a_file_leader_that_resigns_lets_another_lead_and_stays_out_for_the_pause(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "leader.lock"
    a = FileElector(lock, "a", poll_interval=0.05)
    b = FileElector(lock, "b", poll_interval=0.05)
    await a.start()
    await b.start()
    try:
        assert a.is_leader
        await a.resign(60)
        await wait_until(lambda: b.is_leader, timeout=10)
        await b.stop()  # the lock is free again, but a sits out its pause
        await asyncio.sleep(0.3)
        assert not a.is_leader
        assert await a.leader() is None
    finally:
        await a.stop()
        await b.stop()
