"""Rounding to float16 in compiled code: numba has no float16 arithmetic on the CPU, so values
are kept as float32 and rounded to float16's grid on their bits, exactly as numpy's
``astype(np.float16)`` rounds (round to nearest even, ±inf from 65520 on, subnormals on the 2⁻²⁴
grid, NaN kept; tested bit for bit). Used by the simulated chip's LDPU chain and by the host's
GDPU model, which both compute "float16 after every operation".
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

jit: Any = numba.njit(  # numba is untyped: the compiled functions are Any
    cache=True, nogil=True, fastmath=False, error_model="numpy"
)
"""The compile options of every float16 kernel (no fast-math: float32 operations in numpy's
order, so the results equal numpy's)."""

inline_jit: Any = numba.njit(
    cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always"
)
""":data:`jit`, and inlined into the compiled caller: the rounding helpers run once per short
row inside the float16 chains, where a call (and the array views it makes) cost more than
the rounding itself."""


@inline_jit
def round_float16(x: np.ndarray, bits: np.ndarray) -> None:
    """x ← float16(x) as float32, in place: round to nearest even on float16's grid, ±inf
    from 65520 on, subnormals on the 2⁻²⁴ grid, NaN kept (numpy's astype(float16)).

    ``bits`` is an int32 view of ``x``. Two branch-free passes (they vectorise): the normal
    range on the bits, then the subnormal range in float arithmetic (exact: powers of two)."""
    for j in range(x.size):
        v = bits[j]
        mag = v & 0x7FFFFFFF
        sign = v & np.int32(-0x80000000)
        rounded = sign | ((mag + 0xFFF + ((mag >> 13) & 1)) & ~0x1FFF)  # half even at bit 13
        result = v  # inf, NaN and the subnormal range: unchanged here
        if mag < 0x7F800000 and mag >= 0x38800000:
            result = rounded if mag < 0x477FF000 else sign | 0x7F800000  # ≥ 65520: ±inf
        bits[j] = result
    for j in range(x.size):
        value = x[j]
        if abs(value) < np.float32(2.0**-14):  # float16 subnormal: fixed quantum 2⁻²⁴
            value = np.rint(value * np.float32(2.0**24)) * np.float32(2.0**-24)
        x[j] = value


@inline_jit
def round_float16_from64(x: np.ndarray, out: np.ndarray) -> None:
    """out ← float16(x) as float64 for float64 ``x`` (flat arrays; ``out`` may be ``x``):
    numpy's ``x.astype(np.float16).astype(np.float64)``, rounded once from the double (going
    through float32 would round twice and differ at ties). NaN and ±inf kept."""
    round_float16_bits64(x.view(np.int64), out, out.view(np.int64))


@inline_jit
def round_float16_bits64(bits: np.ndarray, out: np.ndarray, out_bits: np.ndarray) -> None:
    """:func:`round_float16_from64` on views made by the caller: ``bits`` the int64 view of the
    input, ``out_bits`` that of ``out`` (a caller rounding many short rows makes them once).

    The normal range is rounded on the bits at bit 42 (float16 keeps 10 of double's 52
    mantissa bits); the subnormal range (|x| < 2⁻¹⁴) on the fixed 2⁻²⁴ quantum."""
    for j in range(bits.size):  # two branch-free passes, as round_float16 (they vectorise)
        v = bits[j]
        mag = v & 0x7FFFFFFFFFFFFFFF
        sign = v ^ mag
        rounded = sign | ((mag + 0x1FFFFFFFFFF + ((mag >> 42) & 1)) & ~np.int64(0x3FFFFFFFFFF))
        result = v  # inf, NaN and the subnormal range: unchanged here
        if mag < 0x7FF0000000000000 and mag >= 0x3F10000000000000:
            result = rounded if mag < 0x40EFFE0000000000 else sign | 0x7FF0000000000000
        out_bits[j] = result
    for j in range(out.size):
        value = out[j]
        if abs(value) < 2.0**-14:  # float16 subnormal: fixed quantum 2⁻²⁴
            value = np.rint(value * 16777216.0) * 2.0**-24
        out[j] = value
