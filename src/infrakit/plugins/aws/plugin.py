"""The aws instance plugin's implementation (work in progress)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.plugin import Context, Served


def build(ctx: Context) -> Served:
    """Kind ``aws``: not usable yet."""
    raise SpecError("plugin kind aws is not finished yet; use another instance plugin")
