"""``infrakit plugin ls|start|stop|kinds`` and ``infrakit up``: run and find plugins.

``plugin start KIND[:NAME] ...`` serves any set of plugins in this one process, in the foreground,
until Ctrl-C (``plugin start group file:instance-file vanilla``). Kind options are given as
``-o KIND.OPTION=VALUE`` (``-o file.dir=./tutorial``) or by the kind's environment variable.

``up [SPEC.json ...]`` is the one-command setup: the group controller (``group``), the file
instance plugin (``instance-file``, instances in ``~/.infrakit/instances``), and the
``flavor-vanilla`` and ``flavor-combo`` flavors, each on its own socket; given spec files are
committed once everything listens. Ctrl-C stops it cleanly and removes the sockets.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from infrakit import discovery, errors
from infrakit.cli._common import echo_json, fail, read_json_file
from infrakit.rpc.client import SyncClient

__all__ = ["plugin_cli", "run_plugins", "up"]

#: What ``infrakit up`` runs: (kind, name).
UP_PLUGINS = (
    ("file", "instance-file"),
    ("vanilla", "flavor-vanilla"),
    ("combo", "flavor-combo"),
    ("manager", "group"),  # the HA manager in front of the group controller, served as `group`
)


@click.group("plugin")
def plugin_cli() -> None:
    """List, start and stop plugins."""


def _interfaces(entry: discovery.Entry) -> tuple[str, bool]:
    """Comma-joined interfaces from the handshake; (text, live)."""
    if not discovery.probe(entry):
        return "-", False
    try:
        with SyncClient(entry.name, entry.address, connect_timeout=1.0, call_timeout=2.0) as c:
            c.handshake()
            if c.objects is None:
                return "? (SEED-era)", True
            names = sorted(c.objects)
            return ",".join(names) or "-", True
    except errors.InfrakitError:
        return "?", True


@plugin_cli.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="names only")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def ls(quiet: bool, output: str) -> None:
    """List the plugins in the plugin directory (one line each)."""
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
    for e in entries:
        iface, live = _interfaces(e)
        listen = str(e.path) if not e.is_tcp else e.address
        home = str(Path.home())
        if listen.startswith(home + "/"):
            listen = "~" + listen[len(home) :]
        rows.append({"Name": e.name, "Interfaces": iface, "Listen": listen, "Live": live})
    if output == "json":
        echo_json(rows)
        return
    name_width = max([20, *(len(str(r["Name"])) + 2 for r in rows)])
    iface_width = max([30, *(len(str(r["Interfaces"])) + 2 for r in rows)])
    click.echo(f"{'NAME':<{name_width}}{'INTERFACE':<{iface_width}}{'LISTEN'}")
    for r in rows:
        stale = "" if r["Live"] else "  (stale: not running)"
        click.echo(f"{r['Name']:<{name_width}}{r['Interfaces']:<{iface_width}}{r['Listen']}{stale}")


@plugin_cli.command("kinds")
def kinds() -> None:
    """List the plugin kinds that `plugin start` can run."""
    from infrakit.launch import registry

    for name, kind in sorted(registry.available().items()):
        click.echo(f"{name:<12}{kind.default_name:<20}{kind.summary}")
        for opt in kind.options:
            env = f", env {opt.env}" if opt.env else ""
            click.echo(f"{'':<12}-o {name}.{opt.name}=...  {opt.help} (default {opt.default}{env})")


def _parse_options(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        kind, dot, opt = key.partition(".")
        if not sep or not dot or not kind or not opt:
            fail(f"-o {item!r}: expected KIND.OPTION=VALUE, e.g. -o file.dir=./tutorial")
        out.setdefault(kind, {})[opt] = value
    return out


@plugin_cli.command("start", short_help="Run plugins in this process until Ctrl-C.")
@click.argument("specs", nargs=-1, required=True, metavar="KIND[:NAME]...")
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
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
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
) -> None:
    """Run plugins in this process until Ctrl-C (e.g. `group file:instance-file vanilla`)."""
    from infrakit.launch import registry

    opts = _parse_options(options)
    chosen = []
    tcp = _tcp_settings(listen_tcp, token, token_file, insecure, (tls_cert, tls_key, tls_ca))
    try:
        for text in specs:
            kind, name = registry.parse_spec(text)
            chosen.append((kind.name, name))
        unknown = set(opts) - {k for k, _ in chosen}
        if unknown:
            fail(f"-o given for {', '.join(sorted(unknown))}, which is not being started")
        for kind_name, given in opts.items():
            registry.check_options(registry.get_kind(kind_name), given)
    except errors.InfrakitError as exc:
        fail(str(exc))
    run_plugins(chosen, opts, log_level=log_level, tcp=tcp)


@dataclass(frozen=True)
class TcpSettings:
    """How the plugins of one process listen on TCP and reach TCP plugins."""

    host: str | None = None
    token: str | None = None
    insecure: bool = False
    #: Serves ``--listen-tcp`` over TLS (``--tls-cert``/``--tls-key``).
    server_ssl: Any = None
    #: Verifies ``https://`` plugins found by name (``--tls-ca`` or ``$INFRAKIT_TLS_CA``).
    client_ssl: Any = None


def _tcp_settings(
    host: str | None,
    token: str | None,
    token_file: str | None,
    insecure: bool,
    tls: tuple[str | None, str | None, str | None],
) -> TcpSettings:
    """``--listen-tcp``/``--token[-file]``/``--tls-*`` checked before anything starts (one line)."""
    from infrakit.rpc.auth import resolve_token
    from infrakit.rpc.tls import tls_contexts

    try:
        resolved = resolve_token(token, token_file)
        server_ssl, client_ssl = tls_contexts(*tls, "--listen-tcp")
    except errors.InfrakitError as exc:
        fail(str(exc))
    if server_ssl is not None and not host:
        fail(
            f"--tls-cert {tls[0]}: given without --listen-tcp, which is what it would serve; "
            "add --listen-tcp HOST or drop --tls-cert"
        )
    return TcpSettings(host, resolved, insecure, server_ssl, client_ssl)


def run_plugins(
    plugins: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    log_level: str = "info",
    tcp: TcpSettings | None = None,
    commit: list[tuple[str, Any]] | None = None,
) -> None:
    """Serve ``plugins`` in this process until SIGINT/SIGTERM; commit ``commit`` specs once up."""
    _setup_logging(log_level)
    from infrakit.launch.serving import run

    try:
        run(_serve(list(plugins), options or {}, tcp or TcpSettings(), commit or []))
    except errors.InfrakitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


async def _serve(
    plugins: list[tuple[str, str]],
    options: dict[str, dict[str, Any]],
    tcp: TcpSettings,
    commit: list[tuple[str, Any]],
) -> None:
    from infrakit.launch import registry
    from infrakit.launch.host import PluginHost
    from infrakit.spi import group as spi_group

    log = logging.getLogger("infrakit")
    host = PluginHost(
        tcp_host=tcp.host,
        tcp_token=tcp.token,
        tcp_insecure=tcp.insecure,
        tcp_ssl=tcp.server_ssl,
        client_ssl=tcp.client_ssl,
    )
    try:
        # Build every plugin before serving any: a bad option of one stops the process before a
        # socket exists or anything is logged as listening.
        kinds = [(registry.get_kind(k), name, options.get(k)) for k, name in plugins]
        built = [
            (kind, name, await host.build_kind(kind, name, kind_options))
            for kind, name, kind_options in kinds
        ]
        for kind, name, served in built:
            await host.serve(name, served, kind=kind)
        log.info(
            "serving %s in %s (pid %d); Ctrl-C stops",
            ", ".join(n for _, n in plugins),
            host.plugin_dir,
            os.getpid(),
        )
        if commit:
            specs = [(source, spi_group.spec_from_wire(doc, source)) for source, doc in commit]
            await _commit_specs(host.group_lookup("group"), specs)
    except BaseException:
        await host.stop_all()
        raise
    await host.run_until_stopped()


#: Seconds `up` waits for a leader before committing its specs (etcd: one campaign, or the
#: lease TTL of a crashed previous leader).
UP_LEADER_WAIT = 15.0


async def _commit_specs(group: Any, specs: list[tuple[str, Any]]) -> None:
    """Commit ``up``'s specs: a dry run of every spec first (the plugins validate it), so a bad
    last file stops `up` before the first one is committed; every error names its file."""
    import asyncio

    deadline = time.monotonic() + UP_LEADER_WAIT
    for pretend in (True, False):
        for source, spec in specs:
            while True:
                try:
                    details = await group.commit_group(spec, pretend)
                    break
                except errors.NotLeaderError as exc:
                    if time.monotonic() >= deadline:  # else: the election is still deciding
                        raise errors.SpecError(f"spec file {source}: {exc}") from None
                    await asyncio.sleep(0.1)
                except errors.InfrakitError as exc:
                    raise errors.SpecError(f"spec file {source}: {exc}") from None
            if not pretend:
                click.echo(f"Committed {spec.id}: {details}")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@plugin_cli.command("stop")
@click.argument("names", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="stop every plugin in the plugin directory")
@click.option("--timeout", default=10.0, show_default=True, help="seconds to wait for each")
def stop(names: tuple[str, ...], stop_all: bool, timeout: float) -> None:
    """Stop plugins by name (or --all)."""
    if not 0 < timeout < float("inf"):
        fail(f"--timeout {timeout:g}: expected a number of seconds above 0, e.g. --timeout 10")
    if stop_all and names:
        fail("give plugin names or --all, not both")
    if not stop_all and not names:
        fail("name the plugins to stop (see `infrakit plugin ls`) or use --all")
    entries = discovery.list_plugins()
    by_name = {e.name: e for e in entries}
    targets = [e.name for e in entries] if stop_all else list(names)
    missing = [n for n in targets if n not in by_name]
    if missing:
        fail(
            f"no plugin named {', '.join(missing)} in {discovery.plugins_dir(create=False)}; "
            "see `infrakit plugin ls`"
        )
    failed = []
    for name in targets:
        entry = by_name[name]
        if not discovery.probe(entry):
            try:
                removed = discovery.remove_stale(name, entry.path.parent)
            except OSError as exc:
                failed.append(f"{name}: cannot remove its stale files ({exc.strerror or exc})")
                continue
            click.echo(f"Removed stale {' and '.join(removed) or 'entry'} of {name}")
            continue
        why = _stop_one(entry, timeout)
        if why is None:
            click.echo(f"Stopped {name}")
        else:
            failed.append(f"{name}: {why}")
    if failed:
        fail(f"could not stop {'; '.join(failed)}")


def _stop_one(entry: discovery.Entry, timeout: float) -> str | None:
    """Stop one live plugin: None once it is gone, else why it could not be stopped.

    An infrakit plugin is asked over its socket (it answers within the handshake timeout, a few
    seconds); anything else falls back at once to SIGTERM to the PID in ``<name>.pid``.
    """
    asked = False
    if not entry.is_tcp:
        with SyncClient(entry.name, entry.address, call_timeout=timeout) as client:
            try:
                asked = client.stop()
            except errors.InfrakitError:
                asked = False
    how = "asked to stop"
    if not asked:
        pid_file = entry.path.with_name(entry.name + ".pid")
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return (
                "not an infrakit plugin (it did not accept POST /_infrakit/stop) and no "
                f"{pid_file.name} file; stop its process yourself"
            )
        how = f"sent SIGTERM to pid {pid} from {pid_file.name}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not entry.path.exists() or not discovery.probe(entry):
            return None
        time.sleep(0.05)
    return f"{how}, but it still listens after {timeout:g}s; check its log or stop its process"


def _read_up_specs(paths: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Read and validate every spec file of ``up`` (JSON, group spec, plugin names) before any
    plugin starts; the first problem fails with one line naming the file."""
    from infrakit.controller.group.spec import parse_spec
    from infrakit.spi import group as spi_group

    specs: list[tuple[str, Any]] = []
    seen: dict[str, str] = {}
    ours = {name for _, name in UP_PLUGINS}
    for path in paths:
        doc = read_json_file(path)
        if not isinstance(doc, dict):
            fail(f'spec file {path}: expected a JSON object {{"ID": ..., "Properties": ...}}')
        try:
            settings = parse_spec(spi_group.spec_from_wire(doc, "spec"))
        except errors.InfrakitError as exc:
            fail(f"spec file {path}: {exc}")
        if settings.id in seen:
            fail(
                f"spec files {seen[settings.id]} and {path} both define group {settings.id}; "
                "give each group one file"
            )
        seen[settings.id] = path
        props = settings.properties
        for what, plugin in (("Instance", props.instance.plugin), ("Flavor", props.flavor.plugin)):
            lookup = discovery.split_name(plugin)[0]
            if lookup in ours:
                continue
            try:
                directory = discovery.plugins_dir(create=False)
            except errors.InfrakitError as exc:
                fail(str(exc))
            try:
                discovery.find(plugin, directory)
            except errors.InfrakitError:
                fail(
                    f"spec file {path}: Failed to find {what} plugin '{plugin}': `infrakit up` "
                    f"runs {', '.join(sorted(ours - {'group'}))} and no plugin {lookup} runs in "
                    f"{directory}; fix Properties.{what}.Plugin or start it first"
                )
        specs.append((path, doc))
    return specs


@click.command("up")
@click.argument("spec_files", nargs=-1, metavar="[SPEC.json]...")
@click.option(
    "--store",
    default=None,
    help="spec store: file (default INFRAKIT_HOME/store.json), 'memory' or etcd://HOST:PORT[/prefix]",
)
@click.option(
    "--leader",
    type=click.Choice(["file", "etcd"]),
    default=None,
    help="leader election: file lock (one host, default) or etcd",
)
@click.option(
    "--ttl", default=None, metavar="DURATION", help="etcd lease TTL with --leader etcd (default 2s)"
)
@click.option("--id", "member_id", default=None, help="this manager's name (default host-pid)")
@click.option("--listen", default=None, metavar="HOST:PORT", help="where followers forward calls")
@click.option(
    "--token-file", default=None, metavar="PATH", help="file (0600) holding the shared TCP token"
)
@click.option("--token", default=None, help="shared TCP token (shows in ps: prefer --token-file)")
@click.option("--insecure", is_flag=True, help="allow TCP on loopback without a token")
@click.option(
    "--tls-cert", default=None, metavar="PEM", help="serve --listen over TLS with this cert"
)
@click.option("--tls-key", default=None, metavar="PEM", help="private key of --tls-cert")
@click.option("--tls-ca", default=None, metavar="PEM", help="CA bundle to verify other managers")
@click.option("--poll-interval", default=None, help="group resync period (default 10s)")
@click.option(
    "--instances-dir", default=None, help="file plugin directory (default INFRAKIT_HOME/instances)"
)
@click.option("--listen-tcp", default=None, metavar="HOST", help="every plugin also on HOST:<port>")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
def up(
    spec_files: tuple[str, ...],
    store: str | None,
    leader: str | None,
    ttl: str | None,
    member_id: str | None,
    listen: str | None,
    token_file: str | None,
    token: str | None,
    insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    poll_interval: str | None,
    instances_dir: str | None,
    listen_tcp: str | None,
    log_level: str,
) -> None:
    """Run the manager (group controller), file instances and the vanilla/combo flavors; commit
    SPECs."""
    specs = _read_up_specs(spec_files)  # every file checked before anything starts
    tcp = _tcp_settings(
        listen_tcp,
        token,
        token_file,
        insecure,
        (tls_cert, tls_key, tls_ca) if listen_tcp else _NO_TLS,
    )
    token = tcp.token  # read once: the manager gets the value, never the file name again
    manager = {
        "store": store,
        "leader": leader,
        "ttl": ttl,
        "id": member_id,
        "listen": listen,
        "token": token,
        "insecure": insecure or None,
        "tls-cert": tls_cert,
        "tls-key": tls_key,
        "tls-ca": tls_ca,
        "poll-interval": poll_interval,
    }
    options: dict[str, dict[str, Any]] = {
        "manager": {k: v for k, v in manager.items() if v is not None},
        "file": {"dir": instances_dir} if instances_dir else {},
    }
    run_plugins(UP_PLUGINS, options, log_level=log_level, tcp=tcp, commit=specs)


#: ``up`` without ``--listen-tcp``: its TLS flags are the manager's ``--listen`` only.
_NO_TLS: tuple[str | None, str | None, str | None] = (None, None, None)
