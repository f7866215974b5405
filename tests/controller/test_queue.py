"""The keyed WorkQueue contract (src/infrakit/controller/queue.py), driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from infrakit.controller.queue import WorkQueue
from infrakit.testing import FakeClock

pytestmark = pytest.mark.timeout(10)


@dataclass
class Recorder:
    """A handler whose runs the test controls: ``gates[key]`` blocks a key until set."""

    clock: FakeClock
    runs: list[tuple[str, float]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    max_active: dict[str, int] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    #: Keys whose handler raises, and how many more times.
    fail: dict[str, int] = field(default_factory=dict)
    requeue: dict[str, float] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    async def __call__(self, key: str) -> float | None:
        self.runs.append((key, self.clock.now()))
        self.active[key] = self.active.get(key, 0) + 1
        self.max_active[key] = max(self.max_active.get(key, 0), self.active[key])
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            if self.fail.get(key, 0) > 0:
                self.fail[key] -= 1
                raise RuntimeError(f"reconcile of {key} broke")
            return self.requeue.get(key)
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        finally:
            self.active[key] -= 1

    def count(self, key: str) -> int:
        return sum(1 for k, _ in self.runs if k == key)

    def times(self, key: str) -> list[float]:
        return [t for k, t in self.runs if k == key]


@pytest.fixture
async def qrig() -> AsyncIterator[tuple[WorkQueue, Recorder, FakeClock]]:
    clock = FakeClock()
    rec = Recorder(clock)
    q = WorkQueue(rec, clock, workers=4, retry_base=1.0, retry_max=8.0)
    q.start()
    try:
        yield q, rec, clock
    finally:
        await q.stop()


async def test_one_worker_per_key_and_a_trigger_while_running_runs_exactly_once_more(
    qrig: tuple[WorkQueue, Recorder, FakeClock],
) -> None:
    q, rec, clock = qrig
    gate = rec.gates["g"] = asyncio.Event()
    q.add("g")
    await clock.settle()
    assert rec.count("g") == 1 and rec.active["g"] == 1
    for _ in range(3):  # three triggers while it runs; three idle workers are free
        q.add("g")
    await clock.settle()
    assert rec.count("g") == 1  # not run concurrently
    gate.set()
    await clock.settle()
    assert rec.count("g") == 2  # exactly one more run, not three
    assert rec.max_active["g"] == 1
    await clock.advance(60)
    assert rec.count("g") == 2  # nothing else queued


async def test_triggers_on_a_waiting_key_collapse(
    qrig: tuple[WorkQueue, Recorder, FakeClock],
) -> None:
    q, rec, clock = qrig
    for _ in range(5):
        q.add("g")
    await clock.settle()
    assert rec.count("g") == 1
    assert q.runs == 1


async def test_handler_errors_retry_with_growing_capped_backoff_and_success_resets_it(
    qrig: tuple[WorkQueue, Recorder, FakeClock],
) -> None:
    q, rec, clock = qrig
    rec.fail["g"] = 5
    t0 = clock.now()
    q.add("g")
    await clock.settle()
    assert rec.count("g") == 1
    # retry_base=1, retry_max=8: retries after 1, 2, 4, 8, 8 s. Check each just before and after.
    expected = [1.0, 2.0, 4.0, 8.0, 8.0]
    for n, delay in enumerate(expected, start=2):
        await clock.advance(delay - 0.01)
        assert rec.count("g") == n - 1, f"retry {n - 1} ran before its {delay}s backoff"
        await clock.advance(0.01)
        assert rec.count("g") == n, f"retry {n - 1} did not run after {delay}s"
    gaps = [b - a for a, b in zip(rec.times("g"), rec.times("g")[1:], strict=False)]
    assert gaps == pytest.approx(expected)
    assert rec.times("g")[0] == t0
    # The sixth run succeeded (fail budget used up): no more retries.
    await clock.advance(100)
    assert rec.count("g") == 6
    # A new failure after a success starts again at the base delay.
    rec.fail["g"] = 1
    q.add("g")
    await clock.settle()
    assert rec.count("g") == 7
    await clock.advance(0.99)
    assert rec.count("g") == 7
    await clock.advance(0.02)
    assert rec.count("g") == 8


async def test_requeue_after_schedules_the_next_run_and_the_earliest_deadline_wins(
    qrig: tuple[WorkQueue, Recorder, FakeClock],
) -> None:
    q, rec, clock = qrig
    q.add_after("g", 30)
    q.add_after("g", 5)
    q.add_after("g", 20)
    await clock.advance(4.9)
    assert rec.count("g") == 0
    await clock.advance(0.2)
    assert rec.count("g") == 1
    await clock.advance(60)
    assert rec.count("g") == 1  # the later deadlines were superseded, not kept
    rec.requeue["g"] = 10.0
    q.add("g")
    await clock.settle()
    assert rec.count("g") == 2
    await clock.advance(9.9)
    assert rec.count("g") == 2
    await clock.advance(0.2)
    assert rec.count("g") == 3


async def test_different_keys_run_independently(
    qrig: tuple[WorkQueue, Recorder, FakeClock],
) -> None:
    q, rec, clock = qrig
    rec.gates["slow"] = asyncio.Event()
    rec.fail["broken"] = 100
    q.add("slow")
    q.add("broken")
    await clock.settle()
    q.add("fast")
    await clock.settle()
    assert rec.count("fast") == 1  # not held up by a key that is still running
    assert rec.active["slow"] == 1
    q.add("fast")
    await clock.settle()
    assert rec.count("fast") == 2
    await clock.advance(1.0)
    assert rec.count("broken") == 2  # its own backoff; the others' runs do not reset it
    q.add("fast")
    await clock.advance(1.99)
    assert rec.count("broken") == 2  # second retry waits 2 s although "fast" just succeeded
    await clock.advance(0.02)
    assert rec.count("broken") == 3
    assert rec.count("slow") == 1
    rec.gates["slow"].set()
    await clock.settle()
    assert rec.max_active == {"slow": 1, "broken": 1, "fast": 1}


async def test_stop_cancels_running_handlers_timers_and_ignores_later_triggers() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    q = WorkQueue(rec, clock, workers=2, retry_base=1.0)
    q.start()
    rec.gates["busy"] = asyncio.Event()
    q.add("busy")
    q.add_after("later", 5)
    rec.fail["retry"] = 1
    q.add("retry")
    await clock.settle()
    assert rec.count("busy") == 1 and rec.count("retry") == 1
    await q.stop()
    assert rec.cancelled == ["busy"]
    q.add("new")
    q.add_after("new", 1)
    await clock.advance(60)
    assert rec.count("later") == 0  # its timer died with the queue
    assert rec.count("retry") == 1  # no retry after stop
    assert rec.count("new") == 0
    assert rec.count("busy") == 1
    assert q.runs == 2
