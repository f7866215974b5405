"""Linux inotify on one directory with the standard library only (ctypes), read in bulk.

The file instance plugin saw three events per instance it wrote by renaming (the temporary file's
``CLOSE_WRITE`` and ``MOVED_FROM``, the instance's ``MOVED_TO``): 30 000 for a 10 000-instance
scale-up. A general-purpose wrapper that builds an enum mask, a ``Path`` and an event object per
event, and resumes a coroutine for each, spent more on that than the plugin spent writing the
files. :class:`DirectoryWatch` hands back plain ``(mask, name)`` pairs, every event a read
returned at once, for a caller driven by ``loop.add_reader``::

    watch = DirectoryWatch(directory, CLOSE_WRITE | MOVED_TO | DELETE)
    loop.add_reader(watch.fd, lambda: handle(watch.read_events()))

Not Linux (no ``inotify_init1`` in the C library): :class:`DirectoryWatch` raises ``OSError``.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

__all__ = [
    "CLOSE_WRITE",
    "CREATE",
    "DELETE",
    "DELETE_SELF",
    "IGNORED",
    "MOVED_FROM",
    "MOVED_TO",
    "MOVE_SELF",
    "ONLYDIR",
    "Q_OVERFLOW",
    "DirectoryWatch",
]

# <sys/inotify.h>
CLOSE_WRITE = 0x00000008
CREATE = 0x00000100
MOVED_FROM = 0x00000040
MOVED_TO = 0x00000080
DELETE = 0x00000200
DELETE_SELF = 0x00000400
MOVE_SELF = 0x00000800
Q_OVERFLOW = 0x00004000
IGNORED = 0x00008000
ONLYDIR = 0x01000000

#: struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len] (NUL-padded).
_HEADER = struct.Struct("iIII")
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
#: Bytes read at once: ~1300 events of instance-<n> names.
_READ_SIZE = 65536


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class DirectoryWatch:
    """An inotify descriptor watching one directory (non-blocking, close-on-exec)."""

    def __init__(self, directory: str | os.PathLike[str], mask: int) -> None:
        libc = _libc()
        try:
            init1 = libc.inotify_init1
            add_watch = libc.inotify_add_watch
        except AttributeError as exc:
            raise OSError(f"no inotify in this C library ({exc})") from None
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd
        if add_watch(fd, os.fsencode(directory), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {os.fspath(directory)}: {os.strerror(err)}")

    def read_events(self) -> list[tuple[int, str | None]]:
        """Every event waiting now as ``(mask, name)`` (name None: the directory itself);
        ``[]`` when none is."""
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return []
        events: list[tuple[int, str | None]] = []
        unpack = _HEADER.unpack_from
        size = _HEADER.size
        at, end = 0, len(data)
        while at + size <= end:
            _wd, mask, _cookie, length = unpack(data, at)
            start = at + size
            at = start + length
            if length:
                name = data[start:at].rstrip(b"\0").decode(_FS_ENCODING, _FS_ERRORS)
                events.append((mask, name))  # decoded as os.fsdecode does, without its calls
            else:
                events.append((mask, None))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
