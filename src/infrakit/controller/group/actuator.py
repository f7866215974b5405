"""The actuator: every call the group controller makes to a group's plugins, bounded and accounted.

The pure modules decide; this one talks to the plugins - through the typed lookups it is given
(RPC clients in production, in-process adapters under ``infrakit up``, fakes in tests) - and
turns every outcome into the group's memory:

* **observe**: ``DescribeInstances`` of the group's members, bounded by ``DESCRIBE_TIMEOUT``,
  never trusting the answer (only instances with our group tag, each ID once);
* **health**: ``Flavor.Healthy`` for the members that need it, ``HEALTH_PARALLEL`` at a time; an
  error or a timeout counts as UNKNOWN;
* **create**: ``Flavor.Prepare`` + ``Instance.Provision``, tracked in flight from before the first
  call (so a lagging provider never makes us create twice), bounded by ``ProvisionTimeout``; a
  failure is a breaker transition (backoff, probing, opening: see
  :mod:`~infrakit.controller.group.breaker`), a success chains the next create while the pass
  left a backlog;
* **destroy**: a drain (unless skipped) - out of the group's load balancer first when it has an
  ``Ingress`` (:mod:`~infrakit.controller.group.balancer`), then ``Flavor.Drain`` - and
  ``Instance.Destroy``, each bounded; a destroyed instance is hidden while the provider still
  lists it;
* **validate**: both plugins' ``Validate`` on commit, naming the plugin in every error.

Every create and destroy runs as a background task of its group (:meth:`Group.spawn`), so a slow
or hung provider never blocks the controller's loop; each one asks for the next pass when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from infrakit import errors
from infrakit._utils.clock import Clock
from infrakit.controller.group.balancer import Ingress
from infrakit.controller.group.breaker import Notice
from infrakit.controller.group.runtime import Group
from infrakit.controller.group.spec import GroupSettings
from infrakit.controller.group.state import InFlightCreate
from infrakit.spi import flavor as spi_flavor
from infrakit.spi import instance as spi_instance
from infrakit.spi.plugin import FlavorLookup, InstanceLookup
from infrakit.spi.types import (
    CONFIG_HASH_TAG,
    CREATE_TOKEN_TAG,
    CREATED_TAG,
    GROUP_TAG,
    LOGICAL_ID_TAG,
    Health,
    format_timestamp,
)

__all__ = [
    "DESCRIBE_TIMEOUT",
    "DESTROY_TIMEOUT",
    "DRAIN_TIMEOUT",
    "HEALTH_TIMEOUT",
    "VALIDATE_TIMEOUT",
    "Actuator",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds allowed for DescribeInstances during a reconcile.
DESCRIBE_TIMEOUT = 30.0
#: Seconds allowed for a plugin's Validate on commit: well inside the CLI's 60 s call timeout, so
#: a hung plugin is named in the error rather than the group controller the CLI talked to.
VALIDATE_TIMEOUT = 15.0
#: Seconds allowed for one Flavor.Healthy call (a timeout counts as UNKNOWN).
HEALTH_TIMEOUT = 10.0
#: Seconds allowed for Drain, and for Destroy.
DRAIN_TIMEOUT = 300.0
DESTROY_TIMEOUT = 120.0
#: Retry delays (seconds) after a failed observation: doubled per failure up to the maximum.
OBSERVE_RETRY_INITIAL = 0.5
OBSERVE_RETRY_MAX = 30.0
#: Concurrent Flavor.Healthy calls per group.
HEALTH_PARALLEL = 32
#: Concurrent destroys when the user destroys a whole group (or many of its instances).
DESTROY_PARALLEL = 32
#: An instance a Destroy said OK for but the provider still lists is hidden at least this long
#: (or VisibilityTimeout), doubled per repeat, up to DESTROY_RETRY_MAX, before it is destroyed again.
DESTROY_RETRY_MIN = 10.0
DESTROY_RETRY_MAX = 3600.0

#: ``publish(group_id, notice)``: an event on ``group/<id>`` (and a log line).
Publish = Callable[[str, Notice], None]


class Actuator:
    """Talks to the plugins on behalf of every group of one controller (see module docstring)."""

    def __init__(
        self,
        instance_lookup: InstanceLookup,
        flavor_lookup: FlavorLookup,
        clock: Clock,
        *,
        publish: Publish,
        requeue: Callable[[str], None],
        current: Callable[[str], Group | None],
        persist_update: Callable[[Group], Awaitable[None]],
        on_provisioned: Callable[[Group, str], None],
        rng: random.Random,
        run_id: str,
        ingress: Ingress | None = None,
    ) -> None:
        """``publish`` carries notices out, ``requeue`` asks for a group's next pass, ``current``
        tells whether a group object is still the managed one (it may have been freed or replaced
        while a create ran), ``persist_update`` writes a rolling update's record, and
        ``on_provisioned`` learns each new instance ID (event routing). ``run_id`` prefixes the
        create tokens of this run."""
        self.instance_lookup = instance_lookup
        self.flavor_lookup = flavor_lookup
        self.clock = clock
        self._publish = publish
        self._requeue = requeue
        self._current = current
        self._persist_update = persist_update
        self._rng = rng
        #: Prefix of this run's create tokens: a token left on an instance by an earlier run
        #: never matches a create of this one.
        self._run_id = run_id
        self._create_tokens = 0
        #: The last ``infrakit.created`` tag made (see ``_created_stamp``).
        self._last_created = ""
        #: Instance plugins already warned about for listing an ID twice.
        self._warned_duplicates: set[str] = set()
        #: Called with (group, instance ID) when Provision returned an ID (event routing).
        self._on_provisioned = on_provisioned
        #: Set by the controller's ``stop``: chained creates end at once (see ``create``).
        self.stopping = False
        #: Groups' load balancers (``Properties.Ingress``): synced, drained, gating health.
        self.ingress = ingress or Ingress(None, clock, publish)

    # --- observe -----------------------------------------------------------------------------

    async def describe(
        self, settings: GroupSettings, *, properties: bool = False
    ) -> list[spi_instance.Description]:
        """The group's members as the instance plugin lists them: only instances carrying our
        group tag (whatever the plugin returned), each ID once."""
        gid = settings.id
        name = settings.properties.instance.plugin
        plugin = self.instance_lookup(name)
        found = await self._bounded(
            plugin.describe_instances({GROUP_TAG: gid}, properties),
            DESCRIBE_TIMEOUT,
            f"plugin {name} (Instance.DescribeInstances) did not answer within "
            f"{DESCRIBE_TIMEOUT:g}s",
        )
        seen: dict[str, None] = {}  # a dict's keys: ~20 bytes an ID where a set takes ~50
        members: list[spi_instance.Description] = []
        for d in found:
            if d.tags.get(GROUP_TAG) != gid:
                continue
            if d.id in seen:
                self._warn_duplicates(name, d.id)
                continue
            seen[d.id] = None
            members.append(d)
        return members

    async def observe(self, group: Group) -> list[spi_instance.Description] | float:
        """DescribeInstances for a pass: the members, or - when the plugin cannot answer - the
        seconds to wait before trying again (``OBSERVE_RETRY_INITIAL`` doubling to
        ``OBSERVE_RETRY_MAX``). A failure is remembered (Status shows it) and published once per
        new message; it never means "zero instances"."""
        group.observing_since = self.clock.now()
        try:
            found = await self.describe(group.settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            group.observe_failures += 1
            delay = min(
                OBSERVE_RETRY_MAX, OBSERVE_RETRY_INITIAL * 2.0 ** (group.observe_failures - 1)
            )
            message = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
            if group.state.last_error != message:
                note = f"cannot list {group.id}: {message}; no action"
                self._publish(group.id, Notice("observe-failed", note))
            group.state.last_error = group.observe_error = message
            group.converged = False
            group.wake_observers()
            return delay
        finally:
            group.observing_since = None
        group.observe_failures = 0
        group.state.last_error = group.observe_error = ""
        return found

    def _warn_duplicates(self, plugin: str, iid: str) -> None:
        """Warn once per plugin that it lists an ID twice (a plugin bug; each ID counts once)."""
        if plugin in self._warned_duplicates:
            return
        self._warned_duplicates.add(plugin)
        log.warning(
            "plugin %s lists instance %s more than once in DescribeInstances; counting each ID "
            "once (a bug in the plugin: report it to its authors)",
            plugin,
            iid,
        )

    async def check_health(self, group: Group, due: list[spi_instance.Description]) -> None:
        """Ask Flavor.Healthy about ``due``; errors and timeouts count as UNKNOWN."""
        settings = group.settings
        try:
            flavor = self.flavor_lookup(settings.properties.flavor.plugin)
        except errors.InfrakitError as exc:
            for m in due:
                self._record_health(group, m.id, Health.UNKNOWN, f"flavor unreachable: {exc}")
            return
        props = settings.properties.flavor.properties
        sem = asyncio.Semaphore(HEALTH_PARALLEL)
        answers: dict[str, tuple[Health, str]] = {}

        async def one(m: spi_instance.Description) -> None:
            async with sem:
                try:
                    status = await self.clock.wait_for(flavor.healthy(props, m), HEALTH_TIMEOUT)
                    note = ""
                except asyncio.CancelledError:
                    raise
                except errors.InfrakitError as exc:
                    status, note = Health.UNKNOWN, f"Healthy failed: {exc}"
                except TimeoutError:
                    status, note = Health.UNKNOWN, f"Healthy did not answer in {HEALTH_TIMEOUT:g}s"
                except Exception as exc:
                    status, note = Health.UNKNOWN, f"Healthy failed: {exc}"
                answers[m.id] = (Health(status), note)

        await asyncio.gather(*(one(m) for m in due))
        # Behind a load balancer, HEALTHY means "and the balancer routes traffic to it".
        for iid, (status, note) in (await self.ingress.gate(group, answers)).items():
            self._record_health(group, iid, status, note)

    def _record_health(self, group: Group, iid: str, status: Health, note: str) -> None:
        """Record one Flavor.Healthy answer: a change of status starts a new ``since`` (timeouts
        are measured from it), HEALTHY answers count a streak (``Updating.Count``), and a member
        turning UNHEALTHY is published."""
        now = self.clock.now()
        h = group.state.health.get(iid)
        if h is None:
            return
        if status is not h.status:
            if status is Health.UNHEALTHY:
                message = f"{iid} is unhealthy {note}".strip()
                self._publish(group.id, Notice("instance-unhealthy", message, instance_id=iid))
            h.status = status
            h.since = now
        if status is Health.HEALTHY:
            h.ever_healthy = True
            h.healthy_streak += 1
        else:
            h.healthy_streak = 0
        h.last_check = now
        h.note = note

    # --- validate ----------------------------------------------------------------------------

    async def validate(self, settings: GroupSettings) -> None:
        """Both plugins' Validate, each within VALIDATE_TIMEOUT; errors name the plugin."""
        p = settings.properties
        try:
            flavor = self.flavor_lookup(p.flavor.plugin)
        except errors.InfrakitError as exc:
            raise errors.SpecError(
                f"Failed to find Flavor plugin '{p.flavor.plugin}':{exc}"
            ) from exc
        await self._named(
            flavor.validate(p.flavor.properties, settings.allocation), "Flavor", p.flavor.plugin
        )
        try:
            plugin = self.instance_lookup(p.instance.plugin)
        except errors.InfrakitError as exc:
            raise errors.SpecError(
                f"Failed to find Instance plugin '{p.instance.plugin}':{exc}"
            ) from exc
        await self._named(plugin.validate(p.instance.properties), "Instance", p.instance.plugin)
        await self.ingress.validate(settings)

    async def _named(self, awaitable: Awaitable[None], kind: str, name: str) -> None:
        """Await a plugin's Validate within VALIDATE_TIMEOUT and make sure any error names the
        plugin (a Go plugin's bare message would not say whose it is)."""
        try:
            await self.clock.wait_for(awaitable, VALIDATE_TIMEOUT)
        except errors.SpecError:
            raise
        except errors.InfrakitError as exc:
            text = str(exc)
            if name not in text:
                text = f"{kind} plugin {name} rejected the spec: {text}"
            raise type(exc)(text) from exc
        except TimeoutError as exc:
            raise errors.PluginTimeoutError(
                f"plugin {name} ({kind}.Validate) did not answer within {VALIDATE_TIMEOUT:g}s; "
                f"the plugin may be hung: check or restart it, then commit again"
            ) from exc

    # --- create ------------------------------------------------------------------------------

    async def create(self, group: Group, logical_id: str | None) -> None:
        """Create one instance; while the last pass left a backlog, go on with the next one.

        Chaining keeps MaxParallel creates running during a big scale-up without a full
        reconcile pass per batch (a pass is O(members); 10 000 instances would need 100 of
        them). It is safe against over-creation: the next create registers itself as pending
        before this task yields, and any pass that runs meanwhile recomputes the backlog. It
        stops at anything that could make the count wrong: a new spec, a failure, backoff,
        probing, the breaker.
        """
        gid = group.id
        settings = group.settings
        while True:
            created = await self._create_once(group, logical_id)
            if self.stopping:
                # On Python 3.11 asyncio.wait_for swallows a cancellation that arrives as its
                # inner call finishes, which is every time with a provider as quick as the file
                # plugin: without this check a stopped controller went on through the whole
                # backlog (20 000 files after SIGTERM).
                return
            state = group.state
            breaker = state.breaker
            # Chain only while the count this backlog was computed from still holds: the same
            # group object and spec, cattle (pets are created per logical ID by the pass), and a
            # breaker that would let a pass create too. Anything else: a pass decides afresh.
            if not (
                created
                and logical_id is None
                and state.create_backlog > 0
                and self._current(gid) is group
                and group.settings is settings
                and not breaker.open
                and not breaker.probing
                and breaker.next_create_at <= self.clock.now()
            ):
                self._requeue(gid)
                return
            state.create_backlog -= 1

    async def _create_once(self, group: Group, logical_id: str | None) -> bool:
        """One Prepare + Provision, tracked as in flight. True when it succeeded."""
        gid, state, settings = group.id, group.state, group.settings
        prov = settings.properties.provisioning
        # Counted as in flight before the first await: a pass that runs while Prepare or
        # Provision is on the wire sees it pending and does not create it a second time.
        pending, tags = self._register_create(group, logical_id)
        token = pending.token
        spec = spi_instance.Spec(
            properties=settings.properties.instance.properties,
            tags=dict(tags),
            init="",
            logical_id=logical_id,
        )
        index = spi_flavor.Index(group=gid, sequence=state.sequence)
        try:
            instance_id = await self.clock.wait_for(
                self._prepare_and_provision(settings, spec, tags, index), prov.provision_timeout
            )
        except asyncio.CancelledError:
            state.creating.pop(token, None)
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                # Outcome unknown: the provider may still finish it (InfraKit #858, #910). It
                # stays pending - counted toward the group - until VisibilityTimeout; if its
                # instance appears (its create-token tag) it is matched, never doubled.
                pending.visible_by = self.clock.now() + prov.visibility_timeout
                pending.abandoned = True
            else:
                state.creating.pop(token, None)
            # A plugin's own error (in-process or over RPC, the same: errors.as_reported) is
            # its one line; an unreachable or restarting plugin is "temporary": it backs off
            # but does not count toward the breaker like a rejected Provision.
            if isinstance(exc, errors.InfrakitError):
                reason = str(exc)
            elif isinstance(exc, TimeoutError):
                reason = f"Provision did not finish within {prov.provision_timeout:g}s"
            else:
                reason = repr(exc)
            self.failed(
                group,
                f"create failed: {reason}",
                provision_error=True,
                temporary=isinstance(exc, errors.InfrakitError) and exc.temporary,
            )
            return False
        # Provisioned: it holds no MaxParallel slot any more, and it must show up in a
        # DescribeInstances within VisibilityTimeout or count as a failed create.
        pending.instance_id = instance_id
        if instance_id and token in state.creating:  # else: already listed (see observe)
            state.provisioned[instance_id] = token
            self._on_provisioned(group, instance_id)
        pending.visible_by = self.clock.now() + prov.visibility_timeout
        state.breaker.provisioned()
        message = f"created {instance_id}" + (f" ({logical_id})" if logical_id else "")
        self._publish(gid, Notice("instance-created", message, instance_id=instance_id or ""))
        return True

    def _register_create(
        self, group: Group, logical_id: str | None
    ) -> tuple[InFlightCreate, dict[str, str]]:
        """Count a create as in flight - before anything awaits, so no pass can create it again -
        and the tags that make its instance ours: group, config, creation time, create token."""
        settings, state = group.settings, group.state
        self._create_tokens += 1
        token = self._create_tokens
        pending = InFlightCreate(
            token=token,
            logical_id=logical_id,
            started_at=self.clock.now(),
            config=settings.hash.head,
            tag=f"{self._run_id}-{token}",
            probe=state.breaker.probing,
        )
        state.creating[token] = pending
        state.sequence += 1
        tags = {
            GROUP_TAG: group.id,
            CONFIG_HASH_TAG: settings.hash.head,
            CREATED_TAG: self._created_stamp(),
            CREATE_TOKEN_TAG: pending.tag,
        }
        if logical_id is not None:
            tags[LOGICAL_ID_TAG] = logical_id
        return pending, tags

    def _created_stamp(self) -> str:
        """The ``infrakit.created`` tag of a create starting now: the previous create's string
        when it is the same millisecond (a scale-up makes ~10 a millisecond: one string each
        would be ~70 bytes per instance, kept as long as the instance)."""
        stamp = format_timestamp(self.clock.wall())
        if stamp == self._last_created:
            return self._last_created
        self._last_created = stamp
        return stamp

    async def _prepare_and_provision(
        self,
        settings: GroupSettings,
        spec: spi_instance.Spec,
        tags: dict[str, str],
        index: spi_flavor.Index,
    ) -> str | None:
        """Flavor.Prepare then Instance.Provision of one instance. The flavor may add tags, Init
        or attachments, but never take away the ones that make the instance ours."""
        flavor = self.flavor_lookup(settings.properties.flavor.plugin)
        plugin = self.instance_lookup(settings.properties.instance.plugin)
        prepared = await flavor.prepare(
            settings.properties.flavor.properties, spec, settings.allocation, index
        )
        # A flavor may add tags but must not drop membership: an untagged instance would be
        # invisible to us and we would create another one (runaway).
        prepared.tags = {**prepared.tags, **tags}
        if spec.logical_id is not None:
            prepared.logical_id = spec.logical_id
        return await plugin.provision(prepared)

    def failed(
        self,
        group: Group,
        message: str,
        *,
        provision_error: bool,
        temporary: bool = False,
        event_type: str = "create-failed",
    ) -> None:
        """A failed create: the breaker's transition, published."""
        breaker = group.state.breaker
        breaker.failed(
            group.id,
            message,
            group.settings.properties.provisioning,
            self.clock.now(),
            jitter=1.0 + self._rng.uniform(-0.2, 0.2),
            provision_error=provision_error,
            temporary=temporary,
            event_type=event_type,
        )
        group.state.note(message)
        for notice in breaker.take_notices():
            self._publish(group.id, notice)

    # --- destroy -----------------------------------------------------------------------------

    async def destroy(self, group: Group, desc: spi_instance.Description, reason: str) -> None:
        """Drain and destroy one member in the background of a pass; a failure of a rolling
        update's destroy pauses the update (its record says why)."""
        gid = group.id
        try:
            await self.drain_and_destroy(
                group, desc, reason, strict_drain=reason == spi_instance.REASON_ROLLING_UPDATE
            )
        except errors.InfrakitError as exc:
            message = f"could not destroy {desc.id} ({reason}): {exc}"
            group.state.note(message)
            self._publish(gid, Notice("destroy-failed", message, instance_id=desc.id))
            upd = group.state.update
            if reason == spi_instance.REASON_ROLLING_UPDATE and upd is not None:
                upd.paused = True
                upd.reason = message + f"; fix it, then `infrakit group resume {gid}`"
                await self._persist_update(group)
        finally:
            self._requeue(gid)

    async def terminate(
        self, group: Group, victims: list[spi_instance.Description], next_step: str
    ) -> None:
        """Drain and destroy ``victims`` (the user asked: ``destroy``, ``destroy-instances``),
        ``DESTROY_PARALLEL`` at a time; failed ones are named in one error with ``next_step``."""
        sem = asyncio.Semaphore(DESTROY_PARALLEL)
        failures: list[str] = []

        async def one(desc: spi_instance.Description) -> None:
            async with sem:
                try:
                    await self.drain_and_destroy(
                        group, desc, spi_instance.REASON_TERMINATE, strict_drain=False
                    )
                except errors.InfrakitError as exc:
                    failures.append(f"{desc.id}: {exc}")

        await asyncio.gather(*(one(v) for v in victims))
        if failures:
            raise errors.PluginError(
                f"group {group.id}: {len(failures)} of {len(victims)} instance(s) could not be "
                f"destroyed ({'; '.join(failures[:3])}); {next_step}"
            )

    async def drain_and_destroy(
        self, group: Group, desc: spi_instance.Description, reason: str, *, strict_drain: bool
    ) -> None:
        """Drain (unless skipped) then destroy one instance; record it as gone."""
        settings, state = group.settings, group.state
        gid = settings.id
        state.destroying[desc.id] = self.clock.now()
        if desc.logical_id:
            state.destroying_lids[desc.id] = desc.logical_id
        try:
            skip_drain = (
                reason == spi_instance.REASON_ROLLING_UPDATE
                and settings.properties.updating.skip_before_instance_destroy == "drain"
            )
            if not skip_drain:
                await self._drain(group, desc, strict=strict_drain)
            plugin = self.instance_lookup(settings.properties.instance.plugin)
            with contextlib.suppress(errors.NotFoundError):  # already gone: what we wanted
                await self._bounded(
                    plugin.destroy(desc.id, spi_instance.Context(reason)),
                    DESTROY_TIMEOUT,
                    f"Destroy of {desc.id} did not finish within {DESTROY_TIMEOUT:g}s",
                )
        finally:
            state.destroying.pop(desc.id, None)
            state.destroying_lids.pop(desc.id, None)
            state.rolling_destroys.discard(desc.id)
        now = self.clock.now()
        # A provider may list an instance for a while after destroying it (EC2 "shutting-down"):
        # it is hidden meanwhile. One that says OK but keeps listing it gets the destroy again
        # only after a doubling wait, never a Destroy storm.
        count = state.destroy_count.get(desc.id, 0) + 1
        state.destroy_count[desc.id] = count
        hide = max(settings.properties.provisioning.visibility_timeout, DESTROY_RETRY_MIN)
        state.destroyed_until[desc.id] = now + min(DESTROY_RETRY_MAX, hide * 2 ** (count - 1))
        state.health.pop(desc.id, None)  # so it is not "lost" when it vanishes (see observe)
        upd = state.update
        if reason == spi_instance.REASON_ROLLING_UPDATE and upd is not None:
            upd.replaced += 1
            upd.destroyed.append(desc.id)
            upd.last_progress_at = self.clock.wall()
            await self._persist_update(group)
        message = f"destroyed {desc.id} ({reason})"
        self._publish(gid, Notice("instance-destroyed", message, instance_id=desc.id))

    async def _drain(self, group: Group, desc: spi_instance.Description, *, strict: bool) -> None:
        """Out of the load balancer (with an Ingress: until its connections are gone or
        Ingress.DrainTimeout), then Flavor.Drain within DRAIN_TIMEOUT. A failure stops a strict
        drain (rolling update); otherwise it is published and the destroy goes on."""
        settings = group.settings
        if settings.properties.ingress is not None:
            await self._drain_step(group, desc, self.ingress.drain(group, desc), strict=strict)
        await self._drain_step(group, desc, self._flavor_drain(group, desc), strict=strict)

    async def _flavor_drain(self, group: Group, desc: spi_instance.Description) -> None:
        settings = group.settings
        flavor = self.flavor_lookup(settings.properties.flavor.plugin)
        await self.clock.wait_for(
            flavor.drain(settings.properties.flavor.properties, desc), DRAIN_TIMEOUT
        )

    async def _drain_step(
        self,
        group: Group,
        desc: spi_instance.Description,
        step: Awaitable[None],
        *,
        strict: bool,
    ) -> None:
        """Await one drain step; see :meth:`_drain` for what a failure does."""
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = str(exc) if isinstance(exc, errors.InfrakitError) else repr(exc)
            if strict:
                raise errors.PluginError(f"Drain failed: {text}") from exc
            message = f"drain of {desc.id} failed ({text}); destroying anyway"
            self._publish(group.id, Notice("drain-failed", message, instance_id=desc.id))

    async def _bounded(self, awaitable: Awaitable[T], seconds: float, timeout_message: str) -> T:
        """Await a plugin call within ``seconds``; a timeout becomes PluginTimeoutError."""
        try:
            return await self.clock.wait_for(awaitable, seconds)
        except errors.InfrakitError:
            raise
        except TimeoutError as exc:
            raise errors.PluginTimeoutError(timeout_message) from exc
