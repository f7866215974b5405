"""A keyed work queue: the one place where "when does a group get reconciled" is decided.

Contract (the same as controller-runtime's, written once here):

* A key (a group ID) is processed by **at most one worker at a time**.
* Triggers collapse: adding a key that is already waiting does nothing; adding a key that is being
  processed marks it *dirty* so it runs exactly once more afterwards (no trigger is lost, none is
  duplicated).
* The handler returns ``requeue_after`` (seconds) or None. A number schedules the next run (this is
  how the resync timer and "check again when the health timeout expires" work); when several
  deadlines exist for a key the earliest wins.
* If the handler raises, the key is retried with per-key exponential backoff (``base * 2**n``,
  capped), and the streak resets on the next success. The handler is level-triggered: it must
  read actual state each time and never rely on what triggered it.

Time comes from the injected :class:`~infrakit._utils.clock.Clock`, so tests drive timers with
a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from infrakit._utils.aio import cancel_and_wait
from infrakit._utils.clock import Clock

__all__ = ["WorkQueue"]

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[float | None]]


@dataclass
class _KeyState:
    """The queue's bookkeeping for one key: waiting, running, asked for again while running
    (dirty), its retry streak, and its one pending timer."""

    queued: bool = False
    running: bool = False
    dirty: bool = False
    failures: int = 0
    deadline: float | None = None
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


class WorkQueue:
    """Keyed work queue with ``workers`` concurrent handlers (see the module docstring for
    the contract). The group controller's keys are group IDs."""

    def __init__(
        self,
        handler: Handler,
        clock: Clock,
        *,
        workers: int = 4,
        retry_base: float = 0.05,
        retry_max: float = 30.0,
        on_done: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        """``handler(key)`` reconciles one key and returns when to run it again; a raising
        handler is retried after ``retry_base * 2**n`` seconds, at most ``retry_max``."""
        self._handler = handler
        self._clock = clock
        self._workers_wanted = workers
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._keys: dict[str, _KeyState] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        #: Number of handler runs, keys added (not counting collapsed ones) and retries after a
        #: failure (for tests and metrics).
        self.runs = 0
        self.adds = 0
        self.retries = 0
        #: Called after each run with (key, seconds it took, whether it raised): metrics.
        self._on_done = on_done

    def start(self) -> None:
        """Start the workers (call once, from the event loop that will run them)."""
        for i in range(self._workers_wanted):
            self._workers.append(asyncio.create_task(self._work(), name=f"workqueue-{i}"))

    async def stop(self) -> None:
        """Stop accepting keys, cancel the timers, and wait for the workers to end."""
        self._closed = True
        for state in self._keys.values():
            if state.timer is not None:
                state.timer.cancel()
        await cancel_and_wait(*self._workers)
        self._workers.clear()

    def add(self, key: str) -> None:
        """Reconcile ``key`` as soon as a worker is free."""
        if self._closed:
            return
        state = self._keys.setdefault(key, _KeyState())
        if state.running:
            # Level-triggered: the running pass may have read the world before this change, so
            # one more pass follows it - one, however many adds arrive meanwhile.
            state.dirty = True
            return
        if state.queued:
            return  # collapsed: the waiting pass will see whatever this add was about
        state.queued = True
        self.adds += 1
        self._ready.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Reconcile ``key`` after ``delay`` seconds (earliest pending deadline wins)."""
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        state = self._keys.setdefault(key, _KeyState())
        deadline = self._clock.now() + delay
        # One timer per key, the earliest wins: a later deadline is covered by the pass the
        # earlier one starts (which asks for its own next deadline).
        if state.deadline is not None and state.deadline <= deadline and state.timer is not None:
            return
        if state.timer is not None:
            state.timer.cancel()
        state.deadline = deadline
        state.timer = asyncio.create_task(self._fire(key, delay, deadline))

    def forget(self, key: str) -> None:
        """Drop timers and backoff for ``key`` (the group was freed)."""
        state = self._keys.pop(key, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()

    def depth(self) -> int:
        """Keys waiting for a worker now."""
        return self._ready.qsize()

    def busy(self, key: str) -> bool:
        """``key`` is waiting for a worker, running, or asked for again while running."""
        state = self._keys.get(key)
        return state is not None and (state.queued or state.running or state.dirty)

    def pending_deadline(self, key: str) -> float | None:
        """When ``key`` is next due by timer (clock time), or None."""
        state = self._keys.get(key)
        return None if state is None else state.deadline

    async def _fire(self, key: str, delay: float, deadline: float) -> None:
        """A timer: after ``delay`` add ``key`` - unless a newer timer replaced this one."""
        try:
            await self._clock.sleep(delay)
        except asyncio.CancelledError:
            return
        state = self._keys.get(key)
        if state is None or state.deadline != deadline:
            return
        state.deadline = None
        state.timer = None
        self.add(key)

    async def _work(self) -> None:
        """One worker: take a ready key, run its handler (one worker per key at a time), then
        requeue it when it was asked for again meanwhile, and schedule what the handler (or a
        failure's backoff) asked for."""
        while True:
            key = await self._ready.get()
            state = self._keys.get(key)
            if state is None:
                continue
            state.queued = False
            state.running = True
            requeue: float | None = None
            failed = False
            started = self._clock.now()
            try:
                self.runs += 1
                requeue = await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                failed = True
                self.retries += 1
                state.failures += 1
                delay = min(self._retry_max, self._retry_base * (2 ** (state.failures - 1)))
                log.exception(
                    "reconcile %s failed (attempt %d); retrying in %.2fs",
                    key,
                    state.failures,
                    delay,
                )
                requeue = delay
            finally:
                state.running = False
                if self._on_done is not None:
                    self._on_done(key, self._clock.now() - started, failed)
            if not failed:
                state.failures = 0
            if key not in self._keys:
                continue  # forgotten while running
            if state.dirty:
                state.dirty = False
                self.add(key)
            if requeue is not None:
                self.add_after(key, requeue)
