"""What the group controller keeps in its store, and under which keys: one home for the layout.

=====================  ===========================================================================
``groups/<id>``        the committed spec (``{"ID": ..., "Properties": ...}``), written before it
                       takes effect; a restarted controller manages every group found here
``stable/<id>``        the properties of the last spec that fully converged (rollback target)
``updates/<id>``       a rolling update's progress (:class:`~infrakit.controller.group.state.
                       UpdateProgress`), so a restarted controller resumes it
=====================  ===========================================================================

Without a store (tests, a plain ``plugin start group`` with ``--store none``) nothing persists and
every read finds nothing. A store that refuses a write (a deposed leader, etcd down) raises, and
the controller then changes nothing in memory either.
"""

from __future__ import annotations

import logging
from typing import Any

from infrakit import errors
from infrakit.controller.group.runtime import Group
from infrakit.controller.group.spec import GroupSettings, parse_spec
from infrakit.controller.group.state import UpdateProgress
from infrakit.spi import group as spi_group
from infrakit.store import Store

log = logging.getLogger(__name__)

__all__ = ["GroupRecords"]


class GroupRecords:
    """The controller's view of its store (see the module docstring)."""

    def __init__(self, store: Store | None) -> None:
        """Over ``store``; None keeps nothing."""
        self.store = store

    def describe(self) -> str:
        """The store, for logs and status (``file:...``, ``etcd://...``)."""
        return self.store.describe() if self.store is not None else "no store"

    async def specs(self) -> dict[str, Any]:
        """Group ID -> committed spec document, for every stored group."""
        if self.store is None:
            return {}
        found = await self.store.list("groups/")
        return {key.removeprefix("groups/"): doc for key, doc in found.items()}

    async def load(self, now: float) -> list[Group]:
        """Every stored group, as a restarted controller resumes it (by ID). A stored spec that
        no longer validates is logged and left out, never deleted."""
        groups: list[Group] = []
        for gid, doc in sorted((await self.specs()).items()):
            try:
                settings = parse_spec(spi_group.spec_from_wire(doc))
            except errors.InfrakitError as exc:
                log.error("stored group %s is invalid and is not managed: %s", gid, exc)
                continue
            group = Group(settings)
            group.stable = await self.stable(gid)
            upd = group.state.update = await self.update(gid)
            if upd is not None:
                # Instances this update destroyed before the restart may still be listed by a
                # provider that destroys asynchronously (EC2 "shutting-down"): like any destroy
                # of ours, they are not members - neither destroyed twice nor counted as old.
                hidden_until = now + settings.properties.provisioning.visibility_timeout
                for iid in upd.destroyed:
                    group.state.destroyed_until[iid] = hidden_until
            groups.append(group)
        return groups

    async def put_spec(self, settings: GroupSettings) -> None:
        """Persist a committed spec - before it takes effect."""
        await self._put(f"groups/{settings.id}", {"ID": settings.id, "Properties": settings.raw})

    async def stable(self, gid: str) -> Any:
        """The last spec that fully converged (the rollback target), or None."""
        return await self._get(f"stable/{gid}")

    async def put_stable(self, gid: str, properties: Any) -> None:
        """Remember the spec that just converged as the rollback target."""
        await self._put(f"stable/{gid}", properties)

    async def update(self, gid: str) -> UpdateProgress | None:
        """The rolling update's stored progress, or None."""
        return UpdateProgress.from_json(await self._get(f"updates/{gid}"))

    async def put_update(self, gid: str, update: UpdateProgress | None) -> None:
        """Write a rolling update's progress; None deletes the record (the update ended)."""
        if update is None:
            await self._delete(f"updates/{gid}")
        else:
            await self._put(f"updates/{gid}", update.to_json())

    async def delete_group(self, gid: str) -> None:
        """Every record of the group (free, destroy)."""
        for key in (f"groups/{gid}", f"updates/{gid}", f"stable/{gid}"):
            await self._delete(key)

    async def _put(self, key: str, value: Any) -> None:
        if self.store is not None:
            await self.store.put(key, value)

    async def _get(self, key: str) -> Any:
        return None if self.store is None else await self.store.get(key)

    async def _delete(self, key: str) -> None:
        if self.store is not None:
            await self.store.delete(key)
