"""The manager: the highly available front of the group controller.

Several managers (one per host, or several on one host) run against one store and one election.
Exactly one of them *leads*; it runs the :class:`~infrakit.controller.group.controller.GroupController`.
The others *follow*: they serve the same Group interface under the same name (``group``), so the
CLI and other plugins never care which host they talk to, and forward every call to the leader.

Leadership comes from an :class:`~infrakit.leader.Elector` (file lock on one host, etcd across
hosts). The manager reacts to every change the elector reports:

* **gained** - build a fresh controller over the (fenced) store and start it: it loads every
  committed spec and every interrupted rolling update from the store and carries on where the last
  leader stopped (InfraKit lost in-flight updates on failover, #401/#856);
* **lost** - stop the controller *immediately*. A manager that cannot prove it leads does nothing
  (fencing); with the etcd backend the store additionally rejects writes from a deposed leader.

Calls arriving while no leader is known fail with :class:`~infrakit.errors.NotLeaderError` that
says so and what to check, rather than hanging.

This module knows nothing about sockets: forwarding goes through ``connect_leader(LeaderInfo)``,
which :mod:`infrakit.manager.kind` provides (an RPC Group client over TCP with the shared token),
and tests provide with fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from infrakit import errors
from infrakit._utils.aio import Broker, cancel_and_wait
from infrakit.leader import Elector, LeaderInfo
from infrakit.spi import event as spi_event
from infrakit.spi import group as spi_group
from infrakit.store import Store

__all__ = ["Manager", "RemoteGroup"]

log = logging.getLogger(__name__)

#: Seconds a member that was elected but could not act stays out of the election.
RESIGN_PAUSE = 5.0


class RemoteGroup(Protocol):
    """The leader's Group interface as a follower reaches it (an RPC client in production)."""

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str: ...
    async def free_group(self, id: str) -> None: ...
    async def describe_group(self, id: str) -> spi_group.GroupDescription: ...
    async def destroy_group(self, id: str) -> None: ...
    async def inspect_groups(self) -> list[spi_group.Spec]: ...
    async def destroy_instances(self, id: str, instances: list[str]) -> None: ...
    async def size(self, id: str) -> int: ...
    async def set_size(self, id: str, size: int) -> None: ...
    async def extension(self, method: str, id: str, **fields: Any) -> dict[str, Any]: ...


class Manager:
    """Serves the Group SPI (and infrakit's extensions): locally when leading, else forwarded."""

    def __init__(
        self,
        elector: Elector,
        store: Store,
        make_controller: Callable[[Store, Broker[spi_event.Event]], spi_group.GroupControl],
        connect_leader: Callable[[LeaderInfo], RemoteGroup] | None = None,
        *,
        on_leader_change: Callable[[bool], Awaitable[None]] | None = None,
        start_timeout: float = 5.0,
    ) -> None:
        self.elector = elector
        self.store = store
        self.make_controller = make_controller
        self.connect_leader = connect_leader
        self.on_leader_change = on_leader_change
        self.controller: spi_group.GroupControl | None = None
        #: Events of the group controller while leading, plus ``manager/leadership`` changes.
        self.events: Broker[spi_event.Event] = Broker(history=spi_event.RECENT_EVENTS)
        self._follow_task: asyncio.Task[None] | None = None
        self._transition = asyncio.Lock()
        self.start_timeout = start_timeout
        self._first_verdict = asyncio.Event()
        #: Why acting on the first verdict failed while :meth:`start` waited for it.
        self._start_error: errors.InfrakitError | None = None
        self._starting = False
        self.leadership_changes = 0
        self.led_since: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start campaigning; leadership changes are acted on in the background."""
        # Subscribe before the elector starts so the first verdict is never missed.
        changes = self.elector.changes()
        await self.elector.start()
        self._starting = True
        self._follow_task = asyncio.create_task(self._follow(changes), name="manager: leadership")
        # Give the election its first verdict (immediate for an uncontended lock) so that calls
        # right after start - `infrakit up SPEC.json` commits at once - find a leader.
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_verdict.wait(), self.start_timeout)
        finally:
            self._starting = False
        if self._start_error is not None:
            # Elected at start but cannot act (the store does not answer): fail the start rather
            # than run as a leader that never acts; resign so another manager can lead.
            await self.stop()
            raise self._start_error

    async def stop(self) -> None:
        """Stop the controller (instances untouched), then resign so another manager takes over."""
        if self._follow_task is not None:
            await cancel_and_wait(self._follow_task)
            self._follow_task = None
        await self._step_down("stopping")
        await self.elector.stop()

    async def _follow(self, changes: AsyncIterator[bool]) -> None:
        async for leading in changes:
            try:
                if leading:
                    await self._take_over()
                else:
                    await self._step_down("lost leadership")
            except errors.InfrakitError as exc:
                if self._starting and not self._first_verdict.is_set():
                    self._start_error = exc  # start() raises it
                else:
                    log.error("manager %s: cannot lead: %s", self.elector.id, exc)
                    await self._resign()
            except Exception:
                log.exception("manager %s: acting on a leadership change failed", self.elector.id)
            self._first_verdict.set()
            if self.on_leader_change is not None:
                with contextlib.suppress(Exception):
                    await self.on_leader_change(leading)

    async def _resign(self) -> None:
        """Elected but unable to act (its store fails): give leadership up for RESIGN_PAUSE so a
        healthy member can lead, instead of holding it without acting. Backends whose leadership
        lapses on its own (etcd: the lease) need no resign method."""
        resign = getattr(self.elector, "resign", None)
        if resign is not None:
            with contextlib.suppress(Exception):
                await resign(RESIGN_PAUSE)

    async def _take_over(self) -> None:
        async with self._transition:
            if self.controller is not None:
                return
            self._refresh_store()  # the previous leader wrote it last
            # One event stream whoever leads: the controller publishes into the manager's.
            controller = self.make_controller(self.store, self.events)
            try:
                await controller.start()
            except BaseException:
                await controller.stop()
                raise
            self.controller = controller
            self.leadership_changes += 1
            self.led_since = time.time()
            log.info(
                "manager %s leads (%s); managing %d group(s)",
                self.elector.id,
                self.elector.describe(),
                len(controller.group_ids()),
            )
            self._publish(
                "leader", f"{self.elector.id} leads; resumed {len(controller.group_ids())} group(s)"
            )

    async def _step_down(self, why: str) -> None:
        async with self._transition:
            controller, self.controller = self.controller, None
            self.led_since = None
            if controller is None:
                return
            # A normal stop (Ctrl-C) is no cause for alarm; losing leadership while running is.
            level = logging.INFO if why == "stopping" else logging.WARNING
            log.log(level, "manager %s: %s; stopping the group controller", self.elector.id, why)
            await controller.stop()
            self._publish("follower", f"{self.elector.id} stopped leading: {why}")

    def _refresh_store(self) -> None:
        """Stores that cache (the file store) re-read their backing data, if they can."""
        reload = getattr(self.store, "reload", None)
        if callable(reload):
            reload()

    def _publish(self, type_: str, message: str) -> None:
        self.events.publish(
            "manager/leadership",
            spi_event.Event(
                topic="manager/leadership", type=type_, id=self.elector.id, message=message
            ),
        )

    # --- routing --------------------------------------------------------------------------------

    async def _local(self) -> spi_group.GroupControl | None:
        """The controller to use when this manager leads (fenced by ``is_leader``)."""
        controller = self.controller
        if controller is not None and self.elector.is_leader:
            return controller
        return None

    async def _remote(self) -> RemoteGroup:
        leader = await self.elector.leader()
        if leader is None:
            raise errors.NotLeaderError(
                f"no leader: no manager leads yet ({self.elector.describe()}); retry in a moment, "
                f"or check `infrakit manager status`"
            )
        if leader.id == self.elector.id:
            raise errors.NotLeaderError(
                f"manager {self.elector.id} was elected but is not acting yet; retry in a moment"
            )
        if not leader.location or self.connect_leader is None:
            raise errors.NotLeaderError(
                f"manager {self.elector.id} follows {leader.id}, which does not listen on TCP; "
                f"start the managers with --listen HOST:PORT so followers can forward"
            )
        return self.connect_leader(leader)

    # --- the Group SPI --------------------------------------------------------------------------

    async def commit_group(self, spec: spi_group.Spec, pretend: bool) -> str:
        local = await self._local()
        if local is not None:
            return await local.commit_group(spec, pretend)
        return await (await self._remote()).commit_group(spec, pretend)

    async def free_group(self, id: str) -> None:
        local = await self._local()
        if local is not None:
            return await local.free_group(id)
        return await (await self._remote()).free_group(id)

    async def describe_group(self, id: str) -> spi_group.GroupDescription:
        local = await self._local()
        if local is not None:
            return await local.describe_group(id)
        return await (await self._remote()).describe_group(id)

    async def destroy_group(self, id: str) -> None:
        local = await self._local()
        if local is not None:
            return await local.destroy_group(id)
        return await (await self._remote()).destroy_group(id)

    async def inspect_groups(self) -> list[spi_group.Spec]:
        local = await self._local()
        if local is not None:
            return await local.inspect_groups()
        return await (await self._remote()).inspect_groups()

    async def destroy_instances(self, id: str, instances: list[str]) -> None:
        local = await self._local()
        if local is not None:
            return await local.destroy_instances(id, instances)
        return await (await self._remote()).destroy_instances(id, instances)

    async def size(self, id: str) -> int:
        local = await self._local()
        if local is not None:
            return await local.size(id)
        return await (await self._remote()).size(id)

    async def set_size(self, id: str, size: int) -> None:
        local = await self._local()
        if local is not None:
            return await local.set_size(id, size)
        return await (await self._remote()).set_size(id, size)

    async def _extension(
        self, method: str, id: str, options: dict[str, Any] | None
    ) -> dict[str, Any]:
        local = await self._local()
        if local is not None:
            result: dict[str, Any] = await getattr(local, method)(id, options)
            return result
        wire = spi_group.EXTENSIONS[method]
        answer = await (await self._remote()).extension(wire, id, **(options or {}))
        return {k: v for k, v in answer.items() if k not in ("Name", "ID")}

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("status", id, options)

    async def plan(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("plan", id, options)

    async def pause(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("pause", id, options)

    async def resume(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("resume", id, options)

    async def promote(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("promote", id, options)

    async def rollback(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("rollback", id, options)

    async def reset(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._extension("reset", id, options)

    # --- manager status -------------------------------------------------------------------------

    async def manager_status(
        self, id: str = "", options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``infrakit manager status``: who leads, this member, the store, the election backend."""
        leader = None
        with contextlib.suppress(errors.InfrakitError, OSError):
            leader = await self.elector.leader()
        members: list[Any] | None = None
        with contextlib.suppress(errors.InfrakitError, OSError):
            members = [
                {
                    "ID": m.id,
                    "Location": m.location,
                    "Leading": leader is not None and m.id == leader.id,
                }
                for m in await self.elector.members()
            ]
        return {
            "Member": self.elector.id,
            "Leading": self.controller is not None and self.elector.is_leader,
            "Leader": None if leader is None else {"ID": leader.id, "Location": leader.location},
            "Location": self.elector.location,
            "Members": members,
            "Election": self.elector.describe(),
            "Store": self.store.describe(),
            "Groups": self.controller.group_ids() if self.controller is not None else None,
            "LeadingSince": self.led_since,
        }

    def snapshots(self) -> list[spi_group.GroupSnapshot]:
        """The groups' numbers while leading (a follower's groups live on the leader)."""
        controller = self.controller
        if controller is None or not self.elector.is_leader:
            return []
        return controller.snapshots()

    async def stored_specs(self) -> list[spi_group.Spec]:
        """Every committed spec as stored, by group ID (readable on any member): the Stack's
        ``Manager.Specs`` (``infrakit manager specs``)."""
        if self.controller is None:
            self._refresh_store()  # a follower's cache may be stale
        stored = await self.store.list("groups/")
        return [spi_group.spec_from_wire(stored[k], k) for k in sorted(stored)]

    # --- event source ---------------------------------------------------------------------------

    def topics(self) -> list[str]:
        groups = self.controller.topics() if self.controller is not None else []
        return ["manager/leadership", *groups]

    def subscribe(self, topic: str) -> AsyncIterator[spi_event.Event]:
        return self.events.subscribe(topic)

    def recent(self, topic: str, since: float) -> list[spi_event.Event]:
        """The remembered events on ``topic`` since wall time ``since``, oldest first."""
        return self.events.recent(topic, since)
