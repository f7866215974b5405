"""The ``vanilla`` kind (the plugin module is imported by ``build`` only)."""

from __future__ import annotations

from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["KIND", "build"]


def build(ctx: Context) -> Served:
    from infrakit.plugins.vanilla.plugin import VanillaFlavor

    return Served(flavor={"": VanillaFlavor()}, vendor=vendor_info("infrakit-flavor-vanilla"))


KIND = Kind(
    name="vanilla",
    default_name="flavor-vanilla",
    summary="adds init lines, tags and attachments to every instance",
    build=build,
)
