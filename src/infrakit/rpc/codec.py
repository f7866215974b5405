"""JSON bytes on the wire: msgspec in daemons (fast, exact big integers), key order preserved.

Every decoded number keeps its Python type: integers stay exact at any size (Go sends 63-bit
request ids), floats stay floats. ``loads`` raises ``ValueError`` for anything that is not JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["dumps", "loads"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(obj: Any) -> bytes:
    """Compact JSON, keys in insertion order (so Go field order is kept)."""
    return _encoder.encode(obj)


def loads(data: bytes | str) -> Any:
    """Decode JSON; ``ValueError`` (msgspec.DecodeError) if it is not JSON."""
    return _decoder.decode(data)
