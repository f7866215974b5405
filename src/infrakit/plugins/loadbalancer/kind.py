"""The ``loadbalancer`` kind: its options and its build (the plugin is imported by ``build``)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.option import Option, Parser, duration, path
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["KIND", "build", "parse_routes"]


def parse_routes(text: str) -> tuple[spi_lb.Route, ...]:
    """``8080:80,9000:9000/tcp`` -> routes (balancer port : backend port [/ protocol])."""
    routes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        ports, _, protocol = part.partition("/")
        lb_port, sep, port = ports.partition(":")
        if not sep or not lb_port.isdigit() or not port.isdigit():
            raise ValueError(f"{part!r} is not LBPORT:PORT")
        wire = {
            "LoadBalancerPort": int(lb_port),
            "Port": int(port),
            "Protocol": protocol or "HTTP",
            "LoadBalancerProtocol": protocol or "HTTP",
        }
        try:
            routes.append(spi_lb.route_from_wire(wire, part))
        except SpecError as exc:
            raise ValueError(str(exc)) from None
    return tuple(routes)


#: ``LBPORT:PORT[/PROTOCOL],...`` -> routes.
routes_parser = Parser(
    "LBPORT:PORT[/PROTO],...",
    "comma-separated LBPORT:PORT routes, PROTO http (default) or tcp",
    "8080:80",
    parse_routes,
    (tuple,),
)

DIR_OPTION = Option(
    "dir",
    "state directory: haproxy.cfg, admin socket, PID file, log (default: "
    "INFRAKIT_HOME/loadbalancer/NAME)",
    env="INFRAKIT_LOADBALANCER_DIR",
    parse=path,
)
ROUTES_OPTION = Option(
    "routes", "routes to listen on at start (more with L4.Publish)", parse=routes_parser
)
BIND_OPTION = Option("bind", "address the routes listen on", default="127.0.0.1")
HAPROXY_OPTION = Option("haproxy", "the haproxy executable", default="haproxy")
DRAIN_OPTION = Option(
    "drain-timeout",
    "longest a deregistered backend drains before its connections are closed",
    default="5m",
    parse=duration,
)
INSTANCES_OPTION = Option(
    "instances",
    "instance plugin whose infrakit.address tags give the addresses of backends registered "
    "without Addresses (Go clients)",
)


def build(ctx: Context) -> Served:
    """Serve an :class:`~infrakit.plugins.loadbalancer.plugin.HAProxyBalancer`."""
    from infrakit.plugins.loadbalancer.plugin import HAProxyBalancer

    directory = ctx.option(KIND, "dir") or ctx.home / "loadbalancer" / ctx.name
    if directory.exists() and not directory.is_dir():
        raise SpecError(
            f"load balancer state directory {directory} is a file, expected a directory; "
            f"pass another -o loadbalancer.dir"
        )
    instances_name = ctx.option(KIND, "instances")
    balancer = HAProxyBalancer(
        ctx.name,
        directory,
        binary=ctx.option(KIND, "haproxy"),
        bind=ctx.option(KIND, "bind"),
        routes=ctx.option(KIND, "routes") or (),
        drain_timeout=ctx.option(KIND, "drain-timeout"),
        instances=(lambda: ctx.instance_lookup(instances_name)) if instances_name else None,
    )
    return Served(
        loadbalancer={"": balancer},
        start=balancer.start,
        stop=balancer.stop,
        vendor=vendor_info("infrakit-loadbalancer-haproxy"),
    )


KIND = Kind(
    name="loadbalancer",
    default_name="loadbalancer",
    summary="an L4 load balancer on a real HAProxy (backends added, drained, removed live)",
    build=build,
    options=(
        DIR_OPTION,
        ROUTES_OPTION,
        BIND_OPTION,
        HAPROXY_OPTION,
        DRAIN_OPTION,
        INSTANCES_OPTION,
    ),
)
