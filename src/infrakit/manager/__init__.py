"""The HA manager: serves the Group interface as ``group``, runs the group controller while it
leads, forwards calls to the leader while it follows. See :mod:`infrakit.manager.manager`; the
kind is :mod:`infrakit.manager.kind` (light: listing it imports nothing else of the manager)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.manager.manager import Manager

__all__ = ["Manager"]

__getattr__ = lazy_exports(__name__, {"Manager": ".manager"})
