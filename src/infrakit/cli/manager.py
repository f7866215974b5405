"""``infrakit manager status|specs``: ask the HA manager (served as ``group``) who leads and what it
keeps. Any member answers: followers read the election and the store themselves."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from infrakit.cli._common import NamedGroup, call, client_for, echo_json
from infrakit.spi import group as spi_group

__all__ = ["manager_cli"]

OUTPUT = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")


@click.group("manager", cls=NamedGroup)
@click.option("--name", default="group", show_default=True, help="manager plugin to talk to")
@click.pass_context
def manager_cli(ctx: click.Context, name: str) -> None:
    """Leader, members and stored specs of the HA manager."""
    ctx.obj = {"name": name}


def _manager(ctx: click.Context, method: str) -> dict[str, Any]:
    result = call(client_for(ctx.obj["name"]), method, {"Name": "", "ID": ""}, spi_group.INTERFACE)
    return {k: v for k, v in (result or {}).items() if k not in ("Name", "ID")}


@manager_cli.command("status")
@OUTPUT
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Who leads, this member, the election backend and the store."""
    doc = _manager(ctx, "Manager.Status")
    if output == "json":
        echo_json(doc)
        return
    leader = doc.get("Leader") or {}
    since = doc.get("LeadingSince")
    rows = [
        ("Member", doc.get("Member", "")),
        ("Leading", "yes" if doc.get("Leading") else "no"),
        ("Leader", f"{leader.get('ID', '')} {leader.get('Location', '')}".strip() or "none"),
        ("Listen", doc.get("Location") or "-"),
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


@manager_cli.command("specs")
@click.pass_context
def specs(ctx: click.Context) -> None:
    """Every committed group spec, as stored (JSON)."""
    echo_json(_manager(ctx, "Manager.Specs").get("Specs") or [])
