"""The cyclic garbage collector around start-up: fewer collections while a command starts, and
the start-up's objects out of its sight once a long-running process serves.

Starting ``infrakit up`` allocated some 300 000 objects (modules, classes, aiohttp - gone since -
and pydantic); at the default threshold (700) the collector ran 130 times before every socket answered - 61 ms
of a ~460 ms start, one full collection alone 33 ms - and 20-40 times (5-10 ms) in every short CLI
command, all to find almost no garbage. :func:`defer` raises the threshold for the start;
:func:`settle`, called once a server is up, freezes what is alive then (``gc.freeze``: later full
collections skip it) and restores the usual thresholds. A command that never settles (``group
watch``, ``event tail``) still collects, every 100 000 allocations.

:func:`paused` keeps the collector off while a big answer is laid out: ``Group.Status`` of
100 000 instances builds some 300 000 dicts and tuples, which made the collector traverse the
whole heap (every instance's records: a million objects) several times per request. What is
built there holds no reference cycles and is freed by reference counting once sent.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["START_THRESHOLDS", "defer", "paused", "settle"]

#: Collector thresholds while a command starts (generation 0, 1, 2).
START_THRESHOLDS = (100_000, 50, 100)

_saved: tuple[int, int, int] | None = None


def defer() -> None:
    """Collect rarely from now on (start-up); :func:`settle` undoes it."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(*START_THRESHOLDS)


def settle() -> None:
    """Start-up is over: freeze the objects alive now and collect at the usual rate again."""
    global _saved
    gc.freeze()
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block (synchronous code only: nothing else runs meanwhile); the
    collector is on again after it, unless it was off before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
