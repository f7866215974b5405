"""One managed group at run time: its settings, its memory, its last observation, its tasks.

:class:`~infrakit.controller.group.state.GroupState` is the pure part (what the decisions read);
:class:`Group` adds what only a running controller has - background tasks, the event Status
waits on - so the pure modules never see asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from infrakit.controller.group.observe import Observation
from infrakit.controller.group.spec import GroupSettings
from infrakit.controller.group.state import GroupState

__all__ = ["FRESH_FOR", "OBSERVE_SLOW", "Group", "hidden_due", "min_delay", "visibility_due"]

#: An observation counts as fresh (the group may say Converged) for this many seconds.
FRESH_FOR = 1.0
#: A DescribeInstances running longer than this makes the group's actual size unknown.
OBSERVE_SLOW = 2.0


@dataclass
class Group:
    """One managed group."""

    settings: GroupSettings
    state: GroupState = field(default_factory=GroupState)
    #: Raw properties of the last spec that fully converged (rollback target).
    stable: Any = None
    #: The last pass's decision: size right, every member at the desired config.
    converged: bool = False
    #: Consecutive failed observations (their retry delay doubles).
    observe_failures: int = 0
    #: Reconcile passes run for this group (Status shows it; the scale benches count it).
    passes: int = 0
    #: Creates and destroys running in the background.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: The last successful observation (what Status and DescribeGroup report).
    observation: Observation | None = None
    #: Since when a DescribeInstances of a pass is running (None: none is).
    observing_since: float | None = None
    #: Why the latest observation attempt failed ("" when it succeeded).
    observe_error: str = ""
    #: Set (and replaced) after every observation attempt: Status waits on it.
    observed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        """The group's ID."""
        return self.settings.id

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; it is cancelled when the group is forgotten."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def unknown_reason(self, now: float) -> str:
        """Why the group's actual instances are unknown now ("" when they are known): the last
        attempt failed, one has been running too long, or none was made yet."""
        plugin = self.settings.properties.instance.plugin
        if self.observe_error:
            return f"cannot list instances: {self.observe_error}"
        if self.observing_since is not None and now - self.observing_since > OBSERVE_SLOW:
            waited = now - self.observing_since
            return f"plugin {plugin} has not answered DescribeInstances for {waited:.1f}s"
        if self.observation is None:
            return f"not observed yet (waiting for plugin {plugin})"
        return ""

    def truly_converged(self, now: float, fresh_for: float = FRESH_FOR) -> bool:
        """Converged, truthfully: the last pass matched the spec, on an observation at most
        ``fresh_for`` seconds old, of a provider that can be observed, with nothing in flight."""
        obs = self.observation
        return (
            self.converged
            and obs is not None
            and now - obs.at <= fresh_for
            and not self.unknown_reason(now)
            and not self.state.creating
            and not self.state.destroying
        )

    def wake_observers(self) -> None:
        """An observation attempt ended: wake the Status calls waiting for it."""
        self.observed.set()
        self.observed = asyncio.Event()


def visibility_due(group: Group, now: float) -> float | None:
    """Seconds until the first provisioned instance must have become visible."""
    deadlines = [c.visible_by - now for c in group.state.creating.values() if c.visible_by]
    return max(0.0, min(deadlines)) if deadlines else None


def hidden_due(group: Group, now: float) -> float | None:
    """Seconds until an instance we destroyed but the provider still lists stops being hidden
    (then it is a member again, and destroyed again if it should not be)."""
    until = group.state.destroyed_until
    return max(0.0, min(until.values()) - now) if until else None


def min_delay(*delays: float | None) -> float | None:
    """The smallest of the delays given (None: no deadline at all)."""
    values = [d for d in delays if d is not None]
    return min(values) if values else None
