"""Strict validators for settable quantities (never clip: out of range is an error).

As in PyMeasure's ``strict_range``/``strict_discrete_set``, each takes ``(value, values)`` and
returns the value or raises; ours raise :class:`drivers.errors.LimitError` (a ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from drivers.errors import LimitError


def strict_range(value: Any, values: tuple[float, float]) -> float:
    """Accept a real number within ``[values[0], values[1]]``; refuse NaN and infinities."""
    low, high = values
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise LimitError(f"{value!r} is not a number") from None
    if not math.isfinite(value):
        raise LimitError(f"{value!r} is not finite")
    if not low <= value <= high:
        raise LimitError(f"{value!r} is outside the range [{low}, {high}]")
    return value


def strict_int_range(value: Any, values: tuple[int, int]) -> int:
    """Accept an integer (not a bool, not a float) within ``[values[0], values[1]]``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise LimitError(f"{value!r} is not an integer")
    number = int(value.__index__())
    low, high = values
    if not low <= number <= high:
        raise LimitError(f"{number} is outside the range [{low}, {high}]")
    return number


def strict_discrete_set(value: Any, values: Collection[Any]) -> Any:
    """Accept only one of ``values``."""
    if value not in values:
        raise LimitError(f"{value!r} is not one of {sorted(values)!r}")
    return value
