"""The compiled MVM kernel: the numpy kernel's GEMMs, then noise, ADC and counters in one pass.

Same physics and arithmetic as :class:`drivers.sim.mvm.NumpyMvmKernel` (equations in
:mod:`drivers.sim.mvm`): the GEMMs are the same BLAS calls on the active input columns and the
read rows (:func:`~drivers.sim.mvm.one_phase_gemms`, :func:`~drivers.sim.mvm.four_phase_gemms`);
what follows them (noise draw, noise scaling, the ADC transfer f = a·i/(1 + b·i) + c, saturation,
counter floor, the split into positive and negative counter) runs in one compiled loop per output
row block instead of a dozen numpy passes over every element, in the same float32 operations in
the same order (no fast-math: no reassociation, no fused multiply-add), so with the noise left
out both kernels give identical counts (tested). The GEMM inputs ([x+; x−], x², x·|x|) are built
in one compiled pass that gathers the active columns, exact like numpy's. When no input of a
batch is negative, the x− products are left out (:func:`_four_phase_products`): they are exact
zeros, and so are their conversions' currents.

The float16 LDPU chain (:meth:`NumbaMvmKernel.ldpu`) is compiled as well: numba has no float16
arithmetic on the CPU, so :func:`drivers.float16.to_float16` rounds float32 to the float16
grid after every operation (in hardware where the CPU converts to half precision; half to even,
±inf from 65520 on, subnormals on the 2⁻²⁴ grid, NaN kept), tested bit-identical to numpy's
``astype(float16)`` and the chain to :meth:`drivers.ldpu.LdpuCoefficients.apply`.

Noise. The numpy kernel's Box–Muller normals (:mod:`drivers.sim.fastnormal`) cost more than the
GEMMs of a four-phase MVM; here the normals are counter-based: word w of a core's call is
SplitMix64(key + (w + 1)·γ) (Steele, Lea & Flood 2014; the generator passes BigCrush, and this
*is* its sequence, only indexed instead of iterated), with key one 64-bit word from the core's
generator per call. The word's two 32-bit halves k1, k2 give the Box–Muller pair (z =
√(−2 ln u1)·cos 2πu2, then ·sin), u1 = (k1 + ½)·2⁻³², u2 = k2·2⁻³², as in fastnormal, with ln,
cos and sin as float32 polynomials (the atanh series of ln on [√½, √2), Taylor series of sin and
cos on [−π/4, π/4]: truncation < 1e-7, about float32 rounding) so that the loops vectorise.
Conversion e = b·256 + row (batch index b) takes the cos (even row) or the sin (odd row) of
word ⌊e/2⌋ (one-phase) or both normals of words 2e and 2e + 1 (four-phase: x+·G+, x+·G−,
x−·G−, x−·G+ in that order, so that a batch with no negative input, whose x− conversions carry
no current, draws word 2e only): the noise of a read row depends only on the key, the row and
the batch index, not on which rows are read, which inputs are zero, or how the batch is split over
threads. Statistically the same as the numpy kernel's normals (tested: means and variances of
counts on fixed seeds), not the same bits.

Compiled with ``cache=True`` (the first call in a fresh environment compiles, 4–13 s on the
shared two-core machine, ``python -m benchmarks mvm`` reports it; later processes load the cache
in under a second) and ``nogil``: the worker threads of :mod:`drivers.sim.threads` run it in
parallel, one core or batch piece each (:meth:`NumbaMvmKernel.pieces`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from drivers.float16 import to_float16
from drivers.ldpu import LdpuCoefficients
from drivers.sim.adc import POSITIVE, AdcBank
from drivers.sim.mvm import (
    ROWS,
    Columns,
    CoreOperands,
    NumpyMvmKernel,
    RowRange,
    grouped_columns,
    row_range,
)
from drivers.sim.threads import BlasThreads, run_in_threads

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_LN2 = np.float32(math.log(2.0))
_SQRT2 = np.float32(math.sqrt(2.0))
_HALF_PI = np.float32(math.pi / 2)
_SQRT_HALF = np.float32(math.sqrt(0.5))
_TWO_M30 = np.float32(2.0**-30)
BATCH_BLOCK = 256
"""Batch rows per GEMM-and-pass block: a four-phase block's GEMM outputs (about 1.5 MB at 256
rows) are still in cache when the compiled pass reads them."""
NOISE_BLOCK = 512
"""Conversions per noise draw at most: a draw covers several batch rows when few output rows
are read (a loop over 10 rows costs as much to set up as one over 256)."""
SHORT_ROWS = 16
"""Read rows below which the four-phase pass without x− conversions is slower than the one that
converts zeros for them: its loop over the rows gets a 16-lane vector body that 10 rows never
enter (27 against 24 µs per 256 samples of 10 rows; 16 rows: 16 against 25 µs)."""
SPLIT_CONVERSIONS = 8192
"""Output rows × batch rows per thread below which a core's batch is not split over the worker
threads: a piece costs 10–20 ns per conversion here, a hand-off to a pool thread 50–100 µs."""
CALLER_LEAD = 2048
"""Output rows × batch rows that the calling thread takes more than a pool thread when one core's
batch is cut over the threads: the caller's piece starts at once, a pool thread's 25–60 µs later.
For the digits MLP's first layer, 16 more of its 359 samples: the forward pass's best and 5th
percentile 3–7 % lower than with 0, 1,024, 3,072 or 4,096 (alternated in one process, 2,000
calls each; 4,096 was best while the pass drew two noise words per conversion)."""

_jit: Any = numba.njit(  # numba is untyped: the compiled functions are Any
    cache=True, nogil=True, fastmath=False, error_model="numpy"
)


@_jit
def _scratch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Planar scratch of :func:`_box_muller` for ``n`` words (separate arrays, so that the
    compiler's alias checks pass and the loops vectorise)."""
    return (
        np.empty(n, np.float32),  # k1 + ½, then read as int32 bits
        np.empty(n, np.float32),  # exponent of k1 + ½
        np.empty(n, np.int32),  # mantissa of k1 + ½, as float32 bits in [1, 2)
        np.empty(n, np.float32),  # quadrant of the angle
        np.empty(n, np.float32),  # position in the quadrant, [0, 1)
    )


@_jit
def _box_muller(
    key: np.uint64,
    words: np.ndarray,
    offset: int,
    cos_out: np.ndarray,
    sin_out: np.ndarray,
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """cos_out[j], sin_out[j] ← the Box–Muller pair of word ``words[j] + offset``, j <
    words.size (module docstring)."""
    n = words.size
    k1, expo, mbits, quad, frac = scratch
    for j in range(n):
        z = key + (np.uint64(words[j] + offset) + np.uint64(1)) * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
        k1[j] = np.float32(np.int64(z & _LOW32)) + np.float32(0.5)  # int64 → float is fast
        k2 = np.int64(z >> np.uint64(32))
        quad[j] = np.float32(k2 >> 30)
        frac[j] = np.float32(k2 & 0x3FFFFFFF) * _TWO_M30
    bits = k1.view(np.int32)
    for j in range(n):
        word = bits[j]
        mbits[j] = (word & 0x7FFFFF) | 0x3F800000  # the mantissa as a float in [1, 2)
        expo[j] = np.float32(((word >> 23) & 0xFF) - 127)
    mantissa = mbits.view(np.float32)
    for j in range(n):
        e = expo[j]
        m = mantissa[j]
        if m > _SQRT2:
            m = m * np.float32(0.5)
            e = e + np.float32(1.0)
        s = (m - np.float32(1.0)) / (m + np.float32(1.0))
        s2 = s * s
        series = np.float32(1.0 / 7.0) + s2 * np.float32(1.0 / 9.0)
        series = np.float32(1.0 / 5.0) + s2 * series
        series = np.float32(1.0 / 3.0) + s2 * series
        series = np.float32(1.0) + s2 * series
        ln_m = np.float32(2.0) * s * series
        # −ln u1 = 32·ln 2 − ln(k1 + ½) = (32 − e)·ln 2 − ln m  (≥ 0 up to rounding)
        exp1 = (np.float32(32.0) - e) * _LN2 - ln_m
        radius = math.sqrt(max(np.float32(2.0) * exp1, np.float32(0.0)))
        quadrant = np.int32(quad[j])
        phi = (frac[j] - np.float32(0.5)) * _HALF_PI  # in [−π/4, π/4)
        p2 = phi * phi
        sin_phi = np.float32(1.0 / 362880.0)
        sin_phi = np.float32(-1.0 / 5040.0) + p2 * sin_phi
        sin_phi = np.float32(1.0 / 120.0) + p2 * sin_phi
        sin_phi = np.float32(-1.0 / 6.0) + p2 * sin_phi
        sin_phi = phi + phi * p2 * sin_phi
        cos_phi = np.float32(-1.0 / 3628800.0)
        cos_phi = np.float32(1.0 / 40320.0) + p2 * cos_phi
        cos_phi = np.float32(-1.0 / 720.0) + p2 * cos_phi
        cos_phi = np.float32(1.0 / 24.0) + p2 * cos_phi
        cos_phi = np.float32(-0.5) + p2 * cos_phi
        cos_phi = np.float32(1.0) + p2 * cos_phi
        # θ = (quadrant + ½)·π/2 + φ: cos and sin of the quadrant's middle are ±√½
        cos_mid = _SQRT_HALF * np.float32(1 - 2 * (((quadrant + 1) >> 1) & 1))
        sin_mid = _SQRT_HALF * np.float32(1 - 2 * (quadrant >> 1))
        cos_out[j] = radius * (cos_mid * cos_phi - sin_mid * sin_phi)
        sin_out[j] = radius * (sin_mid * cos_phi + cos_mid * sin_phi)


@_jit
def _fill_normals(key: np.uint64, first_word: int, out: np.ndarray) -> None:
    """out[:n] ← cos, out[n:] ← sin normals of words first_word..first_word + n − 1, n =
    out.size // 2 (for tests of the distribution)."""
    n = out.size // 2
    words = np.arange(first_word, first_word + n)
    _box_muller(key, words, np.int64(0), out[:n], out[n : 2 * n], _scratch(n))


@_jit
def _one_phase(
    i_ua: np.ndarray,
    var: np.ndarray,
    key: np.uint64,
    b_first: int,
    r0: int,
    a_mean: np.ndarray,
    a_diff: np.ndarray,
    b_mean: np.ndarray,
    b_diff: np.ndarray,
    c: np.ndarray,
    top: np.float32,
    pos: np.ndarray,
    neg: np.ndarray,
) -> int:
    """Noise, signed-mirror ADC transfer and counters of one-phase currents (batch, n).

    The conversion of batch index b, row r gets word b·128 + r // 2: its cos normal for an
    even row, its sin normal for an odd one (both normals of every pair used)."""
    nb, n = i_ua.shape
    first_word = r0 // 2
    per_row = (r0 + n - 1) // 2 - first_word + 1  # words of one batch row
    chunk = max(1, NOISE_BLOCK // per_row)  # batch rows per noise draw
    words = np.empty(min(chunk, nb) * per_row, np.int64)
    even = np.empty(words.size, np.float32)
    odd = np.empty(words.size, np.float32)
    z = np.empty(n, np.float32)
    scratch = _scratch(words.size)
    n_sat = 0
    for b in range(nb):
        t = (b % chunk) * per_row  # this row's words in the chunk
        if b % chunk == 0:
            rows = min(chunk, nb - b)
            for u in range(rows):
                for w in range(per_row):
                    words[u * per_row + w] = (b_first + b + u) * (ROWS // 2) + first_word + w
            m = rows * per_row
            _box_muller(key, words[:m], np.int64(0), even[:m], odd[:m], scratch)
        for j in range(n):
            w = t + (r0 + j) // 2 - first_word
            z[j] = even[w] if (r0 + j) % 2 == 0 else odd[w]
        for j in range(n):
            i = i_ua[b, j] + math.sqrt(var[b, j]) * z[j]
            mag = abs(i)
            num = mag * a_mean[j] + i * a_diff[j]
            den = mag * b_mean[j] + i * b_diff[j] + np.float32(1.0)
            f = num / den + c[j]
            if f >= top:
                n_sat += 1
            f = min(max(f, np.float32(0.0)), top)
            count = np.uint16(f)  # floor (f >= 0)
            if i >= np.float32(0.0):
                pos[b, j] = count
                neg[b, j] = 0
            else:
                pos[b, j] = 0
                neg[b, j] = count
    return n_sat


_ALL_COLUMNS = np.arange(ROWS)


def _taken(cols: Columns | None) -> np.ndarray:
    """The input columns the GEMMs see (:class:`~drivers.sim.mvm.Columns`), as indices: the
    compiled input builders gather them (numpy's take of 127 columns of 256 samples took 20 µs)."""
    if cols is None:
        return _ALL_COLUMNS
    if isinstance(cols.take, slice):
        return _ALL_COLUMNS[cols.take]
    return cols.take


@_jit
def _gather(row: np.ndarray, take: np.ndarray, codes: np.ndarray) -> None:
    """codes ← row[take], the columns of one batch row the GEMMs see (a separate pass: the loop
    that converts them then vectorises)."""
    for j in range(take.size):
        codes[j] = row[take[j]]


@_jit
def _one_phase_inputs(x: np.ndarray, take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`drivers.sim.mvm.one_phase_inputs` of the columns ``take`` of ``x`` in one pass
    (the same floats: exact)."""
    nb, k = x.shape[0], take.size
    x1 = np.empty((nb, 2 * k), np.float32)
    sq = np.empty((nb, k), np.float32)
    codes = np.empty(k, np.int8)  # a row's gathered inputs: the loop below then vectorises
    for b in range(nb):
        _gather(x[b], take, codes)
        for j in range(k):
            v = np.float32(codes[j])
            x1[b, j] = v
            x1[b, k + j] = abs(v)
            sq[b, j] = v * v
    return x1, sq


def _one_phase_products(
    matrices: tuple[np.ndarray, ...], x: np.ndarray, cols: Columns | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`drivers.sim.mvm.one_phase_gemms` with the inputs built by compiled code."""
    m1, v_sum = matrices
    x1, sq = _one_phase_inputs(x, _taken(cols))
    return x1 @ m1, sq @ v_sum


@_jit
def _four_phase_inputs(
    x: np.ndarray, take: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """:func:`drivers.sim.mvm.four_phase_inputs` of the columns ``take`` of ``x`` in one pass
    (the same floats: exact), and whether any input is negative. If none is (a first scan of
    ``x`` tells: a negative input of a column left out has a copy in ``take``), only x+ and x²
    are written: ``x4`` is then its x+ half, and x·|x| is x² itself, the same floats (19
    against 23 µs for 256 samples of 127 columns)."""
    nb, k = x.shape[0], take.size
    lowest = np.int8(0)
    for b in range(nb):
        for c in range(x.shape[1]):
            lowest = min(lowest, x[b, c])
    negative = bool(lowest < 0)
    x4 = np.empty((2 * nb if negative else nb, k), np.float32)
    sq = np.empty((nb, k), np.float32)
    xa = np.empty((nb, k), np.float32) if negative else sq
    codes = np.empty(k, np.int8)  # a row's gathered inputs: the loops below then vectorise
    if negative:  # two loop nests: a test inside the loop would not vectorise
        for b in range(nb):
            _gather(x[b], take, codes)
            for j in range(k):
                v = np.float32(codes[j])
                plus = max(v, np.float32(0.0))
                x4[b, j] = plus
                x4[nb + b, j] = plus - v
                sq[b, j] = v * v
                xa[b, j] = abs(v) * v
    else:
        for b in range(nb):
            _gather(x[b], take, codes)
            for j in range(k):
                v = np.float32(codes[j])
                x4[b, j] = v
                sq[b, j] = v * v
    return x4, sq, xa, negative


def _four_phase_products(
    matrices: tuple[np.ndarray, ...], x: np.ndarray, cols: Columns | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """:func:`drivers.sim.mvm.four_phase_gemms` as (x+ products, x− products, the variance
    forms). When no input is negative (ReLU outputs, pixels) the x− products are not computed:
    their conversions carry no current. They are then None (:func:`_four_phase` leaves those
    conversions out), or, for fewer than :data:`SHORT_ROWS` rows, a shared block of the exact
    zeros the products would be."""
    m4, v_sum, v_diff = matrices
    x4, sq, xa, negative = _four_phase_inputs(x, _taken(cols))
    if negative:
        nb = sq.shape[0]
        mk = x4 @ m4
        return mk[:nb], mk[nb:], sq @ v_sum, xa @ v_diff
    plus = x4 @ m4
    minus = None if v_sum.shape[1] >= SHORT_ROWS else _zero_block()[: plus.size].reshape(plus.shape)
    return plus, minus, sq @ v_sum, xa @ v_diff


@functools.cache
def _zero_block() -> np.ndarray:
    """Zeros for the x− products of a batch block of few rows (BATCH_BLOCK × 2·SHORT_ROWS at
    most), shared: nothing writes them (left writeable: a read-only array would compile a
    third _four_phase)."""
    return np.zeros(BATCH_BLOCK * 2 * SHORT_ROWS, np.float32)


@_jit
def _convert(
    i: np.float32, a: np.float32, b: np.float32, c: np.float32, top: np.float32
) -> np.float32:
    """ADC counts (float, clipped to 0..top) of a current i (µA): a·i/(1 + b·i) + c, in the
    order of :func:`drivers.sim.adc.convert_inplace`."""
    f = i * a / (i * b + np.float32(1.0)) + c
    return min(max(f, np.float32(0.0)), top)


@_jit
def _four_phase(
    plus: np.ndarray,
    minus: np.ndarray | None,
    s: np.ndarray,
    d: np.ndarray,
    key: np.uint64,
    b_first: int,
    r0: int,
    a: np.ndarray,
    bnl: np.ndarray,
    c: np.ndarray,
    top: np.float32,
    pos: np.ndarray,
    neg: np.ndarray,
) -> int:
    """Noise split, positive-mirror ADC transfer and counters of four-phase conversions.

    mk (2·batch, 2·n) = [plus; minus]: rows x+, then x−; columns [:n] G+, [n:] G−. P = x+·G+ and
    x−·G−, N = x+·G− and x−·G+; each counter's variance split over its two conversions in
    proportion to their mean currents (the numpy kernel's order of operations). ``plus`` and
    ``minus`` are the two halves of mk. ``minus`` None (no input negative) compiles a second
    version without the x− conversions: their current is zero, so their noise term is √0·z = 0
    and their count the ADC's count at zero current, the same bits as converting zeros.
    """
    nb = s.shape[0]
    n = s.shape[1]
    chunk = max(1, NOISE_BLOCK // n)  # batch rows per noise draw
    words = np.empty(min(chunk, nb) * n, np.int64)
    # the four normals of each conversion (1-D arrays: the same compiled _box_muller as
    # one-phase's, where rows of a 2-D array compiled a second one)
    z0, z1 = np.empty(words.size, np.float32), np.empty(words.size, np.float32)
    z2, z3 = np.empty(words.size, np.float32), np.empty(words.size, np.float32)
    scratch = _scratch(words.size)
    half = np.float32(0.5)
    idle = np.empty(n, np.float32)  # the count of a conversion of zero current (no noise)
    for j in range(n):
        idle[j] = _convert(np.float32(0.0), a[j], bnl[j], c[j], top)
    n_sat = 0
    for b in range(nb):
        t = (b % chunk) * n  # this row's conversions in the chunk
        if b % chunk == 0:
            rows = min(chunk, nb - b)
            for u in range(rows):
                first = 2 * ((b_first + b + u) * ROWS + r0)  # words 2e and 2e + 1 of e
                for j in range(n):
                    words[u * n + j] = first + 2 * j
            m = rows * n
            # np.int64: a literal 0 or 1 would compile one _box_muller per value
            _box_muller(key, words[:m], np.int64(0), z0[:m], z1[:m], scratch)
            if minus is not None:  # no x− conversions: word 2e + 1 is not drawn
                _box_muller(key, words[:m], np.int64(1), z2[:m], z3[:m], scratch)
        for j in range(n):
            # P: x+·G+ and x−·G−, var = (s + d)/2;  N: x+·G− and x−·G+, var = (s − d)/2
            aj, bj, cj = a[j], bnl[j], c[j]
            p1, n1 = plus[b, j], plus[b, n + j]
            if minus is None:  # resolved when compiled (a test here would not vectorise)
                p2 = n2 = np.float32(0.0)
            else:
                p2, n2 = minus[b, n + j], minus[b, j]
            var_p = max((s[b, j] + d[b, j]) * half, np.float32(0.0))
            var_p = var_p / max(p1 + p2, np.float32(1e-30))
            var_n = max((s[b, j] - d[b, j]) * half, np.float32(0.0))
            var_n = var_n / max(n1 + n2, np.float32(1e-30))
            p1 = _convert(p1 + math.sqrt(var_p * p1) * z0[t + j], aj, bj, cj, top)
            n1 = _convert(n1 + math.sqrt(var_n * n1) * z1[t + j], aj, bj, cj, top)
            if minus is None:  # no current: 0 + √0·z is 0, the count idle[j]
                p2 = n2 = idle[j]
            else:
                p2 = _convert(p2 + math.sqrt(var_p * p2) * z2[t + j], aj, bj, cj, top)
                n2 = _convert(n2 + math.sqrt(var_n * n2) * z3[t + j], aj, bj, cj, top)
            if p1 >= top:
                n_sat += 1
            if p2 >= top:
                n_sat += 1
            if n1 >= top:
                n_sat += 1
            if n2 >= top:
                n_sat += 1
            pos[b, j] = np.uint16(p1) + np.uint16(p2)
            neg[b, j] = np.uint16(n1) + np.uint16(n2)
    return n_sat


_FNV_PRIME = np.uint32(0x01000193)


@_jit
def _column_sets(x: np.ndarray) -> np.ndarray:
    """:func:`drivers.sim.mvm.column_sets` compiled: one pass hashes every column (32-bit FNV-1a
    over the batch, which vectorises across the columns) and flags the nonzero ones, then
    :func:`_sets_from_hashes` makes the answer exact."""
    nb, nc = x.shape
    hashes = np.full(nc, np.uint32(0x811C9DC5))
    bits = np.zeros(nc, np.int8)  # OR of a column's inputs: zero only if they all are
    for b in range(nb):
        for c in range(nc):
            v = x[b, c]
            hashes[c] = (hashes[c] ^ np.uint32(np.uint8(v))) * _FNV_PRIME
            bits[c] |= v
    return _sets_from_hashes(x, hashes, bits)


@_jit
def _sets_from_hashes(x: np.ndarray, hashes: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Column sets from column hashes: each nonzero column is taken to equal the first column
    of its hash (open addressing), which one pass in row order checks for every column at
    once (a column-by-column comparison strides through the batch: 240 µs for the 192
    replica columns of a batch of 1000, against 30 µs). A column that differs from the
    column its hash names (a hash collision) is compared in full with the sets found before
    it, in column order; so the answer is exact and numpy's whatever the hashes."""
    nb, nc = x.shape
    sets = np.full(nc, -1, np.int64)
    size = 1
    while size < 2 * nc:
        size *= 2
    table = np.full(size, -1, np.int64)  # each slot holds the first column of a hash
    for c in range(nc):
        if bits[c] == 0:
            continue
        slot = np.int64(hashes[c]) & (size - 1)
        while True:
            r = table[slot]
            if r < 0:
                table[slot] = c
                sets[c] = c
                break
            if hashes[r] == hashes[c]:
                sets[c] = r
                break
            slot = (slot + 1) & (size - 1)
    # the columns to check, as runs of consecutive columns whose sets' first columns are
    # consecutive too (a replica is a block): contiguous loads on both sides, in row order. A
    # run goes on through a zero column whose counterpart is zero too (the pixels a digit
    # never uses, in every copy): zeros compared with zeros differ nowhere.
    run_c = np.empty(nc, np.int64)
    run_r = np.empty(nc, np.int64)
    run_n = np.zeros(nc, np.int64)
    runs = 0
    for c in range(nc):
        r = sets[c]
        if runs > 0 and run_c[runs - 1] + run_n[runs - 1] == c:
            counterpart = run_r[runs - 1] + run_n[runs - 1]
            if (r >= 0 and r != c and r == counterpart) or (r < 0 and bits[counterpart] == 0):
                run_n[runs - 1] += 1
                continue
        if r < 0 or r == c:
            continue
        run_c[runs], run_r[runs], run_n[runs] = c, r, 1
        runs += 1
    differ = np.zeros(nc, np.int8)  # OR of the XORs with the set's first column
    for b in range(nb):
        for k in range(runs):
            c0, r0, n = run_c[k], run_r[k], run_n[k]
            acc, mine, first = differ[c0 : c0 + n], x[b, c0 : c0 + n], x[b, r0 : r0 + n]
            for t in range(n):  # on slices: this vectorises, indexing with c0 + t did not
                acc[t] |= mine[t] ^ first[t]
    for c in range(nc):
        if differ[c] == 0:
            continue
        sets[c] = c
        for r in range(c):  # the first earlier set with the same inputs, if any
            if sets[r] != r:
                continue
            equal = True
            for b in range(nb):
                if x[b, r] != x[b, c]:
                    equal = False
                    break
            if equal:
                sets[c] = r
                break
    return sets


@_jit
def _span_of_distinct(sets: np.ndarray) -> tuple[int, int, bool]:
    """(first used column, last used column + 1, whether no column repeats another) of
    :func:`_column_sets`' answer; (0, 0, True) if no column is used."""
    first, last, distinct = -1, -1, True
    for c in range(sets.size):
        if sets[c] < 0:
            continue
        if first < 0:
            first = c
        last = c
        if sets[c] != c:
            distinct = False
    return (0, 0, True) if first < 0 else (first, last + 1, distinct)


@_jit
def _set_members(sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first columns of the sets, members grouped by set, start of each set's members) of
    :func:`_column_sets`' answer, as :func:`drivers.sim.mvm.columns_from_sets` orders them
    (sets by their first column, members in column order): a counting sort."""
    nc = sets.size
    size = np.zeros(nc, np.int64)
    n_sets = 0
    for c in range(nc):
        if sets[c] >= 0:
            size[sets[c]] += 1
            if sets[c] == c:
                n_sets += 1
    reps = np.empty(n_sets, np.int64)
    starts = np.empty(n_sets, np.int64)
    fill = np.zeros(nc, np.int64)  # the next free place of each set's members
    i = 0
    used = 0
    for c in range(nc):
        if sets[c] == c:
            reps[i], starts[i], fill[c] = c, used, used
            used += size[c]
            i += 1
    members = np.empty(used, np.int64)
    for c in range(nc):
        r = sets[c]
        if r >= 0:
            members[fill[r]] = c
            fill[r] += 1
    return reps, members, starts


def active_columns(x: np.ndarray) -> Columns | None:
    """:func:`drivers.sim.mvm.active_columns` with the sets found by compiled code, and put in
    order by compiled code too (numpy's set-up costs took 10 µs of 46 for the digits MLP's
    pixels copied four times)."""
    sets = _column_sets(np.ascontiguousarray(x))
    first, last, distinct = _span_of_distinct(sets)
    if distinct:
        return None if (first, last) == (0, ROWS) else Columns(slice(first, last))
    return grouped_columns(*_set_members(sets))


class NumbaMvmKernel(NumpyMvmKernel):
    """The compiled MVM kernel (module docstring); operands and thread split as the numpy one."""

    def run(
        self,
        operands: Sequence[CoreOperands],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        mode: int,
        rngs: Sequence[np.random.Generator],
        *,
        window_ns: float,
        rows: RowRange | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Noisy MVMs: (positive, negative) uint16 counts (C, B, rows) and saturations
        (arguments as :meth:`NumpyMvmKernel.run`)."""
        pos, neg, _, n_sat = self._run(operands, adc, cores, x, mode, rngs, window_ns, rows, None)
        return pos, neg, n_sat

    def run_ldpu(
        self,
        operands: Sequence[CoreOperands],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        mode: int,
        rngs: Sequence[np.random.Generator],
        coefficients: Sequence[LdpuCoefficients],
        *,
        window_ns: float,
        rows: RowRange | None = None,
    ) -> tuple[np.ndarray, int]:
        """:meth:`run`, then each core's LDPU chain on every block of counts in the same worker
        job, while the block is still in cache: int8 (C, B, rows) and saturations (the same
        outputs as :meth:`run` followed by :meth:`ldpu`)."""
        _, _, out, n_sat = self._run(
            operands, adc, cores, x, mode, rngs, window_ns, rows, coefficients
        )
        assert out is not None
        return out, n_sat

    def _run(
        self,
        operands: Sequence[CoreOperands],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        mode: int,
        rngs: Sequence[np.random.Generator],
        window_ns: float,
        rows: RowRange | None,
        coefficients: Sequence[LdpuCoefficients] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        r0, r1 = row_range(rows)
        n = r1 - r0
        n_c, batch = x.shape[0], x.shape[1]
        pos = np.empty((n_c, batch, n), np.uint16)
        neg = np.empty((n_c, batch, n), np.uint16)
        out = None if coefficients is None else np.empty((n_c, batch, n), np.int8)
        tables = [] if coefficients is None else [c.stacked_float32 for c in coefficients]
        keys = [np.uint64(gen.bit_generator.random_raw()) for gen in rngs]
        top = np.float32(adc.saturation_counts(window_ns))
        if mode == 1:
            consts = [[v[r0:r1] for v in adc.signed_constants(int(c), window_ns)] for c in cores]
        else:
            consts = [
                [v[r0:r1] for v in adc.row_constants(int(c), POSITIVE, window_ns)] for c in cores
            ]

        pieces = self.pieces(n_c, batch, n)
        selections: dict[int, tuple[Columns | None, tuple[np.ndarray, ...]]] = {}

        def selection(k: int) -> tuple[Columns | None, tuple[np.ndarray, ...]]:
            """Columns and GEMM matrices of core k, over its whole batch (the same whatever the
            thread split)."""
            cols = active_columns(x[k])
            return cols, self.matrices(operands[k], mode, (r0, r1), cols)

        # a core whose batch is split over threads: found once, before; whole cores: in the
        # worker threads, in parallel
        split = {k for group in pieces for k, first, last in group if (first, last) != (0, batch)}
        with BlasThreads(1):  # small GEMMs: OpenBLAS's own threads only wait on each other
            selections.update({k: selection(k) for k in sorted(split)})

        def work(g: int, items: list[tuple[int, int, int]]) -> int:
            n_sat = 0
            for k, first, last in items:
                cols, matrices = selections[k] if k in selections else selection(k)
                # in blocks of the batch whose GEMM outputs stay in cache for the pass after
                for b0 in range(first, last, BATCH_BLOCK):
                    b1 = min(b0 + BATCH_BLOCK, last)
                    xk = x[k, b0:b1]
                    counts = (pos[k, b0:b1], neg[k, b0:b1])
                    if mode == 1:
                        i_ua, var = _one_phase_products(matrices, xk, cols)
                        n_sat += _one_phase(i_ua, var, keys[k], b0, r0, *consts[k], top, *counts)
                    else:
                        products = _four_phase_products(matrices, xk, cols)
                        n_sat += _four_phase(*products, keys[k], b0, r0, *consts[k], top, *counts)
                    if out is not None:
                        relu = coefficients[k].relu  # type: ignore[index]
                        _ldpu_chain_into(tables[k], relu, *counts, out[k, b0:b1])
            return n_sat

        n_sat = run_in_threads(work, pieces, self.threads)
        return pos, neg, out, n_sat

    def pieces(
        self, n_cores: int, batch: int, n_rows: int = ROWS
    ) -> list[list[tuple[int, int, int]]]:
        """(core position, batch start, batch stop) per worker thread: whole cores when they
        share out evenly, else every core's batch cut into one piece per thread (unless a piece
        would be under :data:`SPLIT_CONVERSIONS`: a thread hand-off costs more), the pieces
        shared out in equal numbers; one core's first piece, the caller's, larger by
        :data:`CALLER_LEAD`. The noise does not depend on the split (module docstring)."""
        even = n_cores % self.threads == 0
        parts = 1 if even or batch * n_rows < SPLIT_CONVERSIONS * self.threads else self.threads
        cuts = [batch * p // parts for p in range(parts + 1)]
        if n_cores == 1 and parts > 1:  # the caller starts at once, a pool thread later
            cuts[1] = min(cuts[1] + CALLER_LEAD // n_rows, (cuts[1] + cuts[2]) // 2)
        items = [
            (k, cuts[p], cuts[p + 1])
            for k in range(n_cores)
            for p in range(parts)
            if cuts[p + 1] > cuts[p]
        ]
        groups: list[list[tuple[int, int, int]]] = [[] for _ in range(self.threads)]
        for i, item in enumerate(items):
            groups[i * self.threads // len(items)].append(item)
        return groups

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        """The float16 LDPU chain, compiled (bit-identical to the numpy one). The chip's MVMs
        apply it inside their worker jobs instead (:meth:`run_ldpu`)."""
        return apply_ldpu_compiled(coefficients, positive, negative)


# ---- the float16 LDPU chain ----------------------------------------------------------------


@_jit
def _ldpu_chain_into(
    coefficients: np.ndarray,
    relu: bool,
    positive: np.ndarray,
    negative: np.ndarray,
    out: np.ndarray,
) -> None:
    """out ← int8 (batch, n) of the float16 LDPU chain (drivers/ldpu.py) for counts (batch, n) and
    coefficients (6, n) float32 in wire order: gain_pos, offset_pos, gain_neg, offset_neg,
    affine_scale, affine_offset. Every operation rounded to float16, as numpy's float16, in one
    pass per element (:func:`~drivers.float16.to_float16` keeps no buffer, so the loop over a
    row vectorises whatever its length)."""
    nb, n = positive.shape
    gp, op, gn, on = coefficients[0], coefficients[1], coefficients[2], coefficients[3]
    scale, shift = coefficients[4], coefficients[5]
    for b in range(nb):
        pos_row, neg_row, out_row = positive[b], negative[b], out[b]
        for j in range(n):
            p = to_float16(np.float32(pos_row[j]))  # the 12-bit counts to float16
            q = to_float16(np.float32(neg_row[j]))
            p = to_float16(to_float16(p * gp[j]) + op[j])
            q = to_float16(to_float16(q * gn[j]) + on[j])
            y = to_float16(to_float16(to_float16(p - q) * scale[j]) + shift[j])
            if relu:
                y = max(y, np.float32(0.0))
            if y != y:  # NaN (inf − inf)
                y = np.float32(0.0)
            out_row[j] = np.int8(np.rint(min(max(y, np.float32(-128.0)), np.float32(127.0))))


def apply_ldpu_compiled(
    coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """The LDPU chain of :meth:`drivers.ldpu.LdpuCoefficients.apply`, compiled: int8 outputs
    for counts (batch, rows) (tested bit-identical, overflow and NaN included)."""
    out = np.empty(positive.shape, np.int8)
    _ldpu_chain_into(coefficients.stacked_float32, coefficients.relu, positive, negative, out)
    return out
