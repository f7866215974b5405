"""Where committed specs and update progress live: a small async key/value contract + backends.

Keys are slash paths (``groups/cattle``, ``updates/cattle``); values are JSON values. The group
controller writes a group's spec *before* acting on a commit and removes it on free/destroy, so a
restarted controller (or a new leader) resumes every group, and every rolling update, where it
stopped.

Backends: :mod:`infrakit.store.file` (default, one readable JSON document, atomic replace with
fsync) and :mod:`infrakit.store.memory` (tests, embedding); :func:`open_store` picks one from a
URL. A store that cannot be read raises :class:`infrakit.errors.StoreError`; callers must
refuse to start rather than treat it as empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from infrakit import errors

__all__ = ["Store", "open_store"]


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


def open_store(
    url: str | None, home: Path, fence: Any = None, next_step: str = "choose another --store"
) -> Store:
    """The store a URL names: ``memory``, ``etcd://host:port[/prefix]``, or a file path
    (``file:PATH`` too; default ``<home>/store.json``). A file store is loaded here, so an
    unreadable one stops the caller with :class:`~infrakit.errors.StoreError` - never wiped.
    Only the default store's directory is created; an explicit path whose directory does not
    exist is a :class:`~infrakit.errors.SpecError` ending in ``next_step`` (a kind passes its
    option as the user gave it: ``pass another -o group.store=VALUE``)."""
    text = "" if url is None else str(url)
    if text == "memory":
        from infrakit.store.memory import MemoryStore

        return MemoryStore()
    if text.startswith("etcd://"):
        try:
            from infrakit.store.etcd import EtcdStore
        except ImportError as exc:
            raise errors.SpecError(
                f"store {text}: the etcd client is not installed ({exc.name}); "
                f"install it with: pip install 'pyinfrakit[etcd]'"
            ) from None
        store: Store = EtcdStore.from_url(text, fence=fence)
        return store
    if "://" in text:
        raise errors.SpecError(
            f"store {text!r}: expected a file path, 'memory' or etcd://HOST:PORT[/prefix]"
        )
    from infrakit.store.file import FileStore

    path = Path(text.removeprefix("file:")).expanduser() if text else home / "store.json"
    # Only the default store (directly under INFRAKIT_HOME) may create its directory: a typo in
    # an explicit path must not silently create directories somewhere else.
    default = not text or path.parent == home
    if not default:
        _check_directory(text, path.parent, next_step)
    file_store = FileStore(path, create_parent=default)
    file_store.load()
    return file_store


def _check_directory(text: str, directory: Path, next_step: str) -> None:
    if directory.is_dir():
        return
    problem = "is not a directory" if directory.exists() else "does not exist"
    raise errors.SpecError(
        f"store {text}: directory {directory} {problem}; create it or {next_step}"
    )
