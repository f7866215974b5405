"""The config hash, byte-identical to Go InfraKit's, so a Go deployment is adopted without a roll.

A group's *configuration* is its ``Instance`` and ``Flavor`` sections, each reduced to
``{"Plugin": <string>, "Properties": <value or null>}``. ``Allocation``, ``Updating`` and
infrakit's ``Health`` / ``Provisioning`` sections are not hashed: resizing or retuning a group never
rolls its instances.

Algorithm (reference section 3.2, verified against the Go binaries' outputs):

1. Each reduced object is re-encoded like Go's ``json.MarshalIndent(v, "  ", "  ")`` after a
   round trip through a generic map: keys sorted bytewise, ``": "`` after keys, newline + prefix +
   one indent per level, ``{}``/``[]`` inline when empty, every number a float64 formatted the Go
   way (shortest round-trip digits, plain decimal for 1e-6 <= |x| < 1e21, otherwise ``1e+21`` /
   ``1e-7``), strings with Go's HTML-safe escapes.
2. SHA-1 over ``bytes(Instance) + bytes(Flavor)``.
3. HEAD tag ``infrakit.config.hash``: standard base32, lower case, ``=`` stripped (32 chars).
   SEED tag ``infrakit.config_sha``: URL-safe base64 with padding (28 chars).

Test vectors (docs/cattle.json): HEAD ``2nhlrx6jrrow6ic54ywvgga76wlob54g``, SEED
``006438mMXW8gXeYtUxgf9Zbg94Y=``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from infrakit.spi.types import CONFIG_HASH_TAG, SEED_CONFIG_TAG

__all__ = ["ConfigHash", "config_hash", "go_float", "go_marshal_indent"]

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_string(text: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe escapes, as Go does by default)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or ch in "<>&" or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # lone surrogate: Go writes U+FFFD for invalid UTF-8
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_float(value: float) -> str:
    """Format a float64 as Go's encoding/json does (Go >= 1.8)."""
    x = float(value)
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"JSON cannot encode {x!r}")
    magnitude = abs(x)
    if x == 0 or 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(x)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    mantissa, _, exponent = repr(x).partition("e")
    exp = int(exponent)
    sign = "+" if exp >= 0 else "-"
    # Go: at least two exponent digits, then "e-09" is cleaned to "e-9" (not for "e+").
    digits = f"{abs(exp):02d}" if exp >= 0 else str(abs(exp))
    return f"{mantissa}e{sign}{digits}"


def go_marshal_indent(value: Any, prefix: str = "  ", indent: str = "  ", depth: int = 0) -> str:
    """``json.MarshalIndent`` of a generic Go value (maps sorted, all numbers float64)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    newline = "\n" + prefix + indent * (depth + 1)
    closing = "\n" + prefix + indent * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        keys = sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass"))
        items = [
            _go_string(k) + ": " + go_marshal_indent(value[k], prefix, indent, depth + 1)
            for k in keys
        ]
        return "{" + newline + ("," + newline).join(items) + closing + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [go_marshal_indent(v, prefix, indent, depth + 1) for v in value]
        return "[" + newline + ("," + newline).join(items) + closing + "]"
    raise TypeError(f"cannot hash a {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ConfigHash:
    """Both encodings of one configuration's SHA-1."""

    head: str
    seed: str

    def matches(self, tags: dict[str, str]) -> bool:
        """True if an instance's tags say it runs this configuration (either era's tag)."""
        return tags.get(CONFIG_HASH_TAG) == self.head or tags.get(SEED_CONFIG_TAG) == self.seed


def config_hash(
    instance_plugin: str, instance_properties: Any, flavor_plugin: str, flavor_properties: Any
) -> ConfigHash:
    """The config hash of a group's Instance and Flavor sections, byte for byte as Go
    InfraKit computes it (both eras; docs/group-spec.md#the-config-hash has the test vectors)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for plugin, properties in (
        (instance_plugin, instance_properties),
        (flavor_plugin, flavor_properties),
    ):
        reduced = {"Plugin": plugin, "Properties": properties}
        digest.update(go_marshal_indent(reduced).encode("utf-8", "surrogatepass"))
    raw = digest.digest()
    return ConfigHash(
        head=base64.b32encode(raw).decode().lower().rstrip("="),
        seed=base64.urlsafe_b64encode(raw).decode(),
    )
