"""Group SPI over RPC: the server-side service and the async client.

Wire methods (``Group/0.1.1``; SEED has the first five, without ``Name``/``ID`` echoes)::

    Group.CommitGroup      {"Name","Spec","Pretend"}   -> {"Name","ID","Details"}   SEED {"Details"}
    Group.FreeGroup        {"Name","ID"}               -> {"Name","ID"}              SEED {"OK"}
    Group.DescribeGroup    {"Name","ID"}               -> {"Name","ID","Description"}
    Group.DestroyGroup     {"Name","ID"}               -> {"Name","ID"}              SEED {"OK"}
    Group.InspectGroups    {"Name","ID"}               -> {"Name","ID","Groups"}
    Group.DestroyInstances {"Name","ID","Instances"}   -> {"Name","ID"}
    Group.Size             {"Name","ID"}               -> {"Name","ID","Size"}
    Group.SetSize          {"Name","ID","Size"}        -> {"Name","ID"}

infrakit extensions (same envelope; Go clients never call them): ``Group.Status``,
``Group.Plan``, ``Group.Pause``, ``Group.Resume``, ``Group.Promote``, ``Group.Rollback``,
``Group.Reset`` - each ``{"Name","ID", ...options}`` in, ``{"Name","ID", ...fields}`` out - served
when the group object has the matching method ``async def pause(self, id, options) -> dict``
(``options`` holds the other params with lower-cased keys).

``Name`` addressing follows InfraKit HEAD (reference section 1.10): a bare name or ``.`` reaches
the single served object; ``lookup/sub`` looks up ``lookup`` then ``sub``. A server with one object
also accepts any unknown sub (InfraKit rejected it), since the group ID travels in ``ID`` anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from infrakit import errors
from infrakit._utils import collector
from infrakit.rpc.client import Client
from infrakit.rpc.server import Handler, Service
from infrakit.spi import group
from infrakit.spi.types import Era, ci_get, ci_view, want_str

__all__ = ["EXTENSIONS", "HANDLERS", "GroupClient", "resolve_name", "service"]

#: infrakit-only Group methods: wire name -> Python method name on the group object.
EXTENSIONS = {
    "Group.Status": "status",
    "Group.Plan": "plan",
    "Group.Pause": "pause",
    "Group.Resume": "resume",
    "Group.Promote": "promote",
    "Group.Rollback": "rollback",
    "Group.Reset": "reset",
    # Served by the HA manager (infrakit.manager); ID is not needed.
    "Manager.Status": "manager_status",
}


def resolve_name(objects: dict[str, Any], name: str) -> Any:
    """Find the object addressed by ``name`` (``socket`` or ``socket/sub``) in ``objects``."""
    lookup, _, sub = name.partition("/")
    if (not sub or lookup == ".") and len(objects) == 1:
        return next(iter(objects.values()))
    if not sub:
        if "." in objects:
            return objects["."]
    else:
        for key in (lookup, sub):
            if key in objects:
                return objects[key]
        if len(objects) == 1:
            return next(iter(objects.values()))
    raise errors.NotFoundError(f"not found: {name} (key={sub})")


def _group_id(view: dict[str, Any], method: str) -> str:
    gid: str = want_str(ci_get(view, "ID"), "ID")
    if not gid:
        raise errors.SpecError("Group ID must not be blank")
    return gid


def _echo(name: str, gid: str, era: Era, **fields: Any) -> dict[str, Any]:
    """A result: HEAD echoes ``Name`` and ``ID`` before the fields; SEED has the fields alone."""
    if era is Era.SEED:
        return fields
    return {"Name": name, "ID": gid, **fields}


def _done(name: str, gid: str, era: Era) -> dict[str, Any]:
    """The result of a call that returns nothing: SEED's ``{"OK": true}``, HEAD's echo."""
    return {"OK": True} if era is Era.SEED else _echo(name, gid, era)


#: One wire method of the group service: (group object, Name, params, era) -> result.
GroupStep = Callable[[Any, str, dict[str, Any], Era], Awaitable[dict[str, Any]]]


async def _commit(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    if ci_get(view, "Spec") is None:
        raise errors.SpecError("Group.CommitGroup: params.Spec (the group spec) must be set")
    spec = group.spec_from_wire(ci_get(view, "Spec"), "Spec")
    pretend = ci_get(view, "Pretend", False)
    pretend = False if pretend is None else pretend  # JSON null leaves a Go bool false
    if not isinstance(pretend, bool):
        raise errors.SpecError(f"Group.CommitGroup: Pretend must be true or false, got {pretend!r}")
    details = await obj.commit_group(spec, pretend)
    return _echo(name, spec.id, era, Details=details)


async def _free(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "FreeGroup")
    await obj.free_group(gid)
    return _done(name, gid, era)


async def _describe(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "DescribeGroup")
    desc = await obj.describe_group(gid)
    with collector.paused():  # a dict per instance: see infrakit._utils.collector
        wire = group.group_description_to_wire(desc, era)
    return _echo(name, gid, era, Description=wire)


async def _destroy(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "DestroyGroup")
    await obj.destroy_group(gid)
    return _done(name, gid, era)


async def _inspect(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    specs = await obj.inspect_groups()
    groups = [group.spec_to_wire(s) for s in specs] or None
    return _echo(name, want_str(ci_get(view, "ID"), "ID"), era, Groups=groups)


async def _destroy_instances(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "DestroyInstances")
    ids = ci_get(view, "Instances")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise errors.SpecError(
            "Group.DestroyInstances: Instances must be a non-empty array of instance IDs"
        )
    await obj.destroy_instances(gid, ids)
    return _echo(name, gid, era)


async def _size(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "Size")
    return _echo(name, gid, era, Size=await obj.size(gid))


async def _set_size(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
    gid = _group_id(view, "SetSize")
    new_size = ci_get(view, "Size")
    if isinstance(new_size, bool) or not isinstance(new_size, int):
        raise errors.SpecError(f"Group.SetSize: Size must be an integer, got {new_size!r}")
    if new_size < 0:
        raise errors.SpecError("size cannot be negative")
    await obj.set_size(gid, new_size)
    return _echo(name, gid, era)


def _extension(method_name: str) -> GroupStep:
    """An infrakit extension: ``obj.<method_name>(id, options)`` with the other params."""

    async def step(obj: Any, name: str, view: dict[str, Any], era: Era) -> dict[str, Any]:
        if method_name.startswith("manager_"):
            gid = want_str(ci_get(view, "ID"), "ID")
        else:
            gid = _group_id(view, method_name)
        fn = getattr(obj, method_name, None)
        if fn is None:
            raise errors.NotFoundError(f"group plugin {name or '.'} does not support {method_name}")
        options = {k.lower(): v for k, v in view.items() if k.lower() not in ("name", "id")}
        result = await fn(gid, options)
        return _echo(name, gid, era, **(result if isinstance(result, dict) else {}))

    return step


#: The wire methods of ``Group/0.1.1`` (the extensions are added per served object).
HANDLERS: dict[str, GroupStep] = {
    "Group.CommitGroup": _commit,
    "Group.FreeGroup": _free,
    "Group.DescribeGroup": _describe,
    "Group.DestroyGroup": _destroy,
    "Group.InspectGroups": _inspect,
    "Group.DestroyInstances": _destroy_instances,
    "Group.Size": _size,
    "Group.SetSize": _set_size,
}


def _named(objects: dict[str, Any], step: GroupStep) -> Handler:
    async def handle(params: dict[str, Any], era: Era) -> Any:
        view = ci_view(params, "params")
        name = want_str(ci_get(view, "Name"), "Name")
        return await step(resolve_name(objects, name), name, view, era)

    return handle


def service(objects: dict[str, Any]) -> Service:
    """Serve group objects (implementing :class:`infrakit.spi.group.Plugin`) keyed by name."""
    table = dict(HANDLERS)
    sample = next(iter(objects.values()))
    for wire_name, py_name in EXTENSIONS.items():
        if callable(getattr(sample, py_name, None)):
            table[wire_name] = _extension(py_name)
    handlers = {method: _named(objects, step) for method, step in table.items()}
    examples: dict[str, Any] = {m: {"Name": "", "ID": ""} for m in handlers}
    examples["Group.CommitGroup"] = {
        "Name": "",
        "Spec": {"ID": "", "Properties": None},
        "Pretend": False,
    }
    zero: dict[str, Any] = {"Name": "", "ID": ""}
    results: dict[str, Any] = {m: zero for m in handlers}
    results["Group.CommitGroup"] = {**zero, "Details": ""}
    results["Group.DescribeGroup"] = {
        **zero,
        "Description": {"Instances": None, "Converged": False},
    }
    results["Group.InspectGroups"] = {**zero, "Groups": None}
    results["Group.Size"] = {**zero, "Size": 0}
    return Service(group.INTERFACE, handlers, sorted(objects), examples, results=results)


class GroupClient:
    """A group plugin reached over RPC; implements :class:`infrakit.spi.group.Plugin`."""

    def __init__(self, client: Client, name: str = "") -> None:
        self.client = client
        self.name = name

    async def _call(self, method: str, **fields: Any) -> dict[str, Any]:
        await self.client.handshake(group.INTERFACE)
        params = fields if self.client.era is Era.SEED else {"Name": self.name, **fields}
        result = await self.client.call(method, params)
        return ci_view(result, f"{method} result")

    async def commit_group(self, spec: group.Spec, pretend: bool) -> str:
        result = await self._call(
            "Group.CommitGroup", Spec=group.spec_to_wire(spec), Pretend=pretend
        )
        return want_str(ci_get(result, "Details"), "Details")  # type: ignore[no-any-return]

    async def free_group(self, id: str) -> None:
        await self._call("Group.FreeGroup", ID=id)

    async def describe_group(self, id: str) -> group.GroupDescription:
        result = await self._call("Group.DescribeGroup", ID=id)
        return group.group_description_from_wire(ci_get(result, "Description"))

    async def destroy_group(self, id: str) -> None:
        await self._call("Group.DestroyGroup", ID=id)

    async def inspect_groups(self) -> list[group.Spec]:
        result = await self._call("Group.InspectGroups", ID="")
        return [
            group.spec_from_wire(g, f"Groups[{i}]")
            for i, g in enumerate(ci_get(result, "Groups") or [])
        ]

    async def destroy_instances(self, id: str, instances: list[str]) -> None:
        await self._call("Group.DestroyInstances", ID=id, Instances=instances)

    async def size(self, id: str) -> int:
        result = await self._call("Group.Size", ID=id)
        return int(ci_get(result, "Size", 0))

    async def set_size(self, id: str, size: int) -> None:
        await self._call("Group.SetSize", ID=id, Size=size)

    async def extension(self, method: str, id: str, **fields: Any) -> dict[str, Any]:
        """Call an infrakit extension (``Group.Status`` ...) and return its result fields, with
        their keys as sent (a follower manager passes them on to its own caller unchanged)."""
        await self.client.handshake(group.INTERFACE)
        result = await self.client.call(method, {"Name": self.name, "ID": id, **fields})
        return dict(result) if isinstance(result, dict) else {}

    async def close(self) -> None:
        await self.client.close()
