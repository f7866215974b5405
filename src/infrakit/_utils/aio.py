"""Async helpers: run plugin methods written sync or async the same way, and a topic broker.

Plugin authors may write ``def`` or ``async def`` methods. :func:`ensure_async` turns either into
an awaitable callable once, at registration time: coroutine functions are used as they are, plain
functions run in worker threads so a slow provider SDK (boto3, docker-py) never blocks the event
loop that serves every other request. Those threads are daemon threads (:class:`DaemonThreadPool`):
a stopping process waits for no call that is still running - with the default thread pool, the
event loop's executor shutdown and then the interpreter's exit joined every worker, and a hung SDK
call kept a plugin whose socket was long gone alive until it returned. An abandoned call ends with
the process, as on a crash, which every plugin must survive anyway.

:class:`Broker` is an in-memory publish/subscribe hub keyed by slash topics. Each subscriber gets
its own bounded queue; a subscriber that does not keep up loses its *oldest* items (events are
triggers, and the newest trigger is the one that matters), never blocks the publisher. A broker
made with ``history=N`` also keeps the last N items with the time they were published, so a
subscriber that arrives late can ask for what it missed (``recent(topic, since)``: a heal over
before ``group watch`` connected is still seen).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import queue as _queue
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from infrakit._utils.topics import topic_matches

T = TypeVar("T")

__all__ = ["Broker", "DaemonThreadPool", "ensure_async", "is_async_callable"]

_WorkItem = tuple[
    concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]
]


class DaemonThreadPool(concurrent.futures.Executor):
    """A thread pool whose workers are daemon threads nobody joins: neither the event loop's
    shutdown nor the interpreter's exit waits for a call that does not return.

    Like :class:`concurrent.futures.ThreadPoolExecutor` otherwise: at most ``max_workers``
    threads, started on demand and reused when idle.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max_workers = max_workers
        self._name = name
        self._work: _queue.SimpleQueue[_WorkItem | None] = _queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: cannot run new calls after shutdown")
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                worker = threading.Thread(
                    target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                worker.start()
                self._threads.append(worker)
        return future

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # delivered to the awaiting caller, as the stdlib does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            with contextlib.suppress(_queue.Empty):
                while (item := self._work.get_nowait()) is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for worker in threads:
                worker.join()


_plugin_threads: DaemonThreadPool | None = None


def plugin_threads() -> DaemonThreadPool:
    """The process's pool for sync plugin methods (as many threads as asyncio's default pool)."""
    global _plugin_threads
    if _plugin_threads is None:
        _plugin_threads = DaemonThreadPool(min(32, (os.cpu_count() or 1) + 4), "plugin-call")
    return _plugin_threads


async def cancel_and_wait(*tasks: asyncio.Future[Any], retry_every: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any that did not.

    On Python 3.11 ``asyncio.wait_for`` and ``asyncio.timeout`` can swallow a cancellation that
    arrives just as their inner operation finishes or times out; a single ``cancel()`` followed by
    ``await task`` then waits forever - and a supervisor that was told to stop (a deposed leader's)
    would go on acting. Whatever the tasks raise while ending is dropped.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_every)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


def is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


def ensure_async(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Return an async callable for ``fn``; sync callables run on :func:`plugin_threads`."""
    if is_async_callable(fn):
        return fn

    @functools.wraps(fn)
    async def call_in_thread(*args: Any, **kwargs: Any) -> Any:
        context = contextvars.copy_context()  # as asyncio.to_thread does
        call = functools.partial(context.run, fn, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(plugin_threads(), call)
        if inspect.isawaitable(result):  # a def that returns a coroutine
            return await result
        return result

    return call_in_thread


class Broker(Generic[T]):
    """Fan out items published on slash topics to every matching subscriber; with ``history``,
    remember the last that many items (and when they were published) for late subscribers."""

    def __init__(
        self, queue_size: int = 1024, *, history: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self._queue_size = queue_size
        self._subscribers: list[tuple[str, asyncio.Queue[tuple[str, T]]]] = []
        self.published = 0
        #: (wall time, topic, item) of the last ``history`` items, oldest first.
        self._history: deque[tuple[float, str, T]] | None = (
            deque(maxlen=history) if history else None
        )
        self._clock = clock

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def keeps_history(self) -> bool:
        """Whether :meth:`recent` can replay anything."""
        return self._history is not None

    def publish(self, topic: str, item: T) -> None:
        """Deliver ``item`` to every subscriber whose subscription matches ``topic``. Never blocks."""
        self.published += 1
        if self._history is not None:
            self._history.append((self._clock(), topic, item))
        for subscription, queue in self._subscribers:
            if topic_matches(subscription, topic):
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait((topic, item))

    def recent(self, subscription: str, since: float) -> list[T]:
        """The remembered items matching ``subscription`` published at or after wall time
        ``since``, oldest first (none without ``history``)."""
        if self._history is None:
            return []
        return [
            item
            for at, topic, item in self._history
            if at >= since and topic_matches(subscription, topic)
        ]

    def publish_from_thread(
        self, loop: asyncio.AbstractEventLoop | None, topic: str, item: T
    ) -> None:
        """:meth:`publish` from another thread (an SDK's event thread), on ``loop``; dropped when
        there is no loop yet or it is closed."""
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.publish, topic, item)

    def subscribe(self, subscription: str) -> AsyncIterator[T]:
        """Subscribe now; iterate the result for matching items (``aclose()`` it when done).

        Registration happens in this call, not at the first iteration, so nothing published after
        ``subscribe`` returns is missed - callers can announce "subscribed" truthfully (and a
        :meth:`recent` right after it, with no ``await`` between, replays exactly what came
        before: nothing twice, nothing lost).
        """
        return _Subscription(self, subscription, self._queue_size)


class _Subscription(Generic[T]):
    """One subscriber's queue, registered with its broker until closed or garbage-collected."""

    def __init__(self, broker: Broker[T], subscription: str, queue_size: int) -> None:
        self._queue: asyncio.Queue[tuple[str, T]] = asyncio.Queue(queue_size)
        self._entry = (subscription, self._queue)
        self._broker = broker
        broker._subscribers.append(self._entry)
        self._finalizer = weakref.finalize(self, _unregister, broker._subscribers, self._entry)

    def __aiter__(self) -> _Subscription[T]:
        return self

    async def __anext__(self) -> T:
        if not self._finalizer.alive:
            raise StopAsyncIteration
        _, item = await self._queue.get()
        return item

    def take_ready(self) -> list[T]:
        """Every item queued right now, without waiting (a burst sent as one write)."""
        queue = self._queue
        return [queue.get_nowait()[1] for _ in range(queue.qsize())]

    async def aclose(self) -> None:
        self._finalizer()


def _unregister(subscribers: list[Any], entry: Any) -> None:
    with contextlib.suppress(ValueError):
        subscribers.remove(entry)
