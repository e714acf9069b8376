"""The MVM kernel of the simulated chip: device conductances and int8 inputs in, ADC counts out.

The chip (:class:`drivers.sim.chip.SimulatedChip`) owns the device state and decides when a
core's matrices are stale; a kernel turns them into counts. The seam is :class:`MvmKernel`:

1. ``prepare(g_us, var_us2, read_voltage_mv=..., one_phase_asymmetry=...)`` turns one core's
   drifted conductances and read-noise variances (float32 (256, 256, 4) arrays, [row, col,
   device] with devices G1+, G2+, G1−, G2−) into whatever operands the kernel wants (an opaque
   object the chip caches per core);
2. ``run(operands, adc, cores, x, mode, rngs, window_ns=...)`` runs a batch of MVMs on C cores:
   int8 inputs (C, B, 256), mode 1 or 4, one noise generator per core, the ADC bank for the
   row transfer; it returns the positive and negative counts, uint16 (C, B, 256), and the
   number of saturated conversions.

:class:`NumpyMvmKernel` is the reference kernel (numpy + BLAS GEMMs, worker threads from
:mod:`drivers.sim.threads`). A compiled kernel can replace it by implementing the same two
methods; it must keep the physics below, not the bit pattern of the noise.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from drivers.sim.adc import POSITIVE, AdcBank, convert_inplace
from drivers.sim.fastnormal import standard_normal_f32
from drivers.sim.threads import run_in_threads

ROWS = COLS = 256
DEVICES = 4

WorkItem = tuple[int, int, int, np.random.Generator]
"""(core position in the call, batch start, batch stop, generator)."""


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
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(positive counts, negative counts, saturated conversions) of a batch of MVMs."""
        ...


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
        self._buffers: dict[str, np.ndarray] = {}

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
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Noisy MVMs: (positive, negative) uint16 counts (C, B, 256) and saturations.

        Args:
            operands: per core, from :meth:`prepare`.
            adc: the chip's ADC bank (row transfer f = A·i/(1 + B·i) + C per mirror).
            cores: core ids (C,), to look up their ADC rows.
            x: int8 inputs (C, B, 256) in −127..127.
            mode: 1 (one-phase) or 4 (four-phase).
            rngs: one noise generator per core.
            window_ns: the PWM integration window (ns).
        """
        n_c, batch = x.shape[0], x.shape[1]
        pos = np.empty((n_c, batch, ROWS), np.uint16)
        neg = np.empty((n_c, batch, ROWS), np.uint16)
        groups = self.split(rngs, batch)
        if mode == 1:
            n_sat = self._one_phase(operands, adc, cores, x, pos, neg, groups, window_ns)
        else:
            n_sat = self._four_phase(operands, adc, cores, x, pos, neg, groups, window_ns)
        return pos, neg, n_sat

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """A persistent work buffer (fresh pages cost more than the arithmetic on them)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[name] = buf
        return buf

    def _one_phase(
        self,
        operands: Sequence[CoreOperands],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[WorkItem]],
        window: float,
    ) -> int:
        top = np.float32(adc.saturation_counts(window))
        consts = [adc.signed_constants(int(c), window) for c in cores]

        def work(g: int, items: list[WorkItem]) -> int:
            n_sat = 0
            for k, b0, b1, gen in items:
                nb = b1 - b0
                shape = (nb, ROWS)
                x1 = self._buffer(f"x1{g}", (nb, 2 * COLS))
                sq = self._buffer(f"sq{g}", (nb, COLS))
                x1[:, :COLS] = x[k, b0:b1]
                np.abs(x1[:, :COLS], out=x1[:, COLS:])
                i_ua = self._buffer(f"i{g}", shape)  # signed net current, µA
                num = self._buffer(f"n{g}", shape)
                np.matmul(x1, operands[k].m1, out=i_ua)
                np.square(x1[:, :COLS], out=sq)
                np.matmul(sq, operands[k].v_sum, out=num)
                z = self._buffer(f"z{g}", shape)
                tmp = self._buffer(f"t{g}", shape)
                counts = self._buffer(f"c{g}", shape, np.uint16)
                sign = self._buffer(f"s{g}", shape, np.bool_)
                np.sqrt(num, out=num)
                standard_normal_f32(gen, z)
                num *= z
                i_ua += num
                a_mean, a_diff, b_mean, b_diff, c = consts[k]
                mag = z
                np.abs(i_ua, out=mag)
                np.multiply(mag, a_mean, out=num)
                np.multiply(i_ua, a_diff, out=tmp)
                num += tmp
                np.multiply(i_ua, b_diff, out=tmp)
                mag *= b_mean
                mag += tmp
                mag += np.float32(1.0)
                num /= mag
                num += c
                np.greater_equal(num, top, out=sign)
                n_sat += int(np.count_nonzero(sign))
                np.clip(num, np.float32(0.0), top, out=num)
                np.copyto(counts, num, casting="unsafe")  # floor (values >= 0)
                np.greater_equal(i_ua, np.float32(0.0), out=sign)
                np.multiply(counts, sign, out=pos[k, b0:b1])
                np.subtract(counts, pos[k, b0:b1], out=neg[k, b0:b1])
            return n_sat

        return run_in_threads(work, groups, self.threads)

    def _four_phase(
        self,
        operands: Sequence[CoreOperands],
        adc: AdcBank,
        cores: np.ndarray,
        x: np.ndarray,
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[WorkItem]],
        window: float,
    ) -> int:
        top = np.float32(adc.saturation_counts(window))
        consts = []
        for c in cores:
            a, b, off = adc.row_constants(int(c), POSITIVE, window)
            consts.append((np.tile(a, 2), np.tile(b, 2), np.tile(off, 2)))

        def work(g: int, items: list[WorkItem]) -> int:
            n_sat = 0
            for k, b0, b1, gen in items:
                nb = b1 - b0
                x4 = self._buffer(f"x4{g}", (2 * nb, COLS))
                xk = self._buffer(f"xk{g}", (nb, COLS))
                sq = self._buffer(f"sq{g}", (nb, COLS))
                xk[:] = x[k, b0:b1]
                np.maximum(xk, np.float32(0.0), out=x4[:nb])
                np.subtract(x4[:nb], xk, out=x4[nb:])  # x− = max(x, 0) − x
                mk = self._buffer(f"m4{g}", (2 * nb, 2 * ROWS))
                s = self._buffer(f"vs{g}", (nb, ROWS))
                d = self._buffer(f"vd{g}", (nb, ROWS))
                np.matmul(x4, operands[k].m4, out=mk)
                np.square(xk, out=sq)
                np.matmul(sq, operands[k].v_sum, out=s)
                np.abs(xk, out=sq)
                sq *= xk
                np.matmul(sq, operands[k].v_diff, out=d)
                upper = mk[:nb]  # x+ rows: [:, :256] = x+·G+ (P), [:, 256:] = x+·G− (N)
                lower = mk[nb:]  # x− rows: [:, :256] = x−·G+ (N), [:, 256:] = x−·G− (P)
                z = self._buffer(f"z4{g}", (4, nb, ROWS))
                var = self._buffer(f"v{g}", (nb, ROWS))
                tot = self._buffer(f"t{g}", (nb, ROWS))
                scratch = self._buffer(f"w{g}", (nb, 2 * ROWS))
                flags = self._buffer(f"f{g}", (nb, 2 * ROWS), np.bool_)
                cu = self._buffer(f"cu{g}", (nb, 2 * ROWS), np.uint16)
                cl = self._buffer(f"cl{g}", (nb, 2 * ROWS), np.uint16)
                standard_normal_f32(gen, z)
                pairs = (
                    (np.add, upper[:, :ROWS], lower[:, ROWS:], z[0], z[1]),
                    (np.subtract, upper[:, ROWS:], lower[:, :ROWS], z[2], z[3]),
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
                for block, out in ((upper, cu), (lower, cl)):
                    n_sat += convert_inplace(block, a, b, c, float(top), scratch, flags)
                    np.copyto(out, block, casting="unsafe")  # floor (values >= 0)
                np.add(cu[:, :ROWS], cl[:, ROWS:], out=pos[k, b0:b1])
                np.add(cu[:, ROWS:], cl[:, :ROWS], out=neg[k, b0:b1])
            return n_sat

        return run_in_threads(work, groups, self.threads)
