"""Host addresses: is a listen address loopback-only, and a TCP port that is free now.

One home for both: the RPC server, the manager's ``--listen``, the ``--http`` listener decide
their guards with :func:`is_loopback`; the process and libvirt plugins (and the test kit) pick
ports with :func:`free_tcp_port`.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["free_tcp_port", "is_loopback"]


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` (bracketed or not) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on right now (the kernel picks it; whoever
    binds it next, moments later, gets it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
