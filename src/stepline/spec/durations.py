"""Human-readable durations (``250ms``, ``30s``, ``5m``, ``2h``, ``1d``) as seconds, and
rates (``50/min``) as events per second.

Config keys such as ``timeout`` accept either a number of seconds or such a string, so a
pipeline reads the way people talk about time.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` with the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive and finite, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly for tables: ``0.4s``, ``12.0s``, ``3m05s``, ``1h02m``."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: accepts ``5m`` or ``300`` and holds seconds as a float."""

_RATE_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


def parse_rate(value: object) -> float:
    """``50/min`` (or ``/s``, ``/h``) as events per second; ``ValueError`` otherwise."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or match.group(2) not in _RATE_PERIODS:
        raise ValueError(f"expected a rate such as 50/min, 5/s or 1000/h, got {value!r}")
    per_second = float(match.group(1)) / _RATE_PERIODS[match.group(2)]
    if not math.isfinite(per_second) or per_second <= 0:
        raise ValueError(f"a rate must be positive, got {value!r}")
    return per_second


Rate = Annotated[float, BeforeValidator(parse_rate)]
"""A pydantic field type: accepts ``50/min`` and holds events per second."""
