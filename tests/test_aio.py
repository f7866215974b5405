"""Stopping background work for sure: a task that swallows a cancellation (as ``asyncio.wait_for``
and ``asyncio.timeout`` can on Python 3.11) is cancelled again until it ends, so stopping a
deposed leader's supervisors or an election never hangs and never leaves them running."""

from __future__ import annotations

import asyncio

import pytest

from infrakit._utils.aio import cancel_and_wait

pytestmark = pytest.mark.timeout(10)


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed >= 2:
                    raise
                # the first cancellation is lost, as in a wait_for that just completed

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait(task, retry_every=0.01)
    assert task.cancelled() and swallowed == 2


async def test_tasks_that_failed_or_finished_are_fine_and_their_errors_are_dropped() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def sleeps() -> None:
        await asyncio.sleep(3600)

    failed, done, sleeping = (
        asyncio.create_task(fails()),
        asyncio.create_task(asyncio.sleep(0)),
        asyncio.create_task(sleeps()),
    )
    await asyncio.sleep(0.01)
    await cancel_and_wait(failed, done, sleeping)
    assert failed.done() and done.done() and sleeping.cancelled()


async def test_sync_methods_run_on_daemon_threads_that_return_results_and_errors() -> None:
    """ensure_async's pool: results and exceptions reach the caller, at most max_workers threads
    run, and no worker is a thread the interpreter would wait for at exit."""
    import threading

    from infrakit._utils.aio import DaemonThreadPool, ensure_async, plugin_threads

    def whoami(x: int) -> tuple[int, str, bool]:
        current = threading.current_thread()
        return x * 2, current.name, current.daemon

    results = await asyncio.gather(*(ensure_async(whoami)(i) for i in range(20)))
    assert [r[0] for r in results] == [i * 2 for i in range(20)]
    assert all(name.startswith("plugin-call-") and daemon for _, name, daemon in results)
    assert len({name for _, name, _ in results}) <= plugin_threads()._max_workers

    def boom() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await ensure_async(boom)()

    pool = DaemonThreadPool(1, "test-pool")
    release = threading.Event()
    busy = pool.submit(release.wait)
    queued = pool.submit(lambda: "never run")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    release.set()
    assert busy.result(timeout=5) is True
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


async def test_take_ready_hands_over_what_is_queued_without_waiting() -> None:
    from infrakit._utils.aio import Broker

    broker: Broker[int] = Broker()
    sub = broker.subscribe("a/")
    assert sub.take_ready() == []  # type: ignore[attr-defined]
    for i in range(5):
        broker.publish("a/x", i)
    broker.publish("b/x", 99)  # another topic: not this subscriber's
    assert sub.take_ready() == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]
    assert sub.take_ready() == []  # type: ignore[attr-defined]
    await sub.aclose()  # type: ignore[attr-defined]
