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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from infrakit._utils.topics import topic_matches

T = TypeVar("T")

__all__ = ["Broker", "ensure_async", "is_async_callable"]


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

    async def subscribe(self, subscription: str) -> AsyncIterator[T]:
        """Yield matching items until the consumer stops iterating (or is cancelled)."""
        queue: asyncio.Queue[tuple[str, T]] = asyncio.Queue(self._queue_size)
        entry = (subscription, queue)
        self._subscribers.append(entry)
        try:
            while True:
                _, item = await queue.get()
                yield item
        finally:
            self._subscribers.remove(entry)
