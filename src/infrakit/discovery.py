"""Find plugins: the plugin directory, names like ``group/workers``, ``.listen`` files, stale sockets.

The plugin directory is, in order of precedence:

1. ``$INFRAKIT_PLUGINS_DIR``
2. ``$INFRAKIT_HOME/plugins``
3. ``~/.infrakit/plugins``

Every UNIX socket in it is a plugin named by its file name; a regular file ``<name>.listen`` whose
content is ``tcp://host:port`` advertises a TCP plugin. Anything else is ignored. A plugin name may
carry a sub-object after a slash (``aws/ec2-instance``, ``group/workers``): only the part before
the first slash names the socket.

Only serving a plugin creates the directory (:func:`plugins_dir` with ``create=True``); reading
it never does: a missing directory simply holds no plugins. A directory that cannot be one (a path
through a regular file) or cannot be read is a :class:`~infrakit.errors.SpecError` naming the
variable to fix.

The directory must be private: anyone who can write to it can put a socket of their own under a
plugin's name. A pre-existing directory writable by group or others (``0777``, ``0775``) is made
``0700`` with one warning when it is ours, and refused with one line when another user owns it.

A socket whose process died is *stale*: connecting to it is refused. :func:`probe` tells live from
stale; ``infrakit plugin ls`` shows stale ones as such and starting a plugin of the same name
replaces the stale file (see :func:`infrakit.rpc.server.prepare_socket_path`).
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from infrakit import errors
from infrakit._utils.private import private_dir

__all__ = [
    "Entry",
    "find",
    "infrakit_home",
    "list_plugins",
    "plugins_dir",
    "probe",
    "remove_stale",
    "split_name",
]


def infrakit_home() -> Path:
    """``$INFRAKIT_HOME`` or ``~/.infrakit``: where specs, instances and plugins live by default."""
    home = os.environ.get("INFRAKIT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".infrakit"


def _setting() -> str:
    """What chose the plugin directory, as the next step names it."""
    if os.environ.get("INFRAKIT_PLUGINS_DIR"):
        return "INFRAKIT_PLUGINS_DIR (--plugins-dir)"
    if os.environ.get("INFRAKIT_HOME"):
        return "INFRAKIT_HOME (or INFRAKIT_PLUGINS_DIR)"
    return "INFRAKIT_PLUGINS_DIR"


def plugins_dir(create: bool = True) -> Path:
    """The plugin directory (created 0700 if missing and ``create``: only servers create it).

    Raises :class:`~infrakit.errors.SpecError` if it is not (and cannot become) a directory.
    """
    explicit = os.environ.get("INFRAKIT_PLUGINS_DIR")
    path = Path(explicit).expanduser() if explicit else infrakit_home() / "plugins"
    # The nearest part of the path that exists must be a directory.
    existing = path
    try:
        while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
            existing = existing.parent
        not_a_dir = existing.exists() and not existing.is_dir()
        missing = not path.is_dir()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if not_a_dir and existing == path:
        raise errors.SpecError(
            f"plugin directory {path} is a file, expected a directory; "
            f"remove it or set {_setting()} to a directory"
        )
    if not_a_dir:
        raise errors.SpecError(
            f"plugin directory {path} cannot exist: {existing} is a file, expected a directory; "
            f"set {_setting()} to a directory"
        )
    if create and missing:
        try:
            private_dir(path)
        except OSError as exc:
            raise errors.SpecError(
                f"cannot create plugin directory {path} ({exc.strerror or exc}); "
                f"set {_setting()} to a directory you can write"
            ) from exc
    elif not missing:
        _make_private(path)
    return path


def _make_private(path: Path) -> None:
    """Refuse (another user's) or fix (ours) an existing plugin directory others can write to."""
    try:
        info = path.stat()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return
    mode = f"{stat.S_IMODE(info.st_mode):04o}"
    if info.st_uid != os.geteuid():
        raise errors.SpecError(
            f"plugin directory {path} is writable by other users (mode {mode}) and belongs to "
            f"uid {info.st_uid}, not you: anyone could replace its plugin sockets; set "
            f"{_setting()} to a directory of your own"
        )
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        raise errors.SpecError(
            f"plugin directory {path} is writable by other users (mode {mode}) and cannot be "
            f"made private ({exc.strerror or exc}); chmod 700 it or set {_setting()} elsewhere"
        ) from exc
    import logging  # only on this path: the CLI starts without it

    logging.getLogger(__name__).warning(
        "plugin directory %s was writable by other users (mode %s), who could replace its "
        "plugin sockets; changed it to 0700",
        path,
        mode,
    )


def _unreadable(directory: Path, exc: OSError) -> errors.SpecError:
    return errors.SpecError(
        f"cannot read plugin directory {directory} ({exc.strerror or exc}); "
        f"fix its permissions or set {_setting()} elsewhere"
    )


def split_name(name: str) -> tuple[str, str]:
    """``"aws/ec2-instance"`` -> ``("aws", "ec2-instance")``; ``"group"`` -> ``("group", "")``."""
    lookup, _, sub = name.partition("/")
    return lookup, sub


@dataclass(frozen=True, slots=True)
class Entry:
    """One plugin found in the directory."""

    name: str
    #: A socket path, or ``tcp://host:port`` from a ``.listen`` file.
    address: str
    path: Path

    @property
    def is_tcp(self) -> bool:
        return "://" in self.address


def list_plugins(directory: Path | None = None) -> list[Entry]:
    """All plugins in the directory, sorted by name (sockets and ``.listen`` files)."""
    directory = directory or plugins_dir(create=False)
    found: dict[str, Entry] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unreadable(directory, exc) from exc
    for fname in names:
        path = directory / fname
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISSOCK(mode):
            found[fname] = Entry(fname, str(path), path)  # a socket wins over a .listen file
        elif stat.S_ISREG(mode) and fname.endswith(".listen"):
            name = fname[: -len(".listen")]
            try:
                url = path.read_text().strip()
            except OSError:
                continue
            if url and name not in found:
                found[name] = Entry(name, url, path)
    return [found[k] for k in sorted(found)]


def find(name: str, directory: Path | None = None, *, start_hint: str | None = None) -> Entry:
    """Locate the plugin serving ``name`` (``lookup[/sub]``). Raises PluginNotFoundError.

    ``start_hint`` is the next step the error names (``start it with `infrakit up` ...``) when the
    caller knows which kind serves that name; by default it points at ``infrakit plugin kinds``.
    """
    directory = directory or plugins_dir(create=False)
    lookup, _ = split_name(name)
    if not lookup:
        raise errors.SpecError("plugin name is empty; expected e.g. instance-file or group")
    path = directory / lookup
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = 0
    except OSError as exc:
        raise _unreadable(directory, exc) from exc
    if stat.S_ISSOCK(mode):
        return Entry(lookup, str(path), path)
    listen = directory / (lookup + ".listen")
    if listen.is_file():
        try:
            url = listen.read_text().strip()
        except OSError as exc:
            raise _unreadable(directory, exc) from exc
        if url:
            return Entry(lookup, url, listen)
    running = ", ".join(e.name for e in list_plugins(directory)) or "none"
    hint = start_hint or (
        f"start it with `infrakit plugin start KIND:{lookup}` "
        "(`infrakit plugin kinds` lists the KINDs)"
    )
    raise errors.PluginNotFoundError(
        f"plugin not found: {name} (not running: no socket {lookup} in {directory}; "
        f"running: {running}); {hint}, or check INFRAKIT_PLUGINS_DIR"
    )


def remove_stale(name: str, directory: Path) -> list[str]:
    """Remove what a dead plugin ``name`` left in ``directory``: its socket and its ``.listen``
    file. Returns what was removed (``["socket", ".listen file"]``). The caller has probed it."""
    removed = []
    for path, what, wanted in (
        (directory / name, "socket", stat.S_ISSOCK),
        (directory / f"{name}.listen", ".listen file", stat.S_ISREG),
    ):
        try:
            if wanted(path.lstat().st_mode):
                path.unlink()
                removed.append(what)
        except FileNotFoundError:
            continue
    return removed


def probe(entry: Entry, timeout: float = 0.5) -> bool:
    """True if something accepts connections at the entry's address (live), False if stale."""
    if entry.is_tcp:
        hostport = entry.address.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(entry.address)
    except OSError:
        return False
    finally:
        sock.close()
    return True
