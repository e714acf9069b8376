"""The GDPU LSTM cell step compiled: the same float16 operations as
:meth:`procedures.inference.gdpu.GdpuLstmCell.step_numpy`, in the same order, each rounded to
float16 by :func:`drivers.float16.round_float16` (float32 arithmetic in between, as numpy's
float16 operations and the module's ``_fma16`` do), so the results are bit-identical (tested).

numpy converts to and from float16 in software, one element at a time; in the executor's LSTM
forward pass those conversions took 0.16 of 0.52 s per 1000 samples. Here the values stay
float32 on float16's grid and are rounded in place (in hardware where the CPU can:
:func:`drivers.float16.to_float16`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.float16 import inline_jit, jit, round_float16, round_float16_bits64


@jit
def _round(x: np.ndarray) -> None:
    flat = x.reshape(-1)
    round_float16(flat)


@jit
def _tanh_lut(
    x: np.ndarray, breakpoints: np.ndarray, slopes: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """slope·x + offset of x's bin (bin = breakpoints ≤ x; NaN in the last bin, as numpy's
    searchsorted puts it), rounded to float16."""
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    n_bp = breakpoints.size
    for k in range(flat.size):
        v = flat[k]
        b = 0
        for m in range(n_bp):  # sorted: the count of breakpoints <= v is the bin (no branches)
            b += breakpoints[m] <= v
        if v != v:
            b = n_bp
        out[k] = slopes[b] * v + offsets[b]
    _round(out)
    return out.reshape(x.shape)


@jit
def lstm_step(
    gates: np.ndarray,
    cell: np.ndarray,
    in_scale: np.ndarray,
    post_scale: np.ndarray,
    post_offset: np.ndarray,
    breakpoints: np.ndarray,
    slopes: np.ndarray,
    offsets: np.ndarray,
    out_scale: np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """One step: int8 gates (batch, H, 4) [unit, gate I A F O], float32 cell (batch, H) on the
    float16 grid; the float32 constants are float16 values. Returns (int8 h, new cell)."""
    nb, h, n_gates = gates.shape
    # The gates' transform depends only on the int8 code and the gate: 256 × 4 values, made
    # once per step with the very operations below and then looked up.
    codes = np.empty((256, n_gates), np.float32)
    for c in range(256):
        for g in range(n_gates):
            codes[c, g] = np.float32(c - 128) * in_scale[g] + np.float32(0.0)
    _round(codes)
    table = _tanh_lut(codes, breakpoints, slopes, offsets)
    for c in range(256):
        for g in range(n_gates):
            table[c, g] = table[c, g] * post_scale[g] + post_offset[g]
    _round(table)
    t = np.empty((nb, h, n_gates), np.float32)
    for b in range(nb):
        for j in range(h):
            for g in range(n_gates):
                t[b, j, g] = table[np.int32(gates[b, j, g]) + 128, g]
    forget = np.empty((nb, h), np.float32)
    for b in range(nb):
        for j in range(h):
            forget[b, j] = t[b, j, 2] * cell[b, j]
    _round(forget)
    new_cell = np.empty((nb, h), np.float32)
    for b in range(nb):
        for j in range(h):
            new_cell[b, j] = t[b, j, 0] * t[b, j, 1] + forget[b, j]
    _round(new_cell)
    out = _tanh_lut(new_cell, breakpoints, slopes, offsets)
    for b in range(nb):
        for j in range(h):
            out[b, j] = t[b, j, 3] * out[b, j]
    _round(out)
    for b in range(nb):
        for j in range(h):
            out[b, j] = out[b, j] * out_scale + np.float32(0.0)
    _round(out)
    h_q = np.empty((nb, h), np.int8)
    for b in range(nb):
        for j in range(h):
            v = np.rint(out[b, j])
            if np.isnan(v):
                h_q[b, j] = 0  # numpy's conversion of NaN to int8 on the reference machine
            else:
                h_q[b, j] = np.int8(min(max(v, np.float32(-127.0)), np.float32(127.0)))
    return h_q, new_cell


@jit
def gate_codes(projected: np.ndarray, hidden: np.ndarray, offset: np.ndarray, lsb: float) -> Any:
    """int8 gate codes (batch, 4H) of one step from the input and recurrent products (float64,
    units of the products' LSB) and the offsets: float16(float16(p + h) + offset), divided by
    ``lsb``, rounded half to even, ±127 at most, NaN → 0. The executor's float16 steps
    (``Float16.value`` twice, then ``int8_round`` and the clip to ±127), fused; bit-identical
    (tested). A row at a time through a buffer that stays in cache."""
    nb, n = projected.shape
    out = np.empty((nb, n), np.int8)
    row = np.empty(n, np.float64)
    bits = row.view(np.int64)
    for b in range(nb):
        for j in range(n):
            row[j] = projected[b, j] + hidden[b, j]
        _gate_row(row, bits, offset, lsb, out[b])
    return out


@jit
def gate_codes_from_partial(
    projected: np.ndarray, codes: np.ndarray, code_lsb: float, offset: np.ndarray, lsb: float
) -> Any:
    """:func:`gate_codes` with the recurrent product as one tile's int8 partial codes (batch,
    4H) and their LSB: its value float16(code·code_lsb) is formed here, as ``Float16.value``
    forms it for a partial held by one tile (bit-identical, tested)."""
    nb, n = projected.shape
    out = np.empty((nb, n), np.int8)
    row = np.empty(n, np.float64)
    bits = row.view(np.int64)
    hidden = np.empty(n, np.float64)
    hidden_bits = hidden.view(np.int64)
    for b in range(nb):
        for j in range(n):
            hidden[j] = np.float64(codes[b, j]) * code_lsb
        round_float16_bits64(hidden_bits, hidden, hidden_bits)
        for j in range(n):
            row[j] = projected[b, j] + hidden[j]
        _gate_row(row, bits, offset, lsb, out[b])
    return out


@inline_jit
def _gate_row(
    row: np.ndarray, bits: np.ndarray, offset: np.ndarray, lsb: float, out: np.ndarray
) -> None:
    """out ← int8 codes of float16(float16(row) + offset) / lsb (``bits``: row's int64 view)."""
    round_float16_bits64(bits, row, bits)
    for j in range(row.size):
        row[j] = row[j] + offset[j]
    round_float16_bits64(bits, row, bits)
    int8_codes(row, lsb, out)


@inline_jit
def int8_codes(x: np.ndarray, lsb: float, out: np.ndarray) -> None:
    """out ← round(x / lsb) half to even, saturated to ±127, NaN → 0, for flat float64 ``x``
    and int8 ``out``: ``quantise_int8`` in one pass (numpy's rint, nan_to_num and clip made
    four passes and three temporaries; bit-identical, tested)."""
    for j in range(x.size):
        y = np.rint(x[j] / lsb)
        if y != y:
            y = 0.0
        out[j] = np.int8(min(max(y, -127.0), 127.0))
