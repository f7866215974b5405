"""The public test kit: in-memory fakes, a fake clock and a socket harness.

This is the only fake style in infrakit; our own tests use exactly these. See docs/testing.md.
"""

from infrakit.testing.clock import FakeClock
from infrakit.testing.harness import Harness, serve_plugin, short_tempdir

__all__ = ["FakeClock", "Harness", "serve_plugin", "short_tempdir"]
