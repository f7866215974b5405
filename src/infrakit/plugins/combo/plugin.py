"""The combo flavor's implementation (see the package docstring for its behaviour)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from infrakit.errors import PluginError, SpecError
from infrakit.spi import flavor
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Description, Spec
from infrakit.spi.plugin import FlavorLookup
from infrakit.spi.types import JSON, Health, ci_get, ci_view, want_str

__all__ = ["ComboFlavor", "SubFlavor", "parse_properties"]

log = logging.getLogger(__name__)

PROPERTIES_EXAMPLE: list[dict[str, Any]] = [
    {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo one"]}},
    {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo two"], "Tags": {"b": "2"}}},
]
PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["array", "object"],
    "description": 'a list of {"Plugin", "Properties"}, or SEED\'s {"Flavors": [...]}',
}

#: How bad each answer is; the worst across sub-flavors wins.
_SEVERITY = {Health.HEALTHY: 0, Health.UNKNOWN: 1, Health.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class SubFlavor:
    plugin: str
    properties: JSON


def parse_properties(properties: JSON) -> list[SubFlavor]:
    """Accept HEAD's bare array and SEED's ``{"Flavors": [...]}``."""
    items = properties
    if isinstance(properties, dict):
        items = ci_get(ci_view(properties, "combo Properties"), "Flavors")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise SpecError(
            'combo Properties: expected an array of {"Plugin": ..., "Properties": ...}, '
            'e.g. [{"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hi"]}}]'
        )
    out: list[SubFlavor] = []
    for i, item in enumerate(items):
        what = f"combo Properties[{i}]"
        view = ci_view(item, what)
        plugin = want_str(ci_get(view, "Plugin"), f"{what}.Plugin")
        if not plugin:
            raise SpecError(f"{what}.Plugin: required; name a flavor plugin, e.g. flavor-vanilla")
        out.append(SubFlavor(plugin, ci_get(view, "Properties")))
    return out


class ComboFlavor:
    """Fans every Flavor call out to the listed sub-flavors and merges the answers."""

    def __init__(self, flavor_lookup: FlavorLookup) -> None:
        self.flavor_lookup = flavor_lookup

    def _plugin(self, sub: SubFlavor) -> flavor.Plugin:
        return self.flavor_lookup(sub.plugin)

    async def validate(self, properties: JSON, allocation: AllocationMethod) -> None:
        for i, sub in enumerate(parse_properties(properties)):
            try:
                await self._plugin(sub).validate(sub.properties, allocation)
            except SpecError as exc:
                raise SpecError(f"combo Properties[{i}] ({sub.plugin}): {exc}") from None

    async def prepare(
        self, properties: JSON, spec: Spec, allocation: AllocationMethod, index: Index
    ) -> Spec:
        tags = dict(spec.tags)
        lines = [spec.init] if spec.init else []
        attachments = list(spec.attachments) if spec.attachments is not None else None
        for sub in parse_properties(properties):
            copy = dataclasses.replace(
                spec,
                tags=dict(spec.tags),
                init="",
                attachments=list(spec.attachments) if spec.attachments is not None else None,
            )
            prepared = await self._plugin(sub).prepare(sub.properties, copy, allocation, index)
            tags.update(prepared.tags)
            if prepared.init:
                lines.append(prepared.init)
            added = (prepared.attachments or [])[len(spec.attachments or []) :]
            if added:
                attachments = [*(attachments or []), *added]
        return dataclasses.replace(spec, tags=tags, init="\n".join(lines), attachments=attachments)

    async def healthy(self, properties: JSON, instance: Description) -> Health:
        worst = Health.HEALTHY
        for sub in parse_properties(properties):
            try:
                answer = Health(await self._plugin(sub).healthy(sub.properties, instance))
            except Exception as exc:
                log.warning("combo: %s could not judge %s: %s", sub.plugin, instance.id, exc)
                answer = Health.UNKNOWN
            if _SEVERITY[answer] > _SEVERITY[worst]:
                worst = answer
        return worst

    async def drain(self, properties: JSON, instance: Description) -> None:
        failures: list[str] = []
        for sub in parse_properties(properties):
            try:
                await self._plugin(sub).drain(sub.properties, instance)
            except Exception as exc:
                failures.append(f"{sub.plugin}: {exc}")
        if failures:
            raise PluginError(f"combo drain of {instance.id} failed: " + ", ".join(failures))

    def info(self) -> dict[str, Any]:
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}
