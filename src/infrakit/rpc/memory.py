"""An in-memory transport: a :class:`~infrakit.rpc.client.Client` talking to a
:class:`~infrakit.rpc.server.PluginServer` of the same process, without a socket.

The request bytes go through the server's own decoding and dispatch
(:meth:`PluginServer.dispatch_bytes`) and the reply bytes back through the client's decoding, so
the envelopes of both eras, the handshake, errors (the same classes and lines as over a socket)
and the event stream (the server's :meth:`PluginServer.open_events` frames) are exactly what a
socket carries. What it leaves out is HTTP itself: no token proofs (there is no TCP peer to
verify), no body limits, no connection handling. Tests of the manager, the CLI's library calls
and a plugin author's code use it::

    server = PluginServer("instance-file", [rpc_instance.service({"": plugin})])
    client = Client("instance-file", "memory", transport=MemoryTransport(server))
    ids = await InstanceClient(client).describe_instances({})

:class:`LoopMemoryTransport` does the same for the blocking :class:`~infrakit.rpc.sync.SyncClient`
(the CLI's), with the server on an event loop running in another thread of this process::

    client = SyncClient("cloud", "memory", transport=LoopMemoryTransport.to(server, loop))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infrakit.rpc import codec
from infrakit.rpc.core import AsyncStream, ClientCore
from infrakit.rpc.server import PluginServer
from infrakit.spi.types import Era

__all__ = ["LoopMemoryTransport", "MemoryTransport"]

#: Path -> era, as the server routes them (``/`` HEAD, ``/rpc`` SEED).
_ERAS = {"/": Era.HEAD, "/rpc": Era.SEED}


class MemoryTransport:
    """Moves a client's requests straight into ``server`` (which need not be started)."""

    def __init__(self, server: PluginServer) -> None:
        self.server = server

    async def post(
        self,
        core: ClientCore,
        path: str,
        data: bytes,
        headers: dict[str, str],
        method: str,
        timeout: float,
    ) -> tuple[int, bytes, Any]:
        era = _ERAS.get(path)
        if era is None:
            return 404, b"", None  # no other POST route is served in memory
        try:
            async with asyncio.timeout(timeout):
                status, doc = await self.server.dispatch_bytes(data, era)
        except TimeoutError as exc:
            raise core.timeout(method, timeout, "answer") from exc
        return status, (b"" if doc is None else codec.dumps(doc)), None

    async def open_stream(
        self, core: ClientCore, path: str, headers: dict[str, str]
    ) -> AsyncStream:
        query = parse_qs(urlsplit(path).query)
        topic = (query.get("topic") or [""])[0]
        since = query["since"][0] if query.get("since") else None
        opened = self.server.open_events(topic, since)
        if isinstance(opened, tuple):
            status, doc = opened
            return _MemoryStream(status, "application/json", None, codec.dumps(doc))
        return _MemoryStream(200, "text/event-stream", opened, b"")

    async def close(self) -> None:
        return None


class _MemoryStream:
    """The server's frames handed over as they come."""

    def __init__(
        self,
        status: int,
        content_type: str,
        frames: AsyncGenerator[bytes, None] | None,
        body: bytes,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self._frames = frames
        self._body = body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self._frames is None:
            yield self._body
            return
        async for frame in self._frames:
            yield frame

    async def read(self) -> bytes:
        return self._body

    async def aclose(self) -> None:
        if self._frames is not None:
            frames, self._frames = self._frames, None
            await frames.aclose()


class LoopMemoryTransport:
    """A :class:`MemoryTransport` for a blocking client: each request runs on ``loop`` (an event
    loop serving ``server`` in another thread) and the calling thread waits for it."""

    def __init__(self, core: ClientCore, server: PluginServer, loop: asyncio.AbstractEventLoop):
        self.core = core
        self.peer: Any = None
        self._loop = loop
        self._memory = MemoryTransport(server)
        self._stream: AsyncStream | None = None

    @classmethod
    def to(
        cls, server: PluginServer, loop: asyncio.AbstractEventLoop
    ) -> Callable[[ClientCore], LoopMemoryTransport]:
        """The ``transport=`` argument of a SyncClient reaching ``server`` on ``loop``."""
        return lambda core: cls(core, server, loop)

    def _run(self, coroutine: Any, seconds: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(seconds)

    def exchange(
        self,
        http_method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        method: str,
        seconds: float,
    ) -> tuple[int, dict[str, str], bytes]:
        if http_method != "POST":
            return 404, {}, b""
        post = self._memory.post(self.core, path, body or b"", headers, method, seconds)
        status, reply, _ = self._run(post, None)
        return status, {"content-type": "application/json"}, reply

    def open_stream(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        self.close()
        stream = self._run(self._memory.open_stream(self.core, path, headers), None)
        self._stream = stream
        return stream.status, {"content-type": stream.content_type}

    def stream_chunks(self, headers: dict[str, str]) -> Iterator[bytes]:
        stream = self._stream
        if stream is None:
            return
        chunks = stream.chunks()
        try:
            while (chunk := self._run(_next_or_none(chunks), None)) is not None:
                yield chunk
        finally:
            if not self._loop.is_closed():
                self._run(_aclose(chunks), 5.0)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and not self._loop.is_closed():
            self._run(stream.aclose(), 5.0)


async def _next_or_none(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next chunk, or None at the end (an exception cannot end a loop across threads)."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _aclose(chunks: AsyncGenerator[bytes, None]) -> None:
    """``chunks.aclose()`` as a coroutine (what ``run_coroutine_threadsafe`` takes)."""
    await chunks.aclose()
