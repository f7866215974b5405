"""What ``infrakit up``, ``infrakit plugin start|stop`` and the console scripts do between parsing
their arguments and printing: the library the CLI calls.

* :func:`plan` turns ``KIND[:NAME]`` texts and ``-o`` options into :class:`Start` s - kinds found,
  names checked, every option resolved and parsed - before anything is created;
* :func:`read_up_specs` reads and checks ``up``'s spec files (JSON, group spec, one file per group,
  plugins that will run) before any plugin starts;
* :func:`serve` starts a :class:`~infrakit.launch.host.PluginHost`, builds every plugin first (a bad
  option of the last one stops the start before any socket exists), serves them, commits the specs
  once the sockets answer (:func:`commit_specs`: a dry run of all first) and serves until
  SIGINT/SIGTERM; :func:`run` is its blocking form;
* :func:`stop_plugins` stops plugins by name (over their socket, else SIGTERM to their pid file).

Every failure is an :class:`~infrakit.errors.InfrakitError` with one line naming the thing, what
was expected and the next step; the CLI prints it and exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from infrakit import discovery, errors
from infrakit._utils import collector, systemd
from infrakit.launch import registry, serving
from infrakit.launch.host import PluginHost
from infrakit.rpc.auth import resolve_token
from infrakit.rpc.client import SyncClient
from infrakit.rpc.envelope import MAX_BODY_BYTES
from infrakit.rpc.tls import tls_contexts
from infrakit.spi import group as spi_group
from infrakit.spi.option import env_sources
from infrakit.spi.plugin import Kind

__all__ = [
    "UP_LEADER_WAIT",
    "UP_PLUGINS",
    "Start",
    "Stopped",
    "TcpSettings",
    "UpSpec",
    "commit_specs",
    "plan",
    "read_up_specs",
    "run",
    "serve",
    "stop_plugin",
    "stop_plugins",
    "tcp_settings",
]

log = logging.getLogger("infrakit")

#: What ``infrakit up`` runs: (kind, name).
UP_PLUGINS = (
    ("file", "instance-file"),
    ("vanilla", "flavor-vanilla"),
    ("combo", "flavor-combo"),
    ("manager", "group"),  # the HA manager in front of the group controller, served as `group`
)

#: Seconds `up` waits for a leader before committing its specs (etcd: one campaign, or the
#: lease TTL of a crashed previous leader).
UP_LEADER_WAIT = 15.0

#: What a process serving a group controller imports once it answers (``_warm_in_background``):
#: the spec models (pydantic) a commit needs, not loaded to start (~0.1 s on a loaded machine).
_GROUP_SPEC_MODELS = "infrakit.controller.group.sections"

#: Called with (group ID, details) for every spec committed.
OnCommit = Callable[[str, str], None]


# --- what to start ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """One plugin to serve: its kind, its socket name and its options, resolved and parsed."""

    kind: Kind
    name: str
    options: Mapping[str, object] = field(default_factory=dict)
    #: How the starting command spells the kind's options (``--dir``; unlisted: ``-o``), and
    #: which values came from their variables: hints name an option as the user set it.
    flags: Mapping[str, str] = field(default_factory=dict)
    from_env: Mapping[str, str] = field(default_factory=dict)


def plan(
    specs: Sequence[str],
    options: Mapping[str, Mapping[str, object]] | None = None,
    flags: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Start]:
    """``KIND[:NAME]`` texts and the options given per kind -> what to start. ``flags``: how the
    calling command spells each kind's options when not as ``-o KIND.NAME=VALUE``.

    Refuses unknown kinds, bad names, options for a kind not being started, options a kind does
    not take and values its parsers refuse; nothing is created before it returns.
    """
    given = options or {}
    chosen = [registry.parse_spec(text) for text in specs]
    unknown = set(given) - {kind.name for kind, _ in chosen}
    if unknown:
        raise errors.SpecError(
            f"-o given for {', '.join(sorted(unknown))}, which is not being started"
        )
    return [
        Start(
            kind,
            name,
            kind.resolve_options(given.get(kind.name, {})),
            flags=(flags or {}).get(kind.name, {}),
            from_env=env_sources(kind.options, given.get(kind.name, {})),
        )
        for kind, name in chosen
    ]


def up_plan(
    options: Mapping[str, Mapping[str, object]],
    flags: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Start]:
    """What ``infrakit up`` starts (:data:`UP_PLUGINS`) with ``options`` per kind."""
    return plan([f"{kind}:{name}" for kind, name in UP_PLUGINS], options, flags)


@dataclass(frozen=True)
class TcpSettings:
    """How the plugins of one process listen on TCP and reach TCP plugins."""

    host: str | None = None
    token: str | None = None
    insecure: bool = False
    #: Serves ``--listen-tcp`` over TLS (``--tls-cert``/``--tls-key``).
    server_ssl: ssl.SSLContext | None = None
    #: Verifies ``https://`` plugins found by name (``--tls-ca`` or ``$INFRAKIT_TLS_CA``).
    client_ssl: ssl.SSLContext | None = None


def tcp_settings(
    host: str | None,
    token: str | None,
    token_file: str | None,
    insecure: bool,
    tls: tuple[str | None, str | None, str | None],
) -> TcpSettings:
    """``--listen-tcp``/``--token[-file]``/``--tls-*`` checked before anything starts (one line);
    the token is read once, here."""
    resolved = resolve_token(token, token_file)
    server_ssl, client_ssl = tls_contexts(*tls, "--listen-tcp")
    if server_ssl is not None and not host:
        raise errors.SpecError(
            f"--tls-cert {tls[0]}: given without --listen-tcp, which is what it would serve; "
            "add --listen-tcp HOST or drop --tls-cert"
        )
    return TcpSettings(host, resolved, insecure, server_ssl, client_ssl)


# --- up's spec files --------------------------------------------------------------------------


@dataclass(frozen=True)
class UpSpec:
    """One spec file of ``up``: where it came from and its document (checked)."""

    source: str
    document: dict[str, object]


def _warm_in_background(module: str) -> None:
    """Import ``module`` on a daemon thread, after start-up: the sockets answer without it, and
    the first commit finds it loaded instead of paying for it. A failure here is ignored; the
    import that needs the module raises it again where it can be reported."""

    def warm() -> None:
        import importlib

        try:
            importlib.import_module(module)
        except Exception:  # reported by the import that needs it
            log.debug("warming %s failed", module, exc_info=True)

    threading.Thread(target=warm, name=f"warm {module}", daemon=True).start()


def read_up_specs(
    paths: Sequence[str], variables: Mapping[str, object] | None = None
) -> list[UpSpec]:
    """Read, render (templates, with ``variables``) and validate every spec file of ``up``
    (JSON or YAML, group spec, plugin names) before any plugin starts. A file's problems are
    all in one line naming the file (InfraKit's message first), each at its ``FILE:LINE:COL``."""
    if not paths:  # nothing to read: the reader (YAML, Jinja2) and the spec models stay unloaded
        return []
    from infrakit.launch.validate import check_spec
    from infrakit.specfile.reader import read_spec_file

    specs: list[UpSpec] = []
    seen: dict[str, str] = {}
    ours = {name for _, name in UP_PLUGINS}
    for path in paths:
        spec_file = read_spec_file(path, "spec file", MAX_BODY_BYTES, variables)
        doc = spec_file.value
        if not isinstance(doc, dict):
            raise errors.SpecError(
                f'spec file {path}: expected a JSON object {{"ID": ..., "Properties": ...}}'
            )
        report = check_spec(spec_file)
        if report.settings is None:
            raise errors.SpecError(f"spec file {path}: {report.summary()}")
        settings = report.settings
        if settings.id in seen:
            raise errors.SpecError(
                f"spec files {seen[settings.id]} and {path} both define group {settings.id}; "
                "give each group one file"
            )
        seen[settings.id] = path
        props = settings.properties
        for what, plugin in (("Instance", props.instance.plugin), ("Flavor", props.flavor.plugin)):
            lookup = discovery.split_name(plugin)[0]
            if lookup in ours:
                continue
            directory = discovery.plugins_dir(create=False)
            try:
                discovery.find(plugin, directory)
            except errors.InfrakitError:
                raise errors.SpecError(
                    f"spec file {path}: Failed to find {what} plugin '{plugin}': `infrakit up` "
                    f"runs {', '.join(sorted(ours - {'group'}))} and no plugin {lookup} runs in "
                    f"{directory}; fix Properties.{what}.Plugin or start it first"
                ) from None
        specs.append(UpSpec(path, doc))
    return specs


async def commit_specs(
    group: spi_group.Plugin, specs: Sequence[UpSpec], on_commit: OnCommit | None = None
) -> None:
    """Commit ``up``'s specs: a dry run of every spec first (the plugins validate it), so a bad
    last file stops `up` before the first one is committed; every error names its file. A
    manager still electing its leader is waited for, up to :data:`UP_LEADER_WAIT`."""
    parsed = [(s.source, spi_group.spec_from_wire(s.document, s.source)) for s in specs]
    deadline = time.monotonic() + UP_LEADER_WAIT
    for pretend in (True, False):
        for source, spec in parsed:
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
            if not pretend and on_commit is not None:
                on_commit(spec.id, details)


# --- serving ------------------------------------------------------------------------------------


async def serve(
    starts: Sequence[Start],
    tcp: TcpSettings | None = None,
    commit: Sequence[UpSpec] = (),
    on_commit: OnCommit | None = None,
    *,
    host: PluginHost | None = None,
) -> None:
    """Serve ``starts`` in this process until SIGINT/SIGTERM (or every plugin stopped); commit
    ``commit`` to the plugin ``group`` once all listen."""
    tcp = tcp or TcpSettings()
    if host is None:
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
        built = [
            (
                s,
                await host.build_kind(
                    s.kind, s.name, s.options, flags=s.flags, from_env=s.from_env
                ),
            )
            for s in starts
        ]
        for start, served in built:
            host.check_http(start.name, served)  # --http off loopback without a token
        for start, served in built:
            await host.serve(start.name, served, kind=start.kind)
        log.info(
            "serving %s in %s (pid %d); Ctrl-C stops",
            ", ".join(s.name for s in starts),
            host.plugin_dir,
            os.getpid(),
        )
        if commit:
            await commit_specs(host.group_lookup("group"), commit, on_commit)
        # Every socket answers (and up's specs are committed): tell systemd (Type=notify).
        systemd.notify("READY=1", f"STATUS=serving {', '.join(s.name for s in starts)}")
        collector.settle()  # start-up's objects out of the collector's sight from now on
        if any(served.group for _, served in built):
            _warm_in_background(_GROUP_SPEC_MODELS)
    except BaseException:
        await host.stop_all()
        raise
    await host.run_until_stopped()


def run(
    starts: Sequence[Start],
    tcp: TcpSettings | None = None,
    commit: Sequence[UpSpec] = (),
    on_commit: OnCommit | None = None,
) -> None:
    """:func:`serve`, blocking (on uvloop when installed)."""
    serving.run(serve(starts, tcp, commit, on_commit))


# --- stopping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    """What :func:`stop_plugins` did with one plugin."""

    name: str
    #: The stale files removed (``socket``, ``.listen file``) of a plugin that was not running.
    removed: tuple[str, ...] = ()
    stale: bool = False
    #: Why it could not be stopped (None: it is gone).
    error: str | None = None


def stop_plugins(names: Sequence[str] | None, timeout: float) -> Iterator[Stopped]:
    """Stop the plugins ``names`` (None: every plugin in the plugin directory), one by one.

    Every name must be in the plugin directory (else NotFoundError before anything is stopped).
    A live plugin is stopped by :func:`stop_plugin`; a stale socket (its process is gone) and its
    ``.listen`` file are removed.
    """
    entries = discovery.list_plugins()
    by_name = {e.name: e for e in entries}
    targets = [e.name for e in entries] if names is None else list(names)
    missing = [n for n in targets if n not in by_name]
    if missing:
        raise errors.NotFoundError(
            f"no plugin named {', '.join(missing)} in {discovery.plugins_dir(create=False)}; "
            "see `infrakit plugin ls`"
        )
    for name in targets:
        entry = by_name[name]
        if not discovery.probe(entry):
            try:
                removed = discovery.remove_stale(name, entry.path.parent)
            except OSError as exc:
                why = f"cannot remove its stale files ({exc.strerror or exc})"
                yield Stopped(name, stale=True, error=why)
                continue
            yield Stopped(name, tuple(removed), stale=True)
            continue
        yield Stopped(name, error=stop_plugin(entry, timeout))


def stop_plugin(entry: discovery.Entry, timeout: float) -> str | None:
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
        time.sleep(0.05)  # noqa: TID251 - a blocking CLI step polling another process's socket
    return f"{how}, but it still listens after {timeout:g}s; check its log or stop its process"
