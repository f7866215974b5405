"""A field-by-field diff of two JSON values (the committed spec and a new one), as
``kubectl diff`` and ``terraform plan`` show changes: ``+`` added, ``-`` removed, ``~`` changed,
one line per leaf, paths written ``Properties.Allocation.Size`` and ``Init[2]``.

Maps are compared key by key (in the new value's order, removed keys after), lists item by item
(so an appended Init line is one ``+``), anything else by equality. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "diff", "format_changes"]


@dataclass(frozen=True)
class Change:
    """One leaf that differs: ``op`` is ``+``, ``-`` or ``~``."""

    op: str
    path: tuple[str | int, ...]
    old: Any = None
    new: Any = None

    @property
    def dotted(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Op": self.op, "Path": self.dotted}
        if self.op != "+":
            doc["Old"] = self.old
        if self.op != "-":
            doc["New"] = self.new
        return doc


def diff(old: Any, new: Any, path: tuple[str | int, ...] = ()) -> list[Change]:
    """Every leaf that differs between ``old`` and ``new``."""
    return list(_walk(old, new, path))


_ABSENT = object()


def _walk(old: Any, new: Any, path: tuple[str | int, ...]) -> Iterator[Change]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in new.items():
            yield from _walk(old.get(key, _ABSENT), value, (*path, key))
        for key, value in old.items():
            if key not in new:
                yield from _walk(value, _ABSENT, (*path, key))
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            yield from _walk(
                old[i] if i < len(old) else _ABSENT, new[i] if i < len(new) else _ABSENT, (*path, i)
            )
    elif old is _ABSENT:
        if isinstance(new, dict | list) and new:  # every leaf of an added map or list
            yield from _walk(type(new)(), new, path)
        elif new is not _ABSENT:
            yield Change("+", path, new=new)
    elif new is _ABSENT:
        if isinstance(old, dict | list) and old:
            yield from _walk(old, type(old)(), path)
        else:
            yield Change("-", path, old=old)
    elif old != new or type(old) is not type(new):
        yield Change("~", path, old, new)


def _show(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= 200 else text[:197] + "..."


_COLOURS = {"+": "green", "-": "red", "~": "yellow"}


def format_changes(
    changes: list[Change], colour: Callable[[str, str], str] | None = None
) -> list[str]:
    """The changes as ``  ~ PATH: OLD -> NEW`` lines; ``colour(text, name)`` paints a line
    (the CLI passes one for a terminal only)."""
    lines = []
    for c in changes:
        if c.op == "+":
            text = f"  + {c.dotted}: {_show(c.new)}"
        elif c.op == "-":
            text = f"  - {c.dotted}: {_show(c.old)}"
        else:
            text = f"  ~ {c.dotted}: {_show(c.old)} -> {_show(c.new)}"
        if colour is not None:
            text = colour(text, _COLOURS[c.op])
        lines.append(text)
    return lines
