"""The ``combo`` kind (the plugin module is imported by ``build`` only)."""

from __future__ import annotations

from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["KIND", "build"]


def build(ctx: Context) -> Served:
    from infrakit.plugins.combo.plugin import ComboFlavor

    return Served(
        flavor={"": ComboFlavor(ctx.flavor_lookup)}, vendor=vendor_info("infrakit-flavor-combo")
    )


KIND = Kind(
    name="combo",
    default_name="flavor-combo",
    summary="combines several flavors into one",
    build=build,
)
