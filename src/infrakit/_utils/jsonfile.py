"""Reading a JSON file a user gave (``-`` = standard input) safely, with one-line errors.

The one reader of every file infrakit takes: ``up``'s spec files, ``group commit``, the files of
``instance`` and ``flavor``. A UTF-8 byte order mark is allowed. Only a regular file is read (a
FIFO, ``/dev/zero`` or a directory is refused at once, before any read), and at most ``limit``
bytes (callers pass the 16 MiB a plugin accepts in one request); JSON nested deeper than
:data:`~infrakit._utils.nesting.MAX_DEPTH` levels is refused. Every refusal is a
:class:`JsonFileError` whose message names the file, the problem and what to do.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from infrakit._utils.nesting import MAX_DEPTH, deeper_than, may_be_deeper_than

__all__ = ["JsonFileError", "parse_json_text", "read_json_file", "read_text_file"]

MIB = 1024 * 1024


class JsonFileError(ValueError):
    """A file that cannot be read as JSON; the message is the one line to show."""


def read_text_file(path: str, what: str, limit: int) -> tuple[str, str]:
    """The UTF-8 text of ``path`` (``-`` = stdin) and the label naming it in messages
    (``standard input`` or the path), or raise :class:`JsonFileError`."""
    over_cap = (
        f"over the {limit // MIB} MiB a plugin accepts in one request; shrink it "
        "(large data belongs in files the plugin reads)"
    )
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
        label = "standard input"
    else:
        label = path
        data = _read_regular_file(path, what, limit, over_cap)
    if len(data) > limit:
        raise JsonFileError(f"{what} {label}: {over_cap}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = "; it looks like UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise JsonFileError(
            f"{what} {label}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}{utf16}); save it as UTF-8 JSON and try again"
        ) from None
    return text, label


def read_json_file(path: str, what: str, limit: int) -> object:
    """Parse the UTF-8 JSON file ``path`` (``-`` = stdin), or raise :class:`JsonFileError`."""
    text, label = read_text_file(path, what, limit)
    return parse_json_text(text, what, label)


def parse_json_text(text: str, what: str, label: str) -> object:
    """Parse JSON ``text`` read from ``label``, or raise :class:`JsonFileError` (its message
    names the line and column)."""
    too_deep = (
        f"{what} {label}: JSON nested deeper than {MAX_DEPTH} levels (the limit for specs); "
        "flatten it"
    )
    try:
        doc = json.loads(text)
    except RecursionError:
        raise JsonFileError(too_deep) from None
    except ValueError as exc:
        raise JsonFileError(
            f"{what} {label}: not valid JSON ({exc}); fix the file and try again"
        ) from None
    if may_be_deeper_than(text) and deeper_than(doc):
        raise JsonFileError(too_deep)
    return doc


#: What ``stat`` calls the file types a JSON file must not be.
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_regular_file(path: str, what: str, limit: int, over_cap: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit`` + 1).

    Opened non-blocking (a FIFO does not wait for a writer) and checked with ``fstat`` before the
    first read, so a device or a pipe is refused at once and a huge file is never read whole.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise JsonFileError(f"{what} {path} does not exist; check the path") from None
    except OSError as exc:
        raise JsonFileError(
            f"{what} {path}: cannot read it ({exc.strerror or exc}); check the path"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _NOT_REGULAR if test(info.st_mode)), "not a file")
            raise JsonFileError(
                f"{what} {path} is {kind}; expected a JSON file (or - for standard input)"
            )
        if info.st_size > limit:
            raise JsonFileError(f"{what} {path} is {info.st_size / MIB:.1f} MiB: {over_cap}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # a file still growing is cut at the cap + 1 byte
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise JsonFileError(
            f"{what} {path}: cannot read it ({exc.strerror or exc}); check the path"
        ) from None
    finally:
        os.close(fd)
