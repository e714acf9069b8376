"""Coefficients of a core's local digital processing unit (LDPU), shared by host and simulator.

The LDPU turns the two 12-bit ADC counters of each row into an int8 output, in float16
[LG p.3; KA §III-E]: per-ADC gain/offset FMAs that also subtract the counters, a per-channel
affine (batch norm, bias, drift scale), an optional ReLU, then int8 with saturation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from drivers.errors import LimitError

ROWS = 256
"""Default number of rows (outputs) per core, the HERMES core's 256. A board reports its own
in IDENTIFY (``Board.geometry.rows``); coefficient arrays may have any length, equal for all six."""

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
    if array.ndim != 1 or array.size == 0:
        raise LimitError(f"LDPU {name} must have shape (rows,), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise LimitError(f"LDPU {name} must be real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        as_f16 = array.astype(np.float16)
    if not np.all(np.isfinite(as_f16)):
        raise LimitError(
            f"LDPU {name} must be finite in float16 (|x| <= 65504), got "
            f"{array[~np.isfinite(as_f16)][:3]!r}"
        )
    as_f16.flags.writeable = False  # frozen as the dataclass: compiled tables are kept per object
    return as_f16


@dataclass(frozen=True, eq=False)
class LdpuCoefficients:
    """Per-row LDPU coefficients of one core, stored as float16 (one per row; 256 by default).

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
        lengths = {name: getattr(self, name).size for name in COEFFICIENT_FIELDS}
        if len(set(lengths.values())) != 1:
            raise LimitError(
                f"LDPU coefficient arrays must all have one length (the core's rows), got "
                f"{lengths}; build other sizes with identity(rows=...) or from_stacked"
            )
        if not isinstance(self.relu, bool | np.bool_):
            raise LimitError(f"LDPU relu must be a bool, got {self.relu!r}")
        object.__setattr__(self, "relu", bool(self.relu))

    @classmethod
    def identity(cls, rows: int = ROWS) -> LdpuCoefficients:
        """The power-on state of a core with ``rows`` rows: unit gains, zero offsets, no ReLU."""
        one, zero = np.ones(rows, np.float16), np.zeros(rows, np.float16)
        return cls(one, zero, one, zero, one, zero)

    @classmethod
    def from_stacked(cls, stacked: np.ndarray, *, relu: bool) -> LdpuCoefficients:
        """Build from a (6, rows) array in wire order (docs/protocol.md §3.6)."""
        stacked = np.asarray(stacked)
        if stacked.ndim != 2 or stacked.shape[0] != len(COEFFICIENT_FIELDS):
            raise LimitError(f"stacked LDPU coefficients must be (6, rows), got {stacked.shape}")
        return cls(**dict(zip(COEFFICIENT_FIELDS, stacked, strict=True)), relu=relu)

    @property
    def rows(self) -> int:
        """Number of rows the coefficients are for (the length of each array)."""
        return int(self.gain_pos.size)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The six coefficient arrays in wire order (docs/protocol.md §3.6)."""
        return tuple(getattr(self, name) for name in COEFFICIENT_FIELDS)

    @functools.cached_property
    def stacked_float32(self) -> np.ndarray:
        """The six arrays as float32 (6, rows) in wire order, made once (the arrays are
        read-only): the compiled LDPU chain's operand, asked for at every MVM."""
        table = np.stack([a.astype(np.float32) for a in self.arrays()])
        table.flags.writeable = False
        return table

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LdpuCoefficients):
            return NotImplemented
        return self.relu == other.relu and all(
            np.array_equal(a, b) for a, b in zip(self.arrays(), other.arrays(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def apply(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """int8 outputs of the chain for ADC counts ``positive``/``negative`` (..., 256).

        float16 with one rounding after every multiply and every add, in the order of the class
        docstring; counts above 2048 round to the float16 grid as the 12-bit → FP16 conversion
        does. Computed in float32 and rounded to float16 after each operation, which is exactly
        how numpy's own float16 arithmetic works (each float16 ufunc converts to float32,
        operates, and rounds back) but several times faster. Overflow to ±inf saturates to
        127 / −128; NaN (inf − inf) gives 0 (UNCONFIRMED: FP16 overflow behaviour of the
        silicon is not published).
        """
        f16, f32 = np.float16, np.float32

        def r16(x: np.ndarray) -> np.ndarray:
            return x.astype(f16).astype(f32)

        positive, negative = np.broadcast_arrays(np.asarray(positive), np.asarray(negative))
        # Rows whose gains and offsets are all zero output rint(affine_offset) whatever the
        # counts (0·count is exactly 0): skip their arithmetic (most rows of a small layer).
        active = np.flatnonzero(
            (self.gain_pos != 0) | (self.gain_neg != 0) | (self.offset_pos != 0)
            | (self.offset_neg != 0)
        )  # fmt: skip
        out = np.broadcast_to(self.affine_offset.astype(f32), positive.shape).copy()
        if self.relu:
            np.maximum(out, f32(0.0), out=out)
        if active.size:
            c = {name: getattr(self, name)[active].astype(f32) for name in COEFFICIENT_FIELDS}
            with np.errstate(over="ignore", invalid="ignore"):
                # Straight to float16 (float64 → float32 → float16 could round twice).
                p = positive[..., active].astype(f16).astype(f32)
                n = negative[..., active].astype(f16).astype(f32)
                p = r16(r16(p * c["gain_pos"]) + c["offset_pos"])
                n = r16(r16(n * c["gain_neg"]) + c["offset_neg"])
                y = r16(p - n)
                y = r16(r16(y * c["affine_scale"]) + c["affine_offset"])
                if self.relu:
                    np.maximum(y, f32(0.0), out=y)
            out[..., active] = y
        with np.errstate(invalid="ignore"):
            out = np.nan_to_num(np.rint(out), nan=0.0, posinf=127.0, neginf=-128.0)
        np.clip(out, -128.0, 127.0, out=out)
        return out.astype(np.int8)
