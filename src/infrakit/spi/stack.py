"""The Stack SPI (InfraKit HEAD's ``Stack/0.1.1``, served as the ``Manager`` service): who leads,
where the leader is, and the whole stack's specs at once.

Wire (HEAD's request and response types; every request but Enforce/Terminate is ``{}``)::

    Manager.IsLeader        {}                       -> {"Leader":true}
    Manager.LeaderLocation  {}                       -> {"Location":<Go net/url.URL object>}
    Manager.Enforce         {"Specs":[types.Spec]}   -> {}
    Manager.Specs           {}                       -> {"Specs":[types.Spec]}
    Manager.Inspect         {}                       -> {"Objects":[types.Object]}
    Manager.Terminate       {"Specs":[types.Spec]}   -> {}

``types.Spec`` is InfraKit's new-style spec with lower-case keys; a group committed through the
Group interface is stored (and answered by ``Specs``) as HEAD stored it:
``{"kind":"group","version":"","metadata":{"name":"<gid>","tags":null},"properties":{...}}``.
``types.Object`` is a Spec plus ``"state"``. ``Location`` is Go's ``url.URL`` struct as
``encoding/json`` prints it (Go 1.19: ``Scheme``, ``Opaque``, ``User``, ``Host``, ``Path``,
``RawPath``, ``OmitHost``, ``ForceQuery``, ``RawQuery``, ``Fragment``, ``RawFragment``).

This module is pure: shapes and their checks, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from infrakit.errors import SpecError
from infrakit.spi import group
from infrakit.spi.types import JSON, InterfaceSpec, ci_get, ci_view, want_str

__all__ = [
    "GROUP_KIND",
    "INTERFACE",
    "Plugin",
    "StackObject",
    "group_specs_from_wire",
    "object_to_wire",
    "spec_to_wire",
    "url_from_wire",
    "url_to_wire",
]

INTERFACE = InterfaceSpec("Stack", "0.1.1")

#: The only ``kind`` infrakit's manager enforces: a group (``metadata.name`` is its ID).
GROUP_KIND = "group"


@dataclass(frozen=True)
class StackObject:
    """One object of the stack as ``Inspect`` reports it: its spec and its current state."""

    spec: group.Spec
    state: JSON


@runtime_checkable
class Plugin(Protocol):
    """The stack: leadership and every group's spec at once."""

    async def is_leader(self) -> bool:
        """True only if this member leads (and acts) for certain."""

    async def leader_location(self) -> str:
        """Where the leader is reached (a URL: ``tcp://host:port``, ``unix:///path``)."""

    async def enforce(self, specs: list[group.Spec]) -> None:
        """Commit every spec (as the leader; a follower forwards)."""

    async def specs(self) -> list[group.Spec]:
        """Every committed spec, as stored."""

    async def inspect(self) -> list[StackObject]:
        """Every committed group with its state now."""

    async def terminate(self, specs: list[group.Spec]) -> None:
        """Destroy every group these specs name, with its instances."""


def spec_to_wire(spec: group.Spec) -> dict[str, Any]:
    """A group spec as HEAD's manager stored and answered it (``types.Spec``)."""
    return {
        "kind": GROUP_KIND,
        "version": "",
        "metadata": {"name": spec.id, "tags": None},
        "properties": spec.properties,
    }


def object_to_wire(obj: StackObject) -> dict[str, Any]:
    """``types.Object``: the spec's members, then ``state``."""
    return {**spec_to_wire(obj.spec), "state": obj.state}


def group_specs_from_wire(value: JSON, method: str) -> list[group.Spec]:
    """``Specs`` of an Enforce/Terminate request as group specs; every problem at once (one
    :class:`~infrakit.errors.SpecError` listing each), so nothing is done for a bad list."""
    if value is None:
        value = []
    if not isinstance(value, list):
        raise SpecError(f"{method}: Specs must be an array of specs (types.Spec), got {value!r}")
    problems: list[str] = []
    specs: list[group.Spec] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"Specs[{i}]"
        try:
            view = ci_view(item, where)
            kind = want_str(ci_get(view, "kind"), f"{where}.kind")
            metadata = ci_view(ci_get(view, "metadata"), f"{where}.metadata")
            name = want_str(ci_get(metadata, "name"), f"{where}.metadata.name")
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if kind != GROUP_KIND:
            problems.append(
                f"{where}.kind is {kind!r}: infrakit's manager enforces kind {GROUP_KIND!r} only"
            )
        if not name:
            problems.append(f"{where}.metadata.name must be set: it is the group ID")
        elif name in seen:
            problems.append(f"{where}.metadata.name {name!r} appears twice; give each group once")
        if ci_get(view, "template") is not None:
            problems.append(
                f"{where}.template is not supported; put the group's properties in 'properties'"
            )
        seen.add(name)
        specs.append(group.Spec(name, ci_get(view, "properties")))
    if problems:
        raise SpecError(f"{method}: " + "; ".join(problems))
    return specs


def url_to_wire(location: str) -> dict[str, Any] | None:
    """Go's ``url.URL`` of ``location`` as ``encoding/json`` prints it; None for no location."""
    if not location:
        return None
    parts = urlsplit(location)
    return {
        "Scheme": parts.scheme,
        "Opaque": "",
        "User": None,
        "Host": parts.netloc,
        "Path": parts.path,
        "RawPath": "",
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": parts.query,
        "Fragment": parts.fragment,
        "RawFragment": "",
    }


def url_from_wire(value: JSON) -> str:
    """The text of a Go ``url.URL`` object (what Go's ``URL.String`` prints, for the fields a
    location has); "" for null."""
    if value is None:
        return ""
    view = ci_view(value, "Location")
    scheme = want_str(ci_get(view, "Scheme"), "Location.Scheme")
    host = want_str(ci_get(view, "Host"), "Location.Host")
    path = want_str(ci_get(view, "Path"), "Location.Path")
    query = want_str(ci_get(view, "RawQuery"), "Location.RawQuery")
    text = f"{scheme}://{host}{path}" if scheme else f"{host}{path}"
    return f"{text}?{query}" if query else text
