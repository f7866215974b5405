"""The manager as InfraKit HEAD's Stack (``Stack/0.1.1``): leadership, and every group at once.

* ``is_leader`` - this member leads *and* runs the controller (what ``manager status`` calls
  Leading); a follower, or a member between elections, answers False.
* ``leader_location`` - the leader's record: its ``--listen`` URL (``tcp://`` or ``https://``); a
  leader without TCP answers its UNIX socket (``unix:///.../plugins/group``). No leader, or a
  follower whose leader does not listen on TCP: :class:`~infrakit.errors.NotLeaderError`.
* ``enforce`` / ``terminate`` - commit (resp. destroy) every group the specs name, through the
  manager's Group methods: run by the leader, forwarded by a follower; a member that can do
  neither fails with HEAD's ``not a leader`` and why. Every spec is checked before any is
  committed. ``enforce`` commits the given specs; groups it does not name are left alone.
* ``specs`` - every committed spec, read from the store (any member answers).
* ``inspect`` - every committed group with its state (DescribeGroup: instances, converged).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from infrakit import errors
from infrakit.manager.manager import Manager
from infrakit.spi import group as spi_group
from infrakit.spi.stack import StackObject

__all__ = ["NOT_A_LEADER", "ManagerStack"]

T = TypeVar("T")

#: InfraKit HEAD's manager's error for a call that needs the leader (``errNotLeader``).
NOT_A_LEADER = "not a leader"


class ManagerStack:
    """Implements :class:`infrakit.spi.stack.Plugin` over a :class:`Manager`."""

    def __init__(self, manager: Manager, socket_path: Path | None = None) -> None:
        self.manager = manager
        #: This member's UNIX socket: its location when it leads without a TCP listener.
        self.socket_path = socket_path

    async def is_leader(self) -> bool:
        manager = self.manager
        return manager.controller is not None and manager.elector.is_leader

    async def leader_location(self) -> str:
        elector = self.manager.elector
        leader = await elector.leader()
        if leader is None:
            raise errors.NotLeaderError(
                f"{NOT_A_LEADER}: no manager leads yet ({elector.describe()}); retry in a moment"
            )
        if leader.location:
            return leader.location
        if leader.id == elector.id and self.socket_path is not None:
            return f"unix://{self.socket_path}"
        raise errors.NotLeaderError(
            f"{NOT_A_LEADER}: manager {elector.id} follows {leader.id}, which does not listen on "
            "TCP; start the managers with --listen HOST:PORT so followers can reach the leader"
        )

    async def enforce(self, specs: list[spi_group.Spec]) -> None:
        for spec in specs:
            await self._as_leader(self.manager.commit_group(spec, False))

    async def terminate(self, specs: list[spi_group.Spec]) -> None:
        if not specs:
            raise errors.SpecError(
                "Manager.Terminate: Specs is empty; name the groups to destroy (the answer of "
                "Manager.Specs names them all)"
            )
        for spec in specs:
            await self._as_leader(self.manager.destroy_group(spec.id))

    async def specs(self) -> list[spi_group.Spec]:
        return await self.manager.stored_specs()

    async def inspect(self) -> list[StackObject]:
        objects = []
        for spec in await self.manager.stored_specs():
            description = await self._as_leader(self.manager.describe_group(spec.id))
            objects.append(StackObject(spec, spi_group.group_description_to_wire(description)))
        return objects

    async def _as_leader(self, call: Awaitable[T]) -> T:
        """Await a Group call of the manager; its "cannot reach a leader" becomes HEAD's words."""
        try:
            return await call
        except errors.NotLeaderError as exc:
            text = str(exc).removeprefix("no leader: ")
            raise errors.NotLeaderError(f"{NOT_A_LEADER}: {text}") from exc
