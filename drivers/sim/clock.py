"""The one clock of the simulator: the simulated chip and the simulated station both read it.

Everything simulated reads ``clock.now_s`` (seconds since the clock started) for drift and
read-noise ages, temperatures and the like, and advances a :class:`VirtualClock` by its
modelled operation latencies (an MVM, a pulse, one power-line cycle of an SMU reading) and by
explicit advances (the board's CLOCK command, the station's ``SIM:CLOCk:ADVance``).

- :class:`VirtualClock`: explicit advances, plus optionally ``time_scale`` × the wall-clock
  time since construction (0, the default: purely virtual and deterministic; 1: it also follows
  real time, as the simulated station does when it serves a live bench session). Thread-safe:
  the station's server threads and a procedure may advance it at the same time.
- :class:`RealTimeClock`: follows ``time.monotonic()`` only and refuses to be advanced (the
  board's ``clock=real`` option: the host then sees a board without clock control).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from drivers.errors import DriverError, LimitError


class ClockNotAdvanceableError(DriverError, RuntimeError):
    """``advance()`` was called on a clock that follows real time."""


class Clock(Protocol):
    """What the simulated chip and instruments need of a clock."""

    @property
    def now_s(self) -> float:
        """Current time in s since the clock started."""
        ...

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time in s."""
        ...


class VirtualClock:
    """Simulated time in seconds: explicit advances plus ``time_scale`` × wall-clock time.

    Args:
        start_s: initial time in seconds (finite, >= 0).
        time_scale: virtual seconds added per wall-clock second (finite, >= 0); 0 (default)
            makes the clock move only by :meth:`advance`.
    """

    def __init__(self, start_s: float = 0.0, *, time_scale: float = 0.0) -> None:
        self._now_s = 0.0
        self._now_s = self._checked(start_s, "start_s")
        self.time_scale = self._checked(time_scale, "time_scale")
        self._wall_start = time.monotonic()
        self._lock = threading.Lock()

    @staticmethod
    def _checked(seconds: float, name: str) -> float:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise LimitError(f"{name} must be a number, got {seconds!r}") from None
        if not math.isfinite(value) or value < 0.0:
            raise LimitError(f"{name} must be finite and >= 0, got {seconds!r}")
        return value

    @property
    def now_s(self) -> float:
        """Current virtual time in seconds."""
        if self.time_scale == 0.0:
            return self._now_s
        return self._now_s + self.time_scale * (time.monotonic() - self._wall_start)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (finite, >= 0) and return the new time in s.

        Raises:
            LimitError: for a negative, NaN or infinite advance (nothing is changed).
        """
        step = self._checked(seconds, "advance")
        with self._lock:
            self._now_s += step
        return self.now_s

    def __repr__(self) -> str:
        return f"VirtualClock(now_s={self.now_s!r}, time_scale={self.time_scale!r})"


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
