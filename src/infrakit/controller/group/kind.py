"""The ``group`` plugin kind: the default group controller served as a plugin (InfraKit's
``infrakit-group-default`` / HEAD ``group`` kind).

Options:

* ``poll-interval`` - resync period, Go duration; env ``INFRAKIT_GROUP_POLL_INTERVAL``; default
  ``10s``. Events from instance plugins trigger reconciles immediately; this is the safety net.
* ``store`` - where committed specs live: a file path (default ``<INFRAKIT_HOME>/store.json``) or
  ``memory`` (nothing persisted); env ``INFRAKIT_GROUP_STORE``.
"""

from __future__ import annotations

from infrakit import errors
from infrakit._utils.duration import parse_duration
from infrakit.controller.group.controller import GroupController
from infrakit.spi.plugin import Context, Kind, Option, Served
from infrakit.store import open_store

__all__ = ["KIND", "build"]

OPTIONS = (
    Option(
        "poll-interval",
        "resync period (Go duration, e.g. 10s, 500ms)",
        default="10s",
        env="INFRAKIT_GROUP_POLL_INTERVAL",
    ),
    Option(
        "store",
        "spec store: a file path, or 'memory' (default: INFRAKIT_HOME/store.json)",
        default=None,
        env="INFRAKIT_GROUP_STORE",
    ),
)


async def build(ctx: Context) -> Served:
    raw_interval = ctx.option(KIND, "poll-interval")
    try:
        interval = parse_duration(raw_interval)
    except ValueError as exc:
        raise errors.SpecError(f"group --poll-interval: {exc}") from None
    if interval <= 0:
        raise errors.SpecError("group --poll-interval: must be more than 0, e.g. 10s")
    # An unreadable store stops the start, with the reason; it is never wiped.
    store = ctx.extras.get("store") or open_store(ctx.option(KIND, "store"), ctx.home)
    controller = GroupController(
        ctx.instance_lookup,
        ctx.flavor_lookup,
        store=store,
        poll_interval=interval,
        name=ctx.name,
    )
    return Served(
        group={".": controller},
        events=controller,
        start=controller.start,
        stop=controller.stop,
        vendor={"Name": "infrakit-group-default", "Version": "0.1.0", "Sub": "", "URL": ""},
    )


KIND = Kind(
    name="group",
    default_name="group",
    summary="the default group controller (scaled and quorum groups, rolling updates, healing)",
    build=build,
    options=OPTIONS,
)
