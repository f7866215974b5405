"""The SEED-era console scripts, for InfraKit's "test drive" walkthrough:

* ``infrakit-instance-file [--name instance-file] [--dir DIR]``
* ``infrakit-group-default [--name group] [--poll-interval DURATION] [--store FILE]``
* ``infrakit-flavor-vanilla [--name flavor-vanilla]``
* ``infrakit-flavor-combo [--name flavor-combo]``

Each serves one plugin in the foreground until Ctrl-C, exactly like ``infrakit plugin start``.
Its flags are its kind's options (names, help, defaults, variables), generated from the kind: an
option is declared once, on the kind, and checked by the kind's parser.
"""

from __future__ import annotations

import click

from infrakit import errors
from infrakit.cli._common import (
    CliError,
    fail,
    flag_spellings,
    flag_values,
    kind_flags,
    logging_options,
)
from infrakit.cli.plugin import run_plugins
from infrakit.spi.plugin import Kind

__all__ = ["flavor_combo", "flavor_vanilla", "group_default", "instance_file"]

HELP = {"help_option_names": ["-h", "--help"]}


def daemon(script: str, kind: Kind, summary: str) -> click.Command:
    """The console script ``script``: ``--name`` (default: the kind's default name), a flag per
    option of ``kind`` and ``--log-level``; serves one plugin of ``kind``."""

    @click.command(script, context_settings=HELP, help=summary)
    @click.option(
        "--name", default=kind.default_name, show_default=True, help="plugin (socket) name"
    )
    @kind_flags(kind)
    @logging_options
    def command(name: str, log_level: str, log_format: str | None, **flags: object) -> None:
        from infrakit.launch import stack

        try:
            starts = stack.plan(
                [f"{kind.name}:{name}"],
                {kind.name: flag_values(kind, flags)},
                {kind.name: flag_spellings(kind)},
            )
        except errors.InfrakitError as exc:
            fail(str(exc))
        run_plugins(starts, log_level=log_level, log_format=log_format)

    return command


def _main(kind: Kind, script: str, summary: str) -> None:
    from infrakit._utils import collector
    from infrakit.launch import registry

    collector.defer()  # until the plugin serves (see infrakit._utils.collector)
    registry.register(kind)  # infrakit's own kind: no entry-point scan (registry.register)
    command = daemon(script, kind, summary)
    try:
        command.main(prog_name=script, standalone_mode=True)
    except CliError as exc:  # pragma: no cover - standalone mode already handles it
        exc.show()
        raise SystemExit(1) from None


def instance_file() -> None:
    from infrakit.plugins.file.kind import KIND

    _main(KIND, "infrakit-instance-file", "File instance plugin: one JSON file per instance.")


def group_default() -> None:
    from infrakit.controller.group.kind import KIND

    _main(KIND, "infrakit-group-default", "The default group controller.")


def flavor_vanilla() -> None:
    from infrakit.plugins.vanilla.kind import KIND

    _main(KIND, "infrakit-flavor-vanilla", "Vanilla flavor: init lines, tags and attachments.")


def flavor_combo() -> None:
    from infrakit.plugins.combo.kind import KIND

    _main(KIND, "infrakit-flavor-combo", "Combo flavor: combines other flavors.")
