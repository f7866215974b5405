"""systemd's readiness protocol (``sd_notify``), in a few lines of the standard library.

Under a ``Type=notify`` unit, systemd passes ``NOTIFY_SOCKET`` (a UNIX datagram socket, ``@`` for
the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The daemon sends:

* ``READY=1`` once every socket answers (``STATUS=`` says what it serves);
* ``STOPPING=1`` when it begins to shut down;
* ``WATCHDOG=1`` every half watchdog period while it runs (only when ``WATCHDOG_PID`` is unset or
  names this process).

Without ``NOTIFY_SOCKET`` (not under systemd, tests) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket

__all__ = ["notify", "watchdog", "watchdog_interval"]


def notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` fields in one datagram; False when not under systemd (or it failed)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None for no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or not os.environ.get("NOTIFY_SOCKET"):
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6


async def watchdog() -> None:
    """Ping systemd's watchdog for as long as the event loop runs (a task to cancel at stop).
    The pings come from the loop itself, so a wedged loop stops them and systemd restarts us."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
