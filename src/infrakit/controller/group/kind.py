"""The ``group`` plugin kind: the default group controller served as a plugin (InfraKit's
``infrakit-group-default`` / HEAD ``group`` kind).

Options (``infrakit plugin kinds`` lists them with their defaults and variables):

* ``poll-interval`` - resync period. Events from instance plugins trigger reconciles immediately;
  this is the safety net. The manager kind reuses this option.
* ``store`` - where committed specs live: a file path (default ``<INFRAKIT_HOME>/store.json``) or
  ``memory`` (nothing persisted).
* ``http`` - ``HOST:PORT`` of the HTTP listener for humans and probes (status page, ``/healthz``,
  ``/readyz``, ``/metrics``; :mod:`infrakit.launch.http`). The manager kind reuses this option
  (``infrakit up --http``).

Listing this kind imports no controller code: ``build`` does.
"""

from __future__ import annotations

from infrakit.spi.option import Option, duration, host_port
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["DEFAULT_POLL_INTERVAL", "HTTP_OPTION", "KIND", "POLL_INTERVAL_OPTION", "build"]

#: How often the group controller re-reads every group when no event says so.
DEFAULT_POLL_INTERVAL = "10s"

POLL_INTERVAL_OPTION = Option(
    "poll-interval",
    "resync period (Go duration, e.g. 10s, 500ms)",
    default=DEFAULT_POLL_INTERVAL,
    env="INFRAKIT_GROUP_POLL_INTERVAL",
    parse=duration,
)
STORE_OPTION = Option(
    "store",
    "spec store: a file path, or 'memory' (default: INFRAKIT_HOME/store.json)",
    env="INFRAKIT_GROUP_STORE",
)
HTTP_OPTION = Option(
    "http",
    "HOST:PORT of the status page, /healthz, /readyz and /metrics (off loopback: token or TLS)",
    env="INFRAKIT_HTTP",
    parse=host_port,
)


async def build(ctx: Context) -> Served:
    from infrakit.controller.group.metadata import GroupMetadata
    from infrakit.controller.group.metered import MeteredControllers
    from infrakit.controller.group.readiness import readiness
    from infrakit.store import open_store

    # An unreadable store stops the start, with the reason; it is never wiped.
    store = ctx.extras.get("store") or open_store(
        ctx.option(KIND, "store"), ctx.home, next_step=ctx.another(KIND, "store")
    )
    metered = MeteredControllers(ctx, poll_interval=ctx.option(KIND, "poll-interval"))
    controller = metered.make(store)
    return Served(
        metrics=metered.recorder,
        group={".": controller},
        metadata={".": GroupMetadata(controller)},
        events=controller,
        start=controller.start,
        stop=controller.stop,
        vendor=vendor_info("infrakit-group-default"),
        http=ctx.option(KIND, "http"),
        ready=lambda: readiness(controller.snapshots, store),
    )


KIND = Kind(
    name="group",
    default_name="group",
    summary="the default group controller (scaled and quorum groups, rolling updates, healing)",
    build=build,
    options=(POLL_INTERVAL_OPTION, STORE_OPTION, HTTP_OPTION),
)
