"""Async helpers: run plugin methods written sync or async the same way, and a topic broker.

Plugin authors may write ``def`` or ``async def`` methods. :func:`ensure_async` turns either into
an awaitable callable once, at registration time: coroutine functions are used as they are, plain
functions run in the default thread pool so a slow provider SDK (boto3, docker-py) never blocks the
event loop that serves every other request.

:class:`Broker` is an in-memory publish/subscribe hub keyed by slash topics. Each subscriber gets
its own bounded queue; a subscriber that does not keep up loses its *oldest* items (events are
triggers, and the newest trigger is the one that matters), never blocks the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from infrakit._utils.topics import topic_matches

T = TypeVar("T")

__all__ = ["Broker", "ensure_async", "is_async_callable"]


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
    """Return an async callable for ``fn``; sync callables run in a worker thread."""
    if is_async_callable(fn):
        return fn

    @functools.wraps(fn)
    async def call_in_thread(*args: Any, **kwargs: Any) -> Any:
        result = await asyncio.to_thread(fn, *args, **kwargs)
        if inspect.isawaitable(result):  # a def that returns a coroutine
            return await result
        return result

    return call_in_thread


class Broker(Generic[T]):
    """Fan out items published on slash topics to every matching subscriber."""

    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._subscribers: list[tuple[str, asyncio.Queue[tuple[str, T]]]] = []
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, topic: str, item: T) -> None:
        """Deliver ``item`` to every subscriber whose subscription matches ``topic``. Never blocks."""
        self.published += 1
        for subscription, queue in self._subscribers:
            if topic_matches(subscription, topic):
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait((topic, item))

    def subscribe(self, subscription: str) -> AsyncIterator[T]:
        """Subscribe now; iterate the result for matching items (``aclose()`` it when done).

        Registration happens in this call, not at the first iteration, so nothing published after
        ``subscribe`` returns is missed - callers can announce "subscribed" truthfully.
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

    async def aclose(self) -> None:
        self._finalizer()


def _unregister(subscribers: list[Any], entry: Any) -> None:
    with contextlib.suppress(ValueError):
        subscribers.remove(entry)
