"""Model of the global digital processing unit (GDPU) LSTM cell, in float16 with int8 I/O.

[LG §III, Fig 1d; chip.md §1.6]: each of the 8 GDPU slices takes ≤ 256 int8 gate
pre-activations, 64 each of the gates I, A, F, O *interleaved across groups of 4 neighbouring bit
lines* (line 4j + g carries gate g of hidden unit j; see :func:`interleave_gates`), computes in
float16 and returns ≤ 64 int8 hidden outputs, keeping 64 cell states in float16 registers.

Per gate g ∈ (I, A, F, O):

* input FMA: x = in_scale_g·q + in_offset_g (q the int8 input);
* tanh by a piecewise-linear LUT: 17 comparators pick one of 18 bins, then one FMA
  slope·x + offset (:func:`tanh_lut`);
* post-tanh FMA with the published per-gate scale [0.5, 1.0, 0.5, 0.5] and offset
  [0.5, 0.0, 0.5, 0.5] (:data:`POST_SCALE`, :data:`POST_OFFSET`), so the sigmoid gates I, F, O
  compute σ(z) = 0.5 + 0.5·tanh(z/2) (the /2 is folded into in_scale) and A stays tanh.

Cell and hidden state (2 multipliers, 3 FMAs, one more tanh LUT): c ← f·c; c ← i·a + c;
h = o·tanh_lut(c); the output FMA scales h to int8 (round half to even, saturating at ±127:
that saturation is the hardware's int8 conversion, not a software clip).

The LUT breakpoints are UNCONFIRMED (chip.md §6). Ours: symmetric about 0,
±(0.255, 0.515, 0.751, 0.996, 1.274, 1.618, 2.106, 2.971) and 0, placed by a minimax search
(Nelder-Mead over the 8 positive breakpoints) during development; each inner bin holds the
minimax line of tanh over the bin (the chord, shifted by half its largest deviation, which is
optimal for a segment whose curvature keeps its sign), the two outer bins are constant
±(1 + tanh(2.971))/2. Maximum |tanh_lut(x) − tanh(x)| is 2.67e-3 in exact arithmetic and
2.94e-3 (at x = 0.751) with float16 coefficients and arithmetic (checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procedures.inference.gdpu_kernel import int8_codes, lstm_step
from procedures.inference.graph import GraphError, Lstm

N_GATES = 4
SLICE_UNITS = 64
"""Hidden units per GDPU slice (256 gate inputs / 4) [LG Fig 1d]."""
N_SLICES = 8
"""GDPU slices on the chip [LG §I; chip.md §1.1]."""

_POSITIVE_BREAKPOINTS = (0.255, 0.515, 0.751, 0.996, 1.274, 1.618, 2.106, 2.971)
TANH_BREAKPOINTS = np.array(
    [-b for b in reversed(_POSITIVE_BREAKPOINTS)] + [0.0] + list(_POSITIVE_BREAKPOINTS),
    dtype=np.float16,
)
"""The 17 comparator thresholds (float16, UNCONFIRMED: chosen by us, see the module doc)."""

POST_SCALE = np.array([0.5, 1.0, 0.5, 0.5], dtype=np.float16)
"""Post-tanh FMA scale for I, A, F, O [LG Fig 1d; chip.md §1.6]."""
POST_OFFSET = np.array([0.5, 0.0, 0.5, 0.5], dtype=np.float16)
"""Post-tanh FMA offset for I, A, F, O [LG Fig 1d; chip.md §1.6]."""
PRE_TANH_FACTOR = np.array([0.5, 1.0, 0.5, 0.5])
"""σ(z) = 0.5 + 0.5·tanh(z/2): the sigmoid gates halve their input before the LUT."""


def _lut_lines(breakpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bp = breakpoints.astype(np.float64)
    slopes = np.zeros(bp.size + 1)
    offsets = np.zeros(bp.size + 1)
    offsets[0] = -(1.0 + np.tanh(-bp[0])) / 2
    offsets[-1] = (1.0 + np.tanh(bp[-1])) / 2
    for i in range(bp.size - 1):
        lo, hi = bp[i], bp[i + 1]
        x = np.linspace(lo, hi, 2001)
        y = np.tanh(x)
        slope = (y[-1] - y[0]) / (hi - lo)
        offset = y[0] - slope * lo
        dev = y - (slope * x + offset)
        slopes[i + 1] = slope
        offsets[i + 1] = offset + (dev.max() + dev.min()) / 2
    return slopes.astype(np.float16), offsets.astype(np.float16)


TANH_SLOPES, TANH_OFFSETS = _lut_lines(TANH_BREAKPOINTS)
"""The 18 (slope, offset) pairs of the LUT bins, float16."""


_COMPILED_CONSTANTS = tuple(
    v.astype(np.float32)
    for v in (POST_SCALE, POST_OFFSET, TANH_BREAKPOINTS, TANH_SLOPES, TANH_OFFSETS)
)
"""The float16 constants as the compiled step takes them (float32 holding float16 values)."""


def _fma16(a: np.ndarray, b: object, c: object) -> np.ndarray:
    """float16 fused multiply-add: a·b + c with one rounding to float16 (via float32; the
    product of two float16 values is exact in float32)."""
    a32 = np.asarray(a, np.float16).astype(np.float32)
    b32 = np.asarray(b, np.float16).astype(np.float32)
    c32 = np.asarray(c, np.float16).astype(np.float32)
    return (a32 * b32 + c32).astype(np.float16)


def tanh_lut(x: np.ndarray) -> np.ndarray:
    """Piecewise-linear tanh of float16 ``x`` (17 comparators, 18 bins, one FMA), float16."""
    x16 = np.asarray(x, dtype=np.float16)
    bins = np.searchsorted(TANH_BREAKPOINTS, x16, side="right")
    return _fma16(TANH_SLOPES[bins], x16, TANH_OFFSETS[bins])


def interleave_gates(gate_major: np.ndarray) -> np.ndarray:
    """Reorder the last axis from gate-major (g·H + j) to interleaved (4j + g) (chip.md §1.6)."""
    z = np.asarray(gate_major)
    rows = z.shape[-1]
    if rows % N_GATES:
        raise GraphError(f"gate axis of length {rows} is not a multiple of 4")
    h = rows // N_GATES
    return z.reshape(*z.shape[:-1], N_GATES, h).swapaxes(-1, -2).reshape(z.shape)


def deinterleave_gates(interleaved: np.ndarray) -> np.ndarray:
    """Inverse of :func:`interleave_gates`: (4j + g) → (g·H + j) on the last axis."""
    z = np.asarray(interleaved)
    rows = z.shape[-1]
    if rows % N_GATES:
        raise GraphError(f"gate axis of length {rows} is not a multiple of 4")
    h = rows // N_GATES
    return z.reshape(*z.shape[:-1], h, N_GATES).swapaxes(-1, -2).reshape(z.shape)


def quantise_int8(x: np.ndarray, lsb: float) -> np.ndarray:
    """round(x / lsb) as int8, saturating at ±127 (the hardware int8 conversion)."""
    if not (np.isfinite(lsb) and lsb > 0):
        raise GraphError(f"int8 step must be positive and finite, got {lsb}")
    v = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(v.shape, np.int8)
    int8_codes(v.reshape(-1), float(lsb), out.reshape(-1))  # NaN (inf − inf upstream) → 0
    return out


@dataclass(frozen=True)
class GdpuLstmCell:
    """The GDPU LSTM cell for H hidden units (any H; the chip has 64 per slice, 8 slices).

    Args:
        hidden_size: H.
        gate_lsb: value of one int8 LSB of the gate pre-activations, per gate (I, A, F, O) or
            one number for all (float units of the pre-activation z).
        h_lsb: value of one int8 LSB of the hidden output (default 1/127: h ∈ (−1, 1)).
    """

    hidden_size: int
    gate_lsb: tuple[float, float, float, float]
    h_lsb: float = 1.0 / 127.0

    def __post_init__(self) -> None:
        if self.hidden_size < 1:
            raise GraphError(f"hidden_size must be >= 1, got {self.hidden_size}")
        lsb = np.broadcast_to(np.asarray(self.gate_lsb, dtype=np.float64), (N_GATES,))
        if not np.all(np.isfinite(lsb) & (lsb > 0)):
            raise GraphError(f"gate_lsb must be positive and finite, got {self.gate_lsb}")
        object.__setattr__(self, "gate_lsb", tuple(float(v) for v in lsb))
        if not (np.isfinite(self.h_lsb) and self.h_lsb > 0):
            raise GraphError(f"h_lsb must be positive and finite, got {self.h_lsb}")
        with np.errstate(over="raise"):
            in_scale = np.asarray(self.gate_lsb) * PRE_TANH_FACTOR
            if np.any(in_scale.astype(np.float16) == 0):
                raise GraphError(f"gate_lsb {self.gate_lsb} underflows float16")

    @property
    def in_scale(self) -> np.ndarray:
        """Per-gate input FMA scale (float16): LSB value × 0.5 for the sigmoid gates."""
        return (np.asarray(self.gate_lsb) * PRE_TANH_FACTOR).astype(np.float16)

    def initial_state(self, batch: int) -> np.ndarray:
        """Zero cell state (batch, H), float16."""
        return np.zeros((batch, self.hidden_size), dtype=np.float16)

    def step(self, gates: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step (compiled: :mod:`procedures.inference.gdpu_kernel`, bit-identical to
        :meth:`step_numpy`).

        Args:
            gates: int8 (batch, 4H) gate pre-activations, interleaved (4j + g).
            cell: float16 (batch, H) cell state.

        Returns:
            (h, cell): int8 (batch, H) hidden output and the new float16 cell state.
        """
        q = self._check(gates, cell)
        h_q, new_cell = self.step_on_grid(q, cell.astype(np.float32))
        return h_q, new_cell.astype(np.float16)

    def step_on_grid(self, gates: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` with the cell state as float32 values on float16's grid (exactly the
        float16 values): a sequence keeps its state so and skips two software float16
        conversions per step. ``gates`` int8 (batch, 4H), ``cell`` float32 (batch, H)."""
        q = self._check(gates, cell, np.float32)
        return lstm_step(
            np.ascontiguousarray(q.reshape(q.shape[0], self.hidden_size, N_GATES)),
            np.ascontiguousarray(cell),
            self.in_scale.astype(np.float32),
            *_COMPILED_CONSTANTS,
            np.float32(np.float16(1.0 / self.h_lsb)),
        )

    def _check(
        self, gates: np.ndarray, cell: np.ndarray, cell_type: type = np.float16
    ) -> np.ndarray:
        q = np.asarray(gates)
        h = self.hidden_size
        if q.dtype != np.int8 or q.ndim != 2 or q.shape[1] != N_GATES * h:
            raise GraphError(
                f"GDPU gates must be int8 (batch, {N_GATES * h}), got {q.dtype} {q.shape}"
            )
        if cell.shape != (q.shape[0], h) or cell.dtype != cell_type:
            raise GraphError(
                f"GDPU cell state must be {np.dtype(cell_type).name} ({q.shape[0]}, {h}), got "
                f"{cell.dtype} {cell.shape}"
            )
        return q

    def step_numpy(self, gates: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` in numpy float16 (the readable form, and the reference the compiled
        step is tested against)."""
        q = self._check(gates, cell)
        h = self.hidden_size
        z = q.reshape(q.shape[0], h, N_GATES)  # [unit, gate]
        x = _fma16(z.astype(np.float16), self.in_scale, np.float16(0))
        t = tanh_lut(x)
        g = _fma16(t, POST_SCALE, POST_OFFSET)
        i, a, f, o = (g[..., k] for k in range(N_GATES))
        new_cell = _fma16(i, a, (f * cell).astype(np.float16))
        h_float = (o * tanh_lut(new_cell)).astype(np.float16)
        out = _fma16(h_float, np.float16(1.0 / self.h_lsb), np.float16(0))
        h_q = np.clip(np.rint(out.astype(np.float32)), -127, 127).astype(np.int8)
        return h_q, new_cell


def initial_lstm_state(node: Lstm, cell: GdpuLstmCell, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell state float16 (batch, H), hidden state int8 (batch, H)) at t = 0: the layer's
    constant initial states (zero when absent), c in the GDPU's float16 and h on its int8 grid."""
    hidden = cell.hidden_size
    c = cell.initial_state(batch)
    if node.initial_c is not None:
        c[:] = node.initial_c.astype(np.float16)
    h = np.zeros((batch, hidden), np.int8)
    if node.initial_h is not None:
        h[:] = quantise_int8(node.initial_h, cell.h_lsb)
    return c, h
