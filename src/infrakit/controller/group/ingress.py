"""The ingress's decisions, pure: which backends a group's load balancer should gain and lose, and
what a member's health means while a balancer stands in front of it.

A group with ``Properties.Ingress`` keeps the balancer's pool equal to its *routable* members:

* **routable** - a member (visible, not being destroyed) with an address (the
  ``infrakit.address`` tag) that the flavor has not called UNHEALTHY. A new member is registered
  as soon as it is seen; the balancer gives it traffic only once its own health check passed
  (state ``checking`` -> ``up``).
* **register** - routable members the balancer does not list, or lists as ``draining`` (a member
  that is routable again, e.g. after a destroy that failed).
* **deregister** - backends the balancer lists (not already draining) that are not routable:
  members that died (``kill -9``), were destroyed elsewhere, turned unhealthy, or are being
  destroyed (their destroy drains them first and waits; see
  :mod:`~infrakit.controller.group.balancer`).

**Health behind a balancer** (:func:`gated_health`): a member the flavor calls HEALTHY counts as
healthy only once the balancer says it is ``up`` (routes traffic); before that it is UNKNOWN. So
a rolling update replaces the next old member only after the new one takes traffic, and never
drains the last one that does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.instance import Description
from infrakit.spi.types import ADDRESS_TAG, Health

__all__ = ["BackendPlan", "gated_health", "plan_backends"]


@dataclass(frozen=True)
class BackendPlan:
    """What one sync does to the balancer's pool."""

    #: Instance ID -> address, to register.
    register: dict[str, str] = field(default_factory=dict)
    #: Instance IDs to deregister (drain).
    deregister: list[str] = field(default_factory=list)
    #: Members that cannot be registered: no ``infrakit.address`` tag (reported once).
    unaddressed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.register and not self.deregister


def plan_backends(
    members: list[Description],
    backends: list[spi_lb.Backend],
    *,
    destroying: set[str],
    unhealthy: set[str],
) -> BackendPlan:
    """The sync's plan (module docstring): ``members`` as observed, ``backends`` as the balancer
    lists them, ``destroying`` the IDs being drained and destroyed, ``unhealthy`` the members the
    flavor last called UNHEALTHY."""
    listed = {b.id: b for b in backends}
    routable: dict[str, str] = {}
    unaddressed: list[str] = []
    for m in members:
        if m.id in destroying or m.id in unhealthy:
            continue
        address = m.tags.get(ADDRESS_TAG, "")
        if not address:
            unaddressed.append(m.id)
            continue
        routable[m.id] = address
    register = {
        iid: address
        for iid, address in sorted(routable.items())
        if iid not in listed
        or listed[iid].state == spi_lb.BACKEND_DRAINING
        or (listed[iid].address and listed[iid].address != address)
    }
    deregister = sorted(
        iid
        for iid, b in listed.items()
        if iid not in routable and b.state != spi_lb.BACKEND_DRAINING
    )
    return BackendPlan(register, deregister, sorted(unaddressed))


def gated_health(
    status: Health, note: str, backend: spi_lb.Backend | None, balancer: str
) -> tuple[Health, str]:
    """A flavor's answer for a member behind ``balancer``: HEALTHY only while the balancer routes
    traffic to it (module docstring); any other answer stands."""
    if status is not Health.HEALTHY:
        return status, note
    if backend is None:
        return Health.UNKNOWN, f"not registered with load balancer {balancer} yet"
    if backend.state == spi_lb.BACKEND_UP:
        return Health.HEALTHY, note
    if backend.state == spi_lb.BACKEND_CHECKING:
        return Health.UNKNOWN, f"load balancer {balancer}: its health check has not passed yet"
    if backend.state == spi_lb.BACKEND_DOWN:
        return Health.UNKNOWN, f"load balancer {balancer}: its health check fails"
    return Health.UNKNOWN, f"load balancer {balancer}: draining"
