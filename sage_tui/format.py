"""Small text formatting shared by the screens."""

from __future__ import annotations

import math
import time

from rich.text import Text

STATUS_STYLES = {
    "queued": "dim",
    "running": "bold green",
    "stopped": "yellow",
    "finished": "bold blue",
    "failed": "bold red",
    "crashed": "bold magenta",
    "unresponsive": "bold black on yellow",  # its engine holds the run but stopped reporting
}
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.{max(1, digits - 1)}e}"
    return f"{value:.{digits}g}"


def clock_time(t: float | None, now: float) -> str:
    """A timestamp as HH:MM today, else MM-DD HH:MM."""
    if t is None:
        return "-"
    local, today = time.localtime(t), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    return time.strftime("%m-%d %H:%M", local)


def sparkline(values: list[float], width: int, low: float | None = None,
              high: float | None = None) -> str:
    """The last ``width`` values as block characters; a fixed range when given."""
    values = [v for v in values[-width:] if v is not None and math.isfinite(v)]
    if not values:
        return ""
    low = min(values) if low is None else low
    high = max(values) if high is None else high
    span = high - low
    if span <= 0:
        return SPARK_BLOCKS[0] * len(values)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[min(top, max(0, round((v - low) / span * top)))] for v in values)


def bar(fraction: float | None, width: int) -> str:
    """A text gauge: ████░░░░."""
    if fraction is None:
        return "░" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)
