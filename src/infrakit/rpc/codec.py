"""JSON bytes on the wire: msgspec in daemons (fast, exact big integers), key order preserved.

Every decoded number keeps its Python type: integers stay exact at any size (Go sends 63-bit
request ids), floats stay floats. ``loads`` raises ``ValueError`` for anything that is not JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["dumps", "dumps_line", "loads"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(obj: Any) -> bytes:
    """Compact JSON, keys in insertion order (so Go field order is kept)."""
    return _encoder.encode(obj)


def dumps_line(obj: Any) -> bytearray:
    """:func:`dumps` and a newline, encoded in place: a 3 MB reply is not copied to add it."""
    buffer = bytearray()
    _encoder.encode_into(obj, buffer)
    buffer += b"\n"
    return buffer


def loads(data: bytes | str) -> Any:
    """Decode JSON; ``ValueError`` (msgspec.DecodeError) if it is not JSON."""
    return _decoder.decode(data)
