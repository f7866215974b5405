"""``/readyz`` of a group or manager process: what is not ready, in words.

Ready means: a leader is known (a manager; a plain group controller is its own leader), the store
answers a read within :data:`CHECK_TIMEOUT`, and every managed group's instance plugin answers
(its actual instances are known: :attr:`~infrakit.spi.group.GroupSnapshot.actual` is not None).
Each check is a name (``leader``, ``store``, ``group/<id>``) and "" when it passes, else the
reason; the HTTP listener answers 503 with them while any fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from infrakit.spi.group import GroupSnapshot
from infrakit.store import Store

__all__ = ["CHECK_TIMEOUT", "readiness"]

#: Seconds the store and the election may take to answer a readiness check.
CHECK_TIMEOUT = 2.0


async def readiness(
    snapshots: Callable[[], list[GroupSnapshot]],
    store: Store,
    leader: Callable[[], Awaitable[str]] | None = None,
) -> dict[str, str]:
    """Check name -> "" (ready) or why not. ``leader`` answers "" when a leader is known."""
    checks: dict[str, str] = {}
    if leader is not None:
        checks["leader"] = await _within(leader(), "the election")
    checks["store"] = await _within(_read(store), f"store {store.describe()}")
    for snap in snapshots():
        checks[f"group/{snap.id}"] = (
            "" if snap.actual is not None else snap.actual_unknown or "instances not observed yet"
        )
    return checks


async def _read(store: Store) -> str:
    await store.list("groups/")
    return ""


async def _within(check: Awaitable[str], what: str) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT)
    except TimeoutError:
        return f"{what} did not answer within {CHECK_TIMEOUT:g}s"
    except Exception as exc:  # a failing backend is a reason, never a crash of /readyz
        return f"{what} failed: {exc}"
