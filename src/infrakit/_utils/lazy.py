"""Names a package exports without importing them until first use (PEP 562 ``__getattr__``).

A plugin package exports its kind and its plugin class, but listing kinds must not import the
plugin (nor its SDK)::

    __getattr__ = lazy_exports(__name__, {"KIND": ".kind", "FileInstancePlugin": ".plugin"})

(with the same names imported under ``TYPE_CHECKING`` for type checkers).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from ``where[name]`` (a
    module relative to ``package``) on first use, then kept in the package's namespace."""

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
