"""The SEED-era console scripts, for InfraKit's "test drive" walkthrough:

* ``infrakit-instance-file [--name instance-file] [--dir DIR]``
* ``infrakit-group-default [--name group] [--poll-interval 10s] [--store FILE]``
* ``infrakit-flavor-vanilla [--name flavor-vanilla]``
* ``infrakit-flavor-combo [--name flavor-combo]``

Each serves one plugin in the foreground until Ctrl-C, exactly like ``infrakit plugin start``.
"""

from __future__ import annotations

import click

from infrakit.cli._common import CliError
from infrakit.cli.plugin import run_plugins

__all__ = ["flavor_combo", "flavor_vanilla", "group_default", "instance_file"]

LOG = click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)


HELP = {"help_option_names": ["-h", "--help"]}


@click.command("infrakit-instance-file", context_settings=HELP)
@click.option("--name", default="instance-file", show_default=True, help="plugin (socket) name")
@click.option(
    "--dir", "directory", default=None, help="instance directory (default ~/.infrakit/instances)"
)
@LOG
def _instance_file(name: str, directory: str | None, log_level: str) -> None:
    """File instance plugin: one JSON file per instance."""
    run_plugins([("file", name)], {"file": {"dir": directory}}, log_level=log_level)


@click.command("infrakit-group-default", context_settings=HELP)
@click.option("--name", default="group", show_default=True, help="plugin (socket) name")
@click.option(
    "--poll-interval", default=None, help="resync period, e.g. 10s or 500ms (default 10s)"
)
@click.option("--store", default=None, help="spec store file, or 'memory'")
@LOG
def _group_default(name: str, poll_interval: str | None, store: str | None, log_level: str) -> None:
    """The default group controller."""
    run_plugins(
        [("group", name)],
        {"group": {"poll-interval": poll_interval, "store": store}},
        log_level=log_level,
    )


@click.command("infrakit-flavor-vanilla", context_settings=HELP)
@click.option("--name", default="flavor-vanilla", show_default=True, help="plugin (socket) name")
@LOG
def _flavor_vanilla(name: str, log_level: str) -> None:
    """Vanilla flavor: init lines, tags and attachments."""
    run_plugins([("vanilla", name)], log_level=log_level)


@click.command("infrakit-flavor-combo", context_settings=HELP)
@click.option("--name", default="flavor-combo", show_default=True, help="plugin (socket) name")
@LOG
def _flavor_combo(name: str, log_level: str) -> None:
    """Combo flavor: combines other flavors."""
    run_plugins([("combo", name)], log_level=log_level)


def _main(command: click.Command) -> None:
    try:
        command.main(standalone_mode=True)
    except CliError as exc:  # pragma: no cover - standalone mode already handles it
        exc.show()
        raise SystemExit(1) from None


def instance_file() -> None:
    _main(_instance_file)


def group_default() -> None:
    _main(_group_default)


def flavor_vanilla() -> None:
    _main(_flavor_vanilla)


def flavor_combo() -> None:
    _main(_flavor_combo)
