"""The Event SPI: plugins that notice changes publish them; subscribers react in milliseconds.

A plugin that can observe its instances (the file plugin watches its directory, the process plugin
sees exits, the docker plugin reads the engine's event stream) implements :class:`Source`. Served
over RPC, a source is exposed at ``GET /events?topic=...`` as Server-Sent Events, the endpoint
shape of InfraKit HEAD; in-process, the group controller subscribes directly.

Events are *triggers*, never state: a subscriber must re-read the actual state (level-triggered).
Topics are slash paths; a subscription to ``instance/`` (trailing slash) receives every topic under
it, one without a trailing slash only that exact topic (InfraKit's rule).

A source may also remember its recent events (:class:`Recent`, the group controller and the
manager do): ``GET /events?topic=T&since=30s`` then replays the ones of the last 30 s before the
live ones, so a subscriber that arrives late still sees a heal that is already over. Without
``since`` the stream is InfraKit's, unchanged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from infrakit._utils.topics import topic_matches
from infrakit.spi.types import (
    GROUP_TAG,
    JSON,
    InterfaceSpec,
    ci_get,
    ci_view,
    format_timestamp,
    want_str,
)

__all__ = [
    "INTERFACE",
    "RECENT_EVENTS",
    "TOPIC_INSTANCES",
    "TOPIC_INSTANCE_CHANGE",
    "Event",
    "Recent",
    "Source",
    "Subscribable",
    "event_from_wire",
    "event_to_wire",
    "group_of",
    "instance_change",
    "topic_matches",
]

INTERFACE = InterfaceSpec("Event", "0.1.1")

#: Topic an instance plugin publishes on when its set of instances changes.
TOPIC_INSTANCE_CHANGE = "instance/change"
#: What the group controller subscribes to: every instance topic of a plugin.
TOPIC_INSTANCES = "instance/"
#: How many recent events a :class:`Recent` source remembers for late subscribers.
RECENT_EVENTS = 1000


def _now() -> str:
    return format_timestamp(time.time(), "microseconds")


@dataclass(slots=True)
class Event:
    """One event. ``data`` is any JSON; ``timestamp`` is RFC 3339 - given, or formatted from
    ``at`` (when it was made) the first time someone asks for it: most events never leave the
    process, and a 10 000-instance scale-up makes 20 000 of them."""

    topic: str
    type: str
    id: str = ""
    message: str = ""
    data: JSON = None
    stamp: str = ""
    at: float = field(default_factory=time.time)

    @property
    def timestamp(self) -> str:
        if not self.stamp:
            self.stamp = format_timestamp(self.at, "microseconds")
        return self.stamp


@runtime_checkable
class Source(Protocol):
    """Something that publishes events."""

    def topics(self) -> list[str]:
        """The topics this source publishes on."""

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        """Yield events matching ``topic`` until the consumer stops iterating."""


@runtime_checkable
class Recent(Protocol):
    """A source that remembers its last :data:`RECENT_EVENTS` events with their time."""

    def recent(self, topic: str, since: float) -> list[Event]:
        """The remembered events on ``topic`` published at or after wall time ``since``, oldest
        first. Called right after :meth:`Source.subscribe` (no ``await`` between), the two
        together miss nothing and repeat nothing."""


@runtime_checkable
class Subscribable(Protocol):
    """Something events can be followed from: a :class:`Source`, or a client or adapter for one
    (which raises :class:`infrakit.errors.NotFoundError` from the stream when the plugin
    publishes no events)."""

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        """Yield events matching ``topic`` until the consumer stops iterating."""


def instance_change(
    change: str, instance_id: str, tags: dict[str, str] | None = None, message: str = ""
) -> Event:
    """An instance plugin's ``instance/change`` event (``created``, ``changed``, ``deleted``).

    When the instance's tags are known, its group travels in ``Data`` as
    ``{"Tags": {"infrakit.group": <id>}}`` - only that tag, so events stay small - which lets a
    group controller queue that group alone instead of every group of the plugin."""
    group = (tags or {}).get(GROUP_TAG)
    data: JSON = {"Tags": {GROUP_TAG: group}} if group else None
    return Event(
        topic=TOPIC_INSTANCE_CHANGE, type=change, id=instance_id, message=message, data=data
    )


def group_of(event: Event) -> str | None:
    """The group an instance event names in ``Data.Tags`` (see :func:`instance_change`)."""
    data = event.data
    if isinstance(data, dict):
        tags = data.get("Tags")
        if isinstance(tags, dict):
            group = tags.get(GROUP_TAG)
            if isinstance(group, str) and group:
                return group
    return None


def event_to_wire(event: Event) -> dict[str, Any]:
    return {
        "Topic": event.topic,
        "Type": event.type,
        "ID": event.id,
        "Message": event.message,
        "Timestamp": event.timestamp,
        "Data": event.data,
    }


def event_from_wire(obj: Any) -> Event:
    view = ci_view(obj, "Event")
    return Event(
        topic=want_str(ci_get(view, "Topic"), "Event.Topic"),
        type=want_str(ci_get(view, "Type"), "Event.Type"),
        id=want_str(ci_get(view, "ID"), "Event.ID"),
        message=want_str(ci_get(view, "Message"), "Event.Message"),
        data=ci_get(view, "Data"),
        stamp=want_str(ci_get(view, "Timestamp"), "Event.Timestamp") or _now(),
    )
