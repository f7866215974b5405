"""The L4 load-balancer SPI (Go InfraKit HEAD's ``pkg/spi/loadbalancer``, ``L4/0.6.1``).

A load balancer has *routes* (a port it listens on, forwarding to a port of its backends) and a
pool of *backends*, named by instance ID. Go's interface, method by method::

    Name() string
    Routes() ([]Route, error)
    Publish(route Route) (Result, error)            # add a route
    Unpublish(extPort int) (Result, error)          # remove the route listening on extPort
    ConfigureHealthCheck(hc HealthCheck) (Result, error)
    RegisterBackends(ids []instance.ID) (Result, error)
    DeregisterBackends(ids []instance.ID) (Result, error)
    Backends() ([]instance.ID, error)

``Result`` is a human-readable string. infrakit adds, in ways a Go peer ignores:

* ``RegisterBackends`` may carry ``Addresses`` (instance ID -> ``HOST[:PORT]``, the
  ``infrakit.address`` tag of :mod:`infrakit.spi.types`): a cloud balancer knows where its
  instances are, a local HAProxy does not;
* ``L4.BackendStates`` lists every backend with its address, state (:data:`BACKEND_STATES`) and
  open connections. ``DeregisterBackends`` *drains*: a backend leaves ``Backends`` once its
  connections are gone, so "no longer listed" means "safe to destroy".

Plugin authors implement :class:`Plugin` with ``async def`` or plain ``def`` methods; only
``backend_states`` is optional (without it, every listed backend counts as ``up``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from infrakit.errors import SpecError
from infrakit.spi.types import InterfaceSpec, ci_get, ci_view, want_str

__all__ = [
    "BACKEND_CHECKING",
    "BACKEND_DOWN",
    "BACKEND_DRAINING",
    "BACKEND_STATES",
    "BACKEND_UP",
    "INTERFACE",
    "PROTOCOLS",
    "Backend",
    "HealthCheck",
    "Plugin",
    "Route",
    "addresses_from_wire",
    "backend_from_wire",
    "backend_to_wire",
    "health_check_from_wire",
    "health_check_to_wire",
    "ids_from_wire",
    "route_from_wire",
    "route_to_wire",
]

INTERFACE = InterfaceSpec("L4", "0.6.1")

#: Go's ``loadbalancer.Protocol`` values (matched case-insensitively, as Go's UnmarshalJSON does).
PROTOCOLS = ("HTTP", "HTTPS", "TCP", "SSL", "UDP")

#: Registered, its health check has not passed yet: it gets no traffic.
BACKEND_CHECKING = "checking"
#: Taking traffic.
BACKEND_UP = "up"
#: Registered and once up, its health check fails now: it gets no traffic.
BACKEND_DOWN = "down"
#: Deregistered: no new connections; it leaves the pool when its connections are gone.
BACKEND_DRAINING = "draining"
BACKEND_STATES = (BACKEND_CHECKING, BACKEND_UP, BACKEND_DOWN, BACKEND_DRAINING)

#: Go's time.Duration is integer nanoseconds on the wire.
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Route:
    """``loadbalancer.Route``: the balancer listens on ``load_balancer_port`` and forwards to
    ``port`` of each backend (a backend whose address carries a port uses that one)."""

    port: int
    load_balancer_port: int
    protocol: str = "HTTP"
    load_balancer_protocol: str = "HTTP"
    certificate: str | None = None
    #: Path of the HTTP health check (``GET <path>``); None: a TCP connect check.
    health_monitor_path: str | None = None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """``loadbalancer.HealthCheck``: probe ``backend_port`` every ``interval`` seconds; ``healthy``
    passes in a row make a backend up, ``unhealthy`` failures make it down."""

    backend_port: int = 0
    healthy: int = 0
    unhealthy: int = 0
    interval: float = 0.0
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend as ``L4.BackendStates`` reports it (infrakit's extension)."""

    id: str
    address: str = ""
    state: str = BACKEND_UP
    connections: int = 0


@runtime_checkable
class Plugin(Protocol):
    """An L4 load balancer. Methods may be ``async def`` or plain ``def``.

    Errors: :class:`infrakit.errors.SpecError` for a bad route, health check or address,
    :class:`infrakit.errors.NotFoundError` for an unknown route or backend, anything else for a
    balancer that cannot act; the message reaches the user verbatim.
    """

    async def name(self) -> str:
        """The balancer's name."""

    async def routes(self) -> list[Route]:
        """Every published route."""

    async def publish(self, route: Route) -> str:
        """Add (or replace) the route listening on ``route.load_balancer_port``."""

    async def unpublish(self, ext_port: int) -> str:
        """Remove the route listening on ``ext_port``."""

    async def configure_health_check(self, check: HealthCheck) -> str:
        """How backends are probed from now on."""

    async def register_backends(self, ids: list[str], addresses: dict[str, str]) -> str:
        """Add instances to the pool; ``addresses`` says where each is (``HOST[:PORT]``)."""

    async def deregister_backends(self, ids: list[str]) -> str:
        """Drain instances out of the pool: no new connections; gone once their connections are."""

    async def backends(self) -> list[str]:
        """The instance IDs in the pool, draining ones included."""


def _port(value: Any, what: str, *, required: bool = True) -> int:
    if not required and value in (None, 0):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise SpecError(f"{what}: expected a TCP port (1-65535), got {value!r}")
    return value


def _protocol(value: Any, what: str) -> str:
    if value is None or value == "":
        return "HTTP"
    if isinstance(value, str) and value.upper() in PROTOCOLS:
        return value.upper()
    raise SpecError(f"{what}: not valid protocol {value!r}; expected one of {', '.join(PROTOCOLS)}")


def route_from_wire(obj: Any, what: str = "Route") -> Route:
    """A route, checked as Go's ``Route.Validate`` checks it (ports, protocols, HTTPS needs a
    certificate)."""
    view = ci_view(obj, what)
    route = Route(
        port=_port(ci_get(view, "Port"), f"{what}.Port"),
        load_balancer_port=_port(ci_get(view, "LoadBalancerPort"), f"{what}.LoadBalancerPort"),
        protocol=_protocol(ci_get(view, "Protocol"), f"{what}.Protocol"),
        load_balancer_protocol=_protocol(
            ci_get(view, "LoadBalancerProtocol"), f"{what}.LoadBalancerProtocol"
        ),
        certificate=want_str(ci_get(view, "Certificate"), f"{what}.Certificate", optional=True),
        health_monitor_path=want_str(
            ci_get(view, "HealthMonitorPath"), f"{what}.HealthMonitorPath", optional=True
        ),
    )
    if route.load_balancer_protocol == "HTTPS" and route.certificate is None:
        raise SpecError(f"{what}: HTTPS but no certificate; set Certificate or use HTTP")
    path = route.health_monitor_path
    if path is not None and (not path.startswith("/") or any(c.isspace() for c in path)):
        raise SpecError(f"{what}.HealthMonitorPath: expected a URL path like /health, got {path!r}")
    return route


def route_to_wire(route: Route) -> dict[str, Any]:
    """``loadbalancer.Route`` in Go field order."""
    return {
        "Port": route.port,
        "Protocol": route.protocol,
        "LoadBalancerPort": route.load_balancer_port,
        "LoadBalancerProtocol": route.load_balancer_protocol,
        "Certificate": route.certificate,
        "HealthMonitorPath": route.health_monitor_path,
    }


def _count(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{what}: expected a non-negative integer, got {value!r}")
    return value


def _nanoseconds(value: Any, what: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpecError(
            f"{what}: expected a non-negative duration in nanoseconds (Go time.Duration), "
            f"got {value!r}"
        )
    return value / _NS


def health_check_from_wire(obj: Any, what: str = "HealthCheck") -> HealthCheck:
    """``loadbalancer.HealthCheck`` (durations in nanoseconds, as Go encodes them)."""
    view = ci_view(obj, what)
    return HealthCheck(
        backend_port=_port(ci_get(view, "BackendPort"), f"{what}.BackendPort", required=False),
        healthy=_count(ci_get(view, "Healthy"), f"{what}.Healthy"),
        unhealthy=_count(ci_get(view, "Unhealthy"), f"{what}.Unhealthy"),
        interval=_nanoseconds(ci_get(view, "Interval"), f"{what}.Interval"),
        timeout=_nanoseconds(ci_get(view, "Timeout"), f"{what}.Timeout"),
    )


def health_check_to_wire(check: HealthCheck) -> dict[str, Any]:
    return {
        "BackendPort": check.backend_port,
        "Healthy": check.healthy,
        "Unhealthy": check.unhealthy,
        "Interval": round(check.interval * _NS),
        "Timeout": round(check.timeout * _NS),
    }


def backend_to_wire(backend: Backend) -> dict[str, Any]:
    return {
        "ID": backend.id,
        "Address": backend.address,
        "State": backend.state,
        "Connections": backend.connections,
    }


def backend_from_wire(obj: Any, what: str = "Backend") -> Backend:
    view = ci_view(obj, what)
    state = want_str(ci_get(view, "State"), f"{what}.State", default=BACKEND_UP)
    if state not in BACKEND_STATES:
        raise SpecError(f"{what}.State: expected one of {', '.join(BACKEND_STATES)}, got {state!r}")
    return Backend(
        id=want_str(ci_get(view, "ID"), f"{what}.ID"),
        address=want_str(ci_get(view, "Address"), f"{what}.Address"),
        state=state,
        connections=_count(ci_get(view, "Connections"), f"{what}.Connections"),
    )


def ids_from_wire(value: Any, what: str) -> list[str]:
    """``[]instance.ID``: an array of non-empty strings (null is empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
        raise SpecError(f"{what}: expected an array of instance IDs (non-empty strings)")
    return list(value)


def addresses_from_wire(value: Any, what: str) -> dict[str, str]:
    """infrakit's ``Addresses``: instance ID -> ``HOST[:PORT]`` (null is empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f'{what}: expected an object of instance ID -> "HOST:PORT" strings')
    return dict(value)
