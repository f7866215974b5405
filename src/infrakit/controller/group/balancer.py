"""The ingress at run time: the group controller's calls to a group's L4 load balancer.

A group whose spec has ``Properties.Ingress`` (:class:`~infrakit.controller.group.spec.
IngressSection`) gets, from the controller and its actuator (the decisions are pure, in
:mod:`~infrakit.controller.group.ingress`):

* **sync** after every observation: the balancer's pool is made equal to the routable members
  (new ones registered, gone ones drained out). It runs in the background of the group, one at
  a time (a newer observation waits for the running sync, and only the newest is synced), so a
  slow or unreachable balancer never holds up a pass. Failures are published once per message
  and change nothing.
* **drain** before every destroy, ahead of ``Flavor.Drain``: ``DeregisterBackends`` (no new
  connections), then wait until the balancer no longer lists the member - its connections are
  gone - or ``Ingress.DrainTimeout`` passed; only then is the instance destroyed.
* **health**: ``Flavor.Healthy``'s HEALTHY counts only once the balancer routes traffic to the
  member (:func:`~infrakit.controller.group.ingress.gated_health`).
* **validate** on commit: the balancer must answer, and the route be valid.

The balancer is reached through a typed lookup (an RPC client in production, the in-process
plugin under ``infrakit up``, a fake in tests); this module never talks RPC itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from infrakit import errors
from infrakit._utils.clock import Clock
from infrakit.controller.group.breaker import Notice
from infrakit.controller.group.ingress import gated_health, plan_backends
from infrakit.controller.group.runtime import Group
from infrakit.controller.group.spec import GroupSettings
from infrakit.spi import instance as spi_instance
from infrakit.spi import loadbalancer as spi_lb
from infrakit.spi.plugin import LoadBalancerLookup
from infrakit.spi.types import Health

if TYPE_CHECKING:
    from infrakit.controller.group.sections import IngressSection

__all__ = ["CALL_TIMEOUT", "DRAIN_POLL", "Ingress"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds one call to a balancer may take.
CALL_TIMEOUT = 10.0
#: Seconds between looks at a draining member's connections.
DRAIN_POLL = 0.1


class Ingress:
    """A controller's calls to its groups' load balancers (module docstring)."""

    def __init__(
        self,
        lookup: LoadBalancerLookup | None,
        clock: Clock,
        publish: Callable[[str, Notice], None],
    ) -> None:
        self._lookup = lookup
        self.clock = clock
        self._publish = publish
        #: Groups whose balancer has their route, for the settings it was checked with.
        self._routed: dict[str, GroupSettings] = {}
        #: The newest members to sync per group, and the groups with a sync running.
        self._pending: dict[str, list[spi_instance.Description]] = {}
        self._running: set[str] = set()
        #: The last failure published per group ("" after a success).
        self._failed: dict[str, str] = {}

    def _balancer(self, ingress: IngressSection) -> spi_lb.Plugin:
        if self._lookup is None:
            raise errors.SpecError(
                f"Properties.Ingress: this group controller reaches no load balancers, so it "
                f"cannot use {ingress.plugin!r}; run it with the plugin host (infrakit plugin "
                f"start group loadbalancer) or remove the Ingress section"
            )
        return self._lookup(ingress.plugin)

    async def _bounded(self, awaitable: Awaitable[T], plugin: str, method: str) -> T:
        try:
            return await self.clock.wait_for(awaitable, CALL_TIMEOUT)
        except TimeoutError as exc:
            raise errors.PluginTimeoutError(
                f"load balancer {plugin} ({method}) did not answer within {CALL_TIMEOUT:g}s"
            ) from exc

    # --- commit -----------------------------------------------------------------------------

    async def validate(self, settings: GroupSettings) -> None:
        """The balancer named by ``Ingress.Plugin`` answers (its name); errors name it."""
        ingress = settings.properties.ingress
        if ingress is None:
            return
        try:
            balancer = self._balancer(ingress)
            await self._bounded(balancer.name(), ingress.plugin, "L4.Name")
        except errors.SpecError:
            raise
        except errors.InfrakitError as exc:
            raise errors.SpecError(
                f"Failed to find load balancer plugin '{ingress.plugin}' (Properties.Ingress."
                f"Plugin): {exc}; start it (infrakit plugin start loadbalancer) and commit again"
            ) from exc
        self._routed.pop(settings.id, None)

    # --- sync ---------------------------------------------------------------------------------

    def sync(self, group: Group, members: list[spi_instance.Description]) -> None:
        """Sync the group's balancer with ``members`` in the background (module docstring)."""
        if group.settings.properties.ingress is None:
            return
        self._pending[group.id] = members
        if group.id in self._running:
            return
        self._running.add(group.id)
        group.spawn(self._sync_newest(group))

    async def _sync_newest(self, group: Group) -> None:
        try:
            while (members := self._pending.pop(group.id, None)) is not None:
                await self._sync_once(group, members)
        finally:
            self._running.discard(group.id)

    async def _sync_once(self, group: Group, members: list[spi_instance.Description]) -> None:
        settings = group.settings
        ingress = settings.properties.ingress
        if ingress is None:
            return
        try:
            balancer = self._balancer(ingress)
            await self._ensure_route(group, balancer, ingress)
            backends = await self._bounded(_states(balancer), ingress.plugin, "L4.BackendStates")
            unhealthy = {
                iid for iid, h in group.state.health.items() if h.status is Health.UNHEALTHY
            }
            plan = plan_backends(
                members, backends, destroying=set(group.state.destroying), unhealthy=unhealthy
            )
            if plan.register:
                ids = list(plan.register)
                await self._bounded(
                    balancer.register_backends(ids, plan.register),
                    ingress.plugin,
                    "L4.RegisterBackends",
                )
                self._say(group, "ingress-registered", f"registered {', '.join(ids)}", ingress)
            if plan.deregister:
                await self._bounded(
                    balancer.deregister_backends(plan.deregister),
                    ingress.plugin,
                    "L4.DeregisterBackends",
                )
                self._say(
                    group, "ingress-draining", f"draining {', '.join(plan.deregister)}", ingress
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failure(group, ingress, exc)
            return
        if plan.unaddressed:
            self._failure(
                group,
                ingress,
                errors.SpecError(
                    f"{len(plan.unaddressed)} member(s) have no infrakit.address tag (e.g. "
                    f'{plan.unaddressed[0]}); give them one (process: "Port": "auto")'
                ),
            )
        else:
            self._failed[group.id] = ""

    async def _ensure_route(
        self, group: Group, balancer: spi_lb.Plugin, ingress: IngressSection
    ) -> None:
        """Publish ``Ingress.Route`` once per committed spec when the balancer lacks it."""
        route = ingress.route
        if route is None or self._routed.get(group.id) is group.settings:
            return
        routes = await self._bounded(balancer.routes(), ingress.plugin, "L4.Routes")
        if route not in routes:
            result = await self._bounded(balancer.publish(route), ingress.plugin, "L4.Publish")
            self._say(group, "ingress-route", result, ingress)
        self._routed[group.id] = group.settings

    def _say(self, group: Group, kind: str, what: str, ingress: IngressSection) -> None:
        self._publish(group.id, Notice(kind, f"{group.id}: load balancer {ingress.plugin}: {what}"))

    def _failure(self, group: Group, ingress: IngressSection, exc: BaseException) -> None:
        """Publish a failure once per new message; nothing is changed."""
        message = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
        self._routed.pop(group.id, None)  # look at the route again next time
        if self._failed.get(group.id) == message:
            return
        self._failed[group.id] = message
        note = (
            f"{group.id}: cannot sync load balancer {ingress.plugin}: {message}; backends unchanged"
        )
        self._publish(group.id, Notice("ingress-failed", note, warning=True))

    # --- health ---------------------------------------------------------------------------------

    async def gate(
        self, group: Group, answers: dict[str, tuple[Health, str]]
    ) -> dict[str, tuple[Health, str]]:
        """``Flavor.Healthy`` answers, gated by what the balancer says (module docstring)."""
        ingress = group.settings.properties.ingress
        if ingress is None or not answers:
            return answers
        try:
            balancer = self._balancer(ingress)
            listed = await self._bounded(_states(balancer), ingress.plugin, "L4.BackendStates")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
            note = f"load balancer {ingress.plugin} cannot say: {text}"
            return {
                iid: (Health.UNKNOWN, note) if status is Health.HEALTHY else (status, old)
                for iid, (status, old) in answers.items()
            }
        by_id = {b.id: b for b in listed}
        return {
            iid: gated_health(status, note, by_id.get(iid), ingress.plugin)
            for iid, (status, note) in answers.items()
        }

    # --- drain ----------------------------------------------------------------------------------

    async def drain(self, group: Group, desc: spi_instance.Description) -> None:
        """Take ``desc`` out of the balancer and wait until its connections are gone or
        ``Ingress.DrainTimeout`` passed. A member the balancer does not list has nothing to
        drain."""
        ingress = group.settings.properties.ingress
        if ingress is None:
            return
        balancer = self._balancer(ingress)
        started = self.clock.now()
        try:
            await self._bounded(
                balancer.deregister_backends([desc.id]), ingress.plugin, "L4.DeregisterBackends"
            )
        except errors.NotFoundError:
            return
        deadline = started + ingress.drain_timeout
        while True:
            listed = await self._bounded(_states(balancer), ingress.plugin, "L4.BackendStates")
            mine = next((b for b in listed if b.id == desc.id), None)
            now = self.clock.now()
            if mine is None:
                log.info("%s: %s drained in %.2fs", group.id, desc.id, now - started)
                return
            if now >= deadline:
                message = (
                    f"{group.id}: {desc.id} still has {mine.connections} connection(s) after "
                    f"Ingress.DrainTimeout {ingress.drain_timeout:g}s; destroying it anyway"
                )
                self._publish(
                    group.id, Notice("drain-timeout", message, instance_id=desc.id, warning=True)
                )
                return
            await self.clock.sleep(min(DRAIN_POLL, deadline - now))


async def _states(balancer: spi_lb.Plugin) -> list[spi_lb.Backend]:
    """``backend_states`` where the balancer has it (infrakit's), else every backend up."""
    states = getattr(balancer, "backend_states", None)
    if callable(states):
        return list(await states())
    return [spi_lb.Backend(id=i) for i in await balancer.backends()]
