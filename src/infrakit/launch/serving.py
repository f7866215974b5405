"""``infrakit.serve(plugin, name=...)``: the one call a plugin author needs.

It recognises what ``plugin`` is by its methods (``provision`` -> instance, ``prepare`` -> flavor,
``commit_group`` -> group, ``register_backends`` -> L4 load balancer; ``subscribe`` + ``topics`` -> it also publishes events; ``async def
start()`` / ``async def stop()`` -> called after the socket is up / before it goes), serves it on
``<plugin dir>/<name>`` and blocks until SIGINT/SIGTERM, then removes the socket. Sync and async
methods both work (sync ones run in a worker thread).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path

from infrakit import errors
from infrakit._utils.aio import is_async_callable
from infrakit.spi.adapt import event_source_of
from infrakit.spi.plugin import Served

__all__ = ["detect", "run", "serve", "serve_async"]


def detect(plugin: object, name: str) -> Served:
    """Wrap a bare plugin object in :class:`Served` according to the methods it has."""
    served = Served(events=event_source_of(plugin))
    for hook in ("start", "stop"):
        fn = getattr(plugin, hook, None)
        if callable(fn) and is_async_callable(fn):
            setattr(served, hook, fn)
    if callable(getattr(plugin, "provision", None)):
        served.instance[""] = plugin
    elif callable(getattr(plugin, "prepare", None)):
        served.flavor[""] = plugin
    elif callable(getattr(plugin, "commit_group", None)):
        served.group["."] = plugin
    elif callable(getattr(plugin, "register_backends", None)):
        served.loadbalancer[""] = plugin
    else:
        raise errors.SpecError(
            f"plugin {name}: {type(plugin).__name__} is neither an instance plugin "
            "(provision, destroy, describe_instances, validate), a flavor (prepare, validate), "
            "a group (commit_group ...) nor an L4 load balancer (register_backends ...); see "
            "docs/writing-a-plugin.md"
        )
    return served


async def serve_async(plugin: object, name: str, *, plugin_dir: Path | None = None) -> None:
    """Serve ``plugin`` as ``name`` until SIGINT/SIGTERM (async form of :func:`serve`)."""
    from infrakit.launch.host import PluginHost

    host = PluginHost(plugin_dir)
    await host.serve(name, detect(plugin, name))
    await host.run_until_stopped()


def run(main: Coroutine[object, object, None]) -> None:
    """Run a coroutine on uvloop when installed, else on asyncio's loop.

    Once it has ended (every plugin stopped, its socket removed), every object still alive is
    moved out of the garbage collector's sight (``gc.freeze``): the interpreter's exit would
    otherwise walk them all - tens of thousands, more with boto3 loaded - which kept a stopped
    plugin's process alive 0.2-1.1 s after its last log line (0.05 s with the freeze), while
    systemd and scripts wait on the PID.
    """
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)
    finally:
        gc.freeze()


def serve(plugin: object, name: str, *, plugin_dir: str | Path | None = None) -> None:
    """Serve ``plugin`` on a UNIX socket named ``name`` in the plugin directory; blocks.

    A plugin that cannot start - the name is taken by a running plugin, the socket path is too
    long, ``plugin`` is no plugin - ends the process with one ``Error:`` line on stderr naming
    the socket and the next step, and exit status 1: no traceback for the plugin's user.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(serve_async(plugin, name, plugin_dir=Path(plugin_dir) if plugin_dir else None))
    except errors.InfrakitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
