"""The group spec's sections as pydantic models: types, defaults and units of every field.

:mod:`infrakit.controller.group.spec` validates and parses a spec with them; it imports this
module only when a spec is first checked, so a daemon that starts with no group spec does not
load pydantic (~50 ms and ~8 MB of a start, docs/benchmarks.md). Keys are matched
case-insensitively like Go's decoder (:func:`canonical_keys`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from infrakit._utils.duration import parse_duration
from infrakit.spi import loadbalancer as spi_lb

__all__ = [
    "AllocationSection",
    "Duration",
    "GroupProperties",
    "HealthSection",
    "IngressSection",
    "Percent",
    "PluginSection",
    "ProvisioningSection",
    "UpdatingSection",
    "ValidationError",
    "canonical_keys",
    "submodel",
]


def _duration(value: Any) -> float:
    """A Go duration string or a number of seconds, as seconds (negative refused)."""
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def _percent_or_count(value: Any) -> int | str:
    """A non-negative count or a ``"0%"``..``"100%"`` string (MaxSurge, MaxUnavailable,
    MaxUnhealthy)."""
    if isinstance(value, bool):
        raise ValueError(
            f"expected a non-negative integer or a percentage like '25%', got {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            pass
        else:
            if 0 <= pct <= 100:
                return value
    raise ValueError(f"expected a non-negative integer or a percentage like '25%', got {value!r}")


Duration = Annotated[float, BeforeValidator(_duration)]
Percent = Annotated[int | str, BeforeValidator(_percent_or_count)]


class _Model(BaseModel):
    """Base of the spec sections: strict types, keys by their InfraKit (alias) names."""

    model_config = ConfigDict(strict=True, populate_by_name=False, frozen=True)


class AllocationSection(_Model):
    """``Allocation``: how many instances - ``Size`` (cattle) or ``LogicalIDs`` (pets)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    size: int = Field(0, alias="Size", ge=0)
    logical_ids: list[str] | None = Field(None, alias="LogicalIDs")


class PluginSection(_Model):
    """``Instance`` or ``Flavor``: the plugin's name and its opaque ``Properties``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    plugin: str = Field("", alias="Plugin")
    properties: Any = Field(None, alias="Properties")
    options: Any = Field(None, alias="Options")


class UpdatingSection(_Model):
    """``Updating``: how a rolling update proceeds (docs/group-spec.md#updating)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    #: InfraKit: new instances must stay healthy this many consecutive checks before the next step.
    count: int = Field(0, alias="Count", ge=0)
    #: InfraKit: new instances must stay healthy this long (seconds) before the next step.
    duration: Duration = Field(0.0, alias="Duration")
    #: InfraKit: ``"drain"`` skips Flavor.Drain before rolling-update destroys.
    skip_before_instance_destroy: Literal["drain"] | None = Field(
        None, alias="SkipBeforeInstanceDestroy"
    )
    #: Instances above Size allowed during an update (count or % of Size, rounded up). Default 1.
    max_surge: Percent = Field(1, alias="MaxSurge")
    #: Instances below Size allowed during an update (count or % of Size, rounded down). Default 0.
    max_unavailable: Percent = Field(0, alias="MaxUnavailable")
    #: Seconds a new instance must be healthy before it counts as ready. Default 0.
    min_ready_seconds: Duration = Field(0.0, alias="MinReadySeconds")
    #: Seconds without progress after which the update fails (0 = never). Default 600 (10 min).
    progress_deadline: Duration = Field(600.0, alias="ProgressDeadline")
    #: Replace this many instances first, then pause until ``infrakit group promote``. Default 0.
    canary: int = Field(0, alias="Canary", ge=0)
    #: On failure (deadline, unhealthy new instances), return to the last spec that converged.
    auto_rollback: bool = Field(False, alias="AutoRollback")


class HealthSection(_Model):
    """``Health``: checking members and replacing unhealthy ones (docs/group-spec.md#health)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    #: Seconds between Flavor.Healthy sweeps over all members. Default 10.
    check_interval: Duration = Field(10.0, alias="CheckInterval")
    #: Seconds a new instance may stay Unknown before it counts as unhealthy. Default 600.
    startup_timeout: Duration = Field(600.0, alias="StartupTimeout")
    #: Seconds an instance must stay unhealthy before it is replaced. Default 300.
    unhealthy_timeout: Duration = Field(300.0, alias="UnhealthyTimeout")
    #: Stop remediating when more than this many (or %) are unhealthy at once. Default 100% (off).
    max_unhealthy: Percent = Field("100%", alias="MaxUnhealthy")


class ProvisioningSection(_Model):
    """``Provisioning``: parallelism, scale-in order, backoff and the circuit breaker
    (docs/group-spec.md#provisioning)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    #: Creates (Prepare + Provision) in flight at once, per group. Default 100.
    max_parallel: int = Field(100, alias="MaxParallel", ge=1)
    #: Scale-in order after undesired and unhealthy instances. Default Newest.
    delete_policy: Literal["Newest", "Oldest", "Random"] = Field("Newest", alias="DeletePolicy")
    #: Consecutive failures (failed creates, crash-looping instances) that open the breaker.
    max_failures: int = Field(5, alias="MaxFailures", ge=1)
    #: An instance that vanishes within this many seconds of creation counts as a failure.
    crash_loop_window: Duration = Field(30.0, alias="CrashLoopWindow")
    #: Seconds a degraded group waits before trying one create again. Default 300.
    cool_down: Duration = Field(300.0, alias="CoolDown")
    #: First retry delay after a failed create, doubled per failure (with 20% jitter). Default 1.
    backoff_initial: Duration = Field(1.0, alias="BackoffInitial")
    #: Largest retry delay. Default 60.
    backoff_max: Duration = Field(60.0, alias="BackoffMax")
    #: Seconds allowed for one Prepare + Provision before it counts as failed. Default 120.
    provision_timeout: Duration = Field(120.0, alias="ProvisionTimeout")
    #: Seconds a provisioned instance may take to appear in DescribeInstances; until then it
    #: counts toward the group (no duplicate creates), after that it counts as lost. Default 60.
    visibility_timeout: Duration = Field(60.0, alias="VisibilityTimeout")


def _route(value: Any) -> spi_lb.Route:
    """An L4 ``Route`` object, checked as Go checks it."""
    return spi_lb.route_from_wire(value, "Route")


class IngressSection(_Model):
    """``Ingress``: keep an L4 load balancer's backends equal to the group's members
    (docs/plugins/loadbalancer.md). Not part of the config hash: changing it rolls nothing."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True
    )
    #: The load balancer plugin (``loadbalancer`` or ``lb-web/TYPE``). Required.
    plugin: str = Field(alias="Plugin", min_length=1)
    #: Seconds a member to be destroyed drains (no new connections) before it is destroyed
    #: anyway, if its connections are not gone sooner. Default 30.
    drain_timeout: Duration = Field(30.0, alias="DrainTimeout")
    #: A route the balancer must have (published when missing); None: whatever it has.
    route: Annotated[Any, BeforeValidator(_route)] = Field(None, alias="Route")


class GroupProperties(_Model):
    """A group spec's ``Properties``: every section parsed, unknown top-level keys ignored as
    Go ignores them."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    allocation: AllocationSection = Field(default_factory=AllocationSection, alias="Allocation")
    instance: PluginSection = Field(default_factory=PluginSection, alias="Instance")
    flavor: PluginSection = Field(default_factory=PluginSection, alias="Flavor")
    updating: UpdatingSection = Field(default_factory=UpdatingSection, alias="Updating")
    health: HealthSection | None = Field(None, alias="Health")
    provisioning: ProvisioningSection = Field(
        default_factory=ProvisioningSection, alias="Provisioning"
    )
    ingress: IngressSection | None = Field(None, alias="Ingress")


#: Sections whose keys are matched case-insensitively; ``Properties`` / ``Options`` stay opaque.
_OPAQUE = {"Properties", "Options", "Route"}


def canonical_keys(model: type[BaseModel], data: Any) -> Any:
    """Rename keys of ``data`` to ``model``'s aliases case-insensitively (Go decoding), recursively."""
    if not isinstance(data, dict):
        return data
    by_lower: dict[str, tuple[str, Any]] = {}
    for field in model.model_fields.values():
        if field.alias:
            by_lower[field.alias.lower()] = (field.alias, field.annotation)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            continue
        match = by_lower.get(key.lower())
        if match is None:
            out[key] = value
            continue
        alias, annotation = match
        sub = submodel(annotation)
        out[alias] = value if alias in _OPAQUE or sub is None else canonical_keys(sub, value)
    return out


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field annotation, when the field is a section."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
