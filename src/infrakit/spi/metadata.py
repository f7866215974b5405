"""The Metadata SPI (InfraKit HEAD's ``Metadata/0.1.1``): a read-only tree of values a plugin
publishes, addressed by slash paths.

``Keys(path)`` lists the children of the node at ``path`` (object keys, or ``[0]``, ``[1]`` ...
for an array), ``Get(path)`` returns its value. Paths follow InfraKit's ``types.Path``: ``/``
separated, ``.`` or empty is the root, ``..`` goes up, empty components are dropped, ``name[2]``
is element 2 of array ``name`` (``[-1]`` the last), ``[Key=value]`` the first element whose
``Key`` is ``value``. A path that leads nowhere is not an error: ``Keys`` answers ``[]`` and
``Get`` ``null``, as HEAD does.

Wire (``Name`` addresses the object, as for groups)::

    Metadata.Keys  {"Name","Path":"a/b"}  ->  {"Name","Nodes":["c","d"]}     (sorted)
    Metadata.Get   {"Name","Path":"a/b"}  ->  {"Name","Value":<any JSON>}

This module is pure: path parsing and navigation over decoded JSON, no I/O.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from infrakit.errors import SpecError
from infrakit.spi.types import JSON, InterfaceSpec

__all__ = [
    "INTERFACE",
    "Path",
    "Plugin",
    "keys_of",
    "path_from_string",
    "path_from_wire",
    "path_to_string",
    "split_indexes",
    "value_at",
]

INTERFACE = InterfaceSpec("Metadata", "0.1.1")

#: A cleaned path: its components, root = ``()``.
Path = tuple[str, ...]

#: ``name[index]``: an element of the array ``name`` in one component.
_NAMED_INDEX = re.compile(r"^(.+)(\[(?:[+-]?[0-9]+|.*=.*)\])$")
#: ``[index]`` or ``[Key=value]``.
_INDEX = re.compile(r"^\[(?:(?P<n>[+-]?[0-9]+)|(?P<lhs>.*)=(?P<rhs>.*))\]$")


@runtime_checkable
class Plugin(Protocol):
    """A read-only metadata tree."""

    async def keys(self, path: Path) -> list[str]:
        """The children of the node at ``path`` (``[]`` when there is none)."""

    async def get(self, path: Path) -> JSON:
        """The value at ``path`` (``None`` when there is none)."""


def path_from_string(text: str) -> Path:
    """InfraKit's ``PathFromString`` + ``Clean``: ``"specs/cattle"`` -> ``("specs", "cattle")``;
    ``"."``, ``""`` and ``"/"`` -> ``()``; ``"a/../b"`` -> ``("b",)``."""
    out: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and out and out[-1] != "..":
            out.pop()
            continue
        out.append(part)
    return tuple(out)


def path_from_wire(value: JSON, what: str = "Path") -> Path:
    """A request's ``Path``: a string (Go trims quotes and blanks around it); null is the root."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise SpecError(f'{what}: expected a slash path string like "specs/cattle", got {value!r}')
    return path_from_string(value.strip(" \"\\'\t\n"))


def path_to_string(path: Path) -> str:
    """Go's ``Path.String``: components joined by ``/``, the root as ``.``."""
    return "/".join(path) or "."


def split_indexes(path: Path) -> Path:
    """``("groups", "Instances[0]")`` -> ``("groups", "Instances", "[0]")``."""
    out: list[str] = []
    for part in path:
        match = _NAMED_INDEX.match(part)
        if match:
            out.extend(match.groups())
        else:
            out.append(part)
    return tuple(out)


def value_at(tree: JSON, path: Path) -> JSON:
    """The value at ``path`` in ``tree`` (decoded JSON); ``None`` when the path leads nowhere."""
    node = tree
    for key in split_indexes(path):
        if isinstance(node, dict):
            if key not in node:
                return None
            node = node[key]
        elif isinstance(node, list):
            node = _element(node, key)
        else:
            return None
        if node is None:
            return None
    return node


def keys_of(value: JSON) -> list[str]:
    """The child names of ``value``, sorted as Go sorts strings: object keys, ``[i]`` for array
    elements, none for a scalar."""
    if isinstance(value, dict):
        return sorted(value)
    if isinstance(value, list):
        return sorted(f"[{i}]" for i in range(len(value)))
    return []


def _element(items: list[JSON], key: str) -> JSON:
    match = _INDEX.match(key)
    if match is None:
        return None
    if match["n"] is not None:
        index = int(match["n"])
        if -len(items) <= index < len(items):
            return items[index]
        return None
    lhs, rhs = match["lhs"], match["rhs"]
    for item in items:
        found = value_at(item, path_from_string(lhs))
        if found is not None and _go_text(found) == rhs:
            return item
    return None


def _go_text(value: JSON) -> str:
    """How Go's ``%v`` prints a decoded JSON scalar (numbers decode to float64)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)
