"""Find plugins: the plugin directory, names like ``group/workers``, ``.listen`` files, stale sockets.

The plugin directory is, in order of precedence:

1. ``$INFRAKIT_PLUGINS_DIR``
2. ``$INFRAKIT_HOME/plugins``
3. ``~/.infrakit/plugins``

Every UNIX socket in it is a plugin named by its file name; a regular file ``<name>.listen`` whose
content is ``tcp://host:port`` advertises a TCP plugin. Anything else is ignored. A plugin name may
carry a sub-object after a slash (``aws/ec2-instance``, ``group/workers``): only the part before
the first slash names the socket.

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

__all__ = ["Entry", "find", "infrakit_home", "list_plugins", "plugins_dir", "probe", "split_name"]


def infrakit_home() -> Path:
    """``$INFRAKIT_HOME`` or ``~/.infrakit``: where specs, instances and plugins live by default."""
    home = os.environ.get("INFRAKIT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".infrakit"


def plugins_dir(create: bool = True) -> Path:
    """The plugin directory (created 0700 if missing and ``create``)."""
    explicit = os.environ.get("INFRAKIT_PLUGINS_DIR")
    path = Path(explicit).expanduser() if explicit else infrakit_home() / "plugins"
    if path.exists() and not path.is_dir():
        raise errors.SpecError(
            f"plugin directory {path} is a file, expected a directory; "
            "remove it or set INFRAKIT_PLUGINS_DIR elsewhere"
        )
    if create and not path.exists():
        path.mkdir(parents=True, mode=0o700)
    return path


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
    directory = directory or plugins_dir()
    found: dict[str, Entry] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for fname in names:
        path = directory / fname
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
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


def find(name: str, directory: Path | None = None) -> Entry:
    """Locate the plugin serving ``name`` (``lookup[/sub]``). Raises PluginNotFoundError."""
    directory = directory or plugins_dir()
    lookup, _ = split_name(name)
    if not lookup:
        raise errors.SpecError("plugin name is empty; expected e.g. instance-file or group")
    path = directory / lookup
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = 0
    if stat.S_ISSOCK(mode):
        return Entry(lookup, str(path), path)
    listen = directory / (lookup + ".listen")
    if listen.is_file():
        url = listen.read_text().strip()
        if url:
            return Entry(lookup, url, listen)
    running = ", ".join(e.name for e in list_plugins(directory)) or "none"
    raise errors.PluginNotFoundError(
        f"plugin not found: {name} (no socket {lookup} in {directory}; running: {running}); "
        f"start it with `infrakit plugin start KIND:{lookup}` or check INFRAKIT_PLUGINS_DIR"
    )


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
