"""What ``infrakit group watch`` draws: a bounded view, whatever the group's size. Pure.

A live view of 10 000 instances cannot draw a row each (the terminal scrolls, the recent events
never reach the screen, each redraw costs seconds), so a frame is at most
``len(header) + rows + events + 6`` lines:

* the group's summary (``status_lines`` without its rows): desired / actual / healthy / pending /
  destroying, converged or not, the rolling update, the breaker;
* progress bars: the rolling update (replaced of total) and, while the group is not converged,
  the commit (actual of desired, pending counted);
* one line of instance counts (healthy, unhealthy, at an old config, destroying);
* at most ``rows`` instances that need attention (unhealthy, old config, being destroyed), then
  "... and N more";
* the last ``events`` events, always.

The Status it reads asks for only those rows (``Limit``, ``Filter: attention``), so neither the
plugin nor the wire carries 10 000 rows per refresh.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from typing import Any

from infrakit.spi.event import Event

__all__ = ["BAR_WIDTH", "EVENTS_SHOWN", "ROWS_SHOWN", "bar", "event_line", "watch_lines"]

#: Instance rows a frame shows at most (those needing attention).
ROWS_SHOWN = 10
#: Events a frame always shows (the newest last).
EVENTS_SHOWN = 8
#: Characters of a progress bar between its brackets.
BAR_WIDTH = 30


def bar(label: str, done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``label [#########.........]  30/100  30%`` (total 0 shows as done)."""
    done = max(0, min(done, total))
    filled = width if total <= 0 else round(width * done / total)
    percent = 100 if total <= 0 else int(100 * done / total)
    return f"{label:<9}[{'#' * filled}{'.' * (width - filled)}] {done:>5}/{total:<5} {percent:>3}%"


def event_line(event: Event, local: Callable[[str], str] | None = None) -> str:
    """One event as ``HH:MM:SS type message``, at the time it happened (a replayed event keeps
    its own time, not the time it was received)."""
    when = (local or _local_clock)(event.timestamp)
    return f"{when} {event.type:<20} {event.message or event.id}"


def _local_clock(stamp: str) -> str:
    try:
        moment = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp[11:19] or "--:--:--"
    return moment.astimezone().strftime("%H:%M:%S")


def watch_lines(
    header: Sequence[str],
    status: dict[str, Any],
    events: Sequence[str],
    *,
    rows: int = ROWS_SHOWN,
    events_shown: int = EVENTS_SHOWN,
) -> list[str]:
    """One frame: ``header`` (the summary lines), bars, counts, attention rows, last events."""
    lines = list(header)
    lines.extend(_bars(status))
    lines.append(_counts(status))
    lines.extend(_attention(status, rows))
    lines.append(f"Last events ({min(len(events), events_shown)} of {len(events)}):")
    recent = list(events[-events_shown:]) if events_shown > 0 else []
    lines.extend(f"  {line}" for line in recent)
    if not recent:
        lines.append("  (none yet)")
    return lines


def _bars(status: dict[str, Any]) -> list[str]:
    out = []
    update = status.get("Updating")
    if update:
        out.append(bar("update", int(update.get("Replaced") or 0), int(update.get("Total") or 0)))
    desired = int(status.get("Desired") or 0)
    actual = status.get("Actual")
    if not status.get("Converged") and isinstance(actual, int):
        pending = int(status.get("Pending") or 0)
        out.append(bar("commit", actual, desired) + (f"  (+{pending} pending)" if pending else ""))
    return out


def _counts(status: dict[str, Any]) -> str:
    checked = status.get("HealthChecked")
    health = (
        f"healthy {status.get('Healthy', 0)}, unhealthy {status.get('Unhealthy', 0)}"
        if checked
        else "health not checked"
    )
    return (
        f"Instances: {status.get('Actual') if status.get('Actual') is not None else 'unknown'}"
        f" - {health}, old config {status.get('OldConfig', 0)}, "
        f"destroying {status.get('Destroying', 0)}"
    )


def _attention(status: dict[str, Any], rows: int) -> list[str]:
    shown = (status.get("Instances") or [])[: max(0, rows)]
    total = int(status.get("InstancesTotal", len(status.get("Instances") or [])))
    if not total:
        return ["Needing attention: none"]
    out = [f"Needing attention ({total}):"]
    for r in shown:
        note = "destroying" if r.get("Destroying") else (r.get("Note") or "")
        out.append(
            f"  {r.get('ID', ''):<30} {r.get('Config', ''):<8} {r.get('Health', ''):<10} {note}"
        )
    if total > len(shown):
        out.append(f"  ... and {total - len(shown)} more (infrakit group describe)")
    return out
