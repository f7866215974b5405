"""The HA manager: serves the Group interface as ``group``, runs the group controller while it
leads, forwards calls to the leader while it follows. See :mod:`infrakit.manager.manager`."""

from infrakit.manager.manager import Manager

__all__ = ["Manager"]
