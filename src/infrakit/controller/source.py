"""Instance events -> queue keys: what makes a controller heal in milliseconds instead of a poll.

Instance plugins that publish events (the file plugin on inotify, the process plugin on child
exit, docker on the engine's event stream, the simulator) are followed on their
``instance/`` topic, one subscription per plugin however many groups use it. Each event is
*routed*: the controller's router says which group keys it concerns - normally the one group that
owns the instance ID - and those keys are queued; nothing else is. A plugin that restarts is
subscribed again with backoff (and every group using it is queued once it is back, to catch up);
one that publishes no events (Go InfraKit plugins) is left to the resync timer.

Routing: an event names an instance ID; the group that owns it (as of its last observation, or
since its Provision returned the ID) is the one queued. An event may also name its group
(``spi.event.instance_change`` puts the group tag in ``Data``): then only that group is queued,
or none when it is not one of ours. An ID no group owns yet, in an event that names no group - a new instance,
one of ours whose Provision reply has not arrived, or one created out of band - concerns every
group of the plugin, except that a ``created`` event skips the groups with creates of their own in
flight: it is almost certainly the echo of such a create, whose end triggers a pass anyway, and
skipping it saves an O(members) pass per instance during a big scale-up. For the same reason the
``created`` echo of an ID the group's own Provision returned queues nothing while that group still
has creates in flight.

The mode of each plugin's stream - ``events``, ``reconnecting`` or ``polling`` - is shown by
``infrakit group describe``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from infrakit import errors
from infrakit._utils.aio import cancel_and_wait
from infrakit._utils.clock import Clock
from infrakit.spi import event as spi_event
from infrakit.spi.plugin import InstanceLookup

__all__ = ["InstanceEvents"]

log = logging.getLogger(__name__)

#: ``creating(group_key)`` -> the group has creates of its own in flight.
Creating = Callable[[str], bool]

#: Re-subscription delays after a stream broke: doubled up to the maximum.
RESUBSCRIBE_INITIAL = 0.5
RESUBSCRIBE_MAX = 10.0
#: How often to look again whether a plugin without events gained them (it may be replaced).
NO_EVENTS_RETRY = 30.0


class InstanceEvents:
    """Follows instance plugins' event streams and queues the keys their events concern."""

    def __init__(
        self,
        lookup: InstanceLookup,
        clock: Clock,
        *,
        creating: Creating,
        enqueue: Callable[[str], None],
    ) -> None:
        """``lookup`` finds the plugins to follow; ``creating`` and ``enqueue`` are the
        controller's view of its groups (see the module docstring for how they route events)."""
        self._lookup = lookup
        self._clock = clock
        self._creating = creating
        self._enqueue = enqueue
        #: Instance ID -> the group key that owns it.
        self._owner: dict[str, str] = {}
        #: Group key -> the instance IDs it owns as of its last observation (the caller's set,
        #: kept as it is: see ``own``).
        self._owned: dict[str, Collection[str]] = {}
        #: Group key -> the IDs its Provision returned since (see ``provisioned``).
        self._provisioned: dict[str, set[str]] = {}
        #: Plugin name -> the group keys whose instances it provides.
        self._users: dict[str, set[str]] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        #: Plugin name -> "events" | "polling" | "reconnecting".
        self.mode: dict[str, str] = {}

    def follow(self, plugin: str, key: str) -> None:
        """Group ``key`` uses ``plugin``: make sure its events are followed (idempotent)."""
        self._users.setdefault(plugin, set()).add(key)
        task = self._watches.get(plugin)
        if task is None or task.done():
            self._watches[plugin] = asyncio.create_task(self._watch(plugin))

    def release(self, plugin: str, key: str) -> None:
        """Group ``key`` no longer uses ``plugin``; once no group does, stop following it."""
        users = self._users.get(plugin, set())
        users.discard(key)
        if users:
            return
        self._users.pop(plugin, None)
        task = self._watches.pop(plugin, None)
        if task is not None:
            task.cancel()
        self.mode.pop(plugin, None)

    # --- routing -------------------------------------------------------------------------------

    def own(self, key: str, ids: Collection[str]) -> None:
        """Group ``key`` owns exactly ``ids`` now (its last observation). ``ids`` is kept, not
        copied (the controller hands the group's ``last_seen``, which it replaces and never
        changes in place): a copy was ~50 bytes per instance."""
        before = self._owned.get(key, ())
        for iid in before:
            if iid not in ids and self._owner.get(iid) == key:
                del self._owner[iid]
        for iid in self._provisioned.pop(key, ()):
            if iid not in ids and self._owner.get(iid) == key:
                del self._owner[iid]
        for iid in ids:
            if iid not in before:
                self._owner[iid] = key
        if ids:
            self._owned[key] = ids
        else:
            self._owned.pop(key, None)

    def provisioned(self, key: str, iid: str) -> None:
        """Provision returned ``iid`` for group ``key``: its events concern that group before
        it is listed (a provider whose listing lags)."""
        self._owner[iid] = key
        self._provisioned.setdefault(key, set()).add(iid)

    def route(self, plugin: str, ev: spi_event.Event) -> list[str]:
        """The group keys an instance event of ``plugin`` concerns (see the module docstring)."""
        users = self._users.get(plugin, set())
        owner = self._owner.get(ev.id)
        if owner is not None and owner in users:
            if ev.type == "created" and self._creating(owner):
                # The echo of its own Provision (the ID was recorded when it returned): the end
                # of the group's creates queues a pass anyway. Queueing one per echo ran a full
                # O(members) pass after nearly every create of a big scale-up.
                return []
            return [owner]
        tagged = spi_event.group_of(ev)
        if tagged is not None:
            # The event names its group: that one, or none if it is not ours.
            users = {tagged} if tagged in users else set()
        if ev.type == "created":
            return [key for key in users if not self._creating(key)]
        return list(users)

    # --- subscriptions ---------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop following every plugin."""
        await cancel_and_wait(*self._watches.values())
        self._watches.clear()

    def _catch_up(self, plugin: str) -> None:
        """Queue every group of ``plugin`` once: events may have been missed."""
        for key in list(self._users.get(plugin, ())):
            self._enqueue(key)

    async def _watch(self, plugin_name: str) -> None:
        """Follow the plugin's instance events; re-subscribe after restarts; else poll."""
        delay = RESUBSCRIBE_INITIAL
        while True:
            try:
                plugin = self._lookup(plugin_name)
                if not isinstance(plugin, spi_event.Subscribable):
                    self.mode[plugin_name] = "polling"
                    return
                async for ev in plugin.subscribe(spi_event.TOPIC_INSTANCES):
                    if self.mode.get(plugin_name) != "events":
                        self.mode[plugin_name] = "events"
                        delay = RESUBSCRIBE_INITIAL
                        if ev.type == "subscribed":
                            self._catch_up(plugin_name)  # live again: whatever happened meanwhile
                            continue
                    for key in self.route(plugin_name, ev):
                        self._enqueue(key)
                self.mode[plugin_name] = "reconnecting"
            except asyncio.CancelledError:
                raise
            except errors.NotFoundError:
                # The plugin publishes no events (a Go plugin): the resync timer does the work.
                self.mode[plugin_name] = "polling"
            except Exception as exc:
                log.debug("event stream of %s interrupted: %s", plugin_name, exc)
                self.mode[plugin_name] = "reconnecting"
            self._catch_up(plugin_name)
            if self.mode.get(plugin_name) == "polling":
                await self._clock.sleep(NO_EVENTS_RETRY)
            else:
                await self._clock.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX)
