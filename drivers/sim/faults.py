"""Link fault injection for the simulated board, set by URL options.

Faults act on bytes and frames between the host and the simulated board, exactly where a real
cable or network would damage them, so reliability tests exercise the real host code paths.
They draw from their own random generator (``fault_seed``), never from the chip's, so a run
with faults consumes the same chip randomness as a clean run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaultSettings:
    """What to damage, and how often.

    Attributes:
        corrupt: probability that any one byte is flipped, in either direction.
        drop: probability that a reply is lost.
        delay_rate: probability that a reply is delayed.
        delay_s: how long a delayed reply is held back, in seconds.
        fault_seed: seed of the fault generator.
    """

    corrupt: float = 0.0
    drop: float = 0.0
    delay_rate: float = 0.0
    delay_s: float = 0.0
    fault_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("corrupt", "drop", "delay_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault option {name}={value} must be a probability in [0, 1]")
        if not 0.0 <= self.delay_s <= 60.0:
            raise ValueError(f"fault option delay_s={self.delay_s} must be within [0, 60] s")

    @property
    def active(self) -> bool:
        """True if any fault is switched on."""
        return self.corrupt > 0 or self.drop > 0 or (self.delay_rate > 0 and self.delay_s > 0)


@dataclass
class FaultCounters:
    """What the injector did (for reliability reports)."""

    bytes_corrupted: int = 0
    frames_corrupted_in: int = 0
    frames_corrupted_out: int = 0
    replies_dropped: int = 0
    replies_delayed: int = 0


class FaultInjector:
    """Applies :class:`FaultSettings` to incoming bytes and outgoing reply frames."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.counters = FaultCounters()
        self._rng = np.random.default_rng(settings.fault_seed)

    def _corrupt(self, data: bytes) -> bytes:
        p = self.settings.corrupt
        if p <= 0 or not data:
            return data
        n_bad = int(self._rng.binomial(len(data), p))
        if n_bad == 0:
            return data
        damaged = bytearray(data)
        positions = self._rng.integers(0, len(data), n_bad)
        flips = self._rng.integers(1, 256, n_bad, dtype=np.uint8)
        for position, flip in zip(positions.tolist(), flips.tolist(), strict=True):
            damaged[position] ^= flip
        self.counters.bytes_corrupted += n_bad
        return bytes(damaged)

    def incoming(self, data: bytes) -> bytes:
        """Bytes from the host as the board receives them."""
        damaged = self._corrupt(data)
        if damaged is not data:
            self.counters.frames_corrupted_in += 1
        return damaged

    def outgoing(self, frame: bytes) -> tuple[bytes | None, float]:
        """A reply as the host will receive it (``None`` if lost) and its delay in seconds."""
        s = self.settings
        if s.drop > 0 and self._rng.random() < s.drop:
            self.counters.replies_dropped += 1
            return None, 0.0
        delay = 0.0
        if s.delay_rate > 0 and s.delay_s > 0 and self._rng.random() < s.delay_rate:
            self.counters.replies_delayed += 1
            delay = s.delay_s
        damaged = self._corrupt(frame)
        if damaged is not frame:
            self.counters.frames_corrupted_out += 1
        return damaged, delay


def as_received(faults: FaultInjector | None, replies: list[bytes]) -> list[tuple[bytes, float]]:
    """The board's replies as the host receives them, each with its delay in seconds (lost
    ones left out); unchanged without ``faults``. One rule for every simulated transport."""
    if faults is None:
        return [(reply, 0.0) for reply in replies]
    received = []
    for reply in replies:
        damaged, delay = faults.outgoing(reply)
        if damaged is not None:
            received.append((damaged, delay))
    return received
