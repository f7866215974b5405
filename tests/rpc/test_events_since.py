"""``GET /events?topic=T&since=30s``: a source that remembers its recent events replays them after
``: subscribed`` and says ``: replayed N`` before the live ones; without ``since`` the stream is
InfraKit's, unchanged. The broker's memory is bounded (count) and filtered by time and topic."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from infrakit._utils.aio import Broker
from infrakit.rpc.client import SyncClient
from infrakit.spi import event
from infrakit.spi.instance import Spec
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeInstancePlugin
from infrakit.testing.harness import Harness

pytestmark = pytest.mark.timeout(30)


@dataclass
class RememberingPlugin(FakeInstancePlugin):
    """The fake instance plugin, with a broker that remembers (as the group controller's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._broker = Broker(history=event.RECENT_EVENTS)

    def recent(self, topic: str, since: float) -> list[event.Event]:
        return self._broker.recent(topic, since)


@pytest.fixture
async def served() -> AsyncIterator[Harness]:
    async with serve_plugin(RememberingPlugin(), "inst") as h:
        yield h


async def _stream(h: Harness, query: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(h.socket))
    writer.write(f"GET /events?{query} HTTP/1.1\r\nHost: d\r\n\r\n".encode())
    return reader, writer


async def _frame(reader: asyncio.StreamReader) -> bytes:
    size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).strip(), 16)
    return (await asyncio.wait_for(reader.readexactly(size + 2), 5))[:-2]


async def test_since_replays_what_came_before_then_says_so_then_goes_live(
    served: Harness,
) -> None:
    before = [await served.instance.provision(Spec()) for _ in range(2)]
    reader, writer = await _stream(served, "topic=instance/&since=30s")
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert await _frame(reader) == b": subscribed instance/\n\n"
        replayed = [json.loads((await _frame(reader))[len(b"data: ") :]) for _ in before]
        assert [(e["Type"], e["ID"]) for e in replayed] == [("created", i) for i in before]
        assert await _frame(reader) == b": replayed 2\n\n"
        after = await served.instance.provision(Spec())
        live = json.loads((await _frame(reader))[len(b"data: ") :])
        assert (live["Type"], live["ID"]) == ("created", after)
    finally:
        writer.close()


async def test_without_since_the_stream_is_unchanged(served: Harness) -> None:
    await served.instance.provision(Spec())
    reader, writer = await _stream(served, "topic=instance/")
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert await _frame(reader) == b": subscribed instance/\n\n"
        iid = await served.instance.provision(Spec())
        frame = await _frame(reader)
        assert frame.startswith(b"data: "), frame  # no replay, no ": replayed" comment
        assert json.loads(frame[len(b"data: ") :])["ID"] == iid
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("topic=instance/&since=soon", "since='soon': expected a Go duration"),
        ("topic=instance/&since=-5s", "since='-5s': expected a Go duration"),
    ],
)
async def test_a_bad_since_is_one_clear_answer(served: Harness, query: str, words: str) -> None:
    reader, writer = await _stream(served, query)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 400"), head
        body = await asyncio.wait_for(reader.read(4096), 5)
        assert words.encode() in body, body
    finally:
        writer.close()


async def test_a_source_without_memory_refuses_since() -> None:
    async with serve_plugin(FakeInstancePlugin(), "plain") as h:
        reader, writer = await _stream(h, "topic=&since=30s")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 400"), head
            body = await asyncio.wait_for(reader.read(4096), 5)
            assert b"plugin plain keeps no event history; subscribe without since" in body
        finally:
            writer.close()


async def test_the_blocking_client_replays_and_is_told_when_the_replay_is_over(
    served: Harness,
) -> None:
    before = await served.instance.provision(Spec())
    replayed = threading.Event()
    got: list[str] = []
    count: list[int] = []

    def listen() -> None:
        def over(n: int) -> None:
            count.append(n)
            replayed.set()

        with SyncClient("inst", served.socket) as client:
            for ev in client.events("instance/", since="1m", on_replayed=over):
                got.append(ev.id)
                if len(got) == 2:
                    return

    listener = asyncio.ensure_future(asyncio.to_thread(listen))
    assert await asyncio.to_thread(replayed.wait, 5)
    assert got == [before] and count == [1]
    after = await served.instance.provision(Spec())
    await asyncio.wait_for(listener, 5)
    assert got == [before, after]


def test_the_memory_is_bounded_and_filtered_by_time_and_topic() -> None:
    now = [100.0]
    broker: Broker[str] = Broker(history=3, clock=lambda: now[0])
    for i, topic in enumerate(["a/x", "b/y", "a/z", "a/w"]):
        now[0] = 100.0 + i
        broker.publish(topic, f"item{i}")
    assert broker.recent("", 0) == ["item1", "item2", "item3"]  # the oldest fell out
    assert broker.recent("a/", 0) == ["item2", "item3"]
    assert broker.recent("", 102.0) == ["item2", "item3"]
    assert Broker[str]().recent("", 0) == []  # no history asked for: nothing kept
    assert not Broker[str]().keeps_history and broker.keeps_history
