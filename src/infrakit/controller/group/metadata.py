"""The group plugin's metadata tree (``Metadata/0.1.1``), read-only, computed when asked.

Paths (InfraKit HEAD's ``group-stateless`` published the first two, refreshed by pollers every
1 s / 30 s; here every read is current)::

    specs/<gid>     the committed spec, as InspectGroups answers it: {"ID","Properties"}
    groups/<gid>    the group now, as DescribeGroup answers it: {"Instances":[...],"Converged"}
    counts/<gid>    infrakit's: {"Desired": <Group.Size>, "Instances": <members now>}

Anything below follows the value (``specs/cattle/Properties/Allocation/Size``,
``groups/cattle/Instances/[0]/ID``). Only what a path needs is asked of the group object:
``keys specs`` costs one InspectGroups, ``get groups/cattle`` one DescribeGroup.

Works over any :class:`~infrakit.spi.group.Plugin` - the controller, or the HA manager (whose
followers forward the reads to the leader).
"""

from __future__ import annotations

from typing import Any

from infrakit.spi import group as spi_group
from infrakit.spi.metadata import Path, keys_of, split_indexes, value_at
from infrakit.spi.types import JSON

__all__ = ["TOP", "GroupMetadata"]

#: The top-level nodes.
TOP = ("counts", "groups", "specs")


class GroupMetadata:
    """Implements :class:`infrakit.spi.metadata.Plugin` over a group plugin."""

    def __init__(self, groups: spi_group.Plugin) -> None:
        self.groups = groups

    async def keys(self, path: Path) -> list[str]:
        path = split_indexes(path)
        if not path:
            return list(TOP)
        if path[0] not in TOP:
            return []
        if len(path) == 1:
            return sorted(spec.id for spec in await self.groups.inspect_groups())
        return keys_of(value_at(await self._node(path[0], path[1]), path[2:]))

    async def get(self, path: Path) -> JSON:
        path = split_indexes(path)
        if not path:
            return {top: await self._branch(top) for top in TOP}
        if path[0] not in TOP:
            return None
        if len(path) == 1:
            return await self._branch(path[0])
        return value_at(await self._node(path[0], path[1]), path[2:])

    async def _branch(self, top: str) -> dict[str, Any]:
        specs = await self.groups.inspect_groups()
        return {spec.id: await self._value(top, spec) for spec in sorted(specs, key=_id)}

    async def _node(self, top: str, gid: str) -> JSON:
        for spec in await self.groups.inspect_groups():
            if spec.id == gid:
                return await self._value(top, spec)
        return None

    async def _value(self, top: str, spec: spi_group.Spec) -> JSON:
        if top == "specs":
            return spi_group.spec_to_wire(spec)
        description = await self.groups.describe_group(spec.id)
        if top == "groups":
            return spi_group.group_description_to_wire(description)
        return {"Desired": await self.groups.size(spec.id), "Instances": len(description.instances)}


def _id(spec: spi_group.Spec) -> str:
    return spec.id
