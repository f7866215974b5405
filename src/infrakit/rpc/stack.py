"""Stack SPI over RPC (``Stack/0.1.1``, served as InfraKit HEAD's ``Manager`` service): the
server-side handlers. One object per socket (the handshake lists it as ``.``); requests carry no
``Name``.

Wire methods (shapes in :mod:`infrakit.spi.stack`)::

    Manager.IsLeader        {}          -> {"Leader":bool}
    Manager.LeaderLocation  {}          -> {"Location":<url.URL>}
    Manager.Enforce         {"Specs"}   -> {}
    Manager.Specs           {}          -> {"Specs":[types.Spec]}
    Manager.Inspect         {}          -> {"Objects":[types.Object]}
    Manager.Terminate       {"Specs"}   -> {}

``Manager.Status`` (infrakit's) stays a Group extension (:mod:`infrakit.rpc.group`).

:data:`HANDLERS` is the method table (``handler(stack, params, era)``); :func:`service` binds it
to the served object.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from infrakit.rpc.server import Handler, Service
from infrakit.spi import stack
from infrakit.spi.types import Era, ci_get, ci_view

__all__ = ["HANDLERS", "service"]


async def is_leader(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    ci_view(params, "params")
    return {"Leader": bool(await obj.is_leader())}


async def leader_location(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    ci_view(params, "params")
    return {"Location": stack.url_to_wire(await obj.leader_location())}


async def enforce(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    specs = stack.group_specs_from_wire(
        ci_get(ci_view(params, "params"), "Specs"), "Manager.Enforce"
    )
    await obj.enforce(specs)
    return {}


async def specs(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    ci_view(params, "params")
    return {"Specs": [stack.spec_to_wire(s) for s in await obj.specs()]}


async def inspect(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    ci_view(params, "params")
    return {"Objects": [stack.object_to_wire(o) for o in await obj.inspect()]}


async def terminate(obj: stack.Plugin, params: dict[str, Any], era: Era) -> Any:
    specs = stack.group_specs_from_wire(
        ci_get(ci_view(params, "params"), "Specs"), "Manager.Terminate"
    )
    await obj.terminate(specs)
    return {}


#: Wire method -> handler taking the served stack object first.
HANDLERS: dict[str, Callable[[stack.Plugin, dict[str, Any], Era], Awaitable[Any]]] = {
    "Manager.Enforce": enforce,
    "Manager.Inspect": inspect,
    "Manager.IsLeader": is_leader,
    "Manager.LeaderLocation": leader_location,
    "Manager.Specs": specs,
    "Manager.Terminate": terminate,
}

#: Zero-value requests and results for ``/info/api.json``, as Go prints its request types.
_EXAMPLES: dict[str, Any] = {m: {} for m in HANDLERS} | {
    "Manager.Enforce": {"Specs": None},
    "Manager.Terminate": {"Specs": None},
}
_RESULTS: dict[str, Any] = {
    "Manager.Enforce": {},
    "Manager.Inspect": {"Objects": None},
    "Manager.IsLeader": {"Leader": False},
    "Manager.LeaderLocation": {"Location": None},
    "Manager.Specs": {"Specs": None},
    "Manager.Terminate": {},
}


def service(obj: stack.Plugin) -> Service:
    """Serve one stack object (:class:`infrakit.spi.stack.Plugin`)."""
    handlers: dict[str, Handler] = {
        method: functools.partial(fn, obj) for method, fn in HANDLERS.items()
    }
    return Service(stack.INTERFACE, handlers, ["."], dict(_EXAMPLES), results=dict(_RESULTS))
