"""Plugin kinds, found through the ``infrakit.plugins`` entry-point group (no import side effects).

``infrakit plugin start file:instance-file`` looks up the kind ``file`` here. First-party kinds are
registered in infrakit's own ``pyproject.toml`` like any third-party package would register its own,
so there is exactly one mechanism. A kind that fails to load is reported with the entry point and
the error, and the other kinds stay usable. Kind modules are light (options and ``build`` only), so
listing every kind imports no plugin; starting one loads only its own entry point.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from infrakit import errors
from infrakit.spi.plugin import Kind

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "available",
    "get_kind",
    "kind_names",
    "parse_spec",
    "start_hint",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "infrakit.plugins"

_cache: dict[str, Kind] | None = None
#: Kinds loaded one by one (``plugin start KIND`` loads only the kinds it starts) or registered.
_loaded: dict[str, Kind] = {}
_broken: dict[str, str] = {}
#: The group's entry points, read once: every ``entry_points()`` call reads the metadata of every
#: installed distribution (~20 ms here with boto3 and friends), and ``up`` looks up four kinds.
_entry_points: tuple[EntryPoint, ...] | None = None


def _group_entry_points() -> tuple[EntryPoint, ...]:
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        _entry_points = tuple(entry_points(group=ENTRY_POINT_GROUP))
    return _entry_points


def _load(ep: EntryPoint) -> Kind | None:
    """The kind behind one entry point, or None (the reason kept in ``_broken``)."""
    if ep.name in _loaded:
        return _loaded[ep.name]
    try:
        kind = ep.load()
    except Exception as exc:
        _broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
        log.warning("plugin kind %s (%s) failed to load: %s", ep.name, ep.value, exc)
        return None
    if not isinstance(kind, Kind):
        _broken[ep.name] = f"{ep.value} is a {type(kind).__name__}, not infrakit Kind"
        return None
    if kind.name != ep.name:
        _broken[ep.name] = (
            f"{ep.value} is kind {kind.name!r} but registered as {ep.name!r}; "
            f"make the entry-point name equal Kind.name"
        )
        log.warning("plugin kind %s: %s", ep.name, _broken[ep.name])
        return None
    _loaded[ep.name] = kind
    return kind


def available() -> dict[str, Kind]:
    """All loadable kinds by name."""
    global _cache
    if _cache is None:
        found: dict[str, Kind] = {}
        for ep in _group_entry_points():
            kind = _load(ep)
            if kind is not None:
                found[ep.name] = kind
        _cache = {**found, **_loaded}
    return _cache


def kind_names() -> list[str]:
    """The names of the installed kinds, sorted, **without loading any**: the entry points' names
    (and kinds registered at run time). Shell completion uses it; a broken kind is still named,
    ``plugin start`` then says why it cannot load."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_loaded)
    return sorted(names)


def register(kind: Kind) -> None:
    """Register a kind at run time (tests and embedding; packages should use entry points).

    infrakit's own commands that serve infrakit's own kinds (``up``, the console-script daemons)
    register the kind objects they import, so they start without reading the entry points of
    every installed distribution (``importlib.metadata``: ~8 % of a daemon's imports)."""
    _loaded[kind.name] = kind
    if _cache is not None:
        _cache[kind.name] = kind


def get_kind(name: str) -> Kind:
    """The kind ``name``; only its own entry point is loaded (a broken third-party kind does not
    stop another from starting)."""
    if name in _loaded:
        return _loaded[name]
    for ep in _group_entry_points():
        if ep.name != name:
            continue
        kind = _load(ep)
        if kind is not None:
            return kind
    if name in _broken:
        raise errors.SpecError(
            f"plugin kind {name} is installed but failed to load: {_broken[name]}"
        )
    known = ", ".join(sorted(available())) or "none"
    raise errors.NotFoundError(
        f"unknown plugin kind {name!r} (available: {known}); "
        "install the package that provides it or check the spelling"
    )


def parse_spec(text: str) -> tuple[Kind, str]:
    """``KIND[:NAME]`` -> (kind, name); NAME defaults to the kind's default name (``KIND`` alone;
    ``KIND:`` with nothing after the colon is refused)."""
    kind_name, colon, name = text.partition(":")
    kind = get_kind(kind_name)
    if colon and not name:
        raise errors.SpecError(
            f"{text!r}: the plugin name after ':' is empty; give one ({kind_name}:NAME) or "
            f"drop the ':' to use the default name {kind.default_name}"
        )
    name = name or kind.default_name
    if "/" in name or not name or name.startswith("."):
        raise errors.SpecError(
            f"plugin name {name!r}: expected a plain socket name like instance-file (no '/')"
        )
    return kind, name


def start_hint(name: str) -> str | None:
    """How to start the plugin ``name`` when a kind serves it by default, e.g. ``start it with
    `infrakit plugin start vanilla``` for ``flavor-vanilla``; None if no kind does."""
    kinds = sorted(k.name for k in available().values() if k.default_name == name)
    if not kinds:
        return None
    kind = name if name in kinds else kinds[0]
    return f"start it with `infrakit plugin start {kind}`"
