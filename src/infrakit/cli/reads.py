"""The CLI's big reads, laid out: ``group describe`` and ``instance describe`` as lines. No click.

These are what the commands print (byte for byte what they printed before), written so that
the fast path (:mod:`infrakit.cli.fastpath`) can run them without importing click, and the click
commands (:mod:`infrakit.cli.group`, :mod:`infrakit.cli.instance`) call the same code.

``group describe`` asks one question where the server can: ``Group.Status`` with ``Tags``, whose
rows carry each instance's tags and its place in the observation (``Seen``), so both tables come
from one answer and one observation. A server that does not know the option (an older infrakit:
no ``InstancesTagged`` in the answer) or has no Status (Go InfraKit) is also asked DescribeGroup,
as before. Failures are :class:`~infrakit.errors.InfrakitError` (the caller prints one line).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from infrakit import errors

if TYPE_CHECKING:
    from infrakit.rpc.sync import SyncClient

__all__ = [
    "UP_KINDS",
    "ReadFailed",
    "describe_group",
    "describe_lines",
    "format_tags",
    "instance_lines",
    "observation_order",
    "open_client",
    "start_hint",
    "status_lines",
    "typed_call",
]


#: The plugins ``infrakit up`` runs, by socket name, and the kind ``plugin start`` runs each as
#: alone (each kind's default name; tests/e2e/test_bad_input.py checks them against the registry).
UP_KINDS = {
    "group": "group",
    "instance-file": "file",
    "flavor-vanilla": "vanilla",
    "flavor-combo": "combo",
}


def start_hint(lookup: str) -> str | None:
    """The next step for a plugin ``lookup`` that is not running, when its kind is known."""
    kind = UP_KINDS.get(lookup)
    if kind is None:
        return None
    return f"start it with `infrakit up` (which runs it) or `infrakit plugin start {kind}`"


def open_client(name: str) -> SyncClient:
    """A client for the plugin named ``name`` (``lookup[/sub]``) in the plugin directory; an
    :class:`~infrakit.errors.InfrakitError` (one line) when it is not there."""
    from infrakit import discovery
    from infrakit.rpc.sync import SyncClient

    lookup = discovery.split_name(name)[0]
    entry = discovery.find(name, start_hint=start_hint(lookup))
    return SyncClient(lookup, entry.address)


def format_tags(tags: dict[str, str] | None) -> str:
    """``k=v,k=v`` sorted by key, as InfraKit's table shows tags."""
    if not tags:
        return ""
    try:
        return ",".join(map("=".join, sorted(tags.items())))
    except TypeError:  # a plugin sent a value that is not a string
        return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _row_fields(d: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """ID, LogicalID, Tags, Properties of one description (wire keys, or any case)."""
    if "ID" in d:  # the wire's own spelling: no per-row re-keying (1000 rows: ~10 ms)
        return d["ID"], d.get("LogicalID"), d.get("Tags"), d.get("Properties")
    view = {k.lower(): v for k, v in d.items()}
    return view.get("id", ""), view.get("logicalid"), view.get("tags"), view.get("properties")


def instance_lines(
    descriptions: list[dict[str, Any]], quiet: bool, properties: bool = False
) -> list[str]:
    """InfraKit's instance table: ``%-30s\\t%-30s\\t%-s`` of ID, LOGICAL, TAGS (``-q``: no header)."""
    lines = []
    if not quiet:
        header = f"{'ID':<30}\t{'LOGICAL':<30}\t{'TAGS'}"
        lines.append(header + ("\tPROPERTIES" if properties else ""))
    for d in descriptions:
        iid, logical, tags, props = _row_fields(d)
        row = f"{iid:<30}\t{(logical if logical else '  -   '):<30}\t{format_tags(tags)}"
        if properties:
            row += "\t" + json.dumps(props, separators=(",", ":"))
        lines.append(row)
    return lines


class ReadFailed(Exception):
    """A read that failed, as its one line (printed ``Error: <line>``, exit status 1)."""


def typed_call(
    client: SyncClient, name: str, interface: Any, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Call an instance or flavor plugin; ``--name PLUGIN/TYPE`` travels as ``Type``.

    Failures are :class:`ReadFailed`; an unknown type (InfraKit's bare ``no-plugin:<type>``) is
    explained with the types the plugin's handshake lists, and a plugin's hint to run
    ``infrakit instance describe`` gets the ``--name`` it needs."""
    lookup, _, sub = name.partition("/")
    try:
        result = client.call(method, {"Type": sub, **params}, interface=interface)
    except errors.InfrakitError as exc:
        message = str(exc)
        if message.startswith(f"no-plugin:{sub}") and isinstance(
            exc, errors.NotFoundError | errors.PluginError
        ):
            raise ReadFailed(
                _unknown_type(client.objects, interface, lookup, sub, message)
            ) from None
        raise ReadFailed(
            message.replace(
                "infrakit instance describe", f"infrakit instance --name {name} describe"
            )
        ) from None
    return {k.lower(): v for k, v in result.items()} if isinstance(result, dict) else {}


def _unknown_type(
    objects: dict[str, Any] | None, interface: Any, lookup: str, sub: str, said: str
) -> str:
    """What to say when plugin ``lookup`` has no object of type ``sub`` (``""``: no default)."""
    kind = interface.name
    listed = None if objects is None else objects.get(str(interface))
    names = [str(o.get("Name")) for o in listed or [] if isinstance(o, dict)]
    types = sorted(n for n in names if n not in ("", "."))
    has_default = any(n in ("", ".") for n in names)
    if not sub:
        where = f"its types: {', '.join(types)}" if types else f"it answered {said}"
        return (
            f"plugin {lookup} has no default {kind} object ({where}); "
            f"name one as --name {lookup}/TYPE"
        )
    if listed is None:
        return (
            f"plugin {lookup} has no {kind} type {sub!r} (it answered {said}); --name takes "
            f"PLUGIN or PLUGIN/TYPE: check the type, or use --name {lookup} for its default object"
        )
    if not types:
        return (
            f"plugin {lookup} serves one {kind} object and no type {sub!r}; "
            f"drop the /{sub}: --name {lookup}"
        )
    default = f", or --name {lookup} for its default object" if has_default else ""
    return (
        f"plugin {lookup} has no {kind} type {sub!r} (its types: {', '.join(types)}); "
        f"use --name {lookup}/TYPE with one of them{default}"
    )


def describe_group(
    client: SyncClient, gid: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The instances (DescribeGroup's, in its order) and the Status of group ``gid``: one call
    where the server can (module docstring); the Status is None when the plugin has none."""
    from infrakit.spi import group as spi_group

    status = group_status(client, gid, Tags=True)
    if status is not None and status.get("InstancesTagged"):
        return observation_order(status.get("Instances") or []), status
    result = client.call(
        "Group.DescribeGroup", {"Name": "", "ID": gid}, interface=spi_group.INTERFACE
    )
    view = {k.lower(): v for k, v in result.items()} if isinstance(result, dict) else {}
    desc = view.get("description")
    desc = {k.lower(): v for k, v in desc.items()} if isinstance(desc, dict) else {}
    return desc.get("instances") or [], status


def group_status(client: SyncClient, gid: str, **options: Any) -> dict[str, Any] | None:
    """``Group.Status`` of ``gid``, or None when the plugin cannot say (Go InfraKit has none,
    or the group is unknown: DescribeGroup then says so)."""
    try:
        result = client.call("Group.Status", {"Name": "", "ID": gid, **options})
    except errors.InfrakitError:
        return None
    return result if isinstance(result, dict) else None


def observation_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tagged Status rows (sorted by logical ID, then ID) as DescribeGroup lists the instances:
    in the order of each row's ``Seen`` (a row without one goes first, in its Status order),
    with the plugin's own logical ID where the row carries it apart (``ListedLogicalID``)."""
    return [
        {**r, "LogicalID": r["ListedLogicalID"]} if "ListedLogicalID" in r else r
        for r in sorted(rows, key=_seen)
    ]


def _seen(row: dict[str, Any]) -> int:
    seen = row.get("Seen")
    return seen if isinstance(seen, int) else -1


def unknown_warning(gid: str, status: dict[str, Any] | None) -> str | None:
    """``-q``'s warning on stderr while the group's actual instances are unknown: the rows are
    the last observation's, and a script reading them must know."""
    if status is None or not status.get("ActualUnknown"):
        return None
    ago = status.get("ObservedAgo")
    when = f"as seen {ago:.1f}s ago" if isinstance(ago, int | float) else "none seen yet"
    return f"warning: instances of {gid} {when}: {status['ActualUnknown']}"


def describe_lines(
    gid: str, instances: list[dict[str, Any]], status: dict[str, Any] | None, quiet: bool
) -> str:
    """What ``group describe`` prints on stdout: InfraKit's instance table, then (unless
    ``quiet``) a blank line and the status; every line ends with a newline (one write)."""
    lines = instance_lines(instances, quiet)
    if status is not None and not quiet:
        lines += ["", *status_lines(gid, status)]
    return "\n".join(lines) + "\n" if lines else ""


def status_lines(gid: str, s: dict[str, Any]) -> list[str]:
    """Human summary of ``Group.Status``."""
    healthy = s.get("Healthy") if s.get("HealthChecked") else "-"
    state = "converged" if s.get("Converged") else "converging"
    actual = s.get("Actual")
    ago = s.get("ObservedAgo")
    seen = f", observed {ago:.1f}s ago" if isinstance(ago, int | float) else ""
    lines = [
        f"Group {gid}: desired {s.get('Desired')}, actual "
        f"{'unknown' if actual is None else actual}, healthy {healthy}, "
        f"pending {s.get('Pending')}, destroying {s.get('Destroying')} - {state}"
        f" (instance events: {s.get('Events')}{seen})"
    ]
    if actual is None and s.get("ActualUnknown"):
        lines.append(f"Actual unknown: {s['ActualUnknown']}")
    upd = s.get("Updating")
    if upd:
        phase = "paused" if upd.get("Paused") else ("failed" if upd.get("Failed") else "rolling")
        extra = f" - {upd['Reason']}" if upd.get("Reason") else ""
        canary = ""
        if upd.get("Canary") and not upd.get("Promoted"):
            canary = f", canary {upd['Canary']} (not promoted)"
        lines.append(
            f"Updating: {phase}, {upd.get('Replaced')} of {upd.get('Total')} replaced{canary}{extra}"
        )
    if s.get("Degraded"):
        lines.append(f"Degraded: {s['Degraded'].get('Reason')}")
    elif s.get("Backoff"):
        lines.append(f"Backoff: next create in {s['Backoff']:.1f}s")
    if s.get("ShortCircuit"):
        lines.append(f"Remediation: {s['ShortCircuit']}")
    if s.get("LastError"):
        lines.append(f"Last error: {s['LastError']}")
    lines += _status_rows(s.get("Instances") or [])
    for d in s.get("Decisions") or []:
        lines.append(f"  - {d}")
    return lines


def _status_rows(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [f"{'INSTANCE':<30}\t{'CONFIG':<8}\t{'HEALTH':<10}\tNOTE"]
    for r in rows:
        note = "destroying" if r.get("Destroying") else (r.get("Note") or "")
        lines.append(
            f"{r.get('ID', ''):<30}\t{r.get('Config', ''):<8}\t{r.get('Health', ''):<10}\t{note}"
        )
    return lines
