"""Types shared by every SPI: interface versions, health, well-known tags, and wire-shape helpers.

This module is pure data: no I/O, no transport. The JSON helpers here describe *shapes* (which
key, which era) and are used by the per-SPI modules next to it; encoding to bytes happens in
``infrakit.rpc``.

Two wire eras exist (see docs/architecture.md and the protocol reference):

* ``Era.SEED`` - InfraKit of 2016: JSON-RPC 1.0-like envelope, string attachments, no ``Type`` /
  ``Name`` fields, config tag ``infrakit.config_sha``.
* ``Era.HEAD`` - InfraKit of 2018: JSON-RPC 2.0, object attachments, ``Type`` / ``Name``
  addressing, config tag ``infrakit.config.hash``. This is what infrakit speaks by default.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from dataclasses import dataclass
from typing import Any

from infrakit.errors import SpecError

__all__ = [
    "ADDRESS_TAG",
    "CONFIG_HASH_TAG",
    "CREATED_TAG",
    "CREATE_TOKEN_TAG",
    "GROUP_TAG",
    "JSON",
    "LOGICAL_ID_TAG",
    "SEED_CONFIG_TAG",
    "Era",
    "Health",
    "InterfaceSpec",
    "Tags",
    "ci_get",
    "ci_view",
    "format_timestamp",
    "parse_timestamp",
    "want_dict",
    "want_str",
    "want_tags",
]

#: Any JSON value, as decoded: dict / list / str / int / float / bool / None.
JSON = Any
#: Instance tags: string keys to string values.
Tags = dict[str, str]

#: The only membership selector: every instance of group G carries ``infrakit.group=G``.
GROUP_TAG = "infrakit.group"
#: HEAD-era config hash tag (lower-case base32 SHA-1, 32 chars).
CONFIG_HASH_TAG = "infrakit.config.hash"
#: SEED-era config hash tag (URL-safe base64 SHA-1, 28 chars). Read for adoption, never written.
SEED_CONFIG_TAG = "infrakit.config_sha"
#: HEAD pets carry their logical ID as a tag too.
LOGICAL_ID_TAG = "infrakit.logical_id"
#: When the group controller created the instance (RFC 3339, UTC, milliseconds). infrakit's own
#: addition, ignored by Go InfraKit: scale-in by DeletePolicy (Newest/Oldest) and the rolling
#: order use it, so they stay right after a controller restart. Absent = created elsewhere: oldest.
CREATED_TAG = "infrakit.created"
#: Which create made the instance (``<controller run>-<n>``), infrakit's own: a provider that
#: lists a new instance before its Provision call has returned is matched to that create, so the
#: instance is not counted twice (once listed, once in flight). Ignored by Go InfraKit.
CREATE_TOKEN_TAG = "infrakit.create_token"
#: Where an instance can be reached, ``HOST:PORT`` (``127.0.0.1:41234``) or a bare ``HOST``,
#: set by the instance plugin on the instances it describes (process: the port it allocated;
#: docker: the first published TCP port). infrakit's own: Go InfraKit's ``instance.Description``
#: has no address field, and a tag reaches clients of both eras (SEED has no Properties). The
#: ingress registers instances with a load balancer at this address.
ADDRESS_TAG = "infrakit.address"


def format_timestamp(seconds: float, timespec: str = "milliseconds") -> str:
    """Epoch ``seconds`` as RFC 3339 in UTC with a ``Z``: ``2026-12-01T14:03:05.123Z``.
    (``timespec``: ``milliseconds`` or ``microseconds``.) Every event and every created instance
    is stamped, so the date part is formatted once per second and reused."""
    whole = math.floor(seconds)
    global _last_second
    if _last_second[0] != whole:
        moment = _dt.datetime.fromtimestamp(whole, _dt.UTC)
        _last_second = (whole, moment.strftime("%Y-%m-%dT%H:%M:%S"))
    micros = min(999_999, round((seconds - whole) * 1_000_000))
    if timespec == "microseconds":
        return f"{_last_second[1]}.{micros:06d}Z"
    return f"{_last_second[1]}.{micros // 1000:03d}Z"


#: (epoch second, its ``YYYY-MM-DDTHH:MM:SS``) of the last stamp (see format_timestamp).
_last_second: tuple[int, str] = (-1, "")


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (``Z`` or an offset; naive means UTC), or None
    when ``text`` is not one (tags are user-writable: a bad one is ignored, not an error)."""
    try:
        moment = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


class Era(enum.Enum):
    """Which InfraKit generation a peer speaks."""

    SEED = "seed"
    HEAD = "head"


class Health(enum.IntEnum):
    """``Flavor.Healthy`` answer; the integers are the wire values."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


@dataclass(frozen=True, slots=True)
class InterfaceSpec:
    """An SPI name and version, e.g. ``Instance/0.6.1``. The handshake compares both exactly."""

    name: str
    version: str
    sub: str = ""

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" + (f"/{self.sub}" if self.sub else "")

    @classmethod
    def parse(cls, text: str) -> InterfaceSpec:
        """Parse ``Name/Version[/Sub]``."""
        parts = text.split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise SpecError(f"interface {text!r}: expected Name/Version, e.g. Instance/0.6.1")
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else "")

    def to_wire(self) -> dict[str, str]:
        return {"Name": self.name, "Version": self.version, "Sub": self.sub}


def ci_view(obj: Any, what: str) -> dict[str, Any]:
    """Return ``obj`` keyed by lower-cased keys, as Go's case-insensitive JSON decoding sees it.

    Go's ``encoding/json`` fills field ``LogicalID`` from ``"logicalid"`` or ``"LOGICALID"`` too,
    and when several keys fold to the same field the last one wins; so does this view.
    ``None`` (JSON null) is an empty object. Anything else that is not an object is a
    :class:`SpecError` naming ``what``.
    """
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SpecError(f"{what}: expected a JSON object, got {_json_type(obj)}")
    return {k.lower(): v for k, v in obj.items()}


def ci_get(view: dict[str, Any], key: str, default: Any = None) -> Any:
    """Look ``key`` up in a :func:`ci_view` (``key`` given in its wire spelling, e.g. ``"LogicalID"``)."""
    return view.get(key.lower(), default)


def want_str(value: Any, what: str, *, optional: bool = False, default: str = "") -> Any:
    """Check a JSON string field; ``None`` gives ``default`` (or ``None`` if ``optional``)."""
    if value is None:
        return None if optional else default
    if not isinstance(value, str):
        raise SpecError(f"{what}: expected a string, got {_json_type(value)}")
    return value


def want_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{what}: expected a JSON object, got {_json_type(value)}")
    return value


def want_tags(value: Any, what: str) -> Tags:
    """Check a ``{"k": "v"}`` map; null is empty. Non-string values are an error, as in Go."""
    tags = want_dict(value, what)
    for k, v in tags.items():
        if not isinstance(v, str):
            raise SpecError(f"{what}.{k}: expected a string tag value, got {_json_type(v)}")
    return tags


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
