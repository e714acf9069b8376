"""The MVM kernel of the simulated chip: device conductances and int8 inputs in, ADC counts out.

The chip (:class:`drivers.sim.chip.SimulatedChip`) owns the device state and decides when a
core's matrices are stale; a kernel turns them into counts. The seam is :class:`MvmKernel`:

1. ``prepare(g_us, var_us2, read_voltage_mv=..., one_phase_asymmetry=...)`` turns one core's
   drifted conductances and read-noise variances (float32 (256, 256, 4) arrays, [row, col,
   device] with devices G1+, G2+, G1−, G2−) into whatever operands the kernel wants (an opaque
   object the chip caches per core);
2. ``run(operands, adc, cores, x, mode, rngs, window_ns=..., rows=...)`` runs a batch of MVMs
   on C cores: int8 inputs (C, B, 256), mode 1 or 4, one noise generator per core, the ADC bank
   for the row transfer, and the output rows the host reads (a range ``(start, stop)``, default
   all 256); it returns the positive and negative counts of those rows, uint16 (C, B, rows),
   and the number of saturated conversions;
3. ``run_ldpu(..., coefficients, ...)`` does the same and applies each core's LDPU chain
   (``ldpu``) to the counts: int8 outputs (C, B, rows) (the compiled kernel does it in the same
   worker jobs, block by block; a kernel without it gets ``run`` then ``ldpu`` from the chip).

:class:`NumpyMvmKernel` is the reference kernel (numpy + BLAS GEMMs, worker threads from
:mod:`drivers.sim.threads`); :class:`drivers.sim.mvm_numba.NumbaMvmKernel` is the compiled one
(the same GEMMs, then noise, ADC and counter in one compiled pass).
:func:`drivers.sim.mvm_choice.make_kernel` picks the compiled kernel when numba imports and the
numpy one otherwise, or the one named by ``mockchip://?kernel=numpy|numba|auto`` or the
environment variable ``CHIPCTL_MVM_KERNEL``.
The kernels keep the same physics, not the same bit pattern of the noise.

Work only where current flows [chip.md §1.3]: a column (input line) whose input is zero for the
whole batch drives no current and adds no read noise, so the GEMMs leave it out (its products
are exact zeros, so the sums over the others are bit-identical); columns that carry the same
inputs for the whole batch (a narrow matrix copied across a core) enter the GEMMs once with
their conductances summed (:func:`active_columns`); rows the host does not read are not
converted. The noise a read row gets depends only on the generator, the row and the
batch index, never on which inputs are zero or which other rows are read (tested).

Physics [LG p.3; KA; chip.md §1.3-1.4]: inputs are 8-bit PWM (sign + 7 bit, |x|/127 of the
128 ns window). The PWM current of each column is modelled by its time average over the window
(approximation: the CCO sees a time-varying current, its count is the integral of f(i(t));
with f nearly linear below saturation the difference is the B_NL term, ≲ 1 count). Row
current in µA: i = V_read·Σ_col G·x/127. Output-referred read noise: the device noise is
independent, so a conversion gets N(0, V²·Σ σ²·(x/127)²), one extra matmul with squared
inputs instead of a normal per device (DESIGN.md).

- Four-phase: four conversions (x+·G+, x+·G−, x−·G+, x−·G−), all at the same polarity through
  the row's positive mirror; P = (x+,G+) + (x−,G−), N = the other two. Each conversion
  saturates on its own. Noise: the exact per-counter variance (var_P = Σ σ+²x+² + σ−²x−², via
  two matmuls of sums and differences) is split between the counter's two conversions in
  proportion to their mean currents (var_k = var_P·μ_k/(μ1 + μ2), independent normals): the
  counter's total noise is exact, the split between its two conversions an approximation (it
  matters only where one conversion of a pair saturates or B_NL makes their slopes differ),
  which saves two of the four variance matmuls.
- One-phase: one conversion of the net current, routed to P (positive mirror) or N (negative
  mirror) by its sign. Devices whose product is negative (G+ with x−, G− with x+) are read at
  the opposite polarity, where the PCM I-V gives (1 − δ) of the current (δ =
  ``one_phase_asymmetry`` = 3 %, UNCONFIRMED; chip.md §1.3, Sarwat 2022): i = (1 − δ/2)·W·x +
  (δ/2)·(G+ + G−)·|x|, an input-dependent error the LDPU cannot calibrate, so one-phase is less
  accurate. The noise σ of the reverse-read devices is not scaled by (1 − δ) (6 % in their
  variance).

Determinism: the batch is split over the worker threads by a fixed rule (:meth:`NumpyMvmKernel.
split`); a core whose batch is split gets child generators spawned from its own generator, so
the noise depends only on that generator, never on thread timing.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from drivers.ldpu import LdpuCoefficients
from drivers.sim.adc import POSITIVE, AdcBank, convert_inplace
from drivers.sim.fastnormal import standard_normal_f32
from drivers.sim.ldpu import apply_ldpu
from drivers.sim.threads import BlasThreads, run_in_threads

ROWS = COLS = 256
DEVICES = 4

WorkItem = tuple[int, int, int, np.random.Generator]
"""(core position in the call, batch start, batch stop, generator)."""

RowRange = tuple[int, int]
"""Output rows [start, stop) the host reads."""


class MvmKernel(Protocol):
    """What the simulated chip needs of an MVM kernel (see the module docstring)."""

    def prepare(
        self,
        g_us: np.ndarray,
        var_us2: np.ndarray,
        *,
        read_voltage_mv: float,
        one_phase_asymmetry: float,
    ) -> Any:
        """Operands of one core from its drifted G (µS) and read-noise variance (µS²)."""
        ...

    def run(
        self,
        operands: Sequence[Any],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        mode: int,
        rngs: Sequence[np.random.Generator],
        *,
        window_ns: float,
        rows: RowRange | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(positive counts, negative counts, saturated conversions) of a batch of MVMs."""
        ...

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        """int8 outputs of the float16 LDPU chain for counts (batch, rows) of ``coefficients``'
        rows (:meth:`drivers.ldpu.LdpuCoefficients.apply` is the reference)."""
        ...

    def run_ldpu(
        self,
        operands: Sequence[Any],
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
        """int8 outputs (C, B, rows) of ``run`` followed by ``ldpu`` with each core's
        ``coefficients`` (already cut to ``rows``), and the saturated conversions."""
        ...


def row_range(rows: RowRange | None) -> RowRange:
    """``rows`` checked against the 256 rows of a core; None means all of them."""
    if rows is None:
        return (0, ROWS)
    start, stop = int(rows[0]), int(rows[1])
    if not 0 <= start < stop <= ROWS:
        raise ValueError(f"output rows [{start}, {stop}) are not a non-empty range within 0..256")
    return (start, stop)


@dataclass(frozen=True)
class Columns:
    """The input columns that enter the GEMMs of one batch (:func:`active_columns`).

    ``take`` selects the columns whose inputs the GEMMs see: every used column when no column
    repeats another, else one column per set of repeats; a slice when they are consecutive (a
    view of the inputs: numpy's take of 127 columns of 256 samples takes 20 µs). ``members``
    and ``starts`` then list every nonzero column grouped by set (set i is
    ``members[starts[i]:starts[i + 1]]``), and an operand's rows are summed per set:
    Σ_c x_c·M_c = x·Σ_{c∈set} M_c when the columns of a set carry the same inputs.
    """

    take: slice | np.ndarray
    members: np.ndarray | None = None
    starts: np.ndarray | None = None

    def rows_of(self, matrix: np.ndarray) -> np.ndarray:
        """The operand rows (one per input column, axis 0) the GEMMs use."""
        if self._summing is None:
            return matrix[self.take]
        # the sets' sums as one product with a 0/1 matrix (numpy's reduceat along rows is slow)
        return self._summing @ matrix

    @functools.cached_property
    def _summing(self) -> np.ndarray | None:
        """(sets, 256) float32 0/1 matrix: row i sums set i's operand rows (None: no sets)."""
        if self.members is None or self.starts is None:
            return None
        sizes = np.diff(np.append(self.starts, self.members.size))
        onehot = np.zeros((self.starts.size, COLS), np.float32)
        onehot[np.repeat(np.arange(self.starts.size), sizes), self.members] = 1
        return onehot

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for equal selections (to reuse the summed operands)."""
        if isinstance(self.take, slice):
            take: object = (self.take.start, self.take.stop)
        else:
            take = self.take.tobytes()
        members = b"" if self.members is None else self.members.tobytes()
        starts = b"" if self.starts is None else self.starts.tobytes()
        return (take, members, starts)


_REMEMBERED_BYTES = 8 * 2**20
"""Summed operand matrices kept per kernel at most (a 64-column four-phase set is 256 kB)."""
_PROBE_SAMPLES = 16  # batch rows compared first: distinct columns almost never agree on all


@dataclass(frozen=True)
class _Remembered:
    """A core's last column selection, and its summed GEMM matrices once asked for twice."""

    operands: weakref.ref[CoreOperands]
    selection: tuple[object, ...]
    matrices: tuple[np.ndarray, ...] | None

    @property
    def nbytes(self) -> int:
        return 0 if self.matrices is None else sum(m.nbytes for m in self.matrices)


def active_columns(x: np.ndarray) -> Columns | None:
    """The input columns that carry current in ``x`` (batch, 256); None if all of them, each
    different. A column zero for the whole batch is left out (its products are exact zeros, so
    the sums over the others are bit-identical). Columns that carry the same inputs for the
    whole batch (the executor copies a narrow matrix onto a core several times and its inputs
    with it) enter the GEMMs once, with their operand rows summed: the same sums in another
    float32 order (tested: within a count where a sum lands on a count boundary)."""
    return columns_from_sets(column_sets(x))


def column_sets(x: np.ndarray) -> np.ndarray:
    """For each column of ``x`` (batch, 256): −1 if it is zero for the whole batch, else the
    first column whose inputs equal its own for the whole batch (itself if none)."""
    sets = np.full(x.shape[1], -1, np.int64)
    used = np.flatnonzero(np.any(x != 0, axis=0))
    sets[used] = used
    if used.size < 2:
        return sets
    probe = x[np.linspace(0, x.shape[0] - 1, min(x.shape[0], _PROBE_SAMPLES)).astype(int)]
    first = _first_equal(probe[:, used])
    if np.all(first == np.arange(used.size)):
        return sets  # no two columns agree even on the probe: no repeats (the usual case)
    if not np.array_equal(x[:, used], x[:, used[first]]):
        first = _first_equal(x[:, used])  # agree on the probe, not everywhere: whole columns
    sets[used] = used[first]
    return sets


def _first_equal(columns: np.ndarray) -> np.ndarray:
    """For each column of ``columns`` (samples, k): the position of the first equal column."""
    as_bytes = np.ascontiguousarray(columns.T).view(np.dtype((np.void, columns.shape[0])))
    _, first, back = np.unique(as_bytes.ravel(), return_index=True, return_inverse=True)
    result: np.ndarray = first[back.ravel()]
    return result


def columns_from_sets(sets: np.ndarray) -> Columns | None:
    """The :class:`Columns` of :func:`column_sets`' answer: sets in the order of their first
    column, members in column order (the same order whichever way the sets were found)."""
    used = np.flatnonzero(sets >= 0)
    if used.size == 0:
        return Columns(slice(0, 0))
    first, last = int(used[0]), int(used[-1]) + 1
    reps = np.flatnonzero(sets == np.arange(sets.size))
    if reps.size == used.size:
        return None if (first, last) == (0, COLS) else Columns(slice(first, last))
    members = used[np.argsort(sets[used], kind="stable")]
    starts = np.searchsorted(sets[members], reps)
    return grouped_columns(reps, members, starts)


def grouped_columns(reps: np.ndarray, members: np.ndarray, starts: np.ndarray) -> Columns:
    """The :class:`Columns` of sets of repeated columns: their first columns ``reps`` (the
    GEMMs' inputs; a slice when consecutive, as copies of a block are), ``members`` grouped by
    set, ``starts`` of each set's members."""
    low, high = int(reps[0]), int(reps[-1]) + 1
    take = slice(low, high) if high - low == reps.size else reps
    return Columns(take=take, members=members, starts=starts)


def one_phase_inputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GEMM inputs of one-phase from int8 inputs (batch, k): [x, |x|] and x², float32."""
    k = xs.shape[1]
    x1 = np.empty((xs.shape[0], 2 * k), np.float32)
    x1[:, :k] = xs
    np.abs(x1[:, :k], out=x1[:, k:])
    return x1, np.square(x1[:, :k])


def four_phase_inputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GEMM inputs of four-phase from int8 inputs (batch, k): [x+; x−] (2·batch, k), x² and
    x·|x|, float32."""
    nb = xs.shape[0]
    xf = xs.astype(np.float32)
    x4 = np.empty((2 * nb, xs.shape[1]), np.float32)
    np.maximum(xf, np.float32(0.0), out=x4[:nb])
    np.subtract(x4[:nb], xf, out=x4[nb:])  # x− = max(x, 0) − x
    sq = np.square(xf)
    np.abs(xf, out=xf)
    xf *= xs
    return x4, sq, xf


def selected_columns(x: np.ndarray, cols: Columns | None) -> np.ndarray:
    """The inputs (batch, k) of the active columns ``cols`` (None: all), in row order (numpy's
    fancy indexing along the columns returns column order, slower to read row by row; the
    compiled kernel gathers the columns itself)."""
    if cols is None:
        return x
    if isinstance(cols.take, slice):
        return x[:, cols.take]
    return np.take(x, cols.take, axis=1)


def gemm_operands(
    op: CoreOperands, mode: int, rows: RowRange, cols: Columns | None
) -> tuple[np.ndarray, ...]:
    """The right-hand GEMM matrices of one core for the read ``rows`` and the active columns
    ``cols`` (:func:`active_columns`; None: all), made once per call and core: one-phase
    (m1, v_sum), four-phase (m4, v_sum, v_diff)."""
    r0, r1 = rows
    if mode == 1:
        if cols is None:
            return op.m1[:, r0:r1], op.v_sum[:, r0:r1]
        m1 = np.concatenate([cols.rows_of(op.m1[:COLS, r0:r1]), cols.rows_of(op.m1[COLS:, r0:r1])])
        return m1, cols.rows_of(op.v_sum[:, r0:r1])
    if cols is None:
        m4, v_sum, v_diff = op.m4, op.v_sum[:, r0:r1], op.v_diff[:, r0:r1]
    else:
        m4 = cols.rows_of(op.m4)
        v_sum, v_diff = cols.rows_of(op.v_sum[:, r0:r1]), cols.rows_of(op.v_diff[:, r0:r1])
    if (r0, r1) != (0, ROWS):
        m4 = np.concatenate([m4[:, r0:r1], m4[:, ROWS + r0 : ROWS + r1]], axis=1)
    return m4, v_sum, v_diff


def one_phase_gemms(
    matrices: tuple[np.ndarray, ...], x: np.ndarray, cols: Columns | None
) -> tuple[np.ndarray, np.ndarray]:
    """(signed mean current µA, noise variance µA²), float32 (batch, rows) for int8 ``x``.

    ``matrices`` from :func:`gemm_operands` for the same ``cols``: only the active input
    columns enter the GEMMs and only the read rows come out (the compiled kernel has its own,
    :func:`drivers.sim.mvm_numba._one_phase_products`).
    """
    m1, v_sum = matrices
    x1, sq = one_phase_inputs(selected_columns(x, cols))
    return x1 @ m1, sq @ v_sum


def four_phase_gemms(
    matrices: tuple[np.ndarray, ...],
    x: np.ndarray,
    cols: Columns | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four-phase currents (2·batch, 2·rows) and variance forms (Σσ²x², Σ(σ+²−σ−²)x|x|).

    Rows [:batch] are the x+ conversions, [batch:] the x− ones; columns [:n] are G+, [n:] G−
    for the n read rows. As :func:`one_phase_gemms`, only active columns and read rows (the
    compiled kernel has its own, :func:`drivers.sim.mvm_numba._four_phase_products`).
    """
    m4, v_sum, v_diff = matrices
    x4, sq, xa = four_phase_inputs(selected_columns(x, cols))
    return x4 @ m4, sq @ v_sum, xa @ v_diff


@dataclass
class CoreOperands:
    """Matmul-ready matrices of one core (µA per input LSB, µA² per LSB²), float32."""

    m1: np.ndarray  # (512, 256): one-phase mean, rows [x; |x|]
    m4: np.ndarray  # (256, 512): four-phase mean, columns [G+ | G−]
    v_sum: np.ndarray  # (256, 256): (σ+² + σ−²) for x²
    v_diff: np.ndarray  # (256, 256): (σ+² − σ−²) for x·|x|


class NumpyMvmKernel:
    """The reference MVM kernel: float32 GEMMs per core, elementwise ADC transfer, threads.

    Args:
        threads: worker threads (the batch and cores are split over them by a fixed rule).
    """

    def __init__(self, threads: int = 2) -> None:
        self.threads = max(1, int(threads))
        # per (core operands, mode, rows): the last selection asked for, and its summed
        # matrices once it was asked for twice in a row
        self._matrices: dict[tuple[object, ...], _Remembered] = {}
        self._matrices_lock = threading.Lock()

    def matrices(
        self, op: CoreOperands, mode: int, rows: RowRange, cols: Columns | None
    ) -> tuple[np.ndarray, ...]:
        """:func:`gemm_operands`, remembered for summed columns that a core is asked for again:
        a recurrent layer asks for the same selection at every step. Kept while the chip keeps
        the core's operands, at most :data:`_REMEMBERED_BYTES` in all, oldest dropped first."""
        if cols is None or cols.members is None:
            return gemm_operands(op, mode, rows, cols)  # views and slices: nothing to save
        slot, selection = (id(op), mode, rows), cols.key
        with self._matrices_lock:  # worker threads of one call ask for different cores
            last = self._matrices.pop(slot, None)
            if last is not None and (last.operands() is not op or last.selection != selection):
                last = None
            if last is not None and last.matrices is not None:
                self._matrices[slot] = last  # the newest again
                return last.matrices
        made = gemm_operands(op, mode, rows, cols)
        with self._matrices_lock:
            # the first time only the selection is noted: a one-off costs no memory
            kept = made if last is not None else None
            self._matrices[slot] = _Remembered(weakref.ref(op), selection, kept)
            while sum(entry.nbytes for entry in self._matrices.values()) > _REMEMBERED_BYTES:
                self._matrices.pop(next(iter(self._matrices)))
        return made

    # ---- operands ---------------------------------------------------------------------------

    def prepare(
        self,
        g_us: np.ndarray,
        var_us2: np.ndarray,
        *,
        read_voltage_mv: float,
        one_phase_asymmetry: float,
    ) -> CoreOperands:
        """Matrices of one core from G (µS) and σ_read² (µS²), float32 (256, 256, 4) each."""
        g4 = g_us.reshape(ROWS, COLS, DEVICES)
        v4 = var_us2.reshape(ROWS, COLS, DEVICES)
        g_pos = g4[..., 0] + g4[..., 1]
        g_neg = g4[..., 2] + g4[..., 3]
        v_pos = v4[..., 0] + v4[..., 1]
        v_neg = v4[..., 2] + v4[..., 3]
        k = read_voltage_mv * 1e-3 / 127.0  # µA per (µS · input LSB)
        delta = one_phase_asymmetry
        m1 = np.empty((2 * COLS, ROWS), np.float32)
        m1[:COLS] = ((1.0 - delta / 2) * k * (g_pos - g_neg)).T
        m1[COLS:] = ((delta / 2) * k * (g_pos + g_neg)).T
        m4 = np.empty((COLS, 2 * ROWS), np.float32)
        m4[:, :ROWS] = (k * g_pos).T
        m4[:, ROWS:] = (k * g_neg).T
        return CoreOperands(
            m1=m1,
            m4=m4,
            v_sum=np.ascontiguousarray((k * k * (v_pos + v_neg)).T, dtype=np.float32),
            v_diff=np.ascontiguousarray((k * k * (v_pos - v_neg)).T, dtype=np.float32),
        )

    # ---- the run ----------------------------------------------------------------------------

    def split(self, rngs: Sequence[np.random.Generator], batch: int) -> list[list[WorkItem]]:
        """Split (core position, batch start, batch stop, generator) over the worker threads.

        With at least as many cores as threads, whole cores go to each thread; otherwise each
        core's batch is cut into pieces, each with a child generator spawned from the core's.
        """
        groups = self.threads
        n_cores = len(rngs)
        if n_cores >= groups:
            bounds = np.linspace(0, n_cores, groups + 1).astype(int)
            return [
                [(k, 0, batch, rngs[k]) for k in range(bounds[g], bounds[g + 1])]
                for g in range(groups)
            ]
        split: list[WorkItem] = []
        for k in range(n_cores):
            edges = np.linspace(0, batch, groups // n_cores + 1).astype(int)
            pieces = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
            children = rngs[k].spawn(len(pieces)) if len(pieces) > 1 else [rngs[k]]
            split += [(k, a, b, gen) for (a, b), gen in zip(pieces, children, strict=True)]
        out: list[list[WorkItem]] = [[] for _ in range(groups)]
        for i, item in enumerate(split):
            out[i * groups // len(split)].append(item)
        return out

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
        """Noisy MVMs: (positive, negative) uint16 counts (C, B, rows) and saturations.

        Args:
            operands: per core, from :meth:`prepare`.
            adc: the chip's ADC bank (row transfer f = A·i/(1 + B·i) + C per mirror).
            cores: core ids (C,), to look up their ADC rows.
            x: int8 inputs (C, B, 256) in −127..127.
            mode: 1 (one-phase) or 4 (four-phase).
            rngs: one noise generator per core.
            window_ns: the PWM integration window (ns).
            rows: the output rows [start, stop) to convert (default all 256).
        """
        r0, r1 = row_range(rows)
        n_c, batch = x.shape[0], x.shape[1]
        pos = np.empty((n_c, batch, r1 - r0), np.uint16)
        neg = np.empty((n_c, batch, r1 - r0), np.uint16)
        groups = self.split(rngs, batch)
        work = self._one_phase if mode == 1 else self._four_phase
        # per core over the whole batch: the same columns whatever the thread split
        columns = [active_columns(x[k]) for k in range(n_c)]
        with BlasThreads(1):  # small GEMMs: OpenBLAS's own threads only wait on each other
            matrices = [
                self.matrices(op, mode, (r0, r1), cols)
                for op, cols in zip(operands, columns, strict=True)
            ]
        n_sat = work(matrices, adc, cores, x, columns, pos, neg, groups, window_ns, (r0, r1))
        return pos, neg, n_sat

    def ldpu(
        self, coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
    ) -> np.ndarray:
        """The float16 LDPU chain in numpy (:meth:`drivers.ldpu.LdpuCoefficients.apply`)."""
        return apply_ldpu(coefficients, positive, negative)

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
        """:meth:`run`, then :meth:`ldpu` per core: int8 (C, B, rows) and saturations."""
        pos, neg, n_sat = self.run(
            operands, adc, cores, x, mode, rngs, window_ns=window_ns, rows=rows
        )
        out = np.empty(pos.shape, np.int8)
        for k, table in enumerate(coefficients):
            out[k] = self.ldpu(table, pos[k], neg[k])
        return out, n_sat

    def _one_phase(
        self,
        matrices: Sequence[tuple[np.ndarray, ...]],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        columns: Sequence[Columns | None],
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[WorkItem]],
        window: float,
        rows: RowRange,
    ) -> int:
        top = np.float32(adc.saturation_counts(window))
        r0, r1 = rows
        consts = [[v[r0:r1] for v in adc.signed_constants(int(c), window)] for c in cores]

        def work(g: int, items: list[WorkItem]) -> int:
            n_sat = 0
            for k, b0, b1, gen in items:
                xk = x[k, b0:b1]
                i_ua, num = one_phase_gemms(matrices[k], xk, columns[k])
                z = standard_normal_f32(gen, np.empty((b1 - b0, ROWS), np.float32))[:, r0:r1]
                np.sqrt(num, out=num)
                num *= z
                i_ua += num
                a_mean, a_diff, b_mean, b_diff, c = consts[k]
                mag = np.abs(i_ua)
                tmp = np.empty_like(mag)
                np.multiply(mag, a_mean, out=num)
                np.multiply(i_ua, a_diff, out=tmp)
                num += tmp
                np.multiply(i_ua, b_diff, out=tmp)
                mag *= b_mean
                mag += tmp
                mag += np.float32(1.0)
                num /= mag
                num += c
                sign = num >= top
                n_sat += int(np.count_nonzero(sign))
                np.clip(num, np.float32(0.0), top, out=num)
                counts = num.astype(np.uint16)  # floor (values >= 0)
                np.greater_equal(i_ua, np.float32(0.0), out=sign)
                np.multiply(counts, sign, out=pos[k, b0:b1])
                np.subtract(counts, pos[k, b0:b1], out=neg[k, b0:b1])
            return n_sat

        return run_in_threads(work, groups, self.threads)

    def _four_phase(
        self,
        matrices: Sequence[tuple[np.ndarray, ...]],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        columns: Sequence[Columns | None],
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[WorkItem]],
        window: float,
        rows: RowRange,
    ) -> int:
        top = np.float32(adc.saturation_counts(window))
        r0, r1 = rows
        n = r1 - r0
        consts = []
        for c in cores:
            a, b, off = adc.row_constants(int(c), POSITIVE, window)
            consts.append((np.tile(a[r0:r1], 2), np.tile(b[r0:r1], 2), np.tile(off[r0:r1], 2)))

        def work(g: int, items: list[WorkItem]) -> int:
            n_sat = 0
            for k, b0, b1, gen in items:
                nb = b1 - b0
                xk = x[k, b0:b1]
                mk, s, d = four_phase_gemms(matrices[k], xk, columns[k])
                upper = mk[:nb]  # x+ rows: [:, :n] = x+·G+ (P), [:, n:] = x+·G− (N)
                lower = mk[nb:]  # x− rows: [:, :n] = x−·G+ (N), [:, n:] = x−·G− (P)
                z = standard_normal_f32(gen, np.empty((4, nb, ROWS), np.float32))[:, :, r0:r1]
                var = np.empty((nb, n), np.float32)
                tot = np.empty((nb, n), np.float32)
                pairs = (
                    (np.add, upper[:, :n], lower[:, n:], z[0], z[1]),
                    (np.subtract, upper[:, n:], lower[:, :n], z[2], z[3]),
                )
                for combine, first, second, z1, z2 in pairs:
                    combine(s, d, out=var)  # 2·var_P or 2·var_N (µA²)
                    var *= np.float32(0.5)
                    np.maximum(var, np.float32(0.0), out=var)
                    np.add(first, second, out=tot)
                    np.maximum(tot, np.float32(1e-30), out=tot)
                    var /= tot  # variance per µA of mean current
                    for conv, zk in ((first, z1), (second, z2)):
                        np.multiply(var, conv, out=tot)
                        np.sqrt(tot, out=tot)
                        tot *= zk
                        conv += tot  # independent noise, variance ∝ the conversion's current
                a, b, c = consts[k]
                scratch = np.empty((nb, 2 * n), np.float32)
                flags = np.empty((nb, 2 * n), np.bool_)
                counts = []
                for block in (upper, lower):
                    n_sat += convert_inplace(block, a, b, c, float(top), scratch, flags)
                    counts.append(block.astype(np.uint16))  # floor (values >= 0)
                cu, cl = counts
                np.add(cu[:, :n], cl[:, n:], out=pos[k, b0:b1])
                np.add(cu[:, n:], cl[:, :n], out=neg[k, b0:b1])
            return n_sat

        return run_in_threads(work, groups, self.threads)
