"""File-lock leader election: several managers on one host, exactly one leads.

The leader holds an exclusive ``flock`` on the lock file for as long as it runs; the kernel
releases it the moment the holder dies (even by SIGKILL), and the next member's retry (every
``poll_interval``) takes over. The holder writes who it is and where followers reach it to
``<lock file>.json`` (atomically), which :meth:`FileElector.leader` reads.

Leadership is re-proven every poll: if the lock file was removed or replaced (someone cleaned up
the directory), the holder's lock no longer guards anything, so it steps down and campaigns again.

The record tells followers where to forward (with the shared token), so it is guarded:

* it is written 0600 (whatever the umask) and the leader re-reads it every poll, rewriting it when
  anyone changed its content or mode, or replaced it;
* a follower refuses a record that is not owned by its own user or that group or others may
  write (:class:`~infrakit.errors.NotLeaderError`, one line naming the file and the fix): such a
  record may have been written by someone who wants the followers' calls. Even a record that
  passes only names an address: the follower still makes the peer there prove it holds the
  token before it sends anything (:mod:`infrakit.rpc.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from infrakit import errors
from infrakit._utils.aio import cancel_and_wait
from infrakit._utils.clock import Clock, SystemClock
from infrakit._utils.private import open_private, private_dir, write_private
from infrakit.leader import LeaderInfo, Leadership

__all__ = ["FileElector"]

log = logging.getLogger(__name__)


class FileElector:
    """Leader election with an exclusive lock on ``path``."""

    def __init__(
        self,
        path: Path,
        id: str,
        location: str = "",
        poll_interval: float = 0.5,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.info_path = self.path.with_name(self.path.name + ".json")
        #: One file per running member, for ``manager status`` (the PID inside tells whether the
        #: member still runs: one host); a random part keeps two electors of a process apart.
        self.members_dir = self.path.with_name(self.path.name + ".members")
        self._member_file = self.members_dir / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        self.id = id
        self.location = location
        self.poll_interval = poll_interval
        #: Time for the campaign's polls and the resign pause (a fake clock in tests).
        self.clock: Clock = clock or SystemClock()
        self._fd: int | None = None
        #: No campaign before this time (monotonic): set by ``resign``.
        self._not_before = 0.0
        self._leadership = Leadership()
        self._task: asyncio.Task[None] | None = None

    # --- Elector --------------------------------------------------------------------------------

    async def start(self) -> None:
        private_dir(self.path.parent)
        self._register()
        self._attempt()  # the first verdict at once: an uncontended lock leads immediately
        self._task = asyncio.create_task(self._campaign(), name=f"file election {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._leadership.leading:
            with contextlib.suppress(OSError):
                self.info_path.unlink()
        self._release()
        with contextlib.suppress(OSError):
            self._member_file.unlink()

    @property
    def is_leader(self) -> bool:
        return self._leadership.leading

    def changes(self) -> AsyncIterator[bool]:
        return self._leadership.changes()

    async def leader(self) -> LeaderInfo | None:
        if self._leadership.leading:
            return LeaderInfo(self.id, self.location)
        if not self._someone_holds_the_lock():
            return None
        try:
            fd = os.open(self.info_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # the holder has not written it yet
        try:
            _check_record(self.info_path, os.fstat(fd), self.id)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                doc = json.loads(handle.read())
            return LeaderInfo(str(doc["ID"]), str(doc.get("Location") or ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # being replaced this very moment: the next read sees it whole
        finally:
            os.close(fd)

    async def members(self) -> list[LeaderInfo]:
        members = []
        with contextlib.suppress(OSError):
            for entry in self.members_dir.glob("*.json"):
                try:
                    doc = json.loads(entry.read_text())
                    if _alive(int(doc["PID"])):  # a SIGKILLed member left its file behind
                        members.append(LeaderInfo(str(doc["ID"]), str(doc.get("Location") or "")))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return sorted(members, key=lambda m: m.id)

    def describe(self) -> str:
        return f"file:{self.path}"

    # --- campaign -------------------------------------------------------------------------------

    async def _campaign(self) -> None:
        while True:
            await self.clock.sleep(self.poll_interval)
            if self._leadership.leading and not self._still_holds():
                log.warning("leader lock %s was removed or replaced; stepping down", self.path)
                self._release()
            elif self._leadership.leading:
                self._reassert()
            self._attempt()

    async def resign(self, pause: float) -> None:
        """Give up leadership (if held) and do not campaign for ``pause`` seconds, so another
        member can lead - e.g. when this one was elected but cannot act (its store fails)."""
        self._not_before = self.clock.now() + pause
        if self._leadership.leading:
            with contextlib.suppress(OSError):
                self.info_path.unlink()
            self._release()
            log.warning("%s resigns the lock %s for %gs", self.id, self.path, pause)

    def _attempt(self) -> None:
        if self._leadership.leading or self.clock.now() < self._not_before:
            return
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return
        self._fd = fd
        self._write_info()
        self._set(True)
        log.info("%s leads (lock %s)", self.id, self.path)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        if self._leadership.leading:
            self._set(False)

    def _set(self, leading: bool) -> None:
        self._leadership.set(leading)

    def _still_holds(self) -> bool:
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _register(self) -> None:
        private_dir(self.members_dir)
        doc = {"ID": self.id, "Location": self.location, "PID": os.getpid()}
        write_private(self._member_file, json.dumps(doc).encode())

    def _write_info(self) -> None:
        write_private(self.info_path, self._record())

    def _record(self) -> bytes:
        return json.dumps({"ID": self.id, "Location": self.location, "PID": os.getpid()}).encode()

    def _reassert(self) -> None:
        """Rewrite the record if anyone changed, replaced, removed or loosened it."""
        expected = self._record()
        try:
            st = os.lstat(self.info_path)
            with open(self.info_path, "rb") as handle:
                current = handle.read()
            problem = ("" if current == expected else "its content changed") or _record_problem(st)
        except OSError as exc:
            problem = f"it cannot be read ({exc.strerror or exc})"
        if problem:
            log.warning("leader record %s: %s; %s rewrites it", self.info_path, problem, self.id)
            try:
                write_private(self.info_path, expected)
            except OSError as exc:
                log.error("leader record %s: cannot rewrite it (%s)", self.info_path, exc)

    def _someone_holds_the_lock(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the shared lock if we got it
        return False


def _record_problem(st: os.stat_result) -> str:
    """Why a leader record with this ``stat`` cannot be trusted ("" when it can)."""
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not by uid {os.geteuid()} that runs this manager"
    if st.st_mode & 0o022:
        return f"group or others may write it (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _check_record(path: Path, st: os.stat_result, member: str) -> None:
    """Refuse a leader record someone else could have written (one line naming the fix)."""
    problem = _record_problem(st)
    if problem:
        raise errors.NotLeaderError(
            f"manager {member} refuses the leader record {path}: {problem}, so anyone could "
            f"point followers elsewhere; remove it (the leader writes it again, 0600) and "
            f"check who can write {path.parent}"
        )


def _alive(pid: int) -> bool:
    """True if process ``pid`` runs (and is not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
