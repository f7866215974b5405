"""The big reads without click: ``group describe GID`` and ``instance --name N describe``.

Importing click (and what it imports: ``inspect``, ``uuid``, ``datetime`` ...) is about 20 ms of
the ~85 ms such a command takes, and these two are what scripts and the benchmarks run most.
:func:`run` recognises exactly these shapes, as click would parse them:

* ``group [--name N] describe GID [-q|--quiet]``
* ``instance --name N describe [-q|--quiet]``

with ``--name N`` (or ``--name=N``) anywhere, as :class:`~infrakit.cli._common.NamedGroup`
allows. Anything else - help, ``-o``, ``--tags``, ``-p``, a root option, shell completion, a
second argument - is not taken and goes to click. What is taken prints what the click command
prints, from the same code (:mod:`infrakit.cli.reads`): the same lines on stdout, the same one
``Error:`` line on stderr and exit status 1 on a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from infrakit import errors
from infrakit._utils import collector
from infrakit.cli import reads

__all__ = ["Read", "leave", "parse", "run"]

QUIET = ("-q", "--quiet")


@dataclass(frozen=True)
class Read:
    """A read the fast path takes: which command, of which plugin, with which arguments."""

    command: str  # "group" or "instance"
    name: str
    gid: str = ""
    quiet: bool = False


def parse(argv: list[str]) -> Read | None:
    """The read ``argv`` (without the program name) asks for, or None when click must parse it."""
    if not argv or argv[0] not in ("group", "instance") or "--" in argv:
        return None
    name: str | None = "group" if argv[0] == "group" else None
    rest: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):  # NamedGroup moves --name from anywhere to the front
        arg = args[i]
        if arg == "--name" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
            continue
        if arg.startswith("--name="):
            name = arg[len("--name=") :]
        else:
            rest.append(arg)
        i += 1
    if not name or not rest or rest[0] != "describe":
        return None
    quiet = any(a in QUIET for a in rest[1:])
    others = [a for a in rest[1:] if a not in QUIET]
    if argv[0] == "instance":
        return Read("instance", name, quiet=quiet) if not others else None
    if len(others) != 1 or others[0].startswith("-"):
        return None
    return Read("group", name, others[0], quiet)


def run(argv: list[str]) -> bool:
    """Run ``argv`` if it is a read the fast path takes (True), else leave it to click (False).
    A failure prints its one ``Error:`` line and exits 1, as the click command does."""
    read = parse(argv)
    if read is None or "_INFRAKIT_COMPLETE" in os.environ:
        return False
    try:
        with collector.paused():  # a short process: 100 000 rows need no collection
            out, warning = _perform(read)
    except (errors.InfrakitError, reads.ReadFailed) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _write(sys.stderr, "\nAborted!\n")
        sys.exit(1)
    if warning:
        _write(sys.stderr, warning + "\n")
    try:
        _write(sys.stdout, out)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: as click does, quietly, status 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    return True


def leave() -> NoReturn:
    """End the process once a read is printed, without the interpreter's clean-up: freeing
    100 000 decoded rows one by one took 50-150 ms after the answer was out."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        os._exit(1)
    os._exit(0)


def _perform(read: Read) -> tuple[str, str | None]:
    """(stdout, a warning for stderr or None) of ``read``."""
    client = reads.open_client(read.name)
    try:
        if read.command == "group":
            instances, status = reads.describe_group(client, read.gid)
            warning = reads.unknown_warning(read.gid, status) if read.quiet else None
            return reads.describe_lines(read.gid, instances, status, read.quiet), warning
        from infrakit.spi.instance import INTERFACE

        params = {"Tags": {}, "Properties": False}
        result = reads.typed_call(
            client, read.name, INTERFACE, "Instance.DescribeInstances", params
        )
        lines = reads.instance_lines(result.get("descriptions") or [], read.quiet)
        return ("\n".join(lines) + "\n" if lines else ""), None
    finally:
        client.close()


def _write(stream: object, text: str) -> None:
    """``text`` as ``click.echo`` writes it: escapes stripped when not a terminal, through click
    itself when the text has any (or the stream is not UTF-8), so the bytes stay the same."""
    if "\x1b" in text or not _utf8(stream):
        import click

        click.echo(text, nl=False, err=stream is sys.stderr)
        return
    write: Callable[[str], object] = stream.write  # type: ignore[attr-defined]
    write(text)


def _utf8(stream: object) -> bool:
    return str(getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8"


def _fail(message: str) -> NoReturn:
    from infrakit.cli._common import CliError

    CliError(message).show()
    sys.exit(1)
