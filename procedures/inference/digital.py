"""Number formats of the digital post-processing: float16 (the chip's LDPU) or fixed point.

The chip's LDPU and GDPU compute in FP16 [LG p.3; chip.md §1.5]. The near-memory processing
unit of [NMPU abstract] does the same work in fixed point (139× faster, 7.8× smaller, −0.12 %
ResNet-9 accuracy). The executor runs the host-side digital steps (partial-sum aggregation,
residual adds, pooling, and, for fixed point, the whole LDPU chain from raw ADC counts) through
one :class:`NumberFormat`:

* :class:`Float16`: every operation rounds its result to float16, as numpy's float16 does and
  as ``drivers/sim/ldpu.py`` (the simulated LDPU) does, so the host emulation of an LDPU gives
  the very same int8 outputs as the board's.
* :class:`FixedPoint`: coefficients are 16-bit integers with one power-of-two exponent per
  array (as a fixed-point multiplier with a shift); intermediate values sit on a grid of
  ``lsb/2^fraction_bits`` of the tensor they belong to and saturate at ±2^(int_bits) of that
  grid (32-bit accumulators). The bit widths of the NMPU are not published (UNCONFIRMED):
  16-bit coefficients, 8 fractional bits below the int8 LSB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.float16 import round_float16_from64
from drivers.ldpu import COEFFICIENT_FIELDS, LdpuCoefficients
from procedures.inference.graph import GraphError


class NumberFormat:
    """Rounding rules of the digital unit."""

    name = "abstract"

    def coefficient(self, values: np.ndarray) -> np.ndarray:
        """``values`` as the unit stores them (float64 holding representable values)."""
        raise NotImplementedError

    def value(self, values: np.ndarray, lsb: float) -> np.ndarray:
        """An intermediate result rounded as the unit keeps it; ``lsb`` is the int8 step of the
        tensor the value belongs to (used by fixed point only)."""
        raise NotImplementedError

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        """int8 outputs (as float64) of an LDPU chain on raw counts (..., 256) in this format."""
        raise NotImplementedError


def int8_round(values: np.ndarray, relu: bool = False) -> np.ndarray:
    """The int8 conversion at a unit's output: round half to even, saturate to [−128, 127]
    (the hardware conversion, not a software clip); NaN → 0, ±inf saturate."""
    y = np.asarray(values, np.float64)
    if relu:
        y = np.maximum(y, 0.0)
    y = np.nan_to_num(np.rint(y), nan=0.0, posinf=127.0, neginf=-128.0)
    return np.clip(y, -128.0, 127.0)


class Float16(NumberFormat):
    """IEEE half precision after every operation (the chip)."""

    name = "float16"

    def coefficient(self, values: np.ndarray) -> np.ndarray:
        return _to_float16_grid(values)

    def value(self, values: np.ndarray, lsb: float) -> np.ndarray:
        return _to_float16_grid(values)

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        return coefficients.apply(positive, negative).astype(np.float64)


def _to_float16_grid(values: np.ndarray) -> np.ndarray:
    """float64 on float16's grid: ``astype(float16).astype(float64)`` (overflow to ±inf), compiled
    (numpy converts to float16 one element at a time in software; bit-identical, tested)."""
    v = np.ascontiguousarray(values, np.float64)
    out = np.empty(v.shape)
    round_float16_from64(v.reshape(-1), out.reshape(-1))
    return out


@dataclass(frozen=True)
class FixedPoint(NumberFormat):
    """Fixed point as in the NMPU [NMPU abstract]; bit widths UNCONFIRMED (see module doc)."""

    coefficient_bits: int = 16
    fraction_bits: int = 8
    int_bits: int = 31
    name = "fixed"

    def __post_init__(self) -> None:
        if not (4 <= self.coefficient_bits <= 32 and 0 <= self.fraction_bits <= 16):
            raise GraphError(
                f"fixed point needs 4..32 coefficient bits and 0..16 fraction bits, got "
                f"{self.coefficient_bits}, {self.fraction_bits}"
            )

    def coefficient(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, np.float64)
        largest = float(np.max(np.abs(v))) if v.size else 0.0
        if largest == 0:
            return np.zeros_like(v)
        top = 2 ** (self.coefficient_bits - 1) - 1
        exponent = int(np.ceil(np.log2(largest))) - (self.coefficient_bits - 1)
        if round(largest / 2.0**exponent) > top:  # a power of two would need one more bit
            exponent += 1
        step = 2.0**exponent
        return np.clip(np.rint(v / step), -top - 1, top) * step

    def value(self, values: np.ndarray, lsb: float) -> np.ndarray:
        step = lsb / 2**self.fraction_bits
        top = 2.0**self.int_bits - 1
        return np.clip(np.rint(np.asarray(values, np.float64) / step), -top - 1, top) * step

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        c = {
            name: self.coefficient(array.astype(np.float64))
            for name, array in zip(COEFFICIENT_FIELDS, coefficients.arrays(), strict=True)
        }
        p = np.asarray(positive, np.float64)
        n = np.asarray(negative, np.float64)
        # Integer counts times fixed-point gains are exact in a 32-bit accumulator; the affine
        # result lands on the output grid (1 int8 LSB = 1.0 here) with extra fraction bits.
        y = (c["gain_pos"] * p + c["offset_pos"]) - (c["gain_neg"] * n + c["offset_neg"])
        y = self.value(c["affine_scale"] * y + c["affine_offset"], 1.0)
        return int8_round(y, coefficients.relu)


FORMATS = {"float16": Float16, "fixed": FixedPoint}
"""Selectable digital post-processing formats by name."""


def number_format(name: str) -> NumberFormat:
    """The format called ``name`` ("float16" or "fixed")."""
    try:
        return FORMATS[name]()
    except KeyError:
        raise GraphError(f"digital format must be one of {sorted(FORMATS)}, got {name!r}") from None
