"""How a plugin *kind* is described so that ``infrakit plugin start KIND[:NAME]`` can run it.

Every runnable plugin kind (``file``, ``vanilla``, ``combo``, ``group``, third-party ones) exposes a
:class:`Kind` object and registers it under the entry-point group ``infrakit.plugins``::

    [project.entry-points."infrakit.plugins"]
    my-cloud = "my_package:KIND"

``Kind.build(ctx)`` receives a :class:`Context` (the name to serve under, options, where infrakit
keeps its state, and *lookups* for other plugins) and returns :class:`Served`: the objects to put
on the socket, keyed by interface and by type/name, plus optional start/stop hooks. ``launch`` then
serves them over RPC and makes them reachable in-process.

Options (:mod:`infrakit.spi.option`) are declared once on the kind, with a parser; the value
``build`` reads with ``ctx.option(KIND, name)`` is parsed (seconds for a duration ...).

A kind's module should import only :mod:`infrakit.spi` (and its own light modules): ``infrakit
plugin kinds`` loads every kind to list it. The plugin itself - and its SDK - is imported by
``build``.

Lookups are how plugins reach other plugins without knowing about sockets: the group controller
asks ``ctx.instance_lookup("instance-file")`` and gets an object implementing the async
:class:`infrakit.spi.instance.Plugin` protocol - an RPC client in production, a fake in tests.
Such objects may also offer ``subscribe(topic)`` (events) which raises
:class:`infrakit.errors.NotFoundError` when the plugin publishes none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from infrakit._version import __version__
from infrakit.spi.option import Option, resolve_options

if TYPE_CHECKING:  # names in annotations only: listing kinds imports no interface module
    import ssl

    from infrakit.spi import event, flavor, group, instance, loadbalancer

__all__ = [
    "Context",
    "FlavorLookup",
    "GroupLookup",
    "InstanceLookup",
    "Kind",
    "LoadBalancerLookup",
    "Option",
    "Served",
    "vendor_info",
]

#: ``name`` (``"instance-file"`` or ``"aws/ec2-instance"``) -> async instance plugin.
InstanceLookup = Callable[[str], "instance.Plugin"]
#: ``name`` -> async flavor plugin.
FlavorLookup = Callable[[str], "flavor.Plugin"]
#: ``name`` -> async group plugin.
GroupLookup = Callable[[str], "group.Plugin"]
#: ``name`` -> async L4 load balancer (the group controller's ingress uses it).
LoadBalancerLookup = Callable[[str], "loadbalancer.Plugin"]


class Metrics(Protocol):
    """What a plugin process's ``GET /metrics`` reads and its RPC server counts into
    (:class:`infrakit.metrics.Recorder`)."""

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for: ``(body, content type)``."""

    def rpc_request(self, method: str, code: str) -> None:
        """One JSON-RPC request answered: its method (or ``unknown``) and result code."""


@dataclass
class Context:
    """What a kind's ``build`` gets."""

    #: The plugin name to serve under (socket file name), e.g. ``instance-file``.
    name: str
    #: Option values by name: what the user gave (``-o``, flags), or - once the host has resolved
    #: them - every option of the kind, parsed. Read them with :meth:`option`.
    options: dict[str, Any]
    #: infrakit's home directory (``$INFRAKIT_HOME`` or ``~/.infrakit``).
    home: Path
    instance_lookup: InstanceLookup
    flavor_lookup: FlavorLookup
    group_lookup: GroupLookup
    #: Extra wiring some kinds need (the group kind gets ``store`` here), keyed by name.
    extras: dict[str, Any] = field(default_factory=dict)
    #: The plugin directory the socket will be in (None: not known, e.g. a bare build).
    plugin_dir: Path | None = None
    #: How the command that started this plugin spells its options, by option name (``--dir``
    #: on ``infrakit-instance-file``, ``--instances-dir`` on ``infrakit up``); an option not
    #: listed is ``-o KIND.NAME=VALUE``, as on ``infrakit plugin start``.
    flags: dict[str, str] = field(default_factory=dict)
    #: The options whose value came from their environment variable: name -> variable.
    from_env: dict[str, str] = field(default_factory=dict)
    #: L4 load balancers by name (None: this host reaches none).
    loadbalancer_lookup: LoadBalancerLookup | None = None

    def option(self, kind: Kind, name: str) -> Any:
        """Option ``name`` of ``kind``: given, else its environment variable, else its default;
        parsed by its parser (a refused value is a one-line :class:`~infrakit.errors.SpecError`)."""
        for opt in kind.options:
            if opt.name == name:
                return opt.value(self.options, kind.name)
        raise KeyError(f"kind {kind.name} has no option {name}")

    def spelled(self, kind: Kind, name: str) -> str:
        """Option ``name`` of ``kind`` as the user sets it in the command that started this
        plugin: ``-o file.dir=PATH`` (``plugin start``), ``--dir`` (a console script),
        ``--instances-dir`` (``up``)."""
        flag = self.flags.get(name)
        if flag:
            return flag
        parser = next((o.parse for o in kind.options if o.name == name), None)
        return f"-o {kind.name}.{name}={parser.metavar if parser is not None else 'VALUE'}"

    def another(self, kind: Kind, name: str) -> str:
        """The next step for a value of option ``name`` that cannot be used, naming the option
        as the user set it: ``pass another -o file.dir=PATH``, ``pass another --dir``, or - when
        the value came from the option's variable - ``set INFRAKIT_INSTANCE_FILE_DIR to another
        value (or pass another --dir)``. A hint never names a flag the user did not use."""
        env = self.from_env.get(name)
        if env:
            return f"set {env} to another value (or pass another {self.spelled(kind, name)})"
        return f"pass another {self.spelled(kind, name)}"


@dataclass
class Served:
    """What one plugin process serves under one name."""

    #: Instance plugin objects keyed by type (``""`` = default object).
    instance: dict[str, object] = field(default_factory=dict)
    #: Flavor plugin objects keyed by type.
    flavor: dict[str, object] = field(default_factory=dict)
    #: Group plugin objects keyed by name (``"."`` = default object).
    group: dict[str, object] = field(default_factory=dict)
    #: Metadata trees (:class:`infrakit.spi.metadata.Plugin`) keyed by name, served as
    #: ``Metadata/0.1.1`` (the group kinds publish their groups, specs and counts).
    metadata: dict[str, object] = field(default_factory=dict)
    #: The stack (:class:`infrakit.spi.stack.Plugin`), served as ``Stack/0.1.1`` (the manager).
    stack: object | None = None
    #: L4 load balancer objects keyed by type (``""`` = default object).
    loadbalancer: dict[str, object] = field(default_factory=dict)
    #: Event source served at ``/events`` (and offered to in-process subscribers).
    events: event.Source | None = None
    #: Called once after the socket is up (start background work here).
    start: Callable[[], Awaitable[None]] | None = None
    #: Called once on shutdown, before the socket is removed.
    stop: Callable[[], Awaitable[None]] | None = None
    #: ``/info/api.json`` vendor block.
    vendor: dict[str, Any] | None = None
    #: Also listen on TCP ``(host, port)`` (advertised in ``<name>.listen``), e.g. the manager's
    #: ``--listen``. Requests there must carry ``Authorization: Bearer <tcp_token>``; without a
    #: token only loopback with ``tcp_insecure`` is allowed. ``tcp_ssl`` serves TLS.
    tcp: tuple[str, int] | None = None
    tcp_token: str | None = None
    tcp_insecure: bool = False
    tcp_ssl: ssl.SSLContext | None = None
    #: Served at ``GET /metrics`` on the socket (and the HTTP listener); RPC requests are
    #: counted into it. None: no metrics (``/metrics`` answers 404).
    metrics: Metrics | None = None
    #: Also serve the HTTP listener for humans and probes on ``(host, port)``: the status page,
    #: ``/api/...``, ``/events``, ``/healthz``, ``/readyz``, ``/metrics`` (``launch.http``).
    #: Off loopback it needs ``tcp_token`` (or the host's token) or ``tcp_ssl``.
    http: tuple[str, int] | None = None
    #: ``/readyz``: check name -> "" when ready, else why not (leader, store, each group).
    ready: Callable[[], Awaitable[dict[str, str]]] | None = None


@dataclass(frozen=True)
class Kind:
    """A runnable plugin kind."""

    #: Kind name used on the command line: ``file``, ``vanilla``, ``group`` ...
    name: str
    #: Name served under when none is given (``instance-file``, ``flavor-vanilla``, ``group``).
    default_name: str
    #: One line for ``infrakit plugin kinds``.
    summary: str
    build: Callable[[Context], Served | Awaitable[Served]]
    options: tuple[Option, ...] = ()

    def resolve_options(self, given: Mapping[str, object]) -> dict[str, object]:
        """Every option resolved and parsed; unknown names and bad values are refused (one line)."""
        return resolve_options(self.name, self.options, given)


def vendor_info(name: str) -> dict[str, str]:
    """The ``Vendor`` block of ``/info/api.json`` for one of infrakit's own plugins."""
    return {"Name": name, "Version": __version__, "Sub": "", "URL": ""}
