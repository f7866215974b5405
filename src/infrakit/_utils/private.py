"""Files, directories and UNIX sockets that only their owner can reach: 0700 / 0600 whatever the umask.

Every directory, file and socket infrakit creates goes through these helpers, so what it leaves on
disk never depends on the caller's ``umask`` (``umask 000`` used to leave ``INFRAKIT_HOME`` 0777
and the leader record 0666; a forged leader record could then lure followers elsewhere):

* :func:`private_dir` creates a directory *and every missing parent* 0700 (``mkdir(mode=...)`` only
  covers the last component, and only after the umask);
* :func:`write_private` replaces a file atomically (a 0600 temporary file, then ``rename``);
* :func:`open_private` opens a file for writing, creating it 0600 (a log);
* :func:`bind_private_unix` binds a UNIX socket 0600 under a temporary name and renames it into
  place, so no other user can connect even for the instant between ``bind`` and ``chmod``.

The mode is set with an explicit ``chmod``/``fchmod`` after creation: the umask can only take bits
away, so asking ``open`` for 0600 is not enough under a umask such as 0277. Things that already
exist are left as they are (a site may share a directory on purpose); what infrakit *reads* with
trust in it (the leader record) is checked by its reader.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "bind_private_unix",
    "open_private",
    "private_dir",
    "write_private",
]

#: Mode of every directory infrakit creates.
DIR_MODE = 0o700
#: Mode of every file and socket infrakit creates.
FILE_MODE = 0o600


def private_dir(path: Path | str) -> Path:
    """Create ``path`` and each missing parent with mode 0700; existing ones are left alone.

    Raises :class:`OSError` as ``mkdir`` does (a parent that is a file, no permission).
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # created meanwhile by someone else (another plugin of this host): theirs
        os.chmod(directory, DIR_MODE)
    return path


def _temp_name(path: Path) -> Path:
    import secrets  # here: the CLI imports this module, and secrets costs it ~5 ms (hashlib)

    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _bind_temp(sock: socket.socket, path: Path) -> Path:
    """Bind ``sock`` to a free hidden name beside ``path``, no longer than ``path``'s (socket paths
    are limited to 107 bytes, and ``path`` was checked against that)."""
    import secrets

    width = max(len(path.name) - 1, 1)
    for _ in range(100):
        temp = path.with_name("." + secrets.token_hex(width)[:width])
        try:
            sock.bind(str(temp))
            return temp
        except OSError:
            if not (temp.exists() or temp.is_symlink()):
                raise
            # the name is taken: draw another
    raise FileExistsError(f"no free temporary socket name beside {path}")


def write_private(path: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically; the new file is 0600 whatever the umask.

    ``fsync`` flushes the file (not the directory) before the rename, for stores that must survive
    a power loss.
    """
    path = Path(path)
    temp = _temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def open_private(path: Path | str, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """Open ``path`` with ``flags`` (a file descriptor), creating it 0600 if it does not exist."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def bind_private_unix(path: Path | str) -> socket.socket:
    """A listening-ready UNIX stream socket bound at ``path`` with mode 0600.

    The socket is bound under a temporary name, made 0600, then renamed to ``path`` (replacing
    whatever is there: the caller decides beforehand that nothing live is). Nobody else can connect
    through ``path`` at any moment.
    """
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        temp = _bind_temp(sock, path)
        try:
            os.chmod(temp, FILE_MODE)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    except BaseException:
        sock.close()
        raise
    return sock
