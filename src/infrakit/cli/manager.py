"""``infrakit manager status|specs|leader``: ask the HA manager (served as ``group``) who leads and
what it keeps. Any member answers: followers read the election and the store themselves.

``specs`` and ``leader`` read the Stack interface (``Stack/0.1.1``, HEAD's ``Manager.Specs``,
``Manager.IsLeader``, ``Manager.LeaderLocation``); ``leader`` prints what Go InfraKit HEAD's
``infrakit manager leader`` printed (``IsLeader       : true``, ``LeaderLocation : URL``).

A plain group controller (``plugin start group``, ``infrakit-group-default``) serves the Group
interface too but no ``Manager.*`` methods; the error then says so and names ``infrakit up``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from infrakit import errors
from infrakit.cli._common import (
    CliError,
    NamedGroup,
    client_for,
    echo_doc,
    fail,
    output_option,
)
from infrakit.spi import group as spi_group
from infrakit.spi import stack as spi_stack
from infrakit.spi.types import InterfaceSpec

__all__ = ["manager_cli"]

OUTPUT = output_option


@click.group("manager", cls=NamedGroup)
@click.option("--name", default="group", show_default=True, help="manager plugin to talk to")
@click.pass_context
def manager_cli(ctx: click.Context, name: str) -> None:
    """Leader, members and stored specs of the HA manager."""
    ctx.obj = {"name": name}


def _manager(
    ctx: click.Context,
    method: str,
    params: dict[str, Any] | None = None,
    interface: InterfaceSpec = spi_group.INTERFACE,
) -> dict[str, Any]:
    name = ctx.obj["name"]
    client = client_for(name)
    try:
        result = client.call(
            method, {"Name": "", "ID": ""} if params is None else params, interface=interface
        )
    except (errors.PluginError, errors.VersionMismatchError) as exc:
        # What a server without the method answers (infrakit and Go alike), or its handshake.
        text = str(exc)
        if text.startswith(('rpc: can\'t find service "Manager"', "rpc: can't find method")) or (
            isinstance(exc, errors.VersionMismatchError) and str(interface) in text
        ):
            fail(
                f"plugin {name} at {client.address} is a plain group controller, not a manager "
                f"(it has no {method}); run the manager with `infrakit up` (stop this one first: "
                f"infrakit plugin stop {client.name}), or pass --name of a manager"
            )
        fail(text)
    except errors.InfrakitError as exc:
        fail(str(exc))
    return {k: v for k, v in (result or {}).items() if k not in ("Name", "ID")}


def _stack(ctx: click.Context, method: str) -> dict[str, Any]:
    return _manager(ctx, method, {}, spi_stack.INTERFACE)


@manager_cli.command("status")
@OUTPUT
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Who leads, this member, every member, the election backend (lease) and the store."""
    doc = _manager(ctx, "Manager.Status")
    if output != "text":
        echo_doc(doc, output)
        return
    leader = doc.get("Leader") or {}
    since = doc.get("LeadingSince")
    rows = [
        ("Member", doc.get("Member", "")),
        ("Leading", "yes" if doc.get("Leading") else "no"),
        ("Leader", f"{leader.get('ID', '')} {leader.get('Location', '')}".strip() or "none"),
        ("Listen", doc.get("Location") or "-"),
        ("Members", _members(doc.get("Members"))),
        ("Election", doc.get("Election", "")),
        ("Store", doc.get("Store", "")),
    ]
    if since:
        rows.append(
            ("Since", dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec="seconds"))
        )
    if doc.get("Groups") is not None:
        rows.append(("Groups", ", ".join(doc["Groups"]) or "none"))
    for key, value in rows:
        click.echo(f"{key + ':':<10}{value}")


def _members(members: Any) -> str:
    """``a (leader), b tcp://10.0.0.2:24864`` - or why the list is missing."""
    if members is None:
        return "unknown (the election backend did not answer)"
    parts = []
    for m in members:
        text = str(m.get("ID", ""))
        if m.get("Location"):
            text += f" {m['Location']}"
        if m.get("Leading"):
            text += " (leader)"
        parts.append(text)
    return ", ".join(parts) or "none"


@manager_cli.command("specs")
@click.option(
    "-o", "--output", type=click.Choice(["json", "yaml"]), default="json", help="output format"
)
@click.pass_context
def specs(ctx: click.Context, output: str) -> None:
    """Every committed group spec, as stored (JSON, or YAML with -o yaml)."""
    found = _stack(ctx, "Manager.Specs").get("Specs") or []
    echo_doc([_group_spec(s) for s in found], output)


def _group_spec(spec: Any) -> Any:
    """HEAD's ``types.Spec`` of a group as the group spec infrakit commits: ``{"ID","Properties"}``."""
    if not isinstance(spec, dict):
        return spec
    view = {k.lower(): v for k, v in spec.items()}
    metadata = view.get("metadata") if isinstance(view.get("metadata"), dict) else {}
    return {"ID": (metadata or {}).get("name", ""), "Properties": view.get("properties")}


@manager_cli.command("leader")
@OUTPUT
@click.pass_context
def leader(ctx: click.Context, output: str) -> None:
    """Whether this member leads, and where the leader is (Go InfraKit HEAD's lines)."""
    answers: dict[str, str] = {}
    for key, method in (
        ("IsLeader", "Manager.IsLeader"),
        ("LeaderLocation", "Manager.LeaderLocation"),
    ):
        try:
            result = _stack(ctx, method)
        except CliError as exc:
            if key == "IsLeader":
                raise  # no manager at all: nothing to print
            click.echo(f"warning: {exc.format_message()}", err=True)
            answers[key] = "unknown"
            continue
        if key == "IsLeader":
            answers[key] = "true" if result.get("Leader") else "false"
        else:
            answers[key] = spi_stack.url_from_wire(result.get("Location")) or "unknown"
    if output != "text":
        echo_doc(answers, output)
        return
    click.echo(f"IsLeader       : {answers['IsLeader']}")
    click.echo(f"LeaderLocation : {answers['LeaderLocation']}")
