"""Go-style durations (``500ms``, ``10s``, ``1m30s``), as InfraKit's flags and specs write them.

Bare numbers are seconds. Parsing errors are ``ValueError`` with the accepted form in the message;
callers wrap them into :class:`infrakit.errors.SpecError` with the field name.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str | float | int) -> float:
    """Return seconds. Accepts ``"1m30s"``, ``"500ms"``, ``"0"``, or a number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"duration {text!r}: expected e.g. 500ms, 10s, 1m30s")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration {text!r}: must not be negative")
        return float(text)
    s = text.strip()
    if not s:
        raise ValueError("duration '': expected e.g. 500ms, 10s, 1m30s")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"duration {text!r}: must not be negative")
        return value
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"duration {text!r}: expected e.g. 500ms, 10s, 1m30s")
    return total


def format_duration(seconds: float) -> str:
    """Format like Go's ``time.Duration.String`` for the common cases (``0s``, ``1.5s``, ``1m30s``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    out += f"{s:g}s"
    return out
