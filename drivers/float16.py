"""Rounding to float16 in compiled code: numba has no float16 arithmetic on the CPU, so values
are kept as float32 and rounded to float16's grid after every operation, exactly as numpy's
``astype(np.float16)`` rounds (round to nearest even, ±inf from 65520 on, subnormals on the 2⁻²⁴
grid, NaN kept; tested bit for bit). Used by the simulated chip's LDPU chain and by the host's
GDPU model, which both compute "float16 after every operation".

:func:`to_float16` converts float32 to half precision and back in hardware where the compile
target has the instructions (x86-64 with F16C: every AVX2 processor; one instruction each way,
vectorised), else on the bits in integer arithmetic. Both give numpy's value for every one of
the 2³² float32 bit patterns (checked once exhaustively; the tests check random patterns and
the boundaries on both paths). float64 inputs are rounded on the bits
(:func:`round_float16_from64`): float16 from double in one rounding has no x86 instruction.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic as numba_intrinsic

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

intrinsic: Any = numba_intrinsic  # typed as its call signature, which compiled callers do not use


def hardware_float16(context: Any) -> bool:
    """Whether numba's compile target converts float32 to half precision in hardware (x86-64
    with F16C). Without it LLVM calls a runtime helper that numba's JIT does not link (the
    process crashes), so this must hold before the conversion is emitted; the target's CPU
    features are the ones numba compiles for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` honoured,
    and part of numba's cache key, so a cached kernel never runs on a target without them)."""
    features = str(getattr(context.codegen(), "_tm_features", "") or "")
    return llvm.get_process_triple().startswith("x86_64") and "+f16c" in features.split(",")


@intrinsic
def _float32_bits(typingctx: Any, value: Any) -> Any:
    """The int32 bit pattern of a float32."""
    if value != types.float32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float32(typingctx: Any, bits: Any) -> Any:
    """The float32 of an int32 bit pattern."""
    if bits != types.int32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _float16_on_bits(value: np.float32) -> np.float32:
    """float16(value) as float32 in integer arithmetic (branch-free: it vectorises): the normal
    range rounded half to even at bit 13, ±inf from 65520 on, then the subnormal range on the
    fixed 2⁻²⁴ quantum (float arithmetic, exact: powers of two); inf and NaN unchanged."""
    v = _float32_bits(value)
    mag = v & 0x7FFFFFFF
    sign = v & np.int32(-0x80000000)
    rounded = sign | ((mag + 0xFFF + ((mag >> 13) & 1)) & ~0x1FFF)
    result = v
    if mag < 0x7F800000 and mag >= 0x38800000:
        result = rounded if mag < 0x477FF000 else sign | 0x7F800000
    out = _bits_float32(np.int32(result))
    if abs(out) < np.float32(2.0**-14):
        out = np.rint(out * np.float32(2.0**24)) * np.float32(2.0**-24)
    return out


float16_on_bits: Any = inline_jit(_float16_on_bits)
"""The integer-arithmetic path of :func:`to_float16`, compiled on its own (for tests)."""


@intrinsic
def to_float16(typingctx: Any, value: Any) -> Any:
    """float16(value) as float32 for a float32 ``value`` (module docstring): in hardware on a
    target with F16C, else :func:`float16_on_bits` inlined. Compiled code only."""
    if value != types.float32:
        return None
    signature = types.float32(types.float32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if hardware_float16(context):
            return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
        return context.compile_internal(builder, _float16_on_bits, sig, args)

    return signature, codegen


@inline_jit
def round_float16(x: np.ndarray) -> None:
    """x ← float16(x) as float32, in place, for a flat float32 array (:func:`to_float16`)."""
    for j in range(x.size):
        x[j] = to_float16(x[j])


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
