"""Coefficients of a core's local digital processing unit (LDPU), shared by host and simulator.

The LDPU turns the two 12-bit ADC counters of each row into an int8 output, in float16
[LG p.3; KA §III-E]: per-ADC gain/offset FMAs that also subtract the counters, a per-channel
affine (batch norm, bias, drift scale), an optional ReLU, then int8 with saturation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivers.errors import LimitError

ROWS = 256

COEFFICIENT_FIELDS = (
    "gain_pos",
    "offset_pos",
    "gain_neg",
    "offset_neg",
    "affine_scale",
    "affine_offset",
)
"""Names of the six per-row coefficient arrays, in wire order (docs/protocol.md §3.6)."""


def _coefficient(name: str, values: object) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (ROWS,):
        raise LimitError(f"LDPU {name} must have shape ({ROWS},), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise LimitError(f"LDPU {name} must be real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        as_f16 = array.astype(np.float16)
    if not np.all(np.isfinite(as_f16)):
        raise LimitError(
            f"LDPU {name} must be finite in float16 (|x| <= 65504), got "
            f"{array[~np.isfinite(as_f16)][:3]!r}"
        )
    return as_f16


@dataclass(frozen=True, eq=False)
class LdpuCoefficients:
    """Per-row LDPU coefficients of one core, stored as float16 (256 each).

    ``y = (gain_pos·P + offset_pos) − (gain_neg·N + offset_neg)``; ``y = affine_scale·y +
    affine_offset``; ``y = max(y, 0)`` if ``relu``; ``int8(round(y))`` saturated to [−128, 127].
    P and N are the positive and negative ADC counts (dimensionless counts).
    """

    gain_pos: np.ndarray = field(default_factory=lambda: np.ones(ROWS, np.float16))
    offset_pos: np.ndarray = field(default_factory=lambda: np.zeros(ROWS, np.float16))
    gain_neg: np.ndarray = field(default_factory=lambda: np.ones(ROWS, np.float16))
    offset_neg: np.ndarray = field(default_factory=lambda: np.zeros(ROWS, np.float16))
    affine_scale: np.ndarray = field(default_factory=lambda: np.ones(ROWS, np.float16))
    affine_offset: np.ndarray = field(default_factory=lambda: np.zeros(ROWS, np.float16))
    relu: bool = False

    def __post_init__(self) -> None:
        for name in COEFFICIENT_FIELDS:
            object.__setattr__(self, name, _coefficient(name, getattr(self, name)))
        if not isinstance(self.relu, bool | np.bool_):
            raise LimitError(f"LDPU relu must be a bool, got {self.relu!r}")
        object.__setattr__(self, "relu", bool(self.relu))

    @classmethod
    def identity(cls) -> LdpuCoefficients:
        """The power-on state: unit gains, zero offsets, no ReLU."""
        return cls()

    @classmethod
    def from_stacked(cls, stacked: np.ndarray, *, relu: bool) -> LdpuCoefficients:
        """Build from a (6, 256) array in wire order (docs/protocol.md §3.6)."""
        stacked = np.asarray(stacked)
        if stacked.shape != (len(COEFFICIENT_FIELDS), ROWS):
            raise LimitError(f"stacked LDPU coefficients must be (6, {ROWS}), got {stacked.shape}")
        return cls(**dict(zip(COEFFICIENT_FIELDS, stacked, strict=True)), relu=relu)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The six coefficient arrays in wire order (docs/protocol.md §3.6)."""
        return tuple(getattr(self, name) for name in COEFFICIENT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LdpuCoefficients):
            return NotImplemented
        return self.relu == other.relu and all(
            np.array_equal(a, b) for a, b in zip(self.arrays(), other.arrays(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]
