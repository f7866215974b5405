"""The ``infrakit`` click group: every command, each sub-command module imported when it runs.

Sub-command modules are imported only when their command runs, so ``infrakit group describe``
does not pay for the plugin-hosting code (the CLI's start-up time is a benchmark target).
"""

from __future__ import annotations

import importlib
import os

import click

from infrakit import __version__

__all__ = ["cli"]

#: command name -> (module, attribute)
_LAZY = {
    "up": ("infrakit.cli.up", "up"),
    "plugin": ("infrakit.cli.plugin", "plugin_cli"),
    "group": ("infrakit.cli.group", "group_cli"),
    "instance": ("infrakit.cli.instance", "instance_cli"),
    "flavor": ("infrakit.cli.instance", "flavor_cli"),
    "event": ("infrakit.cli.event", "event_cli"),
    "manager": ("infrakit.cli.manager", "manager_cli"),
    "template": ("infrakit.cli.template", "template_cli"),
}

_HELP = {
    "up": "Run the group controller, file instances and vanilla/combo flavors; commit SPECs.",
    "plugin": "List, start and stop plugins.",
    "group": "Commit group specs and manage groups.",
    "instance": "Talk to an instance plugin directly.",
    "flavor": "Talk to a flavor plugin directly.",
    "event": "Follow events published by plugins.",
    "manager": "Leader, members and stored specs of the HA manager.",
    "template": "Render spec templates (Jinja2, sandboxed) with vars.",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            module, attr = _LAZY[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; an infrakit error that escaped it is still one ``Error:`` line."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from infrakit import errors  # only on the error path: start-up time matters

            if isinstance(exc, errors.InfrakitError):
                from infrakit.cli._common import CliError

                raise CliError(str(exc)) from exc
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _HELP[name]) for name in sorted(_LAZY)]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="Version: %(version)s")
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


@cli.command("completion", short_help="Print the shell completion script.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(infrakit completion bash)"`."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.ClickException(f"no completion for {shell}")
    click.echo(cls(cli, {}, "infrakit", "_INFRAKIT_COMPLETE").source())
