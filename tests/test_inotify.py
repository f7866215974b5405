"""The standard-library inotify reader: a directory's changes as plain ``(mask, name)`` pairs,
read from the real kernel interface, every waiting event in one read."""

from __future__ import annotations

import os
import select
import shutil

import pytest

from infrakit._utils import inotify
from infrakit.testing import short_tempdir

pytestmark = pytest.mark.timeout(10)

MASK = inotify.CLOSE_WRITE | inotify.MOVED_TO | inotify.MOVED_FROM | inotify.DELETE


def _events_until(watch: inotify.DirectoryWatch, wanted: int) -> list[tuple[int, str | None]]:
    seen: list[tuple[int, str | None]] = []
    while len(seen) < wanted:
        ready, _, _ = select.select([watch.fd], [], [], 5.0)
        assert ready, f"no inotify event within 5 s; saw {seen}"
        seen += watch.read_events()
    return seen


def test_a_write_a_rename_and_a_delete_are_seen_by_name() -> None:
    directory = short_tempdir()
    try:
        with inotify.DirectoryWatch(directory, MASK) as watch:
            assert watch.read_events() == []  # non-blocking: nothing yet
            (directory / ".a.tmp").write_text("x")
            os.replace(directory / ".a.tmp", directory / "instance-1")
            (directory / "instance-1").unlink()
            events = _events_until(watch, 4)
        assert events == [
            (inotify.CLOSE_WRITE, ".a.tmp"),
            (inotify.MOVED_FROM, ".a.tmp"),
            (inotify.MOVED_TO, "instance-1"),
            (inotify.DELETE, "instance-1"),
        ]
        assert watch.fd == -1  # closed on exit
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_many_events_come_back_from_one_read() -> None:
    directory = short_tempdir()
    try:
        with inotify.DirectoryWatch(directory, MASK) as watch:
            for i in range(500):
                (directory / f"instance-{i}").write_bytes(b"")
            events = _events_until(watch, 500)
        assert [name for _, name in events] == [f"instance-{i}" for i in range(500)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_directory_going_away_is_an_event_without_a_name() -> None:
    directory = short_tempdir()
    with inotify.DirectoryWatch(directory, MASK | inotify.DELETE_SELF) as watch:
        directory.rmdir()
        events = _events_until(watch, 1)
    assert events[0] == (inotify.DELETE_SELF, None)


def test_a_missing_directory_is_an_os_error_naming_it() -> None:
    with pytest.raises(OSError, match="inotify_add_watch /nonexistent-ik"):
        inotify.DirectoryWatch("/nonexistent-ik", MASK | inotify.ONLYDIR)
