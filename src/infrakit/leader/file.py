"""File-lock leader election: several managers on one host, exactly one leads.

The leader holds an exclusive ``flock`` on the lock file for as long as it runs; the kernel
releases it the moment the holder dies (even by SIGKILL), and the next member's retry (every
``poll_interval``) takes over. The holder writes who it is and where followers reach it to
``<lock file>.json`` (atomically), which :meth:`FileElector.leader` reads.

Leadership is re-proven every poll: if the lock file was removed or replaced (someone cleaned up
the directory), the holder's lock no longer guards anything, so it steps down and campaigns again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

from infrakit._utils.aio import cancel_and_wait
from infrakit.leader import LeaderInfo, Leadership

__all__ = ["FileElector"]

log = logging.getLogger(__name__)


class FileElector:
    """Leader election with an exclusive lock on ``path``."""

    def __init__(self, path: Path, id: str, location: str = "", poll_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.info_path = self.path.with_name(self.path.name + ".json")
        #: One file per running member, for ``manager status`` (the PID inside tells whether the
        #: member still runs: one host); a random part keeps two electors of a process apart.
        self.members_dir = self.path.with_name(self.path.name + ".members")
        self._member_file = self.members_dir / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        self.id = id
        self.location = location
        self.poll_interval = poll_interval
        self._fd: int | None = None
        #: No campaign before this time (monotonic): set by ``resign``.
        self._not_before = 0.0
        self._leadership = Leadership()
        self._task: asyncio.Task[None] | None = None

    # --- Elector --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
            doc = json.loads(self.info_path.read_text())
            return LeaderInfo(str(doc["ID"]), str(doc.get("Location") or ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # the holder has not written it yet

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
            await asyncio.sleep(self.poll_interval)
            if self._leadership.leading and not self._still_holds():
                log.warning("leader lock %s was removed or replaced; stepping down", self.path)
                self._release()
            self._attempt()

    async def resign(self, pause: float) -> None:
        """Give up leadership (if held) and do not campaign for ``pause`` seconds, so another
        member can lead - e.g. when this one was elected but cannot act (its store fails)."""
        self._not_before = time.monotonic() + pause
        if self._leadership.leading:
            with contextlib.suppress(OSError):
                self.info_path.unlink()
            self._release()
            log.warning("%s resigns the lock %s for %gs", self.id, self.path, pause)

    def _attempt(self) -> None:
        if self._leadership.leading or time.monotonic() < self._not_before:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
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
        self.members_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"ID": self.id, "Location": self.location, "PID": os.getpid()}
        temp = self._member_file.with_name(f".{self._member_file.name}")
        temp.write_text(json.dumps(doc))
        os.replace(temp, self._member_file)

    def _write_info(self) -> None:
        temp = self.info_path.with_name(f".{self.info_path.name}.{os.getpid()}")
        temp.write_text(json.dumps({"ID": self.id, "Location": self.location, "PID": os.getpid()}))
        os.replace(temp, self.info_path)

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
