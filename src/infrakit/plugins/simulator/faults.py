"""The simulator's fault settings: one schema, parsed with precise errors, layered by specificity.

A fault object (``"Faults"`` in instance or flavor Properties, the ``faults`` option, the control
file) looks like this; every key is optional and keys match case-insensitively, as Go decodes::

    {
      "ProvisionLatency": "200ms",     # each Provision takes this long
      "ProvisionFailureRate": 0.5,     # this fraction of Provisions fail (0..1)
      "DestroyFailureRate": 0,         # this fraction of Destroys fail (0..1)
      "DescribeLag": "2s",             # a new instance shows in DescribeInstances this much later
      "Lifetime": "5s",                # every instance dies exactly this long after it was created
      "MeanLifetime": "30s",           # ...or at random, this long on average (exponential)
      "Healthy": "unhealthy",          # the simulator flavor's answer: healthy|unhealthy|unknown
      "Hang": ["Provision"]            # these calls block until the fault is lifted
    }

``null`` or a missing key means "inherit from the layer below"; ``"0s"``, ``0`` and ``[]`` switch a
fault off. :meth:`Faults.over` puts one layer on top of another; :meth:`Faults.resolved` fills the
defaults (no faults at all, healthy). ``Lifetime`` and ``MeanLifetime`` are one setting (how
instances die): a layer that sets either replaces both of the layer below.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Any

from infrakit._utils.duration import format_duration, parse_duration
from infrakit.errors import SpecError
from infrakit.spi.types import Health

__all__ = [
    "FAULTS_EXAMPLE",
    "FAULTS_SCHEMA",
    "HANGABLE",
    "Faults",
    "parse_faults",
    "parse_health",
]


class Op(enum.StrEnum):
    """Calls that ``Hang`` can block, spelled as in the SPI."""

    VALIDATE = "Validate"
    PROVISION = "Provision"
    LABEL = "Label"
    DESTROY = "Destroy"
    DESCRIBE = "DescribeInstances"
    PREPARE = "Prepare"
    HEALTHY = "Healthy"
    DRAIN = "Drain"


HANGABLE = tuple(op.value for op in Op)
_OP_BY_LOWER = {op.value.lower(): op for op in Op} | {"describe": Op.DESCRIBE}

_HEALTH_WORDS = {
    "healthy": Health.HEALTHY,
    "unhealthy": Health.UNHEALTHY,
    "unknown": Health.UNKNOWN,
}

FAULTS_EXAMPLE: dict[str, Any] = {
    "ProvisionLatency": "200ms",
    "ProvisionFailureRate": 0.1,
    "DescribeLag": "2s",
    "MeanLifetime": "10m",
    "Healthy": "healthy",
    "Hang": [],
}

_DURATION = {"type": ["string", "number", "null"], "examples": ["500ms", "2s", 1.5]}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}

FAULTS_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "ProvisionLatency": {**_DURATION, "description": "each Provision takes this long"},
        "ProvisionFailureRate": {**_RATE, "description": "fraction of Provisions that fail"},
        "DestroyFailureRate": {**_RATE, "description": "fraction of Destroys that fail"},
        "DescribeLag": {
            **_DURATION,
            "description": "a new instance appears in DescribeInstances this much later",
        },
        "Lifetime": {**_DURATION, "description": "instances die this long after creation"},
        "MeanLifetime": {
            **_DURATION,
            "description": "instances die at random, this long after creation on average",
        },
        "Healthy": {
            "enum": ["healthy", "unhealthy", "unknown", None],
            "description": "what the simulator flavor answers to Healthy",
        },
        "Hang": {
            "type": ["array", "null"],
            "items": {"enum": list(HANGABLE)},
            "description": "calls that block until this fault is lifted",
        },
    },
}


@dataclass(frozen=True, slots=True)
class Faults:
    """One layer of fault settings; ``None`` fields inherit from the layer below."""

    provision_latency: float | None = None
    provision_failure_rate: float | None = None
    destroy_failure_rate: float | None = None
    describe_lag: float | None = None
    lifetime: float | None = None
    mean_lifetime: float | None = None
    healthy: Health | None = None
    hang: frozenset[Op] | None = None

    def over(self, below: Faults) -> Faults:
        """This layer on top of ``below``: every field set here wins."""
        merged = {
            f.name: getattr(self, f.name)
            if getattr(self, f.name) is not None
            else getattr(below, f.name)
            for f in dataclasses.fields(self)
        }
        if self.lifetime is not None or self.mean_lifetime is not None:
            merged["lifetime"] = self.lifetime
            merged["mean_lifetime"] = self.mean_lifetime
        return Faults(**merged)

    def resolved(self) -> Faults:
        """Every field set: the missing ones get the defaults (no fault at all, healthy)."""
        return Faults(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(_DEFAULTS, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def hangs(self, op: Op) -> bool:
        return op in (self.hang or frozenset())

    def to_wire(self) -> dict[str, Any]:
        """The JSON form (only the fields set), as written in state files and shown to users."""
        out: dict[str, Any] = {}
        for key, name in _FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name in _DURATIONS:
                out[key] = format_duration(value)
            elif name == "healthy":
                out[key] = value.name.lower()
            elif name == "hang":
                out[key] = sorted(op.value for op in value)
            else:
                out[key] = value
        return out


_DEFAULTS = Faults(
    provision_latency=0.0,
    provision_failure_rate=0.0,
    destroy_failure_rate=0.0,
    describe_lag=0.0,
    lifetime=0.0,
    mean_lifetime=0.0,
    healthy=Health.HEALTHY,
    hang=frozenset(),
)

#: Wire key -> field name.
_FIELDS = {
    "ProvisionLatency": "provision_latency",
    "ProvisionFailureRate": "provision_failure_rate",
    "DestroyFailureRate": "destroy_failure_rate",
    "DescribeLag": "describe_lag",
    "Lifetime": "lifetime",
    "MeanLifetime": "mean_lifetime",
    "Healthy": "healthy",
    "Hang": "hang",
}
_BY_LOWER = {key.lower(): key for key in _FIELDS}
_DURATIONS = {"provision_latency", "describe_lag", "lifetime", "mean_lifetime"}
_RATES = {"provision_failure_rate", "destroy_failure_rate"}


def parse_health(value: Any, what: str) -> Health:
    """``"healthy"`` / ``"unhealthy"`` / ``"unknown"`` (any case) -> :class:`Health`."""
    if isinstance(value, str) and value.lower() in _HEALTH_WORDS:
        return _HEALTH_WORDS[value.lower()]
    raise SpecError(f'{what}: expected "healthy", "unhealthy" or "unknown", got {_show(value)}')


def parse_faults(obj: Any, what: str = "Faults") -> Faults:
    """Validate one fault object (``None`` = no settings); errors name the field and the fix."""
    if obj is None:
        return Faults()
    if not isinstance(obj, dict):
        raise SpecError(
            f"{what}: expected a JSON object like {json.dumps(FAULTS_EXAMPLE)}, got {_show(obj)}"
        )
    values: dict[str, Any] = {}
    for raw_key, value in obj.items():
        key = _BY_LOWER.get(str(raw_key).lower())
        if key is None:
            raise SpecError(
                f"{what}.{raw_key}: unknown fault; expected one of {', '.join(_FIELDS)} "
                "(see docs/plugins/simulator.md)"
            )
        if value is None:
            continue
        name = _FIELDS[key]
        where = f"{what}.{key}"
        if name in _DURATIONS:
            try:
                values[name] = parse_duration(value)
            except (ValueError, TypeError) as exc:
                raise SpecError(f"{where}: {exc}") from None
        elif name in _RATES:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise SpecError(
                    f"{where}: expected a number from 0 to 1 (0.25 = one call in four fails), "
                    f"got {_show(value)}"
                )
            values[name] = float(value)
        elif name == "healthy":
            values[name] = parse_health(value, where)
        else:
            values[name] = _parse_hang(value, where)
    if values.get("lifetime") and values.get("mean_lifetime"):
        raise SpecError(
            f"{what}: give Lifetime (every instance dies at that age) or MeanLifetime "
            "(random deaths at that average age), not both"
        )
    return Faults(**values)


def _parse_hang(value: Any, where: str) -> frozenset[Op]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(f'{where}: expected a list of calls like ["Provision"], got {_show(value)}')
    ops: set[Op] = set()
    for item in value:
        op = _OP_BY_LOWER.get(item.lower()) if isinstance(item, str) else None
        if op is None:
            raise SpecError(
                f"{where}: {_show(item)} is not a call that can hang; "
                f"expected some of {', '.join(HANGABLE)}"
            )
        ops.add(op)
    return frozenset(ops)


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
