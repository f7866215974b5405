"""Prometheus metrics of a running infrakit: recorded as plain numbers, exposed in Prometheus' text.

Recording must cost nothing visible (a heal is milliseconds, a pass over 10 000 instances 40 ms):
:class:`Recorder` keeps counters and histograms as plain Python numbers, updated by hooks in the
work queue, the plugin lookups, the store and the RPC server, and by the group controller's own
events. ``prometheus_client`` (a 0.1-0.3 s import) is imported only when something is scraped;
:meth:`Recorder.exposition` then builds the families from those numbers plus what the controller
knows at that moment (:class:`~infrakit.spi.group.GroupSnapshot`, read at scrape time, so a gauge
is never stale).

Names follow Prometheus' and controller-runtime's conventions; labels are low-cardinality
(``group``, ``plugin``, ``method``, ``result``, ``state``, ``code``; never an instance ID):

======================================================  ==========  ==============================
``infrakit_group_instances``                            gauge       group, state (desired, actual,
                                                                    pending, destroying, healthy,
                                                                    unhealthy, unknown)
``infrakit_group_converged`` / ``..._degraded``         gauge       group
``infrakit_group_breaker_state``                        gauge       group, state (1 for the current)
``infrakit_group_update_instances``                     gauge       group, state (replaced,
                                                                    remaining, paused)
``infrakit_group_reconcile_total``                      counter     group, result (success, error)
``infrakit_group_reconcile_duration_seconds``           histogram   group
``infrakit_workqueue_depth`` / ``..._adds_total`` /     gauge /     -
``..._retries_total``                                   counter
``infrakit_group_creates_total`` / ``..._destroys_total``  counter  group, result
``infrakit_plugin_call_duration_seconds``               histogram   plugin, method, result
``infrakit_leader``                                     gauge       member (1 on the leader)
``infrakit_store_write_duration_seconds`` /             histogram / -
``infrakit_store_write_errors_total``                   counter
``infrakit_rpc_requests_total``                         counter     method, code
``process_*``                                           (prometheus_client's process collector)
======================================================  ==========  ==============================
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from infrakit.spi import flavor as spi_flavor
from infrakit.spi import instance as spi_instance
from infrakit.spi.group import GroupSnapshot
from infrakit.spi.plugin import FlavorLookup, InstanceLookup
from infrakit.spi.types import JSON, Health, Tags
from infrakit.store import Store

__all__ = [
    "BUCKETS",
    "ControllerView",
    "Histogram",
    "Recorder",
    "TimedFlavor",
    "TimedInstance",
    "TimedStore",
    "timed_lookups",
]

T = TypeVar("T")

#: Histogram buckets (seconds), Prometheus' defaults.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Event types of the group controller counted as creates / destroys, with their result.
CREATE_RESULTS = {"instance-created": "success", "backoff": "error", "create-failed": "error"}
DESTROY_RESULTS = {"instance-destroyed": "success", "destroy-failed": "error"}


@dataclass
class Histogram:
    """Cumulative-on-exposition bucket counts, a sum and a count: what Prometheus needs."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    samples: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.samples += 1

    def buckets(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*[str(b) for b in BUCKETS], "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class Recorder:
    """The numbers behind ``/metrics`` of one process (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # hooks may run in worker threads (the store's writes)
        self.reconciles: dict[tuple[str, str], int] = {}
        self.reconcile_seconds: dict[str, Histogram] = {}
        self.creates: dict[tuple[str, str], int] = {}
        self.destroys: dict[tuple[str, str], int] = {}
        self.plugin_calls: dict[tuple[str, str, str], Histogram] = {}
        self.store_writes = Histogram()
        self.store_errors = 0
        self.rpc_requests: dict[tuple[str, str], int] = {}
        #: Read at scrape time: the controller's groups, the work queue, the leader.
        self.snapshots: Callable[[], Iterable[GroupSnapshot]] = list
        self.queue_depth: Callable[[], int] = lambda: 0
        self.queue_adds: Callable[[], int] = lambda: 0
        self.queue_retries: Callable[[], int] = lambda: 0
        self.leader: Callable[[], tuple[str, bool] | None] = lambda: None
        self._registry: Any = None

    # --- hooks (cheap: a dict update) ----------------------------------------------------------

    def reconciled(self, group: str, seconds: float, failed: bool) -> None:
        key = (group, "error" if failed else "success")
        self.reconciles[key] = self.reconciles.get(key, 0) + 1
        histogram = self.reconcile_seconds.get(group)
        if histogram is None:
            histogram = self.reconcile_seconds[group] = Histogram()
        histogram.observe(seconds)

    def group_event(self, group: str, type_: str) -> None:
        """A group controller event (``group/<id>``): creates and destroys by result."""
        result = CREATE_RESULTS.get(type_)
        if result is not None:
            key = (group, result)
            self.creates[key] = self.creates.get(key, 0) + 1
            return
        result = DESTROY_RESULTS.get(type_)
        if result is not None:
            key = (group, result)
            self.destroys[key] = self.destroys.get(key, 0) + 1

    def plugin_call(self, plugin: str, method: str, seconds: float, failed: bool) -> None:
        key = (plugin, method, "error" if failed else "success")
        histogram = self.plugin_calls.get(key)
        if histogram is None:
            histogram = self.plugin_calls[key] = Histogram()
        histogram.observe(seconds)

    def store_write(self, seconds: float, failed: bool) -> None:
        with self._lock:
            self.store_writes.observe(seconds)
            if failed:
                self.store_errors += 1

    def rpc_request(self, method: str, code: str) -> None:
        key = (method, code)
        self.rpc_requests[key] = self.rpc_requests.get(key, 0) + 1

    # --- exposition ----------------------------------------------------------------------------

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (OpenMetrics for Prometheus, the text
        format otherwise): ``(body, content type)``."""
        from prometheus_client import exposition

        registry = self._ensure_registry()
        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(registry), content_type

    def _ensure_registry(self) -> Any:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Collector(self))
            ProcessCollector(registry=registry)
            self._registry = registry
        return self._registry


class _Collector:
    """Builds every family from the recorder at scrape time (prometheus_client's custom
    collector protocol)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterable[Any]:
        from prometheus_client import core

        r = self.recorder
        yield from _group_gauges(list(r.snapshots()), core.GaugeMetricFamily)
        yield from _reconcile_families(r, core)
        yield from _queue_families(r, core)
        yield from _plugin_store_rpc_families(r, core)


def _reconcile_families(r: Recorder, core: Any) -> Iterable[Any]:
    reconciles = core.CounterMetricFamily(
        "infrakit_group_reconcile", "Reconcile passes by group and result",
        labels=["group", "result"],
    )  # fmt: skip
    for (group, result), value in sorted(r.reconciles.items()):
        reconciles.add_metric([group, result], value)
    yield reconciles
    duration = core.HistogramMetricFamily(
        "infrakit_group_reconcile_duration_seconds", "Time of one reconcile pass",
        labels=["group"],
    )  # fmt: skip
    for group, h in sorted(r.reconcile_seconds.items()):
        duration.add_metric([group], h.buckets(), h.total)
    yield duration
    for name, help_, data in (
        ("infrakit_group_creates", "Creates by group and result", r.creates),
        ("infrakit_group_destroys", "Destroys by group and result", r.destroys),
    ):
        family = core.CounterMetricFamily(name, help_, labels=["group", "result"])
        for (group, result), value in sorted(data.items()):
            family.add_metric([group, result], value)
        yield family


def _queue_families(r: Recorder, core: Any) -> Iterable[Any]:
    yield core.GaugeMetricFamily("infrakit_workqueue_depth", "Keys waiting", value=r.queue_depth())
    yield core.CounterMetricFamily(
        "infrakit_workqueue_adds", "Keys added to the work queue", value=r.queue_adds()
    )
    yield core.CounterMetricFamily(
        "infrakit_workqueue_retries", "Passes retried after an error", value=r.queue_retries()
    )
    leader = r.leader()
    if leader is not None:
        gauge = core.GaugeMetricFamily("infrakit_leader", "1 on the leader", labels=["member"])
        gauge.add_metric([leader[0]], 1.0 if leader[1] else 0.0)
        yield gauge


def _plugin_store_rpc_families(r: Recorder, core: Any) -> Iterable[Any]:
    calls = core.HistogramMetricFamily(
        "infrakit_plugin_call_duration_seconds", "Calls to plugins by plugin, method, result",
        labels=["plugin", "method", "result"],
    )  # fmt: skip
    for key, h in sorted(r.plugin_calls.items()):
        calls.add_metric(list(key), h.buckets(), h.total)
    yield calls
    store = core.HistogramMetricFamily(
        "infrakit_store_write_duration_seconds", "Durable writes to the spec store"
    )
    store.add_metric([], r.store_writes.buckets(), r.store_writes.total)
    yield store
    yield core.CounterMetricFamily(
        "infrakit_store_write_errors", "Store writes that failed", value=r.store_errors
    )
    rpc = core.CounterMetricFamily(
        "infrakit_rpc_requests", "JSON-RPC requests served by method and code",
        labels=["method", "code"],
    )  # fmt: skip
    for (method, code), value in sorted(r.rpc_requests.items()):
        rpc.add_metric([method, code], value)
    yield rpc


def _group_gauges(snapshots: list[GroupSnapshot], gauge: Any) -> Iterable[Any]:
    instances = gauge(
        "infrakit_group_instances", "Instances of a group by state", labels=["group", "state"]
    )
    converged = gauge("infrakit_group_converged", "1 when the group is converged", labels=["group"])
    degraded = gauge("infrakit_group_degraded", "1 when the breaker is open", labels=["group"])
    breaker = gauge(
        "infrakit_group_breaker_state", "The create breaker's state (1 for the current one)",
        labels=["group", "state"],
    )  # fmt: skip
    update = gauge(
        "infrakit_group_update_instances", "A rolling update's progress",
        labels=["group", "state"],
    )  # fmt: skip
    for s in snapshots:
        for state, value in (
            ("desired", s.desired),
            ("actual", s.actual),
            ("pending", s.pending),
            ("destroying", s.destroying),
            ("healthy", s.healthy),
            ("unhealthy", s.unhealthy),
            ("unknown", s.unknown),
        ):
            if value is not None:
                instances.add_metric([s.id, state], float(value))
        converged.add_metric([s.id], 1.0 if s.converged else 0.0)
        degraded.add_metric([s.id], 1.0 if s.breaker == "open" else 0.0)
        for state in ("closed", "probing", "open", "half-open"):
            breaker.add_metric([s.id, state], 1.0 if s.breaker == state else 0.0)
        if s.update_total is not None:
            update.add_metric([s.id, "replaced"], float(s.update_replaced))
            update.add_metric(
                [s.id, "remaining"], float(max(0, s.update_total - s.update_replaced))
            )
            update.add_metric([s.id, "paused"], 1.0 if s.update_paused else 0.0)
    return [instances, converged, degraded, breaker, update]


# --- what the recorder reads at scrape time ----------------------------------------------------


class QueueView(Protocol):
    """The work queue's numbers (:class:`infrakit.controller.queue.WorkQueue`)."""

    adds: int
    retries: int

    def depth(self) -> int: ...


class ControllerView(Protocol):
    """What a scrape reads of a group controller (:class:`~infrakit.controller.group.controller.
    GroupController`): its groups' numbers and its work queue."""

    @property
    def queue(self) -> QueueView: ...

    def snapshots(self) -> list[GroupSnapshot]: ...


def watch_controller(recorder: Recorder, current: Callable[[], ControllerView | None]) -> None:
    """Read the groups and the work queue from ``current()`` at each scrape: the controller of a
    group plugin, or whichever one the manager runs while it leads (None on a follower)."""

    def snapshots() -> list[GroupSnapshot]:
        controller = current()
        return [] if controller is None else controller.snapshots()

    def queue_number(read: Callable[[QueueView], int]) -> Callable[[], int]:
        def number() -> int:
            controller = current()
            return 0 if controller is None else read(controller.queue)

        return number

    recorder.snapshots = snapshots
    recorder.queue_depth = queue_number(lambda q: q.depth())
    recorder.queue_adds = queue_number(lambda q: q.adds)
    recorder.queue_retries = queue_number(lambda q: q.retries)


# --- timing what the controller calls -------------------------------------------------------


class _Timed:
    """Times each awaited call into :meth:`Recorder.plugin_call`; anything else (``subscribe``,
    ``label``, ``info``) passes through untimed."""

    def __init__(self, plugin: Any, name: str, recorder: Recorder) -> None:
        self._plugin = plugin
        self._name = name
        self._recorder = recorder

    async def _timed(self, method: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        failed = True
        try:
            result = await call
            failed = False
            return result
        finally:
            self._recorder.plugin_call(self._name, method, time.perf_counter() - started, failed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)


class TimedInstance(_Timed):
    """An instance plugin whose calls are timed (the group controller's lookups wrap each)."""

    _plugin: spi_instance.Plugin

    async def validate(self, properties: JSON) -> None:
        await self._timed("Validate", self._plugin.validate(properties))

    async def provision(self, spec: spi_instance.Spec) -> str | None:
        return await self._timed("Provision", self._plugin.provision(spec))

    async def destroy(self, instance: str, context: spi_instance.Context) -> None:
        await self._timed("Destroy", self._plugin.destroy(instance, context))

    async def describe_instances(
        self, tags: Tags, properties: bool = False
    ) -> list[spi_instance.Description]:
        return await self._timed(
            "DescribeInstances", self._plugin.describe_instances(tags, properties)
        )


class TimedFlavor(_Timed):
    """A flavor plugin whose calls are timed (see :class:`TimedInstance`)."""

    _plugin: spi_flavor.Plugin

    async def validate(self, properties: JSON, allocation: spi_flavor.AllocationMethod) -> None:
        await self._timed("Validate", self._plugin.validate(properties, allocation))

    async def prepare(
        self,
        properties: JSON,
        spec: spi_instance.Spec,
        allocation: spi_flavor.AllocationMethod,
        index: spi_flavor.Index,
    ) -> spi_instance.Spec:
        return await self._timed(
            "Prepare", self._plugin.prepare(properties, spec, allocation, index)
        )

    async def healthy(self, properties: JSON, instance: spi_instance.Description) -> Health:
        return await self._timed("Healthy", self._plugin.healthy(properties, instance))

    async def drain(self, properties: JSON, instance: spi_instance.Description) -> None:
        await self._timed("Drain", self._plugin.drain(properties, instance))


def timed_lookups(
    instance_lookup: InstanceLookup, flavor_lookup: FlavorLookup, recorder: Recorder
) -> tuple[InstanceLookup, FlavorLookup]:
    """The lookups a group controller is given, with every plugin call timed."""

    def instances(name: str) -> spi_instance.Plugin:
        return TimedInstance(instance_lookup(name), name, recorder)

    def flavors(name: str) -> spi_flavor.Plugin:
        return TimedFlavor(flavor_lookup(name), name, recorder)

    return instances, flavors


class TimedStore:
    """A spec store whose writes (``put``, ``delete``) are timed into
    :meth:`Recorder.store_write`; reads and everything else pass through."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self._store = store
        self._recorder = recorder

    async def _timed(self, call: Awaitable[None]) -> None:
        started = time.perf_counter()
        failed = True
        try:
            await call
            failed = False
        finally:
            self._recorder.store_write(time.perf_counter() - started, failed)

    async def get(self, key: str) -> Any | None:
        return await self._store.get(key)

    async def put(self, key: str, value: Any) -> None:
        await self._timed(self._store.put(key, value))

    async def delete(self, key: str) -> None:
        await self._timed(self._store.delete(key))

    async def list(self, prefix: str) -> dict[str, Any]:
        return await self._store.list(prefix)

    def describe(self) -> str:
        return self._store.describe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
