"""Handler tables: how a service turns its SPI objects into wire methods, once for every SPI.

A plugin serves one or more objects of an interface, keyed by type (``""`` is the default
object; ``aws/ec2-instance`` reaches type ``ec2-instance``). Each wire method is one row of a
table: a function ``step(obj, view, era) -> fields`` that reads the request's params (``view``:
case-insensitive, as Go decodes them), calls the object and returns the result's fields. This
module does the rest for every row: find the object the request names (``no-plugin:<type>`` as
InfraKit answers an unknown type) and put ``Type`` in front of the fields (HEAD; SEED results
carry the fields alone).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from infrakit import errors
from infrakit.rpc.server import Handler
from infrakit.spi.types import Era, ci_get, ci_view, want_str

__all__ = ["Step", "object_names", "pick", "typed_handlers"]

P = TypeVar("P")

#: One wire method of a typed service: the object, the request's params, the era -> result fields.
Step = Callable[[P, dict[str, Any], Era], Awaitable[dict[str, Any]]]


def pick(objects: Mapping[str, P], view: dict[str, Any]) -> tuple[str, P]:
    """The object the request's ``Type`` names, and that type."""
    type_ = want_str(ci_get(view, "Type"), "Type")
    found = objects.get(type_)
    if found is None:
        raise errors.NotFoundError(f"no-plugin:{type_}")
    return type_, found


def typed_handlers(
    objects: Mapping[str, P], table: Mapping[str, Step[P]], *, seed_has_type: bool = False
) -> dict[str, Handler]:
    """One handler per row of ``table`` serving ``objects`` keyed by type.

    ``seed_has_type``: results carry ``Type`` in both eras (L4 exists only in HEAD's shape).
    """

    def handler(step: Step[P]) -> Handler:
        async def handle(params: dict[str, Any], era: Era) -> Any:
            view = ci_view(params, "params")
            type_, obj = pick(objects, view)
            fields = await step(obj, view, era)
            if era is Era.SEED and not seed_has_type:
                return fields
            return {"Type": type_, **fields}

        return handle

    return {method: handler(step) for method, step in table.items()}


def object_names(objects: Mapping[str, Any]) -> list[str]:
    """The objects as ``Handshake.Hello`` lists them: ``.`` for the default one, then the types."""
    names = ["."] if "" in objects else []
    return names + sorted(k for k in objects if k)
