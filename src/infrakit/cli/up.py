"""``infrakit up [SPEC ...]``: the one-command setup (thin: parse, call
:mod:`infrakit.launch.stack`, print).

It serves the HA manager (``group``, in front of the group controller), the file instance plugin
(``instance-file``, instances in ``~/.infrakit/instances``), and the ``flavor-vanilla`` and
``flavor-combo`` flavors, each on its own socket; given spec files are committed once everything
listens. Ctrl-C stops it cleanly and removes the sockets.

The manager's flags (``--store``, ``--leader`` ... ``--poll-interval``) and ``--instances-dir``
(the file kind's ``dir``) are generated from those kinds' options: declared once, on the kinds.
"""

from __future__ import annotations

import click

from infrakit import errors
from infrakit.cli._common import (
    fail,
    flag_spellings,
    flag_values,
    kind_flags,
    logging_options,
    template_options,
)
from infrakit.cli.plugin import run_plugins
from infrakit.manager.kind import KIND as MANAGER
from infrakit.plugins.file.kind import KIND as FILE

__all__ = ["up"]

#: The manager options ``up`` offers as flags, in this order (``etcd`` only via an etcd store).
MANAGER_FLAGS = (
    "store",
    "leader",
    "ttl",
    "id",
    "listen",
    "token-file",
    "token",
    "insecure",
    "tls-cert",
    "tls-key",
    "tls-ca",
    "poll-interval",
    "http",
)
#: The file kind's ``dir`` is ``up``'s ``--instances-dir``.
FILE_RENAME = {"dir": "instances-dir"}


@click.command("up")
@click.argument("spec_files", nargs=-1, metavar="[SPEC]...")
@kind_flags(MANAGER, MANAGER_FLAGS)
@kind_flags(FILE, rename=FILE_RENAME)
@click.option("--listen-tcp", default=None, metavar="HOST", help="every plugin also on HOST:<port>")
@template_options
@logging_options
def up(
    spec_files: tuple[str, ...],
    listen_tcp: str | None,
    var_pairs: tuple[str, ...],
    vars_files: tuple[str, ...],
    log_level: str,
    log_format: str | None,
    **flags: object,
) -> None:
    """Run the manager (group controller), file instances and the vanilla/combo flavors; commit
    SPECs (JSON or YAML files, rendered first when they are templates)."""
    from infrakit.launch import registry, stack
    from infrakit.plugins.combo.kind import KIND as COMBO
    from infrakit.plugins.vanilla.kind import KIND as VANILLA
    from infrakit.rpc.envelope import MAX_BODY_BYTES

    for kind in (MANAGER, FILE, VANILLA, COMBO):  # stack.UP_PLUGINS: infrakit's own kinds,
        registry.register(kind)  # found without reading every distribution's entry points
    manager = flag_values(MANAGER, flags)
    # --token, --token-file, --insecure and --tls-* serve the manager's --listen and, with
    # --listen-tcp, every plugin's listener. The token is read once: the manager gets the value.
    tls = tuple(manager.get(n) for n in ("tls-cert", "tls-key", "tls-ca"))
    try:
        variables: dict[str, object] = {}
        if var_pairs or vars_files:  # the spec file reader (YAML, Jinja2) only when used
            from infrakit.specfile.reader import parse_vars

            variables = parse_vars(var_pairs, vars_files, MAX_BODY_BYTES)
        specs = stack.read_up_specs(spec_files, variables)  # all checked before anything starts
        tcp = stack.tcp_settings(
            listen_tcp,
            _text(manager.pop("token", None)),
            _text(manager.pop("token-file", None)),
            bool(manager.get("insecure")),
            (_text(tls[0]), _text(tls[1]), _text(tls[2])) if listen_tcp else (None, None, None),
        )
        if tcp.token is not None:
            manager["token"] = tcp.token
        starts = stack.up_plan(
            {"manager": manager, "file": flag_values(FILE, flags)},
            {
                "manager": flag_spellings(MANAGER, MANAGER_FLAGS),
                "file": flag_spellings(FILE, rename=FILE_RENAME),
            },
        )
    except errors.InfrakitError as exc:
        fail(str(exc))
    run_plugins(starts, log_level=log_level, log_format=log_format, tcp=tcp, commit=specs)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
