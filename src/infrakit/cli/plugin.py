"""``infrakit plugin ls|start|stop|kinds``: run and find plugins (thin: parse, call
:mod:`infrakit.launch.stack`, format).

``plugin start KIND[:NAME] ...`` serves any set of plugins in this one process, in the foreground,
until Ctrl-C (``plugin start group file:instance-file vanilla``). Kind options are given as
``-o KIND.OPTION=VALUE`` (``-o file.dir=./tutorial``) or by the kind's environment variable.

What a command needs is imported when it runs: ``plugin kinds`` loads the (light) kind modules and
nothing that serves or calls plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from infrakit import errors
from infrakit.cli._common import OUTPUT_FORMATS, echo_doc, fail, logging_options

if TYPE_CHECKING:
    from infrakit import discovery
    from infrakit.launch.stack import Start, TcpSettings, UpSpec

__all__ = ["plugin_cli", "run_plugins"]


@click.group("plugin")
def plugin_cli() -> None:
    """List, start and stop plugins."""


def _interfaces(entry: discovery.Entry) -> tuple[list[str] | None, str, bool]:
    """What a plugin implements, from its handshake: (interfaces, text, live). ``interfaces`` is
    sorted (``[]`` for a stale socket, None when unknown: a SEED-era plugin or no answer); the
    text is the table's column (``Event/0.1.1,Group/0.1.1``, ``-``, ``? (SEED-era)``, ``?``)."""
    from infrakit import discovery
    from infrakit.rpc.client import SyncClient

    if not discovery.probe(entry):
        return [], "-", False
    try:
        with SyncClient(entry.name, entry.address, connect_timeout=1.0, call_timeout=2.0) as c:
            c.handshake()
            if c.objects is None:
                return None, "? (SEED-era)", True
            names = sorted(c.objects)
            return names, ",".join(names) or "-", True
    except errors.InfrakitError:
        return None, "?", True


@plugin_cli.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="names only")
@click.option("-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="text")
def ls(quiet: bool, output: str) -> None:
    """List the plugins in the plugin directory (one line each)."""
    from infrakit import discovery

    entries = discovery.list_plugins()  # never creates the directory: missing = no plugins
    if not entries and not quiet and output == "text":
        click.echo(
            f"no plugins running in {discovery.plugins_dir(create=False)}; start them with "
            "`infrakit up` or `infrakit plugin start KIND[:NAME]`",
            err=True,
        )
    if quiet and output == "text":
        for e in entries:
            click.echo(e.name)
        return
    rows = []
    texts = []
    home = str(Path.home())
    for e in entries:
        interfaces, text, live = _interfaces(e)
        listen = str(e.path) if not e.is_tcp else e.address
        if listen.startswith(home + "/"):
            listen = "~" + listen[len(home) :]
        rows.append({"Name": e.name, "Interfaces": interfaces, "Listen": listen, "Live": live})
        texts.append(text)
    if output != "text":
        echo_doc(rows, output)
        return
    name_width = max([20, *(len(str(r["Name"])) + 2 for r in rows)])
    iface_width = max([30, *(len(t) + 2 for t in texts)])
    click.echo(f"{'NAME':<{name_width}}{'INTERFACE':<{iface_width}}{'LISTEN'}")
    for r, text in zip(rows, texts, strict=True):
        stale = "" if r["Live"] else "  (stale: not running)"
        click.echo(f"{r['Name']:<{name_width}}{text:<{iface_width}}{r['Listen']}{stale}")


@plugin_cli.command("kinds")
def kinds() -> None:
    """List the plugin kinds that `plugin start` can run."""
    from infrakit.launch import registry

    lines = []
    for name, kind in sorted(registry.available().items()):
        lines.append(f"{name:<12}{kind.default_name:<20}{kind.summary}")
        for opt in kind.options:
            env = f", env {opt.env}" if opt.env else ""
            lines.append(
                f"{'':<12}-o {name}.{opt.name}=...  {opt.help} (default {opt.default}{env})"
            )
    if lines:
        click.echo("\n".join(lines))


def parse_options(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """``-o KIND.OPTION=VALUE`` ... -> ``{KIND: {OPTION: VALUE}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        kind, dot, opt = key.partition(".")
        if not sep or not dot or not kind or not opt:
            fail(f"-o {item!r}: expected KIND.OPTION=VALUE, e.g. -o file.dir=./tutorial")
        out.setdefault(kind, {})[opt] = value
    return out


def _complete_kinds(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """``plugin start <TAB>``: the installed kinds, named by their entry points (no kind is
    imported: completion must stay instant, and a broken kind must not break it)."""
    from click.shell_completion import CompletionItem

    from infrakit.launch import registry

    if ":" in incomplete:  # KIND:NAME - the name is the user's
        return []
    return [CompletionItem(n) for n in registry.kind_names() if n.startswith(incomplete)]


@plugin_cli.command("start", short_help="Run plugins in this process until Ctrl-C.")
@click.argument(
    "specs", nargs=-1, required=True, metavar="KIND[:NAME]...", shell_complete=_complete_kinds
)
@click.option("-o", "--option", "options", multiple=True, metavar="KIND.OPTION=VALUE")
@click.option("--listen-tcp", default=None, metavar="HOST", help="also listen on HOST:<free port>")
@click.option(
    "--token-file", default=None, metavar="PATH", help="file (0600) holding the shared TCP token"
)
@click.option("--token", default=None, help="shared TCP token (shows in ps: prefer --token-file)")
@click.option("--insecure", is_flag=True, help="allow --listen-tcp on loopback without a token")
@click.option("--tls-cert", default=None, metavar="PEM", help="serve --listen-tcp over TLS")
@click.option("--tls-key", default=None, metavar="PEM", help="private key of --tls-cert")
@click.option(
    "--tls-ca", default=None, metavar="PEM", help="CA bundle to verify https:// plugins with"
)
@logging_options
def start(
    specs: tuple[str, ...],
    options: tuple[str, ...],
    listen_tcp: str | None,
    token_file: str | None,
    token: str | None,
    insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    log_level: str,
    log_format: str | None,
) -> None:
    """Run plugins in this process until Ctrl-C (e.g. `group file:instance-file vanilla`)."""
    from infrakit.launch import stack

    opts = parse_options(options)
    try:
        tcp = stack.tcp_settings(
            listen_tcp, token, token_file, insecure, (tls_cert, tls_key, tls_ca)
        )
        starts = stack.plan(specs, opts)
    except errors.InfrakitError as exc:
        fail(str(exc))
    run_plugins(starts, log_level=log_level, log_format=log_format, tcp=tcp)


def run_plugins(
    starts: Sequence[Start],
    *,
    log_level: str = "info",
    log_format: str | None = None,
    tcp: TcpSettings | None = None,
    commit: Sequence[UpSpec] = (),
) -> None:
    """Serve ``starts`` in this process until SIGINT/SIGTERM; commit ``commit`` specs once up
    (printing InfraKit's ``Committed <id>: <details>``)."""
    from infrakit.launch import stack

    try:
        setup_logging(log_level, log_format)
    except ValueError as exc:  # a bad INFRAKIT_LOG_FORMAT
        fail(str(exc))
    try:
        stack.run(starts, tcp, commit, on_commit=_print_committed)
    except errors.InfrakitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


def _print_committed(gid: str, details: str) -> None:
    click.echo(f"Committed {gid}: {details}")


def setup_logging(level: str, fmt: str | None = None) -> None:
    """Text or JSON lines on stderr (``infrakit._utils.logs``)."""
    from infrakit._utils.logs import setup_logging as configure

    configure(level, fmt)


@plugin_cli.command("stop")
@click.argument("names", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="stop every plugin in the plugin directory")
@click.option("--timeout", default=10.0, show_default=True, help="seconds to wait for each")
def stop(names: tuple[str, ...], stop_all: bool, timeout: float) -> None:
    """Stop plugins by name (or --all)."""
    from infrakit.launch import stack

    if not 0 < timeout < float("inf"):
        fail(f"--timeout {timeout:g}: expected a number of seconds above 0, e.g. --timeout 10")
    if stop_all and names:
        fail("give plugin names or --all, not both")
    if not stop_all and not names:
        fail("name the plugins to stop (see `infrakit plugin ls`) or use --all")
    failed = []
    try:
        for outcome in stack.stop_plugins(None if stop_all else names, timeout):
            if outcome.error is not None:
                failed.append(f"{outcome.name}: {outcome.error}")
            elif outcome.stale:
                click.echo(
                    f"Removed stale {' and '.join(outcome.removed) or 'entry'} of {outcome.name}"
                )
            else:
                click.echo(f"Stopped {outcome.name}")
    except errors.InfrakitError as exc:
        fail(str(exc))
    if failed:
        fail(f"could not stop {'; '.join(failed)}")
