"""``infrakit instance --name N ...`` and ``infrakit flavor --name N ...``: call plugins directly.

Success strings are InfraKit's: ``validate:ok``, the new ID for ``provision``, ``destroyed <id>``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from infrakit.cli import reads
from infrakit.cli._common import (
    NamedGroup,
    client_for,
    echo_doc,
    echo_json,
    fail,
    instance_table,
    output_option,
    read_json_file,
)

__all__ = ["flavor_cli", "instance_cli"]

OUTPUT = output_option


def _complete_plugins(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from infrakit import discovery

    try:
        names = [e.name for e in discovery.list_plugins(discovery.plugins_dir(create=False))]
    except Exception:
        return []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


def _parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tags {item!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


# --- instance ------------------------------------------------------------------------------------


@click.group("instance", cls=NamedGroup)
@click.option(
    "--name",
    required=True,
    help="instance plugin, e.g. instance-file",
    shell_complete=_complete_plugins,
)
@click.pass_context
def instance_cli(ctx: click.Context, name: str) -> None:
    """Talk to an instance plugin directly."""
    ctx.obj = {"name": name}


def _typed(ctx: click.Context, interface: Any, method: str, **params: Any) -> dict[str, Any]:
    """Call an instance or flavor plugin (:func:`infrakit.cli.reads.typed_call`); failures are
    one line."""
    name = ctx.obj["name"]
    try:
        return reads.typed_call(client_for(name), name, interface, method, params)
    except reads.ReadFailed as exc:
        fail(str(exc))


def _instance(ctx: click.Context, method: str, **params: Any) -> dict[str, Any]:
    from infrakit.spi.instance import INTERFACE  # imported per command: start-up time matters

    return _typed(ctx, INTERFACE, method, **params)


@instance_cli.command("describe")
@click.option("-q", "--quiet", is_flag=True, help="rows only")
@click.option("-p", "--properties", is_flag=True, help="also show each instance's properties")
@click.option("--tags", multiple=True, metavar="KEY=VALUE", help="only instances with these tags")
@OUTPUT
@click.pass_context
def describe(
    ctx: click.Context, quiet: bool, properties: bool, tags: tuple[str, ...], output: str
) -> None:
    """List the plugin's instances."""
    filt = _parse_tags(tags)
    result = _instance(ctx, "Instance.DescribeInstances", Tags=filt, Properties=properties)
    found = result.get("descriptions") or []
    if output != "text":
        echo_doc(found, output)
        return
    instance_table(found, quiet, properties)


@instance_cli.command("validate")
@click.argument("properties_file", metavar="FILE")
@click.pass_context
def validate(ctx: click.Context, properties_file: str) -> None:
    """Validate instance Properties from FILE."""
    props = read_json_file(properties_file, "properties file")
    _instance(ctx, "Instance.Validate", Properties=props)
    click.echo("validate:ok")


@instance_cli.command("provision")
@click.argument("spec_file", metavar="FILE")
@click.pass_context
def provision(ctx: click.Context, spec_file: str) -> None:
    """Provision one instance from the instance Spec in FILE; print its ID."""
    doc = read_json_file(spec_file, "instance spec file")
    if not isinstance(doc, dict):
        fail(f"instance spec file {spec_file}: expected a JSON object with Properties, Tags, Init")
    result = _instance(ctx, "Instance.Provision", Spec=doc)
    click.echo(result.get("id"))


@instance_cli.command("destroy")
@click.argument("instance_ids", nargs=-1, required=True, metavar="ID...")
@click.pass_context
def destroy(ctx: click.Context, instance_ids: tuple[str, ...]) -> None:
    """Destroy instances by ID."""
    for iid in instance_ids:
        _instance(ctx, "Instance.Destroy", Instance=iid, Context={"Reason": "terminate"})
        click.echo(f"destroyed {iid}")


@instance_cli.command("info")
@OUTPUT
@click.pass_context
def info(ctx: click.Context, output: str) -> None:
    """Show the plugin's Properties schema and an example."""
    name = ctx.obj["name"]
    client = client_for(name)
    try:
        doc = client.get_json("/info/api.json")
    except Exception as exc:
        fail(f"plugin {name} offers no /info/api.json ({exc}); it may be a SEED-era plugin")
    props = None
    for iface in doc.get("Interfaces") or []:
        if iface.get("Name") == "Instance":
            props = iface.get("Properties")
            if props is None:
                for m in iface.get("Methods") or []:
                    if m.get("Request", {}).get("method") == "Instance.Validate":
                        props = {"Example": m["Request"]["params"].get("Properties")}
    if output != "text":
        echo_doc(
            {"Vendor": doc.get("Vendor"), "Implements": doc.get("Implements"), "Properties": props},
            output,
        )
        return
    vendor = doc.get("Vendor") or {}
    click.echo(f"Plugin:     {name}")
    if vendor:
        click.echo(f"Vendor:     {vendor.get('Name', '')} {vendor.get('Version', '')}".rstrip())
    impl = ", ".join(f"{i.get('Name')}/{i.get('Version')}" for i in doc.get("Implements") or [])
    click.echo(f"Implements: {impl}")
    if props and props.get("Schema") is not None:
        click.echo("Properties schema:")
        click.echo(json.dumps(props["Schema"], indent=2))
    if props and props.get("Example") is not None:
        click.echo("Example Properties:")
        click.echo(json.dumps(props["Example"], indent=2))


# --- flavor --------------------------------------------------------------------------------------


@click.group("flavor", cls=NamedGroup)
@click.option(
    "--name",
    required=True,
    help="flavor plugin, e.g. flavor-vanilla",
    shell_complete=_complete_plugins,
)
@click.pass_context
def flavor_cli(ctx: click.Context, name: str) -> None:
    """Talk to a flavor plugin directly."""
    ctx.obj = {"name": name}


def _allocation(size: int, logical_ids: str | None) -> dict[str, Any]:
    ids = [i for i in logical_ids.split(",") if i] if logical_ids else None
    return {"Size": size, "LogicalIDs": ids}


def _flavor(ctx: click.Context, method: str, **params: Any) -> dict[str, Any]:
    from infrakit.spi.flavor import INTERFACE

    return _typed(ctx, INTERFACE, method, **params)


ALLOC = [
    click.option("--size", type=int, default=1, show_default=True, help="allocation size"),
    click.option("--logical-ids", default=None, help="comma-separated logical IDs (pets)"),
]


def _with_alloc(fn: Any) -> Any:
    for opt in reversed(ALLOC):
        fn = opt(fn)
    return fn


@flavor_cli.command("validate")
@click.argument("properties_file", metavar="FILE")
@_with_alloc
@click.pass_context
def flavor_validate(
    ctx: click.Context, properties_file: str, size: int, logical_ids: str | None
) -> None:
    """Validate flavor Properties from FILE."""
    props = read_json_file(properties_file, "properties file")
    _flavor(ctx, "Flavor.Validate", Properties=props, Allocation=_allocation(size, logical_ids))
    click.echo("validate:ok")


@flavor_cli.command("prepare")
@click.argument("properties_file", metavar="PROPERTIES_FILE")
@click.argument("spec_file", metavar="INSTANCE_SPEC_FILE")
@_with_alloc
@click.option("--group", "group_id", default="", help="group ID for the Index")
@click.option("--sequence", type=int, default=0, help="sequence for the Index")
@click.pass_context
def flavor_prepare(
    ctx: click.Context,
    properties_file: str,
    spec_file: str,
    size: int,
    logical_ids: str | None,
    group_id: str,
    sequence: int,
) -> None:
    """Print the instance spec the flavor makes of INSTANCE_SPEC_FILE."""
    props = read_json_file(properties_file, "properties file")
    spec = read_json_file(spec_file, "instance spec file")
    result = _flavor(
        ctx,
        "Flavor.Prepare",
        Properties=props,
        Spec=spec,
        Allocation=_allocation(size, logical_ids),
        Index={"Group": group_id, "Sequence": sequence},
    )
    echo_json(result.get("spec"))


@flavor_cli.command("healthy")
@click.argument("instance_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--properties", "properties_file", default=None, help="flavor Properties FILE")
@click.option("--tags", multiple=True, metavar="KEY=VALUE", help="tags of the instances")
@OUTPUT
@click.pass_context
def flavor_healthy(
    ctx: click.Context,
    instance_ids: tuple[str, ...],
    properties_file: str | None,
    tags: tuple[str, ...],
    output: str,
) -> None:
    """Ask the flavor whether instances are healthy."""
    props = read_json_file(properties_file, "properties file") if properties_file else None
    words = {0: "unknown", 1: "healthy", 2: "unhealthy"}
    results = {}
    for iid in instance_ids:
        desc = {"ID": iid, "LogicalID": None, "Tags": _parse_tags(tags)}
        r = _flavor(ctx, "Flavor.Healthy", Properties=props, Instance=desc)
        health = r.get("health")
        results[iid] = words.get(health, str(health)) if isinstance(health, int) else str(health)
    if output != "text":
        echo_doc(results, output)
        return
    for iid, word in results.items():
        click.echo(f"{iid:<30}\t{word}")
