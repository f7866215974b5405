"""Group controllers counted into one process's metrics: the single place that wires a
:class:`~infrakit.controller.group.controller.GroupController` to a
:class:`~infrakit.metrics.Recorder` (the ``group`` kind makes one controller, the ``manager`` kind
one each time it starts to lead).

Wired here: every plugin call timed (:func:`~infrakit.metrics.timed_lookups`), every store write
timed (:class:`~infrakit.metrics.TimedStore`), each reconcile pass and each event counted
(``on_pass`` / ``on_notice``), and the scrape-time reads of the groups and the work queue
(:func:`~infrakit.metrics.watch_controller`) pointed at the controller that runs now.
"""

from __future__ import annotations

from collections.abc import Callable

from infrakit._utils.aio import Broker
from infrakit.controller.group.controller import GroupController
from infrakit.metrics import Recorder, TimedStore, timed_lookups, watch_controller
from infrakit.spi.event import Event
from infrakit.spi.plugin import Context
from infrakit.store import Store

__all__ = ["MeteredControllers"]


class MeteredControllers:
    """Makes the group controllers of one plugin, all counted into :attr:`recorder`; a scrape
    reads the one made last unless :meth:`watch` says otherwise."""

    def __init__(self, ctx: Context, *, poll_interval: float) -> None:
        self.ctx = ctx
        self.poll_interval = poll_interval
        #: The numbers behind this plugin's ``/metrics``.
        self.recorder = Recorder()
        self.instances, self.flavors = timed_lookups(
            ctx.instance_lookup, ctx.flavor_lookup, self.recorder
        )
        #: The controller made last.
        self.made: GroupController | None = None
        self.watch(lambda: self.made)

    def watch(self, current: Callable[[], GroupController | None]) -> None:
        """Scrapes read the groups and work queue of ``current()`` (the manager: the controller
        it runs while it leads, None on a follower)."""
        watch_controller(self.recorder, current)

    def make(self, store: Store, events: Broker[Event] | None = None) -> GroupController:
        """A controller over ``store`` (publishing into ``events`` when given), instrumented."""
        self.made = GroupController(
            self.instances,
            self.flavors,
            store=TimedStore(store, self.recorder),
            poll_interval=self.poll_interval,
            name=self.ctx.name,
            events=events,
            on_pass=self.recorder.reconciled,
            on_notice=self.recorder.group_event,
            loadbalancer_lookup=self.ctx.loadbalancer_lookup,
        )
        return self.made
