"""Clocks injected into the simulated chip.

The chip reads ``clock.now_s`` (seconds since the clock started) for drift and read-noise
ages, and advances a :class:`VirtualClock` by its modelled operation latencies. A
:class:`RealTimeClock` follows ``time.monotonic()`` and cannot be advanced.
"""

from __future__ import annotations

import math
import time

from drivers.errors import LimitError


class ClockNotAdvanceableError(RuntimeError):
    """``advance()`` was called on a clock that follows real time."""


class VirtualClock:
    """Simulated time in seconds, moved only by :meth:`advance` (never by the wall clock).

    Args:
        start_s: initial time in seconds (finite, >= 0).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = 0.0
        self._now_s = self._checked(start_s, "start_s")

    @staticmethod
    def _checked(seconds: float, name: str) -> float:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise LimitError(f"{name} must be a number of seconds, got {seconds!r}") from None
        if not math.isfinite(value) or value < 0.0:
            raise LimitError(f"{name} must be finite and >= 0 s, got {seconds!r}")
        return value

    @property
    def now_s(self) -> float:
        """Current virtual time in seconds."""
        return self._now_s

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (finite, >= 0) and return the new time in s.

        Raises:
            LimitError: for a negative, NaN or infinite advance (nothing is changed).
        """
        self._now_s += self._checked(seconds, "advance")
        return self._now_s

    def __repr__(self) -> str:
        return f"VirtualClock(now_s={self._now_s!r})"


class RealTimeClock:
    """Wall-clock time in seconds since construction, from ``time.monotonic()``."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    @property
    def now_s(self) -> float:
        """Seconds elapsed since the clock was created."""
        return time.monotonic() - self._start

    def advance(self, seconds: float) -> float:
        """Always refused: real time cannot be advanced.

        Raises:
            ClockNotAdvanceableError: always.
        """
        raise ClockNotAdvanceableError("a real-time clock cannot be advanced")

    def __repr__(self) -> str:
        return f"RealTimeClock(now_s={self.now_s:.6f})"
