"""``infrakit group keys [PATH]`` and ``infrakit group get PATH``: read the group plugin's metadata
tree (``Metadata/0.1.1``: ``specs/<gid>``, ``groups/<gid>``, ``counts/<gid>``), the data Go
InfraKit HEAD's ``infrakit local group keys`` / ``cat`` read.

``keys`` prints the children of PATH (default ``.``, the top) one per line; ``-a`` every leaf
path under it (HEAD's ``keys -a``), ``-l`` adds HEAD's ``total N:`` line. ``get`` prints the value:
a string as it is, anything else as indented JSON (``-o json``: always JSON). A path that leads
nowhere prints nothing for ``keys`` and ``null`` for ``get``, as HEAD answers it.
"""

from __future__ import annotations

import json
from typing import Any

import click

from infrakit.cli._common import call, client_for, echo_json, fail
from infrakit.rpc.client import SyncClient
from infrakit.spi import metadata as spi_metadata

__all__ = ["get", "keys"]

#: Deepest ``keys -a`` descends (a tree deeper than this is cut, with a note).
MAX_DEPTH = 64


def _metadata(ctx: click.Context, method: str, path: str) -> dict[str, Any]:
    name = ctx.obj["name"]
    client = client_for(name)
    result = call(client, method, {"Name": name, "Path": path}, spi_metadata.INTERFACE)
    return result if isinstance(result, dict) else {}


def _check_path(path: str) -> str:
    if path.startswith("/") and path.strip("/"):
        fail(f"metadata path {path!r}: paths are relative to the top; drop the leading '/'")
    return path or "."


@click.command("keys")
@click.argument("path", default=".", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="every leaf path under PATH")
@click.option("-l", "--long", is_flag=True, help="print a 'total N:' line first")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def keys(ctx: click.Context, path: str, all_: bool, long: bool, output: str) -> None:
    """List the metadata under PATH (specs/, groups/, counts/ ...)."""
    path = _check_path(path)
    if all_:
        name = ctx.obj["name"]
        nodes = _leaves(client_for(name), name, spi_metadata.path_from_string(path))
    else:
        nodes = list(_metadata(ctx, "Metadata.Keys", path).get("Nodes") or [])
    if output == "json":
        echo_json(nodes)
        return
    if long:
        click.echo(f"total {len(nodes)}:")
    if nodes:
        click.echo("\n".join(nodes))


def _leaves(client: SyncClient, name: str, top: spi_metadata.Path) -> list[str]:
    """Every leaf path under ``top``, relative to it, depth first in key order (HEAD's listAll)."""
    found: list[str] = []

    def walk(path: spi_metadata.Path, depth: int) -> None:
        params = {"Name": name, "Path": spi_metadata.path_to_string(path)}
        result = call(client, "Metadata.Keys", params, spi_metadata.INTERFACE) or {}
        children = result.get("Nodes") or []
        if not children and path != top:
            found.append("/".join(path[len(top) :]))
        if depth >= MAX_DEPTH and children:
            fail(f"metadata under {spi_metadata.path_to_string(top)} is deeper than {MAX_DEPTH}")
        for child in children:
            walk((*path, child), depth + 1)

    walk(top, 0)
    return found


@click.command("get")
@click.argument("path")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def get(ctx: click.Context, path: str, output: str) -> None:
    """Print the metadata value at PATH (e.g. counts/cattle/Instances)."""
    value = _metadata(ctx, "Metadata.Get", _check_path(path)).get("Value")
    if isinstance(value, str) and output == "text":
        click.echo(value)
    elif output == "text" and not isinstance(value, dict | list):
        click.echo(json.dumps(value))
    else:
        echo_json(value)
