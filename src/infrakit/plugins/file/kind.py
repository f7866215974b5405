"""The ``file`` kind: its option and its build (the plugin module is imported by ``build`` only)."""

from __future__ import annotations

from infrakit.spi.option import Option, path
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["DIR_OPTION", "KIND", "build"]

DIR_OPTION = Option(
    "dir",
    "directory holding one file per instance (default: INFRAKIT_HOME/instances)",
    env="INFRAKIT_INSTANCE_FILE_DIR",
    parse=path,
)


def build(ctx: Context) -> Served:
    """Serve a :class:`~infrakit.plugins.file.plugin.FileInstancePlugin` on ``dir``."""
    from infrakit.plugins.file.plugin import FileInstancePlugin

    plugin = FileInstancePlugin(ctx.option(KIND, "dir") or ctx.home / "instances")
    # Before any socket: a bad directory fails the start with one line naming the option as
    # the user gave it (-o file.dir=..., --dir, --instances-dir or INFRAKIT_INSTANCE_FILE_DIR).
    plugin._ensure_directory(ctx.another(KIND, "dir"))
    return Served(
        instance={"": plugin},
        events=plugin,
        start=plugin.start,
        stop=plugin.stop,
        vendor=vendor_info("infrakit-instance-file"),
    )


KIND = Kind(
    name="file",
    default_name="instance-file",
    summary="instances as JSON files in a directory (InfraKit's tutorial provider)",
    build=build,
    options=(DIR_OPTION,),
)
