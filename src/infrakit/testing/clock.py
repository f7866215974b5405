"""A fake clock whose time moves only when a test advances it.

Usage::

    clock = FakeClock()
    controller = GroupController(..., clock=clock)
    await clock.advance(10)          # wakes every sleeper due within the next 10 s, in order
    await clock.settle()             # let ready tasks run until nothing is runnable

``advance`` moves time to each sleeper's deadline in turn and lets the woken tasks run before moving
on, so a loop that sleeps 1 s ten times completes within ``advance(10)``. ``wait_for`` times out
when fake time passes the deadline.

WARNING: ``settle`` yields to the event loop a bounded number of times; work that waits on real I/O
(threads, sockets) is not finished by it. Use it with in-memory fakes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["FakeClock"]

T = TypeVar("T")


class FakeClock:
    def __init__(self, start: float = 1000.0, wall_offset: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_offset + self._now

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        live = [d for d, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    async def wait_for(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        if seconds is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        timer = asyncio.ensure_future(self.sleep(seconds))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()
            raise TimeoutError(f"timed out after {seconds} s (fake clock)")
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()

    async def settle(self, rounds: int = 50) -> None:
        """Let runnable tasks run (``rounds`` passes through the event loop)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def run_until(
        self, predicate: Callable[[], bool], *, step: float = 0.1, limit: float = 3600.0
    ) -> float:
        """Advance in ``step`` increments until ``predicate()``; return the fake time it took."""
        start = self._now
        await self.settle()
        while not predicate():
            if self._now - start > limit:
                raise TimeoutError(f"condition not met within {limit} fake seconds")
            await self.advance(step)
        return self._now - start
