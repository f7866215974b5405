"""Fixtures shared by the wire tests: a fake instance plugin served on a real UNIX socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infrakit.testing import serve_plugin
from infrakit.testing.fakes import FakeInstancePlugin


@pytest.fixture
async def sock() -> AsyncIterator[Path]:
    """The socket of a served :class:`FakeInstancePlugin` (named ``inst``)."""
    async with serve_plugin(FakeInstancePlugin(), "inst") as h:
        yield h.socket
