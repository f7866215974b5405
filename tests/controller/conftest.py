"""Controller test rig: the real GroupController with in-memory fakes and a fake clock."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from infrakit.controller.group.controller import GroupController
from infrakit.spi import group
from infrakit.store.memory import MemoryStore
from infrakit.testing import FakeClock
from infrakit.testing.fakes import FakeFlavorPlugin, FakeInstancePlugin, lookup

BASE = {
    "Allocation": {"Size": 5},
    "Instance": {"Plugin": "inst", "Properties": {"Note": "v1"}},
    "Flavor": {"Plugin": "flav", "Properties": {"Init": ["echo hi"], "Tags": {"tier": "web"}}},
}


def spec(
    gid: str = "cattle", size: int | None = None, note: str = "v1", **sections: Any
) -> group.Spec:
    props = copy.deepcopy(BASE)
    if size is not None:
        props["Allocation"] = {"Size": size}
    props["Instance"]["Properties"]["Note"] = note
    for key, value in sections.items():
        props[key] = value
    return group.Spec(gid, props)


def pets_spec(ids: list[str], note: str = "v1", gid: str = "pets", **sections: Any) -> group.Spec:
    s = spec(gid, note=note, **sections)
    s.properties["Allocation"] = {"LogicalIDs": ids}
    return s


@dataclass
class Rig:
    clock: FakeClock
    inst: FakeInstancePlugin
    flav: FakeFlavorPlugin
    store: MemoryStore
    ctl: GroupController

    async def restart(self) -> GroupController:
        """Stop the controller and start a new one over the same store and plugins."""
        await self.ctl.stop()
        self.ctl = GroupController(
            lookup({"inst": self.inst}),
            lookup({"flav": self.flav}),
            store=self.store,
            clock=self.clock,
            poll_interval=10.0,
        )
        await self.ctl.start()
        return self.ctl

    async def converge(self, gid: str = "cattle", step: float = 0.1, limit: float = 600) -> float:
        return await self.clock.run_until(
            lambda: (
                gid in self.ctl.groups
                and self.ctl.groups[gid].converged
                and not self.ctl.groups[gid].state.creating
            ),
            step=step,
            limit=limit,
        )

    def hashes(self) -> set[str]:
        return {s.desc.tags.get("infrakit.config.hash", "") for s in self.inst.instances.values()}


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    inst = FakeInstancePlugin(clock=clock)
    flav = FakeFlavorPlugin()
    store = MemoryStore()
    ctl = GroupController(
        lookup({"inst": inst}), lookup({"flav": flav}), store=store, clock=clock, poll_interval=10.0
    )
    await ctl.start()
    r = Rig(clock, inst, flav, store, ctl)
    try:
        yield r
    finally:
        await r.ctl.stop()
