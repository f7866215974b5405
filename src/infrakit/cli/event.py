"""``infrakit event tail [TOPIC]``: follow a plugin's event stream (default: the group plugin)."""

from __future__ import annotations

import json

import click

from infrakit import errors
from infrakit.cli._common import client_for, fail
from infrakit.spi import event as spi_event

__all__ = ["event_cli"]


@click.group("event")
def event_cli() -> None:
    """Follow events published by plugins."""


@event_cli.command("tail")
@click.argument("topic", default="")
@click.option("--name", default="group", show_default=True, help="plugin whose events to follow")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--count", type=int, default=None, help="exit after this many events")
def tail(topic: str, name: str, output: str, count: int | None) -> None:
    """Print events on TOPIC (`group/cattle`; a trailing `/` follows a whole tree; empty: all)."""
    if count is not None and count < 1:
        fail(f"--count {count}: expected a number of events >= 1 (leave it out to follow forever)")
    client = client_for(name)
    seen = 0

    def announce() -> None:
        click.echo(f"Following events on {topic or 'every topic'} from {name}", err=True)

    try:
        for ev in client.events(topic, on_subscribed=announce):
            if output == "json":
                click.echo(json.dumps(spi_event.event_to_wire(ev)))
            else:
                stamp = ev.timestamp[11:23] if len(ev.timestamp) > 20 else ev.timestamp
                click.echo(f"{stamp} {ev.topic:<20} {ev.type:<20} {ev.message or ev.id}")
            seen += 1
            if count is not None and seen >= count:
                return
    except errors.InfrakitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return
