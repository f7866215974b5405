"""A real :class:`~infrakit.launch.host.PluginHost` on its own event loop in a background thread.

For tests of blocking callers - the CLI's ``SyncClient``, ``stack.stop_plugin`` - that talk to
plugins over real sockets in the test's plugin directory without starting a process::

    with ThreadedHost(plugin_dir, home) as host:
        host.start_kind("vanilla", "flavor-vanilla")
        CliRunner().invoke(cli, ["plugin", "ls"])
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from infrakit.launch import registry
from infrakit.launch.host import PluginHost, Running
from infrakit.spi.plugin import Served

T = TypeVar("T")

#: Seconds any one step on the host's loop may take before the test fails.
STEP_TIMEOUT = 30.0
#: Loop iterations given to connections still closing when the host stops.
SETTLE_ITERATIONS = 10


class ThreadedHost:
    def __init__(self, plugin_dir: Path, home: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.host: PluginHost = self.call(self._make(plugin_dir, home))

    @staticmethod
    async def _make(plugin_dir: Path, home: Path) -> PluginHost:
        return PluginHost(plugin_dir, home=home)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the host's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(STEP_TIMEOUT)

    def start_kind(
        self, kind: str, name: str, options: Mapping[str, object] | None = None
    ) -> Running:
        return self.call(self.host.start_kind(registry.get_kind(kind), name, options))

    def serve(self, name: str, served: Served) -> Running:
        return self.call(self.host.serve(name, served))

    async def _shutdown(self) -> None:
        """What ``asyncio.run`` does at the end: stop the plugins, then cancel and await whatever
        still runs, so every connection's transport is closed before the loop is."""
        await self.host.stop_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # A connection accepted as its listener closed (a probe, a last request) still sees its
        # EOF and closes its transport: a few loop iterations, no wall-clock wait.
        for _ in range(SETTLE_ITERATIONS):
            await asyncio.sleep(0)
        await self.loop.shutdown_asyncgens()

    def close(self) -> None:
        try:
            self.call(self._shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STEP_TIMEOUT)
            self.loop.close()
            gc.collect()  # anything left unclosed warns now, in the test that used this host

    def __enter__(self) -> ThreadedHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
