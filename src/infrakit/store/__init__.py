"""Where committed specs and update progress live: a small async key/value contract + backends.

Keys are slash paths (``groups/cattle``, ``updates/cattle``); values are JSON values. The group
controller writes a group's spec *before* acting on a commit and removes it on free/destroy, so a
restarted controller (or a new leader) resumes every group, and every rolling update, where it
stopped.

Backends: :mod:`infrakit.store.file` (default, one readable JSON document, atomic replace with
fsync) and :mod:`infrakit.store.memory` (tests, embedding). An etcd backend arrives with the HA
manager. A store that cannot be read raises :class:`infrakit.errors.StoreError`; callers must
refuse to start rather than treat it as empty.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Store"]


class Store(Protocol):
    """Async key/value store of JSON values."""

    async def get(self, key: str) -> Any | None:
        """The value at ``key``, or None."""

    async def put(self, key: str, value: Any) -> None:
        """Write ``value`` at ``key`` durably before returning."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""

    async def list(self, prefix: str) -> dict[str, Any]:
        """All keys starting with ``prefix`` and their values."""

    def describe(self) -> str:
        """Where this store keeps its data, for status output (``file:/root/.infrakit/...``)."""
