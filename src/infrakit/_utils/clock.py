"""Injected time: every timing behaviour of the controller, the queue and the leader backends goes through a :class:`Clock`.

Production uses :class:`SystemClock` (monotonic time, ``asyncio.sleep``). Tests pass
:class:`infrakit.testing.FakeClock`, whose time only moves when the test says so, which makes
backoff, health timeouts, update deadlines and resync timers deterministic and instant to test.

The controller never calls ``time.monotonic()`` or ``asyncio.sleep()`` directly, and it bounds
plugin calls with :meth:`Clock.wait_for` rather than ``asyncio.wait_for`` so that fake time drives
timeouts too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

__all__ = ["Clock", "SystemClock"]

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (only differences are meaningful)."""

    def wall(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps shown to users)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""

    async def wait_for(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        """Await with a timeout in this clock's time; raises ``TimeoutError``."""


class SystemClock:
    """Real time."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        return await asyncio.wait_for(awaitable, seconds)
