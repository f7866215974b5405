"""Serve a plugin on a temporary UNIX socket and talk to it through a real RPC client.

For plugin authors' tests (and ours)::

    async with serve_plugin(MyCloud()) as h:
        iid = await h.instance.provision(spi.instance.Spec(tags={"a": "b"}))
        assert [d.id for d in await h.instance.describe_instances({"a": "b"})] == [iid]

The socket lives in a fresh short directory under /tmp (UNIX socket paths must stay under 107
bytes), which is removed afterwards. ``h.instance`` / ``h.flavor`` / ``h.group`` are the typed
clients for whatever the plugin serves; ``h.client`` is the raw :class:`infrakit.rpc.client.Client`.

:func:`serve_in_memory` gives the same harness without a socket: the client's requests go straight
into the plugin's RPC server (:class:`infrakit.rpc.memory.MemoryTransport`) - the same envelopes,
errors and events, no HTTP, nothing on disk.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrakit.launch.host import PluginHost
from infrakit.launch.serving import detect
from infrakit.rpc.client import Client
from infrakit.rpc.flavor import FlavorClient
from infrakit.rpc.group import GroupClient
from infrakit.rpc.instance import InstanceClient
from infrakit.spi.plugin import Served

__all__ = ["Harness", "serve_in_memory", "serve_plugin", "short_tempdir"]


def short_tempdir(prefix: str = "ik") -> Path:
    """A new directory directly under /tmp, short enough for socket paths."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class Harness:
    #: The host serving the plugin (None in memory: nothing is served on a socket).
    host: PluginHost | None
    name: str
    #: The socket's directory (None in memory).
    directory: Path | None
    client: Client

    @property
    def socket(self) -> Path:
        if self.directory is None:
            raise AttributeError("a harness in memory has no socket")
        return self.directory / self.name

    @property
    def instance(self) -> InstanceClient:
        return InstanceClient(self.client)

    @property
    def flavor(self) -> FlavorClient:
        return FlavorClient(self.client)

    @property
    def group(self) -> GroupClient:
        return GroupClient(self.client)


@contextlib.asynccontextmanager
async def serve_plugin(
    plugin: object | Served,
    name: str = "plugin",
    *,
    directory: Path | None = None,
    **client_options: Any,
) -> AsyncIterator[Harness]:
    """Serve ``plugin`` (a plugin object or a :class:`Served`) and yield a :class:`Harness`."""
    owned = directory is None
    directory = directory or short_tempdir()
    host = PluginHost(directory, home=directory)
    served = plugin if isinstance(plugin, Served) else detect(plugin, name)
    await host.serve(name, served)
    client = Client(name, directory / name, **client_options)
    try:
        yield Harness(host, name, directory, client)
    finally:
        await client.close()
        await host.stop_all()
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def serve_in_memory(
    plugin: object | Served, name: str = "plugin", **client_options: Any
) -> AsyncIterator[Harness]:
    """Like :func:`serve_plugin`, without a socket: ``plugin``'s RPC server is built (not
    started) and the client talks to it through :class:`~infrakit.rpc.memory.MemoryTransport`."""
    from infrakit.launch.host import services_for
    from infrakit.rpc.memory import MemoryTransport
    from infrakit.rpc.server import PluginServer

    served = plugin if isinstance(plugin, Served) else detect(plugin, name)
    server = PluginServer(name, services_for(name, served).services, events=served.events)
    client = Client(name, f"memory/{name}", transport=MemoryTransport(server), **client_options)
    if served.start is not None:
        await served.start()
    try:
        yield Harness(None, name, None, client)
    finally:
        await client.close()
        if served.stop is not None:
            await served.stop()
