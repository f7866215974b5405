"""The default store: a JSON snapshot on local disk plus a journal of the writes since.

Files (``~/.infrakit/store.json`` unless configured)::

    store.json            {"schema": 1, "entries": {"groups/cattle": {...}, "updates/cattle": {...}}}
    store.json.journal    one JSON object per line: {"put": KEY, "value": ...} or {"delete": KEY}

The state is the snapshot with the journal replayed over it. A write appends one line to the
journal and ``fsync``s it before returning, so it costs the same with one group or a thousand:
the snapshot is rewritten (compacted) only when the journal holds more lines than there are
entries (and at least ``COMPACT_AFTER``), atomically - temporary file, ``fsync``, rename over the
old one, ``fsync`` of the directory - and then the journal starts again empty.

Durability: when ``put`` or ``delete`` returns, the change is on disk (``fsync`` of the journal;
the directory is ``fsync``ed when the journal is created). Writes that arrive while one is being
flushed are appended and flushed together (one ``fsync`` for all of them), each caller still
returning only once its own line is durable. A crash while appending leaves at most a torn last
line, which the next load ignores (and the next write cuts off); anything else that does not
parse - in the snapshot or in the middle of the journal - raises
:class:`~infrakit.errors.StoreError` and is never overwritten, so a human can inspect it. Read the
state with ``infrakit manager specs`` (or :meth:`FileStore.load`), not by reading ``store.json``
alone.

The state is cached in memory after the first load; a store is written by one process at a time
(the HA manager's leader election guarantees that; a new leader calls :meth:`FileStore.reload`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from infrakit._utils.private import FILE_MODE, private_dir, write_private
from infrakit.errors import StoreError

__all__ = ["COMPACT_AFTER", "SCHEMA_VERSION", "FileStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: The journal is compacted into the snapshot once it holds this many lines (or more lines
#: than the store has entries, if that is more).
COMPACT_AFTER = 1000


class FileStore:
    """The file store of one path (see the module docstring)."""

    def __init__(self, path: Path, *, create_parent: bool = True) -> None:
        self.path = Path(path)
        self.journal = self.path.with_name(self.path.name + ".journal")
        #: Create the directory on the first write (the default store only; see open_store).
        self.create_parent = create_parent
        self._entries: dict[str, Any] | None = None
        #: Lines in the journal now, and the byte offset after the last whole one.
        self._journal_lines = 0
        self._journal_end = 0
        #: Writes waiting for the flush in progress (group commit): line, change, done; and
        #: the task flushing them.
        self._queued: list[tuple[bytes, dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Future[None] | None = None

    def describe(self) -> str:
        return f"file:{self.path}"

    # --- reading -------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Read the snapshot and replay the journal (once). Raises StoreError if either is
        unreadable; never rewrites them."""
        if self._entries is not None:
            return self._entries
        entries = self._read_snapshot()
        self._replay(entries)
        self._entries = entries
        return entries

    def reload(self) -> dict[str, Any]:
        """Forget the cached state and read it again: a manager taking over leadership calls
        this, since the previous leader (another process sharing the file) wrote it last."""
        self._entries = None
        return self.load()

    def _read_snapshot(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
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
        entries: dict[str, Any] = doc["entries"]
        return entries

    def _replay(self, entries: dict[str, Any]) -> None:
        """Apply the journal's lines to ``entries``; a torn last line (a crash mid-append) is
        ignored, any other bad line is an error."""
        try:
            raw = self.journal.read_bytes()
        except FileNotFoundError:
            self._journal_lines = self._journal_end = 0
            return
        except OSError as exc:
            raise StoreError(
                f"store {self.journal}: cannot read it ({exc.strerror}); fix its permissions"
            ) from exc
        lines = raw.split(b"\n")
        whole, torn = lines[:-1], lines[-1]  # the part after the last newline: torn if any
        offset = 0
        for number, line in enumerate(whole, 1):
            try:
                _apply(entries, json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(
                    f"store {self.journal}: line {number} is not a store write ({exc}); it was "
                    "left untouched - repair it or move store.json and its journal aside"
                ) from exc
            offset += len(line) + 1
        del torn  # never applied: its write never returned
        self._journal_lines = len(whole)
        self._journal_end = offset

    async def get(self, key: str) -> Any | None:
        return self.load().get(key)

    async def list(self, prefix: str) -> dict[str, Any]:
        return {k: v for k, v in self.load().items() if k.startswith(prefix)}

    # --- writing -------------------------------------------------------------------------------

    async def put(self, key: str, value: Any) -> None:
        op = {"put": key, "value": value}
        line = json.dumps(op, separators=(",", ":")).encode()
        # The value as stored (detached from the caller's object), applied once durable.
        await self._append(line, {"put": key, "value": json.loads(line)["value"]})

    async def delete(self, key: str) -> None:
        if key not in self.load():
            return
        op = {"delete": key}
        await self._append(json.dumps(op, separators=(",", ":")).encode(), op)

    async def _append(self, line: bytes, op: dict[str, Any]) -> None:
        """Append ``line`` to the journal and return once it is durable (and ``op`` applied).
        Lines appended while a flush runs go into the next one together (group commit)."""
        self.load()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((line + b"\n", op, done))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        """Write what is queued, batch after batch; apply each batch once durable; compact when
        the journal has grown (here, so no append runs meanwhile)."""
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    await asyncio.to_thread(self._write_lines, b"".join(b[0] for b in batch))
                except Exception as exc:
                    for _, _, done in batch:
                        done.set_exception(exc)
                    continue
                entries = self.load()
                for _, op, done in batch:
                    _apply(entries, op)
                    done.set_result(None)
                self._journal_lines += len(batch)
                if self._journal_lines >= max(COMPACT_AFTER, len(entries)):
                    try:
                        await asyncio.to_thread(self._compact, dict(entries))
                    except Exception as exc:  # the journal still holds it all: retried later
                        log.error("store %s: compaction failed (%s); will retry", self.path, exc)
        finally:
            self._flusher = None

    def _write_lines(self, data: bytes) -> None:
        self._check_directory()
        new = not self.journal.exists()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.ftruncate(fd, self._journal_end)  # cut a torn line off before appending
            os.lseek(fd, self._journal_end, os.SEEK_SET)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._journal_end += len(data)
        if new:
            self._fsync_directory()

    def _compact(self, entries: dict[str, Any]) -> None:
        """The state into the snapshot (atomic, durable), then an empty journal."""
        self._check_directory()
        data = json.dumps({"schema": SCHEMA_VERSION, "entries": entries}, separators=(",", ":"))
        write_private(self.path, (data + "\n").encode(), fsync=True)
        self._fsync_directory()
        # Only now the journal may go: the snapshot holds everything it said.
        os.truncate(self.journal, 0)
        self._journal_lines = self._journal_end = 0

    def _check_directory(self) -> None:
        if self.create_parent:
            private_dir(self.path.parent)
        elif not self.path.parent.is_dir():
            raise StoreError(
                f"store {self.path}: directory {self.path.parent} does not exist (any more); "
                "create it again or restart with another --store"
            )

    def _fsync_directory(self) -> None:
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _apply(entries: dict[str, Any], op: Any) -> None:
    if not isinstance(op, dict):
        raise TypeError("expected an object")
    if "put" in op:
        entries[str(op["put"])] = op["value"]
    elif "delete" in op:
        entries.pop(str(op["delete"]), None)
    else:
        raise KeyError("put or delete")
