"""infrakit: declarative, self-healing infrastructure, wire-compatible with Docker's InfraKit.

The public surface is small:

* :func:`serve` - serve a plugin object (instance provider, flavor or group) on a UNIX socket.
* :mod:`infrakit.spi` - the plugin protocols and data types (``spi.instance.Spec`` ...).
* :mod:`infrakit.errors` - the exception tree.
* :mod:`infrakit.testing` - fakes, a fake clock and a socket harness for plugin authors' tests.

``serve`` is imported lazily so that ``import infrakit.spi`` (and the CLI) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infrakit._version import __version__

__all__ = ["__version__", "serve"]

if TYPE_CHECKING:
    from infrakit.launch.serving import serve


def __getattr__(name: str) -> Any:
    if name == "serve":
        from infrakit.launch.serving import serve

        return serve
    raise AttributeError(f"module 'infrakit' has no attribute {name!r}")
