"""The default group controller's spec: parse, validate and normalise the group ``Properties``.

InfraKit's schema, plus four optional sections of infrakit's own (unknown to InfraKit, so Go specs
keep working and infrakit specs stay readable by humans)::

    {
      "Allocation": {"Size": 5}  |  {"LogicalIDs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]},
      "Instance":   {"Plugin": "instance-file", "Properties": {...opaque...}},
      "Flavor":     {"Plugin": "flavor-vanilla", "Properties": {...opaque...}},
      "Updating":   {"Count": 0, "Duration": "0s", "SkipBeforeInstanceDestroy": null,     # InfraKit
                     "MaxSurge": 1, "MaxUnavailable": 0, "MinReadySeconds": 0,           # infrakit
                     "ProgressDeadline": "10m", "Canary": 0, "AutoRollback": false},
      "Health":     {"CheckInterval": "10s", "StartupTimeout": "10m",
                     "UnhealthyTimeout": "5m", "MaxUnhealthy": "100%"},
      "Provisioning": {"MaxParallel": 100, "DeletePolicy": "Newest", "MaxFailures": 5,
                       "CrashLoopWindow": "30s", "CoolDown": "5m", "BackoffInitial": "1s",
                       "BackoffMax": "1m", "ProvisionTimeout": "2m", "VisibilityTimeout": "1m"},
      "Ingress":    {"Plugin": "loadbalancer", "DrainTimeout": "30s",
                     "Route": {"LoadBalancerPort": 8080, "Port": 80, "HealthMonitorPath": "/"}}
    }

Every default is stated once, in the field definitions of :mod:`.sections` (with its unit); that
module (pydantic) is imported on the first spec checked, so a daemon with no spec never loads it.
Durations are Go strings (``"90s"``, ``"1m30s"``) or numbers of seconds. Counts that accept percentages
(``MaxSurge``, ``MaxUnavailable``, ``MaxUnhealthy``) are an integer or ``"25%"``.

Validation reports InfraKit's messages in InfraKit's order (``Group ID must not be blank``,
``Allocation must not be blank``, ``Only one Allocation method may be used``, ``Only one Updating
method may be used``) followed by the field path and what to do; type errors become
``Invalid properties: <path>: <problem>``. Keys are matched case-insensitively like Go's decoder;
unknown keys are ignored in InfraKit's sections (as Go does) but rejected in infrakit's own
sections, where a typo would otherwise silently change behaviour.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infrakit._utils.duration import format_duration
from infrakit._utils.nesting import MAX_DEPTH, deeper_than
from infrakit.controller.group.hash import ConfigHash, config_hash
from infrakit.errors import SpecError
from infrakit.spi import flavor
from infrakit.spi import group as spi_group

if TYPE_CHECKING:
    from pydantic import BaseModel

    from infrakit.controller.group.sections import (
        AllocationSection,
        GroupProperties,
        UpdatingSection,
    )

__all__ = ["GroupSettings", "Problem", "parse_spec", "spec_problems"]


def resolve_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """``"25%"`` of ``total`` (rounded up or down, as Cluster API does), or the integer itself."""
    if isinstance(value, int):
        return value
    fraction = float(value[:-1]) / 100.0 * total
    return math.ceil(fraction - 1e-9) if round_up else math.floor(fraction + 1e-9)


def rollout_budget(updating: UpdatingSection, size: int) -> tuple[int, int]:
    """``(MaxSurge, MaxUnavailable)`` of a rolling update resolved against ``size``: surge rounds
    up, unavailable rounds down (Cluster API, Kubernetes Deployments). Validation refuses both
    set to 0, but percentages can still both come to 0 (MaxSurge 0, MaxUnavailable "10%" of 5):
    then MaxUnavailable counts as 1, as Kubernetes does, so the update can make progress."""
    surge = resolve_percent(updating.max_surge, size, round_up=True)
    unavailable = resolve_percent(updating.max_unavailable, size, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class GroupSettings:
    """A validated group: the spec as committed, its parsed properties and its config hash."""

    id: str
    properties: GroupProperties
    #: The properties exactly as committed (persisted and compared verbatim).
    raw: Any
    hash: ConfigHash

    @property
    def is_quorum(self) -> bool:
        """True for pets (``Allocation.LogicalIDs``)."""
        return bool(self.properties.allocation.logical_ids)

    @property
    def size(self) -> int:
        """Target number of instances (``len(LogicalIDs)`` for quorum groups)."""
        alloc = self.properties.allocation
        return len(alloc.logical_ids) if alloc.logical_ids else alloc.size

    @property
    def allocation(self) -> flavor.AllocationMethod:
        """The allocation as the flavor SPI carries it (Validate, Prepare)."""
        alloc = self.properties.allocation
        return flavor.AllocationMethod(size=alloc.size, logical_ids=alloc.logical_ids)

    def spec(self) -> spi_group.Spec:
        """The group spec as committed."""
        return spi_group.Spec(id=self.id, properties=self.raw)

    def resized(self, size: int) -> GroupSettings:
        """The same spec with ``Allocation.Size`` replaced (keys matched as Go matches them)."""
        props = dict(self.raw) if isinstance(self.raw, dict) else {}
        key = next(
            (k for k in props if isinstance(k, str) and k.lower() == "allocation"), "Allocation"
        )
        alloc = dict(props.get(key) or {})
        alloc[next((k for k in alloc if k.lower() == "size"), "Size")] = size
        props[key] = alloc
        return parse_spec(spi_group.Spec(self.id, props))

    def normalized(self) -> dict[str, Any]:
        """The spec re-serialised InfraKit-style: Instance, Flavor, Allocation, Updating (+ ours)."""
        p = self.properties
        u = p.updating
        updating: dict[str, Any] = {
            "Duration": format_duration(u.duration),
            "Count": u.count,
            "SkipBeforeInstanceDestroy": u.skip_before_instance_destroy,
        }
        from infrakit.controller.group.sections import UpdatingSection

        defaults = UpdatingSection.model_validate({})
        for name, alias in (
            ("max_surge", "MaxSurge"),
            ("max_unavailable", "MaxUnavailable"),
            ("min_ready_seconds", "MinReadySeconds"),
            ("progress_deadline", "ProgressDeadline"),
            ("canary", "Canary"),
            ("auto_rollback", "AutoRollback"),
        ):
            value = getattr(u, name)
            if value != getattr(defaults, name):
                is_time = name in ("min_ready_seconds", "progress_deadline")
                updating[alias] = format_duration(value) if is_time else value
        out: dict[str, Any] = {
            "Instance": {"Plugin": p.instance.plugin, "Properties": p.instance.properties},
            "Flavor": {"Plugin": p.flavor.plugin, "Properties": p.flavor.properties},
            "Allocation": {"Size": p.allocation.size, "LogicalIDs": p.allocation.logical_ids},
            "Updating": updating,
        }
        raw = self.raw if isinstance(self.raw, dict) else {}
        lowered = {k.lower(): v for k, v in raw.items() if isinstance(k, str)}
        if "health" in lowered:
            out["Health"] = lowered["health"]
        if "provisioning" in lowered:
            out["Provisioning"] = lowered["provisioning"]
        if "ingress" in lowered:
            out["Ingress"] = lowered["ingress"]
        return out


# --- validation: every problem at once ----------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (``path``), what was expected and found, what to do.

    ``message`` is the one line a commit is refused with (InfraKit's words where InfraKit had
    the check); :meth:`line` is the structured form ``infrakit group validate`` numbers."""

    path: tuple[str, ...]
    expected: str
    found: str
    hint: str
    message: str

    @property
    def dotted(self) -> str:
        """The path as ``Properties.Allocation.Size`` (list items as ``LogicalIDs[1]``)."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
        return out

    def line(self) -> str:
        """``PATH: expected X, found Y; HINT``."""
        return f"{self.dotted}: expected {self.expected}, found {self.found}; {self.hint}"


def _found(value: Any) -> str:
    """A value as the user wrote it (JSON), shortened."""
    try:
        text = json.dumps(value, separators=(", ", ": "))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "model_type": "an object (a map of keys)",
    "dict_type": "an object (a map of keys)",
    "float_type": "a number",
}


def _pydantic_problem(err: Any, prefix: tuple[str, ...], model: type[BaseModel]) -> Problem:
    """A pydantic error of section ``model`` (at ``prefix``) as a :class:`Problem`."""
    path = (*prefix, *(str(p) for p in err["loc"]))
    kind = err["type"]
    given = err.get("input")
    message = err["msg"].removeprefix("Value error, ")
    dotted = Problem(path, "", "", "", "").dotted
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        known = [f.alias for f in model.model_fields.values() if f.alias]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"the fields are {', '.join(known)}"
        return Problem(
            path,
            f"one of the {path[-2] if len(path) > 1 else 'spec'} fields",
            f"unknown field {key!r}",
            hint,
            f"Invalid properties: {dotted}: unknown field; {hint} (see docs/group-spec.md)",
        )
    expected = _EXPECTED.get(kind)
    hint = "see docs/group-spec.md"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        expected = "one of " + ", ".join(choices)
        close = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(choices)}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal"):
        bound = next(iter(err.get("ctx", {}).values()), "")
        word = {"greater_than_equal": "at least", "greater_than": "above"}.get(kind, "at most")
        expected = f"a number {word} {bound}"
        hint = f"use {bound} or more" if word != "at most" else f"use at most {bound}"
    elif kind in ("int_type", "int_parsing") and isinstance(given, str) and given.strip().isdigit():
        hint = f"write {given.strip()} without quotes"
    elif kind == "value_error" and message.startswith("duration"):
        expected = "a duration such as 500ms, 10s or 1m30s, or a number of seconds"
        hint = 'write it like "10s"' if "negative" not in message else "durations are not negative"
    elif kind == "value_error" and "percentage" in message:
        expected = "a count of 0 or more, or a percentage from 0% to 100%"
        hint = 'write e.g. 1 or "25%"'
    elif kind == "value_error":
        text = message.split("expected ", 1)
        expected = text[1].split(", got")[0] if len(text) == 2 else message
    elif expected is None:
        expected = message[0].lower() + message[1:] if message else kind
    legacy = message
    if kind in ("int_type", "string_type", "bool_type", "list_type", "model_type"):
        legacy = f"{message}, got {given!r}"
    return Problem(
        path,
        expected or message,
        _found(given),
        hint,
        f"Invalid properties: {dotted}: {legacy}; fix the spec and commit again",
    )


#: Group IDs: they name store keys, event topics (``group/<id>``) and CLI arguments, so no
#: slashes, spaces or control characters (a newline in an ID split `group ls` output).
_GROUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: The most instances one group may have. A typo like Size 1000000000000 would otherwise create
#: files until the disk is full; 100 000 is 10x the largest group benchmarked (docs/benchmarks.md).
MAX_GROUP_SIZE = 100_000


def parse_spec(spec: spi_group.Spec) -> GroupSettings:
    """Validate a committed group spec; raise :class:`SpecError` with InfraKit's message first
    (and every further problem after it, on the same line)."""
    found = spec_problems(spec)
    if found:
        first = found[0].message
        if len(found) > 1:
            rest = "; ".join(f"{i}. {p.line()}" for i, p in enumerate(found[1:], 2))
            first += f" (and {len(found) - 1} more: {rest})"
        raise SpecError(first)
    from infrakit.controller.group.sections import GroupProperties, canonical_keys

    raw = spec.properties if spec.properties is not None else {}
    props = GroupProperties.model_validate(canonical_keys(GroupProperties, raw))
    digest = config_hash(
        props.instance.plugin,
        props.instance.properties,
        props.flavor.plugin,
        props.flavor.properties,
    )
    return GroupSettings(id=spec.id, properties=props, raw=raw, hash=digest)


def spec_problems(spec: spi_group.Spec) -> list[Problem]:
    """Every problem of ``spec``, InfraKit's checks first; empty when it is valid. Sections are
    checked one by one, so a type error in one does not hide the others; a check that needs a
    section that did not parse is skipped (its own problem is already listed)."""
    problems = _id_problems(spec.id)
    raw = spec.properties
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                ("Properties",),
                "an object (a map of keys)",
                type(raw).__name__,
                "see docs/group-spec.md",
                f"Invalid properties: Properties must be a JSON object, got {type(raw).__name__}; "
                "see docs/group-spec.md",
            )
        )
        return problems
    # The spec document {"ID", "Properties": raw} is one level more than raw: the same limit as
    # the CLI's for a spec file.
    if deeper_than(raw, MAX_DEPTH - 1):
        problems.append(
            Problem(
                ("Properties",),
                f"at most {MAX_DEPTH} levels of nesting",
                "deeper nesting",
                "flatten it",
                f"Invalid properties: the spec is nested deeper than {MAX_DEPTH} levels (the "
                "limit for specs); flatten it",
            )
        )
        return problems
    from infrakit.controller.group.sections import GroupProperties, canonical_keys

    canonical = canonical_keys(GroupProperties, raw)
    problems.extend(_unknown_section_problems(raw, GroupProperties))
    sections = _parse_sections(canonical, problems)
    problems.extend(_section_problems(sections))
    return problems


def _parse_sections(canonical: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """Each section of the (canonically keyed) Properties parsed on its own: a section model,
    or None when absent-and-optional or when it did not parse (its problems added)."""
    from infrakit.controller.group.sections import GroupProperties, ValidationError, submodel

    sections: dict[str, BaseModel | None] = {}
    for field_name, info in GroupProperties.model_fields.items():
        alias = info.alias or field_name
        model = submodel(info.annotation)
        assert model is not None
        optional = info.default is None  # Health, Ingress: absent or null means "not used"
        if alias not in canonical:
            sections[alias] = None if optional else model.model_validate({})
            continue
        if optional and canonical[alias] is None:
            sections[alias] = None
            continue
        try:
            sections[alias] = model.model_validate(canonical[alias])
        except ValidationError as exc:
            sections[alias] = None
            prefix = ("Properties", alias)
            problems.extend(
                _pydantic_problem(e, prefix, model) for e in exc.errors(include_url=False)
            )
    return sections


def _unknown_section_problems(
    raw: dict[str, Any], properties: type[GroupProperties]
) -> list[Problem]:
    """Keys of Properties that Go ignores but that are one typo away from a missing section."""
    known = [f.alias for f in properties.model_fields.values() if f.alias]
    present = {k.lower() for k in raw if isinstance(k, str)}
    out = []
    for key in raw:
        if not isinstance(key, str) or key.lower() in {k.lower() for k in known}:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close and close[0].lower() not in present:
            out.append(
                Problem(
                    ("Properties", key),
                    "one of the Properties sections",
                    f"unknown field {key!r}",
                    f"did you mean {close[0]}?",
                    f"Invalid properties: Properties.{key}: unknown field; did you mean "
                    f"{close[0]}? (see docs/group-spec.md)",
                )
            )
    return out


def _section_problems(sections: dict[str, Any]) -> list[Problem]:
    """The checks across fields, on the sections that parsed."""
    from infrakit.controller.group.sections import (
        AllocationSection,
        PluginSection,
        ProvisioningSection,
        UpdatingSection,
    )

    out: list[Problem] = []
    alloc = sections.get("Allocation")
    if isinstance(alloc, AllocationSection):
        out.extend(_allocation_problems(alloc))
    updating = sections.get("Updating")
    if isinstance(updating, UpdatingSection):
        out.extend(_updating_problems(updating, alloc))
    prov = sections.get("Provisioning")
    if isinstance(prov, ProvisioningSection) and prov.backoff_max < prov.backoff_initial:
        out.append(
            Problem(
                ("Properties", "Provisioning", "BackoffMax"),
                f"at least BackoffInitial ({format_duration(prov.backoff_initial)})",
                format_duration(prov.backoff_max),
                "raise BackoffMax or lower BackoffInitial",
                "Invalid properties: Properties.Provisioning.BackoffMax must be at least "
                "BackoffInitial",
            )
        )
    for label, example in (("Instance", "instance-file"), ("Flavor", "flavor-vanilla")):
        section = sections.get(label)
        if isinstance(section, PluginSection) and not section.plugin:
            out.append(
                Problem(
                    ("Properties", label, "Plugin"),
                    f"the name of the {label.lower()} plugin",
                    "nothing",
                    f"name it, e.g. {example}",
                    f"Invalid properties: Properties.{label}.Plugin: required; name the "
                    f"{label.lower()} plugin (e.g. {example})",
                )
            )
    return out


def _id_problems(gid: str) -> list[Problem]:
    """Group IDs name store keys and event topics: a safe, bounded alphabet."""
    if not gid:
        return [
            Problem(
                ("ID",),
                "a group name",
                "nothing",
                'set "ID" at the top of the spec',
                spi_group.BLANK_ID,
            )
        ]
    if not _GROUP_ID.fullmatch(gid):
        return [
            Problem(
                ("ID",),
                "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
                _found(gid),
                "rename the group (its ID names store keys and event topics)",
                f"Group ID {gid!r}: expected 1-128 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit (it names store keys and event topics); rename the group",
            )
        ]
    return []


def _allocation_problems(alloc: AllocationSection) -> list[Problem]:
    """Exactly one of Size (> 0) or LogicalIDs (unique, non-empty), within MAX_GROUP_SIZE."""
    where = ("Properties", "Allocation")
    if alloc.size == 0 and not alloc.logical_ids:
        return [
            Problem(
                where,
                "Size > 0 (cattle) or LogicalIDs (pets)",
                "neither",
                "set Size > 0 for cattle or LogicalIDs for pets",
                "Allocation must not be blank (Properties.Allocation: set Size > 0 for cattle "
                "or LogicalIDs for pets)",
            )
        ]
    out: list[Problem] = []
    if alloc.size > MAX_GROUP_SIZE or len(alloc.logical_ids or []) > MAX_GROUP_SIZE:
        count = alloc.size or len(alloc.logical_ids or [])
        out.append(
            Problem(
                where,
                f"at most {MAX_GROUP_SIZE} instances",
                str(count),
                "check the number, or split it into groups",
                f"Invalid properties: Properties.Allocation: {count} instances is more than one "
                f"group may have (at most {MAX_GROUP_SIZE}); check the number, or split it into "
                "groups",
            )
        )
    if alloc.size > 0 and alloc.logical_ids:
        out.append(
            Problem(
                where,
                "Size or LogicalIDs",
                "both",
                "give Size or LogicalIDs, not both",
                "Only one Allocation method may be used (Properties.Allocation: give Size or "
                "LogicalIDs, not both)",
            )
        )
    out.extend(_logical_id_problems(alloc.logical_ids or []))
    return out


def _logical_id_problems(logical_ids: list[str]) -> list[Problem]:
    """Logical IDs are non-empty and unique."""
    out: list[Problem] = []
    seen: set[str] = set()
    for i, lid in enumerate(logical_ids):
        path = ("Properties", "Allocation", "LogicalIDs", str(i))
        if not lid:
            out.append(
                Problem(
                    path,
                    "a non-empty ID",
                    '""',
                    "remove it or name it",
                    "Invalid properties: Properties.Allocation.LogicalIDs: empty ID",
                )
            )
        elif lid in seen:
            out.append(
                Problem(
                    path,
                    "unique logical IDs",
                    f"{lid!r} a second time",
                    "remove the duplicate",
                    f"Invalid properties: Properties.Allocation.LogicalIDs: {lid!r} appears "
                    "twice; logical IDs must be unique",
                )
            )
        seen.add(lid)
    return out


def _updating_problems(u: UpdatingSection, alloc: AllocationSection | None) -> list[Problem]:
    """One Updating method; an update that can make progress; a canary within the group."""
    where = ("Properties", "Updating")
    out: list[Problem] = []
    if u.count > 0 and u.duration > 0:
        out.append(
            Problem(
                where,
                "Count or Duration",
                "both",
                "give Count or Duration, not both",
                "Only one Updating method may be used (Properties.Updating: give Count or "
                "Duration, not both)",
            )
        )
    if u.max_surge in (0, "0%") and u.max_unavailable in (0, "0%"):
        out.append(
            Problem(
                where,
                "MaxSurge or MaxUnavailable above 0",
                "both 0",
                "set MaxSurge to 1",
                "Invalid properties: Properties.Updating: MaxSurge and MaxUnavailable cannot "
                "both be 0, or an update could never replace anything; set MaxSurge to 1",
            )
        )
    if alloc is not None:
        size = len(alloc.logical_ids) if alloc.logical_ids else alloc.size
        if u.canary > size:
            out.append(
                Problem(
                    (*where, "Canary"),
                    f"at most the group size {size}",
                    str(u.canary),
                    f"use at most {size}",
                    f"Invalid properties: Properties.Updating.Canary: {u.canary} is more than "
                    f"the group size {size}; use at most {size}",
                )
            )
    return out
