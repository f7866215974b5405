"""The public test kit: in-memory fakes, a fake clock and a socket harness.

This is the only fake style in infrakit; our own tests use exactly these. See docs/testing.md.
Install what a plugin author's tests need with ``pip install 'pyinfrakit[test]'``.
"""

from infrakit.testing.clock import FakeClock
from infrakit.testing.fakes import (
    FakeElection,
    FakeElector,
    FakeFlavorPlugin,
    FakeInstancePlugin,
    lookup,
    wait_until,
)
from infrakit.testing.harness import Harness, serve_in_memory, serve_plugin, short_tempdir

__all__ = [
    "FakeClock",
    "FakeElection",
    "FakeElector",
    "FakeFlavorPlugin",
    "FakeInstancePlugin",
    "Harness",
    "lookup",
    "serve_in_memory",
    "serve_plugin",
    "short_tempdir",
    "wait_until",
]
