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
from infrakit.spi.instance import (
    Context,
    Description,
    Spec,
    attachments_to_wire,
    tags_match,
)
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
#: New files: unnamed in the directory until linked into place (see ``_write``).
_UNNAMED_FLAGS = os.O_WRONLY | getattr(os, "O_TMPFILE", 0)
#: First characters of names that are never instances: temporary files (``.instance-N.tmp``)
#: and the unnamed files of new ones, which inotify names ``#<inode>``.
_NOT_INSTANCES = frozenset(".#")
#: Distinct Spec bodies remembered for sharing (pets have one each; the cache then starts over).
SPEC_BODIES_KEPT = 256
#: How much of a malformed ID an error message quotes.
ID_QUOTE_CHARS = 80

#: Stamp of a file as last read: its mtime in ns and its size in one int (see :func:`_stamp`).
#: Equal stamps mean "not changed".
Stamp = int


def _stamp(st: os.stat_result) -> Stamp:
    """``(mtime_ns, size)`` as one int: a tuple of two ints is ~130 bytes per instance, this ~50."""
    return st.st_mtime_ns << 64 | st.st_size


PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "Any JSON object; stored verbatim in the instance file under Spec.Properties.",
}
PROPERTIES_EXAMPLE: dict[str, Any] = {"Note": "Instance properties version 1.0"}


@dataclass(frozen=True, slots=True)
class _SpecBody:
    """An instance file's ``Spec`` less its ``Tags`` (which are the record's own): every instance
    provisioned from the same Properties, Init, LogicalID and Attachments - a group's cattle -
    shares one, instead of a five-key dict each."""

    properties: JSON
    init: str
    logical_id: str | None
    attachments: JSON

    def wire(self, tags: Tags) -> dict[str, Any]:
        """The ``Spec`` as the file holds it (Go field order), around ``tags``."""
        return {
            "Properties": self.properties,
            "Tags": tags,
            "Init": self.init,
            "LogicalID": self.logical_id,
            "Attachments": self.attachments,
        }


_SPEC_KEYS = frozenset({"Properties", "Tags", "Init", "LogicalID", "Attachments"})


@dataclass(slots=True)
class _Record:
    """One instance file as last read or written."""

    #: What DescribeInstances returns (without Properties): the ID, LogicalID and the record's
    #: tags - one dict per instance, shared by the record, its description and its ``Spec``.
    described: Description
    #: The file's ``Spec``: a shared :class:`_SpecBody` around ``described.tags`` when it has
    #: exactly that shape (what Provision writes), else the JSON as read.
    body: _SpecBody | JSON
    stamp: Stamp

    @property
    def tags(self) -> Tags:
        return self.described.tags

    @property
    def logical_id(self) -> str | None:
        return self.described.logical_id

    @property
    def spec(self) -> JSON:
        """The file's ``Spec`` (a new dict each time for a shared body)."""
        body = self.body
        return body.wire(self.described.tags) if isinstance(body, _SpecBody) else body


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
        #: The IDs are a dict's keys, not a set: ~20 bytes an instance instead of ~50, and
        #: listed in the order they were made.
        self._by_group: dict[str, dict[str, None]] = {}
        #: New files are written unnamed and linked in (see ``_write``) while this works.
        self._unnamed_files = hasattr(os, "O_TMPFILE")
        #: ``/proc/self/fd``, opened on the first new file (what ``linkat`` names it through).
        self._proc_fd: int | None = None
        #: Spec bodies by their JSON, and the last one used (see ``_body``).
        self._bodies: dict[bytes, _SpecBody] = {}
        self._last_body: _SpecBody | None = None
        #: The last answer without Properties to "every instance" (key None) or "one group's"
        #: (its tag value), kept until a record of it changes: a pass over an unchanged group of
        #: 100 000 copies a list instead of looking at each record.
        self._listed: dict[str | None, list[Description]] = {}

    def _set(self, instance_id: str, record: _Record) -> None:
        self._drop(instance_id)
        self._records[instance_id] = record
        group = record.tags.get(GROUP_TAG, "")
        self._by_group.setdefault(group, {})[instance_id] = None
        self._listed.pop(group, None)
        self._listed.pop(None, None)

    def _drop(self, instance_id: str) -> _Record | None:
        record = self._records.pop(instance_id, None)
        if record is not None:
            self._listed.pop(record.tags.get(GROUP_TAG, ""), None)
            self._listed.pop(None, None)
            members = self._by_group.get(record.tags.get(GROUP_TAG, ""))
            if members is not None:
                members.pop(instance_id, None)
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
        if self._proc_fd is not None:
            os.close(self._proc_fd)
            self._proc_fd = None

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
        described = Description(instance_id, spec.logical_id, dict(spec.tags))
        attachments = attachments_to_wire(spec.attachments, Era.HEAD)
        body = self._body(spec.properties, spec.init, spec.logical_id, attachments)
        try:
            record = self._write(described, body, new=True)
        except FileNotFoundError:  # someone removed the directory: make it again, once
            self._ensure_directory()
            record = self._write(described, body, new=True)
        # Per-instance lines are debug: the group controller logs each batch at info.
        if log.isEnabledFor(logging.DEBUG):
            group = described.tags.get(GROUP_TAG, "no group")
            log.debug("provisioned %s (%s)", instance_id, group)
        self._publish("created", instance_id, record)
        return instance_id

    async def label(self, instance_id: str, labels: Tags) -> None:
        record = self._get(instance_id)
        tags = {**record.tags, **labels}
        # The file's Spec is kept as it was (its Tags too, as before the label).
        record = self._write(Description(instance_id, record.logical_id, tags), record.spec)
        log.debug("labelled %s with %s", instance_id, labels)
        self._publish("changed", instance_id, record)

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
            # The record's own description (shared, never changed by callers in this process).
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

    def _write(
        self, described: Description, body: _SpecBody | JSON, *, new: bool = False
    ) -> _Record:
        """Write one instance file atomically and index it; its record.

        A ``new`` file is written unnamed (``O_TMPFILE``) and linked into place once complete:
        its inotify events are the link's ``CREATE`` and the unnamed file's ``CLOSE_WRITE``
        (named ``#<inode>``), both skipped at once, and a killed process leaves nothing behind. Otherwise - a rewrite, or a file
        system without ``O_TMPFILE`` - a temporary file is renamed into place (four events).
        No fsync: these instances are simulated, and a crash can at worst lose the newest file,
        which the group controller then re-creates.
        """
        instance_id = described.id
        if not INSTANCE_ID.fullmatch(instance_id):  # only our own instance-<n> names, ever
            self._path(instance_id)
        record = _Record(described, body, 0)
        document = {
            "ID": instance_id,
            "LogicalID": described.logical_id,
            "Tags": described.tags,
            "Spec": record.spec,
        }
        data = msgspec.json.encode(document)  # compact, ~5x faster than json.dumps
        st = self._link_new(instance_id, data) if new and self._unnamed_files else None
        if st is None:
            st = self._replace(instance_id, data)
        record.stamp = _stamp(st)
        self._set(instance_id, record)
        return record

    def _link_new(self, instance_id: str, data: bytes) -> os.stat_result | None:
        """Write a new file unnamed in the directory and link it in as ``instance_id``; None
        when the file system (or a missing ``/proc``) does not allow it: every later write then
        renames a temporary file instead. FileNotFoundError when the directory is gone."""
        directory = self._directory
        try:
            fd = os.open(directory, _UNNAMED_FLAGS, 0o600)
        except FileNotFoundError:
            raise
        except OSError as exc:  # EOPNOTSUPP, EISDIR (kernels before 3.11), EINVAL ...
            self._no_unnamed_files(exc)
            return None
        try:
            st = _fill(fd, data)
            if self._proc_fd is None:
                self._proc_fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
            # linkat(2) of /proc/self/fd/N: the documented way to name an O_TMPFILE file.
            os.link(
                str(fd),
                f"{directory}/{instance_id}",
                src_dir_fd=self._proc_fd,
                follow_symlinks=True,
            )
            if self._watching:  # its CREATE event tells nothing new: skip it (_handle_events)
                self._own_writes.add(instance_id)
        except FileExistsError:  # an unindexed file of that name (1 in 2**63): replace it
            return None
        except OSError as exc:
            if not os.path.isdir(directory):
                raise FileNotFoundError(exc.errno, exc.strerror, directory) from None
            self._no_unnamed_files(exc)
            return None
        finally:
            os.close(fd)
        return st

    def _no_unnamed_files(self, exc: OSError) -> None:
        log.info(
            "instance files in %s: no unnamed temporary files here (%s); renaming instead",
            self.directory,
            exc.strerror or exc,
        )
        self._unnamed_files = False

    def _replace(self, instance_id: str, data: bytes) -> os.stat_result:
        """Write ``data`` to a temporary file and rename it into place as ``instance_id``."""
        # Plain string paths: at 10 000 creates, Path objects alone cost 0.85 s.
        directory = self._directory
        temp = f"{directory}/.{instance_id}.tmp"
        fd = os.open(temp, _TEMP_FLAGS, 0o600)
        try:
            st = _fill(fd, data)
        finally:
            os.close(fd)
        os.replace(temp, f"{directory}/{instance_id}")
        if self._watching:  # its MOVED_TO event tells nothing new: skip it (see _watch_inotify)
            self._own_writes.add(instance_id)
        return st

    def _body(
        self, properties: JSON, init: str, logical_id: str | None, attachments: JSON
    ) -> _SpecBody:
        """The shared Spec body equal to these parts (a group's creates, and its files read
        again after a restart, share one); "equal" as JSON, so ``1`` and ``true`` differ."""
        last = self._last_body
        if (
            last is not None
            and last.properties is properties  # in-process: the group's very object
            and last.init == init
            and last.logical_id == logical_id
            and last.attachments == attachments
        ):
            return last
        key = msgspec.json.encode([properties, init, logical_id, attachments])
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= SPEC_BODIES_KEPT:
                self._bodies.clear()
            body = self._bodies[key] = _SpecBody(properties, init, logical_id, attachments)
        self._last_body = body
        return body

    def _body_of(self, spec: JSON, tags: Tags) -> _SpecBody | JSON:
        """A Spec read from a file: shared when it has the shape Provision writes (and the
        record's tags), else as read."""
        if (
            isinstance(spec, dict)
            and spec.keys() == _SPEC_KEYS
            and spec["Tags"] == tags
            and isinstance(spec["Init"], str)
            and (spec["LogicalID"] is None or isinstance(spec["LogicalID"], str))
        ):
            return self._body(
                spec["Properties"], spec["Init"], spec["LogicalID"], spec["Attachments"]
            )
        return spec

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
            self._load(entry.name, _stamp(st), publish=publish)
        for gone in [name for name in self._records if name not in seen]:
            record = self._drop(gone)
            if publish:
                self._publish("deleted", gone, record)
        for gone in [name for name in self._skipped if name not in seen]:
            del self._skipped[gone]

    def _refresh(self, name: str, *, quiet: bool = False) -> None:
        """Re-check one directory entry after the watcher saw it change (``quiet``: a file that
        is not an instance file yet is left for its next event, unwarned)."""
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
            self._load(name, _stamp(st), publish=True, quiet=quiet)

    def _load(self, name: str, stamp: Stamp, *, publish: bool, quiet: bool = False) -> None:
        known = self._records.get(name)
        if known is not None and known.stamp == stamp:
            return
        if self._skipped.get(name) == stamp:
            return
        record = self._read(name, stamp, quiet=quiet)
        if record is None:
            if quiet:
                return
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

    def _read(self, name: str, stamp: Stamp, *, quiet: bool = False) -> _Record | None:
        path = self.directory / name

        def warn(message: str, *args: object) -> None:
            if not quiet:
                log.warning(message, *args)

        if not INSTANCE_ID.fullmatch(name):
            warn(
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
            warn("%s is not an instance file (JSON nested too deeply); ignoring it", path)
            return None
        except (OSError, ValueError) as exc:
            warn("%s is not an instance file (%s); ignoring it", path, exc)
            return None
        problem = _record_problem(document, name)
        if problem:
            warn("%s is not an instance file (%s); ignoring it", path, problem)
            return None
        tags = dict(document.get("Tags") or {})
        described = Description(name, document.get("LogicalID"), tags)
        return _Record(described, self._body_of(document.get("Spec"), tags), stamp)

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
            | inotify.CREATE
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
                if name[:1] in _NOT_INSTANCES:  # our own temporary files: nothing to see
                    continue
                if bits & inotify.CREATE:
                    # A file linked in complete (O_TMPFILE, as Provision writes; another plugin
                    # on this directory too) has no other event. One made by open() is empty or
                    # partial now, and its CLOSE_WRITE follows: read it quietly.
                    if name in self._own_writes:
                        self._own_writes.discard(name)  # our own link: indexed already
                    else:
                        self._refresh(name, quiet=True)
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


def _fill(fd: int, data: bytes) -> os.stat_result:
    """Write all of ``data`` to the new file ``fd``; its stat, with mode 0600 whatever the umask."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.fchmod(fd, 0o600)
    return st


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
