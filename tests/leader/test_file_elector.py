"""File-lock election: exactly one leader per lock file, across tasks and across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infrakit.leader import LeaderInfo, open_elector
from infrakit.leader.file import FileElector
from infrakit.testing import FakeClock
from infrakit.testing.fakes import wait_until

pytestmark = pytest.mark.timeout(30)


async def test_exactly_one_of_two_leads_and_a_graceful_stop_hands_over(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    a = FileElector(lock, "a", "tcp://127.0.0.1:1", poll_interval=0.05)
    b = FileElector(lock, "b", "tcp://127.0.0.1:2", poll_interval=0.05)
    await a.start()
    await b.start()
    try:
        assert a.is_leader and not b.is_leader
        assert await b.leader() == LeaderInfo("a", "tcp://127.0.0.1:1")
        changes = b.changes()
        assert await anext(changes) is False  # the current state first
        await a.stop()
        assert await asyncio.wait_for(anext(changes), 5) is True
        assert b.is_leader and not a.is_leader
        assert await a.leader() == LeaderInfo("b", "tcp://127.0.0.1:2")
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await a.stop()
        await b.stop()
    assert await FileElector(lock, "c").leader() is None  # nobody holds it now


async def test_a_removed_lock_file_makes_the_holder_step_down(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    a = FileElector(lock, "a", poll_interval=0.05)
    await a.start()
    try:
        changes = a.changes()
        assert await anext(changes) is True
        lock.unlink()  # someone cleaned up: the old lock guards nothing any more
        assert await asyncio.wait_for(anext(changes), 5) is False
        # ... and it campaigns again on the new file.
        assert await asyncio.wait_for(anext(changes), 5) is True
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await a.stop()


async def test_killing_the_holder_process_hands_over(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, json, sys, time
                fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                open({str(lock) + ".json"!r}, "w").write(json.dumps({{"ID": "other"}}))
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        me = FileElector(lock, "me", poll_interval=0.05)
        await me.start()
        try:
            assert not me.is_leader
            assert await me.leader() == LeaderInfo("other", "")
            holder.kill()  # SIGKILL: the kernel releases the lock
            holder.wait()
            await wait_until(lambda: me.is_leader, timeout=5)
            assert await me.leader() == LeaderInfo("me", "")
        finally:
            await me.stop()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_open_elector_names_the_choices(tmp_path: Path) -> None:
    from infrakit import errors

    elector = open_elector("file", home=tmp_path, id="m1")
    assert elector.describe() == f"file:{tmp_path / 'leader.lock'}"
    with pytest.raises(errors.SpecError, match="expected file or etcd"):
        open_elector("zookeeper", home=tmp_path, id="m1")


async def test_a_resigned_member_stays_out_for_the_pause_on_the_injected_clock(
    tmp_path: Path,
) -> None:
    """The elector's polls and its resign pause run on the clock it is given: fake time here,
    so the pause is checked to the poll without waiting for it."""
    clock = FakeClock()
    lock = tmp_path / "leader.lock"
    a = FileElector(lock, "a", poll_interval=0.5, clock=clock)
    b = FileElector(lock, "b", poll_interval=0.5, clock=clock)
    await a.start()
    await b.start()
    try:
        assert a.is_leader and not b.is_leader
        await a.resign(5.0)  # elected but cannot act: out for 5 s
        await clock.advance(0.5)
        assert b.is_leader and not a.is_leader  # b's next poll took over
        await b.stop()  # nobody leads now, and a is still resigned
        await clock.advance(3.0)
        assert not a.is_leader
        await clock.advance(2.0)  # the pause is over: a's next poll leads
        assert a.is_leader
    finally:
        await a.stop()
        await b.stop()
