"""The default store: one human-readable JSON document on local disk.

Format (``~/.infrakit/store.json`` unless configured)::

    {
      "schema": 1,
      "entries": {
        "groups/cattle": {"ID": "cattle", "Properties": {...}},
        "updates/cattle": {...}
      }
    }

Every write replaces the whole file atomically: write a temporary file in the same directory,
fsync it, rename it over the old one, fsync the directory. Readers therefore see the old or the new
document, never half of one, even across a crash.

A file that exists but cannot be parsed, or whose ``schema`` is newer than this code understands,
raises :class:`~infrakit.errors.StoreError` at :meth:`FileStore.load` - it is never overwritten, so
a human can inspect it. The document is cached in memory after the first load; a store is owned by
one process at a time (the HA manager's leader election guarantees that).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from infrakit._utils.private import private_dir, write_private
from infrakit.errors import StoreError

__all__ = ["SCHEMA_VERSION", "FileStore"]

SCHEMA_VERSION = 1


class FileStore:
    def __init__(self, path: Path, *, create_parent: bool = True) -> None:
        self.path = Path(path)
        #: Create the directory on the first write (the default store only; see open_store).
        self.create_parent = create_parent
        self._entries: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return f"file:{self.path}"

    def load(self) -> dict[str, Any]:
        """Read the document (once). Raises StoreError if it is unreadable; never rewrites it."""
        if self._entries is not None:
            return self._entries
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._entries = {}
            return self._entries
        except IsADirectoryError:
            raise StoreError(
                f"store {self.path} is a directory; expected a JSON file - give a file path "
                "with --store (e.g. store.json inside it)"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"store {self.path}: cannot read it ({exc.strerror}); fix its permissions "
                "or point --store elsewhere"
            ) from exc
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise StoreError(
                f"store {self.path}: not valid JSON ({exc}); it was left untouched - repair it "
                "or move it aside, then start again"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
            raise StoreError(
                f'store {self.path}: expected {{"schema": {SCHEMA_VERSION}, "entries": {{...}}}}; '
                "it was left untouched - move it aside to start empty"
            )
        schema = doc.get("schema")
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path}: schema {schema!r} is not supported by this infrakit "
                f"(understands up to {SCHEMA_VERSION}); upgrade infrakit"
            )
        self._entries = doc["entries"]
        return self._entries

    def reload(self) -> dict[str, Any]:
        """Forget the cached document and read it again: a manager taking over leadership calls
        this, since the previous leader (another process sharing the file) wrote it last."""
        self._entries = None
        return self.load()

    def _write(self, entries: dict[str, Any]) -> None:
        if self.create_parent:
            private_dir(self.path.parent)
        elif not self.path.parent.is_dir():
            raise StoreError(
                f"store {self.path}: directory {self.path.parent} does not exist (any more); "
                "create it again or restart with another --store"
            )
        data = json.dumps({"schema": SCHEMA_VERSION, "entries": entries}, indent=2, sort_keys=True)
        write_private(self.path, (data + "\n").encode(), fsync=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def get(self, key: str) -> Any | None:
        return self.load().get(key)

    async def put(self, key: str, value: Any) -> None:
        async with self._lock:
            entries = dict(self.load())
            entries[key] = json.loads(json.dumps(value))  # detach from the caller's object
            await asyncio.to_thread(self._write, entries)
            self._entries = entries

    async def delete(self, key: str) -> None:
        async with self._lock:
            entries = dict(self.load())
            if entries.pop(key, None) is None:
                return
            await asyncio.to_thread(self._write, entries)
            self._entries = entries

    async def list(self, prefix: str) -> dict[str, Any]:
        return {k: v for k, v in self.load().items() if k.startswith(prefix)}
