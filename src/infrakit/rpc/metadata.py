"""Metadata SPI over RPC (``Metadata/0.1.1``, InfraKit HEAD's shapes): the server-side handlers.

Wire methods (``Name`` addresses the object as for groups, :func:`infrakit.rpc.group.resolve_name`)::

    Metadata.Keys   {"Name","Path"}   ->  {"Name","Nodes":[...sorted...]}
    Metadata.Get    {"Name","Path"}   ->  {"Name","Value":<any>}

A path that leads nowhere answers ``"Nodes":[]`` / ``"Value":null``, not an error (HEAD's). The
tree is read-only: HEAD's ``Updatable`` methods (Changes, Commit) are not served.

:data:`HANDLERS` is the method table (``handler(objects, params, era)``); :func:`service` binds it
to the served objects.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from infrakit.rpc.group import resolve_name
from infrakit.rpc.server import Handler, Service
from infrakit.spi import metadata
from infrakit.spi.types import Era, ci_get, ci_view, want_str

__all__ = ["HANDLERS", "service"]


def _target(objects: dict[str, Any], params: dict[str, Any]) -> tuple[str, Any, metadata.Path]:
    view = ci_view(params, "params")
    name = want_str(ci_get(view, "Name"), "Name")
    return name, resolve_name(objects, name), metadata.path_from_wire(ci_get(view, "Path"))


async def keys(objects: dict[str, Any], params: dict[str, Any], era: Era) -> Any:
    name, obj, path = _target(objects, params)
    return {"Name": name, "Nodes": sorted(await obj.keys(path))}


async def get(objects: dict[str, Any], params: dict[str, Any], era: Era) -> Any:
    name, obj, path = _target(objects, params)
    return {"Name": name, "Value": await obj.get(path)}


#: Wire method -> handler taking the served objects first.
HANDLERS: dict[str, Callable[[dict[str, Any], dict[str, Any], Era], Awaitable[Any]]] = {
    "Metadata.Get": get,
    "Metadata.Keys": keys,
}


def service(objects: dict[str, Any]) -> Service:
    """Serve metadata objects (implementing :class:`infrakit.spi.metadata.Plugin`) keyed by name."""
    handlers: dict[str, Handler] = {
        method: functools.partial(fn, objects) for method, fn in HANDLERS.items()
    }
    examples = {m: {"Name": "", "Path": "."} for m in HANDLERS}
    results: dict[str, Any] = {
        "Metadata.Get": {"Name": "", "Value": None},
        "Metadata.Keys": {"Name": "", "Nodes": None},
    }
    return Service(metadata.INTERFACE, handlers, sorted(objects), examples, results=results)
