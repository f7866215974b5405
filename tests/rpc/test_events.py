"""``GET /events?topic=T``: Server-Sent Events from a plugin, ``: subscribed`` first, then one
``data:`` frame per event on a matching topic (``a/`` = a and everything under it, ``a/b`` = only
that topic, ``""`` = all)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infrakit import errors
from infrakit.rpc.client import SyncClient
from infrakit.spi.event import Event
from infrakit.spi.instance import Context, Spec
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin
from infrakit.testing.harness import Harness

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def served() -> AsyncIterator[Harness]:
    async with serve_plugin(FakeInstancePlugin(), "inst") as h:
        yield h


async def test_the_stream_on_the_wire(served: Harness) -> None:
    reader, writer = await asyncio.open_unix_connection(str(served.socket))
    try:
        writer.write(b"GET /events?topic=instance/ HTTP/1.1\r\nHost: d\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Type: text/event-stream" in head

        async def frame() -> bytes:
            """The next SSE frame, taken out of its HTTP chunk."""
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            return data[:-2]

        assert await asyncio.wait_for(frame(), 5) == b": subscribed instance/\n\n"
        iid = await served.instance.provision(Spec(tags={"a": "1"}))
        data = await asyncio.wait_for(frame(), 5)
        assert data.startswith(b"data: ") and data.endswith(b"\n\n")
        event = json.loads(data[len(b"data: ") :])
        assert list(event)[:3] == ["Topic", "Type", "ID"]
        assert (event["Topic"], event["Type"], event["ID"]) == ("instance/change", "created", iid)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("topic", "receives"),
    [
        ("instance/", True),
        ("instance/change", True),
        ("instance/change/", True),
        ("", True),
        ("/", True),
        ("instance", False),  # no slash: that exact topic only
        ("instance/chan", False),
        ("group/", False),
    ],
)
async def test_topic_filtering(served: Harness, topic: str, receives: bool) -> None:
    events = served.client.subscribe(topic)
    everything = served.client.subscribe("")
    try:
        assert (await asyncio.wait_for(anext(events), 5)).type == "subscribed"
        assert (await asyncio.wait_for(anext(everything), 5)).type == "subscribed"
        iid = await served.instance.provision(Spec())
        # The catch-all sees the event: by then the filtered stream has had it too, if it matches.
        assert (await asyncio.wait_for(anext(everything), 5)).id == iid
        await served.instance.destroy(iid, Context())
        assert (await asyncio.wait_for(anext(everything), 5)).type == "deleted"
        if receives:
            got = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
            assert [(e.topic, e.type, e.id) for e in got] == [
                ("instance/change", "created", iid),
                ("instance/change", "deleted", iid),
            ]
        else:
            # Stop the plugin: its streams end, and whatever was sent on this one is all there is.
            await served.host.stop_all()
            leftovers = []
            with contextlib.suppress(errors.PluginUnreachableError):
                async for event in events:
                    leftovers.append(event)
            assert leftovers == []
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await everything.aclose()  # type: ignore[attr-defined]


async def test_the_blocking_client_streams_after_it_is_told_subscribed(served: Harness) -> None:
    subscribed = threading.Event()
    got: list[Event] = []

    def listen() -> None:
        with SyncClient("inst", served.socket) as client:
            for event in client.events("instance/", on_subscribed=subscribed.set):
                got.append(event)
                if len(got) == 2:
                    return

    listener = asyncio.ensure_future(asyncio.to_thread(listen))
    assert await asyncio.to_thread(subscribed.wait, 5)
    first = await served.instance.provision(Spec())
    second = await served.instance.provision(Spec())
    await asyncio.wait_for(listener, 5)
    assert [e.id for e in got] == [first, second]


async def test_a_plugin_without_events_says_so() -> None:
    async with serve_plugin(FakeFlavorPlugin(), "flav") as h:
        reader, writer = await asyncio.open_unix_connection(str(h.socket))
        writer.write(b"GET /events?topic=x HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404")
        assert "publishes no events" in json.loads(body)["error"]
        stream: Any = h.client.subscribe("x")
        with pytest.raises(errors.NotFoundError, match="publishes no events"):
            await anext(stream)
