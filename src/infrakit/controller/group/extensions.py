"""infrakit's extensions of the Group SPI: Status, Plan, and the controls of a rolling update.

Go InfraKit's Group interface ends at commit / describe / destroy / free / size; these methods are
what ``infrakit group describe``, ``watch``, ``commit --pretend -o json``, ``pause``, ``resume``,
``promote``, ``rollback`` and ``reset`` call (``Group.Status``, ``Group.Plan`` ... on the wire,
see docs/protocol.md). They read and steer the controller's memory; none of them waits for a
plugin longer than ``STATUS_WAIT``, except Plan, which validates the spec with the plugins.

:class:`GroupExtensions` is mixed into :class:`~infrakit.controller.group.controller.
GroupController`; what it needs of the controller is spelled out by :class:`_Host`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from infrakit import errors
from infrakit._utils import collector
from infrakit._utils.clock import Clock
from infrakit.controller.group import rollout
from infrakit.controller.group.actuator import Actuator
from infrakit.controller.group.breaker import Notice
from infrakit.controller.group.plan import structured_plan
from infrakit.controller.group.runtime import FRESH_FOR, Group
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.status import instance_page, snapshot_of, status_report
from infrakit.controller.queue import WorkQueue
from infrakit.spi import group as spi_group

__all__ = ["STATUS_REFRESH_AFTER", "STATUS_WAIT", "GroupExtensions"]

#: Status and DescribeGroup answer from the last observation. When it is older than
#: STATUS_REFRESH_AFTER they ask for a new one and wait for it at most STATUS_WAIT (freshness
#: itself is judged by ``Group.truly_converged``).
STATUS_REFRESH_AFTER = 0.5
STATUS_WAIT = 0.08


class _Host(Protocol):
    """What the extensions use of the controller they are mixed into."""

    groups: dict[str, Group]
    clock: Clock
    queue: WorkQueue
    actuator: Actuator

    @property
    def watch_mode(self) -> dict[str, str]: ...

    def _get(self, gid: str) -> Group: ...

    def _resync_after(self, settings: GroupSettings) -> float: ...

    def _publish(self, gid: str, notice: Notice) -> None: ...

    async def _persist_update(self, group: Group) -> None: ...

    async def _update_control(self, group: Group, notice: Notice) -> None: ...

    async def _fresh_observation(self, group: Group) -> None: ...

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str: ...


class GroupExtensions:
    """Group.Status, Group.Plan, Group.Pause/Resume/Promote/Rollback/Reset (module docstring)."""

    def group_ids(self: _Host) -> list[str]:
        """The IDs of the managed groups, sorted."""
        return sorted(self.groups)

    def snapshots(self: _Host) -> list[spi_group.GroupSnapshot]:
        """Every group's numbers from memory (metrics, the status page): no plugin is called.

        Unlike Status, a snapshot cannot ask for a new pass first (a scrape of a thousand
        groups must not start a thousand passes), so ``converged`` means: the last pass matched
        the spec, no pass is waiting or running (an instance event queues one at once), and the
        observation is no older than the group's next resync is due - a converged group stays
        converged while it idles, and anything that changed is seen within one resync."""
        now = self.clock.now()
        out = []
        for gid in sorted(self.groups):
            group = self.groups[gid]
            obs = group.observation
            fresh_for = self._resync_after(group.settings) + FRESH_FOR
            converged = group.truly_converged(now, fresh_for) and not self.queue.busy(gid)
            out.append(
                snapshot_of(
                    group.settings,
                    group.state,
                    obs.visible if obs is not None else None,
                    unknown=group.unknown_reason(now),
                    converged=converged,
                    passes=group.passes,
                )
            )
        return out

    async def status(self: _Host, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Desired / actual / healthy / updating / degraded, and per-instance state.

        Answered from the last observation within ``STATUS_WAIT``, whatever the provider does:
        one older than ``STATUS_REFRESH_AFTER`` asks for a new pass and waits that long for it.
        ``Converged`` is true only when that observation is fresh, it matched the spec and
        nothing is in flight; ``Actual`` is None (``ActualUnknown`` says why) while the provider
        cannot be observed."""
        group = self._get(id)
        page = instance_page(options)
        await self._fresh_observation(group)
        now = self.clock.now()
        obs = group.observation
        with collector.paused():  # a row per instance: see infrakit._utils.collector
            report = status_report(
                group.settings,
                group.state,
                obs.visible if obs is not None else None,
                observed_ago=now - obs.at if obs is not None else None,
                unknown=group.unknown_reason(now),
                converged=group.truly_converged(self.clock.now()),
                events=self.watch_mode.get(group.settings.properties.instance.plugin, "polling"),
                now=now,
                page=page,
            )
        report["Passes"] = group.passes
        return report

    async def plan(self: _Host, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The structured plan for committing ``options["spec"]`` (nothing changes)."""
        raw_spec = (options or {}).get("spec")
        if raw_spec is None:
            raise errors.SpecError("Group.Plan: params.Spec (the group spec to plan) must be set")
        settings = parse_spec(spi_group.spec_from_wire(raw_spec))
        await self.actuator.validate(settings)
        old = self.groups.get(settings.id)
        members = await self.actuator.describe(settings) if old is not None else []
        return {
            "Plan": structured_plan(
                old.settings if old else None,
                settings,
                members,
                old.state if old else None,
                self.clock.now(),
            )
        }

    async def pause(self: _Host, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """``infrakit group pause``: freeze the rolling update."""
        group = self._get(id)
        await self._update_control(group, rollout.pause(group.state, id))
        return {"Paused": True}

    async def resume(self: _Host, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """``infrakit group resume``: go on (after a pause or a failure: try again)."""
        group = self._get(id)
        await self._update_control(group, rollout.resume(group.state, id, self.clock.wall()))
        return {"Paused": False}

    async def promote(
        self: _Host, id: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``infrakit group promote``: the canary looks good; replace the rest."""
        group = self._get(id)
        notice = rollout.promote(group.settings, group.state, self.clock.wall())
        await self._update_control(group, notice)
        return {"Promoted": True}

    async def rollback(
        self: _Host, id: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``infrakit group rollback``: commit the last spec that fully converged."""
        group = self._get(id)
        if group.stable is None:
            raise errors.ConflictError(
                f"group {id} has no earlier spec that fully converged; commit the spec you want"
            )
        if group.stable == group.settings.raw:
            raise errors.ConflictError(f"group {id} already runs its last converged spec")
        details = await self.commit_group(spi_group.Spec(id, group.stable), False)
        message = f"{id} rolled back to its last converged spec: {details}"
        self._publish(id, Notice("rolled-back", message))
        return {"Details": details}

    async def reset(self: _Host, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """``infrakit group reset``: close the circuit breaker and create again now. Refused,
        like the other controls, when there is nothing to reset."""
        group = self._get(id)
        if group.state.breaker.at_rest:
            raise errors.ConflictError(
                f"group {id} is not degraded and no create failed (its circuit breaker is "
                "closed); nothing to reset"
            )
        group.state.breaker.reset()
        self._publish(id, Notice("reset", f"{id}: circuit breaker reset; creating again"))
        self.queue.add(id)
        return {"Degraded": False}

    async def _update_control(self: _Host, group: Group, notice: Notice) -> None:
        """A user's control changed the update's record: persist it, say so, act on it."""
        await self._persist_update(group)
        self._publish(group.id, notice)
        self.queue.add(group.id)

    async def _fresh_observation(self: _Host, group: Group) -> None:
        """Ask for a new observation when the last is older than STATUS_REFRESH_AFTER, and wait
        for it at most STATUS_WAIT (a hung provider never holds up Status)."""
        obs = group.observation
        if obs is not None and self.clock.now() - obs.at <= STATUS_REFRESH_AFTER:
            return
        waiter = group.observed
        self.queue.add(group.id)
        with contextlib.suppress(TimeoutError):
            await self.clock.wait_for(waiter.wait(), STATUS_WAIT)
