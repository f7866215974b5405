"""The ``process`` kind: its options and its build (psutil and the plugin are imported by ``build``
only)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.option import Option, Parser, non_negative_duration, path
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["ALLOW_OPTION", "DIR_OPTION", "GRACE_OPTION", "KIND", "build"]


def _globs(text: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns or not all(p.startswith("/") for p in patterns):
        raise ValueError("not absolute path globs")
    return patterns


#: ``/usr/bin/*,/opt/app/bin/*`` -> the globs.
absolute_globs = Parser(
    "GLOB,...",
    "comma-separated absolute path globs (`*` stays in one directory)",
    "/usr/bin/*,/opt/app/bin/*",
    _globs,
    (tuple,),
)

DIR_OPTION = Option(
    "dir",
    "directory for the instances' records and logs (default: INFRAKIT_HOME/processes)",
    env="INFRAKIT_INSTANCE_PROCESS_DIR",
    parse=path,
)
GRACE_OPTION = Option(
    "grace",
    "how long Destroy waits after SIGTERM before it sends SIGKILL (Go duration)",
    default="10s",
    parse=non_negative_duration,
)
ALLOW_OPTION = Option(
    "allow",
    "comma-separated absolute path globs of the executables instances may run, e.g. "
    "/usr/bin/*,/opt/app/bin/* (default: any; an Init needs /bin/sh allowed)",
    env="INFRAKIT_PROCESS_ALLOW",
    parse=absolute_globs,
)


def build(ctx: Context) -> Served:
    """Serve a :class:`~infrakit.plugins.process.plugin.ProcessInstancePlugin` on ``dir``."""
    from infrakit.plugins.process.plugin import ProcessInstancePlugin

    directory = ctx.option(KIND, "dir") or ctx.home / "processes"
    if directory.exists() and not directory.is_dir():
        raise SpecError(
            f"process state directory {directory} is a file, expected a directory; "
            f"{ctx.another(KIND, 'dir')}"
        )
    plugin = ProcessInstancePlugin(
        directory, grace=ctx.option(KIND, "grace"), allow=ctx.option(KIND, "allow")
    )
    return Served(
        instance={"": plugin},
        events=plugin,
        start=plugin.start,
        stop=plugin.stop,
        vendor=vendor_info("infrakit-instance-process"),
    )


KIND = Kind(
    name="process",
    default_name="instance-process",
    summary="instances as local OS processes (re-adopted after a restart, exits heal at once)",
    build=build,
    options=(DIR_OPTION, GRACE_OPTION, ALLOW_OPTION),
)
