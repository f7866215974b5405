"""The process instance plugin's implementation (work in progress)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.plugin import Context as BuildContext
from infrakit.spi.plugin import Served

__all__ = ["build"]


def build(ctx: BuildContext) -> Served:
    """Kind ``process``: not ready yet."""
    raise SpecError("plugin kind process is not implemented yet; use file for now")
