"""The ``process`` instance plugin: every instance is a local OS process (work in progress)."""

from __future__ import annotations

from infrakit.plugins.process.plugin import build
from infrakit.spi.plugin import Kind

__all__ = ["KIND"]

KIND = Kind(
    name="process",
    default_name="instance-process",
    summary="instances as local OS processes",
    build=build,
)
