"""The file instance plugin's implementation: an in-memory index kept equal to a directory.

The directory is the truth; the index (ID -> record, with the file's mtime and size as a stamp) is
a cache that makes ``DescribeInstances`` cost microseconds instead of a read of every file. The
index is kept current by:

* our own writes (Provision, Label, Destroy update it synchronously, stamp included), and
* a watcher: inotify on the directory, or - where inotify is unavailable or the directory is
  replaced - a rescan once a second. While no watcher is running, every read rescans first (only
  files whose stamp changed are read again), so the answer is never stale.

A change the watcher sees is compared with the index by stamp, so our own writes never come back
as "external" changes. Every change, ours or a user's, is published on ``instance/change``.

Only the plugin's own files are ever touched: names matching :data:`INSTANCE_ID`
(``instance-<int63>``, what Provision creates and Go's plugin wrote) that are regular files, never
through a symbolic link. Any other ID given to Destroy or Label - a README, ``../x``, a NUL, 5000
characters - is ``NotFoundError``. Temporary files (``.instance-<int63>.tmp``) that a killed
process left behind are removed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import stat
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from infrakit._utils.aio import Broker
from infrakit._utils.private import private_dir
from infrakit.errors import NotFoundError, SpecError
from infrakit.spi.event import TOPIC_INSTANCE_CHANGE, Event, instance_change
from infrakit.spi.instance import Context, Description, Spec, spec_to_wire, tags_match
from infrakit.spi.types import GROUP_TAG, JSON, Era, Tags

__all__ = ["FileInstancePlugin"]

log = logging.getLogger(__name__)

#: The name of every instance file (= its ID): ``instance-`` and a non-negative 63-bit integer.
INSTANCE_ID = re.compile(r"instance-[0-9]{1,19}")
#: The temporary file an instance is written to before it is renamed into place: ours
#: (``.instance-N.tmp``) or one with the writer's pid and a random suffix (``.instance-N.PID.HEX.tmp``).
TEMP_FILE = re.compile(r"\.instance-[0-9]{1,19}(?:\.[0-9]+\.[0-9a-f]+)?\.tmp")
#: Temporary files of our own writes: created or truncated, never through a symlink.
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
#: How much of a malformed ID an error message quotes.
ID_QUOTE_CHARS = 80

#: Stamp of a file as last read: (mtime in ns, size). Equal stamps mean "not changed".
Stamp = tuple[int, int]

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "Any JSON object; stored verbatim in the instance file under Spec.Properties.",
}
PROPERTIES_EXAMPLE: dict[str, Any] = {"Note": "Instance properties version 1.0"}


@dataclass(slots=True)
class _Record:
    """One instance file as last read or written."""

    logical_id: str | None
    tags: Tags
    spec: JSON
    stamp: Stamp
    #: Its description without Properties, built on the first DescribeInstances and reused
    #: until the file changes (a new record): a pass over 10 000 instances allocates nothing.
    described: Description | None = None


class FileInstancePlugin:
    """Instances as JSON files in ``directory``. Serve it with ``infrakit plugin start file``."""

    def __init__(self, directory: Path | str, *, poll_interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self._directory = str(self.directory)
        #: Names we just renamed into place ourselves, whose inotify event is still to come.
        self._own_writes: set[str] = set()
        self.poll_interval = poll_interval
        self._records: dict[str, _Record] = {}
        #: Files that are not instance records, by the stamp we warned about (warn once each).
        self._skipped: dict[str, Stamp] = {}
        self._broker: Broker[Event] = Broker()
        self._watcher: asyncio.Task[None] | None = None
        #: True while a watcher keeps the index current; otherwise reads rescan first.
        self._watching = False
        #: ``infrakit.group`` tag value -> IDs: the group controller's Describe reads one group.
        self._by_group: dict[str, set[str]] = {}
        #: The last answer without Properties to "every instance" (key None) or "one group's"
        #: (its tag value), kept until a record of it changes: a pass over an unchanged group of
        #: 100 000 copies a list instead of looking at each record.
        self._listed: dict[str | None, list[Description]] = {}

    def _set(self, instance_id: str, record: _Record) -> None:
        self._drop(instance_id)
        self._records[instance_id] = record
        group = record.tags.get(GROUP_TAG, "")
        self._by_group.setdefault(group, set()).add(instance_id)
        self._listed.pop(group, None)
        self._listed.pop(None, None)

    def _drop(self, instance_id: str) -> _Record | None:
        record = self._records.pop(instance_id, None)
        if record is not None:
            self._listed.pop(record.tags.get(GROUP_TAG, ""), None)
            self._listed.pop(None, None)
            members = self._by_group.get(record.tags.get(GROUP_TAG, ""))
            if members is not None:
                members.discard(instance_id)
                if not members:
                    del self._by_group[record.tags.get(GROUP_TAG, "")]
        return record

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the directory if needed, index it, and start watching it."""
        self._ensure_directory()
        self._remove_stale_temp_files()
        self.rescan(publish=False)
        log.info("instance files in %s (%d found)", self.directory, len(self._records))
        self._watcher = asyncio.create_task(self._watch(), name=f"watch {self.directory}")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        self._watching = False

    def _ensure_directory(self, next_step: str = "use another directory") -> None:
        """Create the directory (0700) or fail with one line ending in ``next_step`` (the kind
        passes the option as the user gave it: ``pass another -o file.dir=PATH``)."""
        if self.directory.exists() and not self.directory.is_dir():
            raise SpecError(
                f"instance directory {self.directory} is a file, expected a directory; {next_step}"
            )
        try:
            private_dir(self.directory)
        except OSError as exc:
            raise SpecError(
                f"instance directory {self.directory}: cannot create it ({exc.strerror}); "
                f"{next_step}"
            ) from None

    def _remove_stale_temp_files(self) -> None:
        """Remove the ``.instance-*.tmp`` files a killed process left (no write is running yet)."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if TEMP_FILE.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        if removed:
            log.info(
                "removed %d stale temporary file(s) .instance-*.tmp from %s (left by an "
                "interrupted write)",
                removed,
                self.directory,
            )

    # --- the Instance SPI -----------------------------------------------------------------------

    async def validate(self, properties: JSON) -> None:
        if properties is not None and not isinstance(properties, dict):
            raise SpecError(
                f"file instance Properties: expected a JSON object or null, "
                f"got {type(properties).__name__}; e.g. {json.dumps(PROPERTIES_EXAMPLE)}"
            )

    async def provision(self, spec: Spec) -> str:
        await self.validate(spec.properties)
        instance_id = f"instance-{random.getrandbits(63)}"
        while instance_id in self._records:  # pragma: no cover - 1 in 2**63
            instance_id = f"instance-{random.getrandbits(63)}"
        tags = dict(spec.tags)
        wire_spec = spec_to_wire(spec, Era.HEAD)
        wire_spec["Tags"] = tags  # equal to spec.tags: one dict per instance, not two
        try:
            self._write(instance_id, spec.logical_id, tags, wire_spec)
        except FileNotFoundError:  # someone removed the directory: make it again, once
            self._ensure_directory()
            self._write(instance_id, spec.logical_id, tags, wire_spec)
        # Per-instance lines are debug: the group controller logs each batch at info.
        log.debug("provisioned %s (%s)", instance_id, tags.get("infrakit.group", "no group"))
        self._publish("created", instance_id, self._records.get(instance_id))
        return instance_id

    async def label(self, instance_id: str, labels: Tags) -> None:
        record = self._get(instance_id)
        tags = {**record.tags, **labels}
        self._write(instance_id, record.logical_id, tags, record.spec)
        log.debug("labelled %s with %s", instance_id, labels)
        self._publish("changed", instance_id, self._records.get(instance_id))

    async def destroy(self, instance_id: str, context: Context | None = None) -> None:
        path = self._path(instance_id)
        try:
            # Only a regular file is an instance: a symlink or directory of that name is not ours.
            if not stat.S_ISREG(path.lstat().st_mode):
                raise FileNotFoundError(path)
            path.unlink()
        except FileNotFoundError:
            self._drop(instance_id)
            raise self._not_found(instance_id) from None
        record = self._drop(instance_id)
        reason = f" ({context.reason})" if context is not None and context.reason else ""
        log.info("destroyed %s%s", instance_id, reason)
        self._publish("deleted", instance_id, record)

    async def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        if not self._watching:
            self.rescan()
        group = tags.get(GROUP_TAG) or None
        # The by-group index already selected them when the group tag is the only filter.
        check = bool(tags) and set(tags) != {GROUP_TAG}
        if not check and not properties:
            listed = self._listed.get(group)
            if listed is None:
                listed = self._listed[group] = self._describe(group, tags, False, False)
            return list(listed)  # the caller's own list: the cached one stays as it is
        return self._describe(group, tags, check, properties)

    def _describe(
        self, group: str | None, tags: Tags, check: bool, properties: bool
    ) -> list[Description]:
        ids: Iterable[str] = self._by_group.get(group, ()) if group else self._records
        out = []
        for instance_id in ids:
            record = self._records[instance_id]
            if check and not tags_match(record.tags, tags):
                continue
            if properties:
                out.append(
                    Description(instance_id, record.logical_id, dict(record.tags), record.spec)
                )
                continue
            if record.described is None:
                # A copy of the tags, made here: copies made one after another on a listing sit
                # together in memory, where the record's (made by Provision) are scattered among
                # its other allocations. Sharing the record's saved 0.2 KB per instance, but a
                # pass over 10 000 then took 1.7 us per instance instead of 0.8.
                record.described = Description(instance_id, record.logical_id, dict(record.tags))
            out.append(record.described)
        return out

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}

    # --- events ---------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC_INSTANCE_CHANGE]

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        return self._broker.subscribe(topic)

    def _publish(self, change: str, instance_id: str, record: _Record | None = None) -> None:
        """An ``instance/change`` event; with the instance's record, it names the group."""
        tags = record.tags if record is not None else None
        self._broker.publish(TOPIC_INSTANCE_CHANGE, instance_change(change, instance_id, tags))

    # --- files ----------------------------------------------------------------------------------

    def _path(self, instance_id: str) -> Path:
        """The file of ``instance_id``; ``NotFoundError`` for anything that is not one of our IDs."""
        if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
            quoted = repr(instance_id)
            if len(quoted) > ID_QUOTE_CHARS:
                quoted = f"{quoted[:ID_QUOTE_CHARS]}... ({len(instance_id)} characters)"
            raise NotFoundError(
                f"instance {quoted} not found: not a file plugin instance ID "
                f"(expected instance-<number>, e.g. instance-6619451697473120006); "
                f"list instances with: infrakit instance describe"
            )
        return self.directory / instance_id

    def _not_found(self, instance_id: str) -> NotFoundError:
        return NotFoundError(
            f"instance {instance_id} not found in {self.directory}; "
            f"list instances with: infrakit instance describe"
        )

    def _get(self, instance_id: str) -> _Record:
        if not self._watching:
            self.rescan()
        record = self._records.get(instance_id)
        if record is None:
            self._path(instance_id)  # a malformed ID gets the more precise message
            raise self._not_found(instance_id)
        return record

    def _write(self, instance_id: str, logical_id: str | None, tags: Tags, wire_spec: JSON) -> None:
        """Write one instance file atomically (temp file + rename) and index it.

        No fsync: these instances are simulated, and a crash can at worst lose the newest file,
        which the group controller then re-creates.
        """
        if not INSTANCE_ID.fullmatch(instance_id):  # only our own instance-<n> names, ever
            self._path(instance_id)
        document = {"ID": instance_id, "LogicalID": logical_id, "Tags": tags, "Spec": wire_spec}
        data = msgspec.json.encode(document)  # compact, ~5x faster than json.dumps
        # Plain string paths and one fstat: at 10 000 creates, Path objects alone cost 0.85 s.
        directory = self._directory
        temp = f"{directory}/.{instance_id}.tmp"
        fd = os.open(temp, _TEMP_FLAGS, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temp, f"{directory}/{instance_id}")
        if self._watching:  # its MOVED_TO event tells nothing new: skip it (see _watch_inotify)
            self._own_writes.add(instance_id)
        self._set(instance_id, _Record(logical_id, tags, wire_spec, (st.st_mtime_ns, st.st_size)))

    def rescan(self, *, publish: bool = True) -> None:
        """Bring the index up to date with the directory (re-reading only changed files)."""
        seen: set[str] = set()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(entry.name)
            self._load(entry.name, (st.st_mtime_ns, st.st_size), publish=publish)
        for gone in [name for name in self._records if name not in seen]:
            record = self._drop(gone)
            if publish:
                self._publish("deleted", gone, record)
        for gone in [name for name in self._skipped if name not in seen]:
            del self._skipped[gone]

    def _refresh(self, name: str) -> None:
        """Re-check one directory entry after the watcher saw it change."""
        if not name or name.startswith("."):
            return
        try:
            st = os.lstat(self.directory / name)
        except FileNotFoundError:
            self._skipped.pop(name, None)
            record = self._drop(name)
            if record is not None:
                log.info("instance %s disappeared", name)
                self._publish("deleted", name, record)
            return
        if stat.S_ISREG(st.st_mode):
            self._load(name, (st.st_mtime_ns, st.st_size), publish=True)

    def _load(self, name: str, stamp: Stamp, *, publish: bool) -> None:
        known = self._records.get(name)
        if known is not None and known.stamp == stamp:
            return
        if self._skipped.get(name) == stamp:
            return
        record = self._read(name, stamp)
        if record is None:
            self._skipped[name] = stamp
            if known is not None:
                self._drop(name)
                if publish:
                    self._publish("deleted", name, known)
            return
        self._skipped.pop(name, None)
        self._set(name, record)
        if not publish:
            return
        if known is None:
            log.info("instance %s appeared", name)
            self._publish("created", name, record)
        elif (known.tags, known.logical_id, known.spec) != (
            record.tags,
            record.logical_id,
            record.spec,
        ):
            self._publish("changed", name, record)

    def _read(self, name: str, stamp: Stamp) -> _Record | None:
        path = self.directory / name
        if not INSTANCE_ID.fullmatch(name):
            log.warning(
                "%s is not an instance file (its name is not instance-<number>); ignoring it", path
            )
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                document = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except RecursionError:
            log.warning("%s is not an instance file (JSON nested too deeply); ignoring it", path)
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s is not an instance file (%s); ignoring it", path, exc)
            return None
        problem = _record_problem(document, name)
        if problem:
            log.warning("%s is not an instance file (%s); ignoring it", path, problem)
            return None
        return _Record(
            document.get("LogicalID"), dict(document.get("Tags") or {}), document.get("Spec"), stamp
        )

    # --- watching -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Keep the index current: inotify while it works, else rescan every poll interval."""
        while True:
            try:
                await self._watch_inotify()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info(
                    "not watching %s with inotify (%s); rescanning every %ss",
                    self.directory,
                    exc,
                    self.poll_interval,
                )
            self._watching = False
            self._own_writes.clear()
            await asyncio.sleep(self.poll_interval)
            self._ensure_directory_quietly()
            self.rescan()

    def _ensure_directory_quietly(self) -> None:
        with contextlib.suppress(OSError, SpecError):
            self._ensure_directory()

    async def _watch_inotify(self) -> None:
        """Follow the directory's changes until it goes away (or inotify fails: raise)."""
        from infrakit._utils import inotify  # Linux only: elsewhere this raises OSError

        mask = (
            inotify.CLOSE_WRITE
            | inotify.MOVED_TO
            | inotify.MOVED_FROM
            | inotify.DELETE
            | inotify.DELETE_SELF
            | inotify.MOVE_SELF
            | inotify.ONLYDIR
        )
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                if not self._handle_events(watch.read_events()) and not ended.done():
                    ended.set_result(None)
            except Exception as exc:  # a bug or an I/O error: fall back to rescanning
                if not ended.done():
                    ended.set_exception(exc)

        with inotify.DirectoryWatch(self.directory, mask) as watch:
            loop.add_reader(watch.fd, readable)
            try:
                self._watching = True
                self.rescan()  # whatever changed between the first scan and the watch
                await ended
            finally:
                loop.remove_reader(watch.fd)

    def _handle_events(self, events: list[tuple[int, str | None]]) -> bool:
        """Bring the index up to date with one read's events; False once the directory is gone."""
        from infrakit._utils import inotify

        gone = inotify.DELETE_SELF | inotify.MOVE_SELF | inotify.IGNORED
        for bits, name in events:
            if name is not None:
                if name.startswith("."):  # our own temporary files: nothing to see
                    continue
                if bits & inotify.MOVED_TO and name in self._own_writes:
                    self._own_writes.discard(name)  # our own rename: indexed already
                    continue
                self._refresh(name)
            elif bits & gone:
                log.warning("instance directory %s was removed or moved", self.directory)
                return False
            elif bits & inotify.Q_OVERFLOW:
                self.rescan()
        return True


def _record_problem(document: Any, name: str) -> str:
    """Why ``document`` is not an instance record named ``name`` ("" when it is one)."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("ID") != name:
        return f"its ID {document.get('ID')!r} is not its file name"
    logical_id = document.get("LogicalID")
    if logical_id is not None and not isinstance(logical_id, str):
        return "LogicalID is not a string"
    tags = document.get("Tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        return "Tags is not an object of strings"
    return ""
