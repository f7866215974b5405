"""The ``loadbalancer`` plugin: Go InfraKit HEAD's L4 load-balancer SPI on a real HAProxy.

``infrakit plugin start loadbalancer[:NAME]`` starts one HAProxy process it owns (configuration,
admin socket mode 0600 and PID file in ``-o loadbalancer.dir``, default
``$INFRAKIT_HOME/loadbalancer/<NAME>``; run in the foreground, stopped by PID and reaped) and
serves ``L4/0.6.1`` on the socket ``NAME``. Routes (``-o loadbalancer.routes=8080:80``, or
``L4.Publish``) are HAProxy frontends; backends (instances, registered with their address) are
added, drained and removed through HAProxy's runtime API, never by a reload: a backend takes
traffic only after its health check passed, and a deregistered one gets no new connections and
leaves the pool once its connections are gone. A group's ``Properties.Ingress`` section keeps the
pool equal to the group's members (docs/plugins/loadbalancer.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.loadbalancer.kind import KIND
    from infrakit.plugins.loadbalancer.plugin import HAProxyBalancer

__all__ = ["KIND", "HAProxyBalancer"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "HAProxyBalancer": ".plugin"})
