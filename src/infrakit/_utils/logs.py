"""Logging set-up for the daemons: human text on a terminal, one JSON object per line for machines.

``setup_logging(level, fmt)`` configures the root logger. ``fmt`` is ``text`` or ``json``; when
not given, ``INFRAKIT_LOG_FORMAT`` decides, and without it text (on a terminal and off one: JSON
only when asked for, e.g. by a systemd unit feeding a log pipeline). A JSON line carries ``time`` (RFC 3339, UTC), ``level``, ``logger``,
``message`` and the structured fields a record was given with ``extra=`` - ``group``,
``instance``, ``plugin``, ``event``, ``error`` - plus ``exception`` (the formatted traceback) when
there is one::

    {"time": "2026-12-02T06:10:01.123Z", "level": "INFO", "logger": "infrakit.controller...",
     "message": "cattle converged: 5 instance(s)", "group": "cattle", "event": "converged"}

Standard library only: every process may import it before anything else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

__all__ = ["FIELDS", "FORMATS", "JsonFormatter", "resolve_format", "setup_logging"]

#: Structured fields copied from a record into its JSON line when present (``extra=``).
FIELDS = ("group", "instance", "plugin", "event", "error")
#: Accepted values of ``--log-format`` / ``INFRAKIT_LOG_FORMAT``.
FORMATS = ("auto", "text", "json")
#: The text format (one line per record).
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        doc: dict[str, Any] = {
            "time": f"{stamp}.{int(seconds % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value not in (None, ""):
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def resolve_format(given: str | None) -> str:
    """``text`` or ``json``: ``given`` (a flag), else ``INFRAKIT_LOG_FORMAT``, else text
    (``auto`` means the same). Raises ValueError for anything else."""
    value = (given or os.environ.get("INFRAKIT_LOG_FORMAT") or "auto").strip().lower()
    if value not in FORMATS:
        raise ValueError(
            f"log format {value!r}: expected one of {', '.join(FORMATS)} "
            "(--log-format or INFRAKIT_LOG_FORMAT)"
        )
    return "text" if value == "auto" else value


def setup_logging(level: str | int = "INFO", fmt: str | None = None) -> str:
    """Configure the root logger on stderr; returns the format used (``text`` or ``json``)."""
    chosen = resolve_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return chosen
