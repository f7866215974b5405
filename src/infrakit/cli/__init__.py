"""The ``infrakit`` command: thin - parse, call the library or a plugin socket, format.

Commands: ``up``, ``plugin ls|start|stop|kinds``, ``group ...``, ``instance --name N ...``,
``flavor --name N ...``, ``event tail``, ``completion``, ``version``. See docs/cli.md.
"""

from __future__ import annotations

import os

import click

from infrakit import __version__
from infrakit.cli.event import event_cli
from infrakit.cli.group import group_cli
from infrakit.cli.instance import flavor_cli, instance_cli
from infrakit.cli.plugin import plugin_cli, up

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--plugins-dir",
    default=None,
    envvar="INFRAKIT_PLUGINS_DIR",
    help="plugin directory (default $INFRAKIT_HOME/plugins or ~/.infrakit/plugins)",
)
def cli(plugins_dir: str | None) -> None:
    """infrakit: declarative, self-healing infrastructure (InfraKit-compatible)."""
    if plugins_dir:
        os.environ["INFRAKIT_PLUGINS_DIR"] = plugins_dir


@cli.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"Version: {__version__}")


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(infrakit completion bash)"`."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.ClickException(f"no completion for {shell}")
    click.echo(cls(cli, {}, "infrakit", "_INFRAKIT_COMPLETE").source())


cli.add_command(up)
cli.add_command(plugin_cli)
cli.add_command(group_cli)
cli.add_command(instance_cli)
cli.add_command(flavor_cli)
cli.add_command(event_cli)


def main() -> None:
    cli(prog_name="infrakit")
