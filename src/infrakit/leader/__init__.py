"""Leader election for the HA manager: who among several managers runs the group controller.

An :class:`Elector` campaigns in the background and reports every change of its own leadership on
:meth:`Elector.changes`; :meth:`Elector.leader` tells anyone who leads now and where to reach it.
``is_leader`` is True only while leadership is *proven* (the lock is held, the lease renewed in
time): the manager stops acting the moment it turns False (fencing).

Backends:

* :class:`infrakit.leader.file.FileElector` - an exclusive ``flock`` on a file: several managers on
  one host, exactly one leads; the kernel releases the lock when its holder dies.
* ``etcd`` - across hosts, a lease with keep-alive (:mod:`infrakit.leader.etcd`, needs the ``etcd``
  extra).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infrakit import errors
from infrakit._utils.aio import Broker
from infrakit._utils.clock import Clock

__all__ = ["Elector", "LeaderInfo", "Leadership", "open_elector"]


@dataclass(frozen=True)
class LeaderInfo:
    """Who leads: a member ID and where followers reach it (``tcp://host:port``, or "")."""

    id: str
    location: str


class Leadership:
    """A member's leadership flag and its change stream (shared by every backend)."""

    def __init__(self) -> None:
        self.leading = False
        self._broker: Broker[bool] = Broker()

    def set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self._broker.publish("leadership", leading)

    async def changes(self) -> AsyncIterator[bool]:
        """The current state, then every change."""
        updates = self._broker.subscribe("leadership")
        try:
            yield self.leading
            async for leading in updates:
                yield leading
        finally:
            await updates.aclose()  # type: ignore[attr-defined]


class Elector(Protocol):
    """One member's view of an election."""

    id: str
    location: str

    async def start(self) -> None:
        """Begin campaigning in the background."""

    async def stop(self) -> None:
        """Resign if leading (so another member takes over at once) and stop campaigning."""

    @property
    def is_leader(self) -> bool:
        """True only while leadership is proven."""

    def changes(self) -> AsyncIterator[bool]:
        """Every change of this member's leadership, starting with the current state."""

    async def leader(self) -> LeaderInfo | None:
        """Who leads now, read from the backend (None: nobody)."""

    async def members(self) -> list[LeaderInfo]:
        """Every member campaigning now (this one included), read from the backend."""

    def describe(self) -> str:
        """The backend, for status output."""


def open_elector(
    kind: str,
    *,
    home: Path,
    id: str,
    location: str = "",
    lock_path: Path | None = None,
    endpoint: str = "127.0.0.1:2379",
    prefix: str = "/infrakit",
    ttl: float = 2.0,
    clock: Clock | None = None,
    **_: Any,
) -> Elector:
    """An elector for ``kind`` (``file`` or ``etcd``), on ``clock`` (real time by default)."""
    if kind == "file":
        from infrakit.leader.file import FileElector

        return FileElector(lock_path or home / "leader.lock", id, location, clock=clock)
    if kind == "etcd":
        try:
            from infrakit.leader.etcd import EtcdElector
        except ImportError as exc:
            raise errors.SpecError(
                f"leader etcd needs the etcd client ({exc.name} is missing); "
                f"install it with: pip install 'pyinfrakit[etcd]'"
            ) from None
        elector: Elector = EtcdElector(
            endpoint, prefix, id=id, location=location, ttl=ttl, clock=clock
        )
        return elector
    raise errors.SpecError(f"leader {kind!r}: expected file or etcd")
