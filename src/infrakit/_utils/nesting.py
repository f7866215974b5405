"""How deeply JSON may nest: one limit for spec files, request bodies and the specs a controller
parses, checked before anything recurses over a document.

Real specs nest a dozen levels. Without a limit a spec nested a few hundred levels deep raised
``RecursionError`` deep inside the config hash, and a file nested thousands of levels deep crashed
the CLI's JSON reader with a traceback. :data:`MAX_DEPTH` leaves every recursive walk in infrakit
(the config hash takes two Python frames per level) far from Python's recursion limit.

Depth counts containers: ``1`` and ``"a"`` have depth 0, ``[]`` and ``{}`` depth 1, ``{"a": [1]}``
depth 2.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "deeper_than", "may_be_deeper_than"]

#: The deepest nesting of JSON arrays and objects a spec (or any document) may have.
MAX_DEPTH = 256


def deeper_than(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """True if ``doc`` (decoded JSON: dicts, lists, scalars) nests deeper than ``limit``.

    Iterative, so it never hits the recursion limit itself; it stops at the first container
    found below the limit.
    """
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return False


def may_be_deeper_than(data: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """A quick test on raw JSON text: False when it cannot nest deeper than ``limit`` because it
    holds fewer opening brackets than that (so typical bodies are never walked)."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > limit
    return data.count(b"[") + data.count(b"{") > limit
