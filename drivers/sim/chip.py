"""The simulated 64-core PCM analog in-memory-computing chip (HERMES class).

Numbers and sources: ``reference/chip.md`` (tags [LG], [KA], [AK], [NK], [JO]); design:
``DESIGN.md`` ("The simulated chip"). The board model (:mod:`drivers.sim.board_model`) serves
this chip over the wire protocol; everything here is in physical units (µS, µA, ns, s) or ADC
counts.

One class, kept whole (a little over 500 lines, a fifth of them this docstring): the device
state of every core and the operations on it. The physics it calls is elsewhere: device
statistics and equations in :mod:`drivers.sim.devices`, pulses in :mod:`drivers.sim.pulses`,
the ADC in :mod:`drivers.sim.adc`, the MVM arithmetic in :mod:`drivers.sim.mvm`.

Device state (per PCM device, arrays over all cores, flat index (row·256 + col)·4 + device):
conductance right after programming ``g_p`` (µS, float32), drift exponent ν (float32, sampled at
programming), programming time ``t_p`` (s, float64: a float32 time loses sub-second resolution
after a few days), the device's own SET maximum (µS), the post-programming relaxation offset
(µS, see :mod:`drivers.sim.pulses`) and a stuck flag (uint8). 25 bytes per device, 420 MB for
64 cores.

Device physics comes from the injected device model (:mod:`drivers.sim.devices`; default
:class:`~drivers.sim.devices.HermesPcm`, the HERMES fits [AK; chip.md §3]): ν = |N(μ_ν(G),
σ_ν(G))| sampled at programming, and at time t (τ = t − t_p)::

    G(t) = (g_p + relax·r(τ)) · ((τ + t0)/t0)^−ν,     t0 = 200 s (1 device, HERMES)
    σ_read = |G(t)| · Q_s(g_p) · √ln((t_obs + t_read)/(2·t_read)),   t_read = 512 ns

on every verify read and every MVM, with t_obs = max(τ, ``read_noise_t_floor_s``): the 1/f noise
a read sees grows with the time since programming (the lowest frequency of the integrated
band); the floor, 1 ms (UNCONFIRMED), stands for the shortest time between programming and a
read (the verify reads of a P&V loop), so a read just after programming gets the factor
√ln(1 ms/1.024 µs) = 2.62 and a read t0 later √ln(200 s/1.024 µs) = 4.37 (aihwkit, which counts
t from t0, gives 4.45 there).

Verify read [LG Methods; chip.md §2a]: 0.2 V on one device, through its row's ADC (positive
mirror and counter). The nominal scale is 80 counts at 10.35 µS (7.73 counts/µS, an inference,
chip.md §1.2, UNCONFIRMED); with the ADC's nominal 35 MHz/µA this is an effective integration of
1.104 µs (the published window is 512 ns plus 256 ns pre-charge; the factor is UNCONFIRMED).
The row's ADC converts in its verify configuration, whose per-row gain mismatch is independent
of the MVM-path trim (assumption, UNCONFIRMED; :mod:`drivers.sim.adc`), so the per-ADC gain
error of the MVM does not cancel against the verify read that programmed the weights: relative
to the programmed targets it keeps a spread of ≈ 7.3 % (chip.md §2b), which the LDPU calibrates.
Non-linearity and offset of the positive mirror apply.

MVM [LG p.3; KA; chip.md §1.3-1.4]: 8-bit PWM inputs, one- and four-phase modes, output-referred
read noise (one extra matmul with squared inputs); the kernel and its equations are in
:mod:`drivers.sim.mvm` (replaceable: the chip passes each core's drifted conductances and
read-noise variances, the inputs, the mode and one noise generator per core).

Caching: per core the drifted conductance sums and noise variances are cached as matmul-ready
float32 matrices. They are rebuilt when the core is programmed, when the read voltage changes,
or when the clock has advanced by more than ``cache_rel_tol`` (1e-3) × (time since the core's
latest programming + the read-noise floor). That bounds the change of any cached conductance
by ν·1e-3 ≤ 1.3e-4 (relative), of the relaxation term by ≤ 2e-4 of its size and of the noise σ
by < 1e-4 (relative) between refreshes: far below the read noise (≳ 1 %) and one ADC count.

Latencies (virtual clock): MVM 133 ns (1-phase) / 520 ns (4-phase) per input vector, cores in
parallel [LG Tab I]; pulses on 32 write heads, each driving 8 consecutive columns, pulses on one
head in series, each taking its width + 100 ns (settling, UNCONFIRMED) [LG Methods]; verify
reads 768 ns (512 ns + 256 ns pre-charge) each, the 256 row ADCs in parallel [LG Methods].

Determinism: every random number comes from the injected Generator: the device and ADC
properties at construction, pulse responses and verify-read noise from it directly, and the MVM
noise from per-core streams (split into child generators for the worker threads by a fixed rule,
so the result does not depend on thread scheduling). On a virtual clock a core's MVM stream is
re-seeded from (chip seed, core, time) whenever the clock has moved since that core's last MVM:
the noise of a sequence of MVMs depends only on the clock at its start, which lets a resumed run
on a fresh chip skip MVMs it already has and still draw what the uninterrupted run drew.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

from drivers.errors import LimitError
from drivers.ldpu import LdpuCoefficients
from drivers.sim.adc import POSITIVE, AdcBank
from drivers.sim.clock import RealTimeClock, VirtualClock
from drivers.sim.devices import DeviceModel, HermesPcm
from drivers.sim.memory import keep_freed_memory
from drivers.sim.mvm import MvmKernel, RowRange, row_range
from drivers.sim.mvm_choice import make_kernel
from drivers.sim.mvm_seeds import stream_factory
from drivers.sim.pulses import STUCK_NONE, STUCK_SET, PulseModel

PULSE_RESET, PULSE_SET, PULSE_PARTIAL = 0, 1, 2
ROWS = COLS = 256
DEVICES = 4
DEVICES_PER_CORE = ROWS * COLS * DEVICES


@dataclass
class _CoreCache:
    """A core's kernel operands and when they were built (clock time, read voltage)."""

    t_s: float
    v_mv: float
    operands: Any


class _MvmCall(NamedTuple):
    """A checked MVM request and what the kernel needs for it (a tuple: made on every MVM)."""

    core_ids: np.ndarray
    x: np.ndarray
    mode: int
    rows: RowRange
    operands: list[Any]
    rngs: list[np.random.Generator]
    window_ns: float

    def kernel_arguments(
        self, adc: AdcBank
    ) -> tuple[list[Any], AdcBank, np.ndarray, np.ndarray, int, list[np.random.Generator]]:
        """The positional arguments of :meth:`~drivers.sim.mvm.MvmKernel.run` (operands, ADC
        bank, core ids, inputs, mode, noise generators)."""
        return (self.operands, adc, self.core_ids, self.x, self.mode, self.rngs)


class SimulatedChip:
    """A HERMES-class chip: 64 cores of 256×256 weights, 4 PCM devices per weight.

    Args:
        rng: the one Generator all randomness comes from.
        n_cores: number of cores (1..64).
        clock: a :class:`VirtualClock` (advanced by modelled latencies) or a
            :class:`RealTimeClock`; default a new VirtualClock at 0 s.
        chip_id: identifier reported by IDENTIFY.
        devices: the device model (ν, drift, relaxation, read noise; :mod:`drivers.sim.devices`);
            default :class:`~drivers.sim.devices.HermesPcm` (1 device per polarity).
        kernel: the MVM kernel (:mod:`drivers.sim.mvm`), an instance or a name ("auto",
            "numba", "numpy"); default :func:`~drivers.sim.mvm_choice.make_kernel`'s choice (the
            compiled kernel when numba imports, or ``CHIPCTL_MVM_KERNEL``) with ``threads``
            worker threads.
        **model_parameters: overrides of the chip constants below, of :class:`AdcBank`
            (e.g. ``gain_sigma_rel``) and of :class:`PulseModel` (e.g. ``i_melt_ua``), by name.

    Chip constants (model_parameters): ``verify_read_voltage_v`` 0.2 V [LG],
    ``verify_counts_per_us`` 80/10.35 (UNCONFIRMED inference, chip.md §1.2), ``verify_window_ns``
    512 and ``verify_precharge_ns`` 256 [LG], ``mvm_window_ns`` 128 [KA],
    ``mvm_latency_1phase_ns`` 133 and ``mvm_latency_4phase_ns`` 520 [LG Tab I],
    ``one_phase_asymmetry`` 0.03 (UNCONFIRMED), ``write_heads`` 32 [LG], ``pulse_overhead_ns``
    100 (UNCONFIRMED), ``cache_rel_tol`` 1e-3, ``die_temperature_c`` 30.0 (UNCONFIRMED),
    ``threads`` 2. The drift reference time and the read-noise floor belong to the device model.
    """

    _CHIP_DEFAULTS: dict[str, float] = {
        "verify_read_voltage_v": 0.2,
        "verify_counts_per_us": 80.0 / 10.35,
        "verify_window_ns": 512.0,
        "verify_precharge_ns": 256.0,
        "mvm_window_ns": 128.0,
        "mvm_latency_1phase_ns": 133.0,
        "mvm_latency_4phase_ns": 520.0,
        "one_phase_asymmetry": 0.03,
        "write_heads": 32,
        "pulse_overhead_ns": 100.0,
        "cache_rel_tol": 1e-3,
        "die_temperature_c": 30.0,
        "threads": 2,
    }
    DEFAULT_READ_VOLTAGE_MV = 200.0

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        n_cores: int = 64,
        clock: VirtualClock | RealTimeClock | None = None,
        chip_id: str = "SIM-HERMES-0001",
        devices: DeviceModel | None = None,
        kernel: MvmKernel | str | None = None,
        **model_parameters: Any,
    ) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        if not 1 <= int(n_cores) <= 64:
            raise LimitError(f"n_cores must be 1..64, got {n_cores!r}")
        if devices is not None and not isinstance(devices, DeviceModel):
            raise TypeError("devices must be a drivers.sim.devices.DeviceModel")
        chip_p, adc_p, pulse_p = self._split_parameters(model_parameters)
        keep_freed_memory()  # MVMs make and drop arrays of megabytes (drivers.sim.memory)
        self.n_cores = int(n_cores)
        self.chip_id = chip_id
        self.clock: VirtualClock | RealTimeClock = clock if clock is not None else VirtualClock()
        self.devices: DeviceModel = devices if devices is not None else HermesPcm(num_devices=1)
        self.kernel: MvmKernel = (
            make_kernel(kernel, threads=int(chip_p["threads"]))
            if kernel is None or isinstance(kernel, str)
            else kernel
        )
        self._rng = rng
        self._p = chip_p
        self.adc = AdcBank(rng=rng, n_cores=self.n_cores, rows=ROWS, **adc_p)
        pulse_p.setdefault("counts_per_us", chip_p["verify_counts_per_us"])
        self.pulses = PulseModel(rng=rng, device=self.devices, **pulse_p)
        # verify read: counts = f(i)·T_eff with f in MHz; nominal f/G = A·V (MHz/µS).
        nominal_mhz_per_us = self.adc.nominal_gain_mhz_per_ua * chip_p["verify_read_voltage_v"]
        self._verify_t_eff_ns = 1e3 * chip_p["verify_counts_per_us"] / nominal_mhz_per_us

        n, d = self.n_cores, DEVICES_PER_CORE
        now = self.clock.now_s
        self._g_set_max = self.pulses.sample_set_max_us(n, d)
        self._stuck, self.outlier_core = self.pulses.sample_stuck(n, d)
        self._g_prog = self.pulses.sample_reset_us(n * d).reshape(n, d)
        stuck_set = self._stuck == STUCK_SET
        self._g_prog[stuck_set] = self._g_set_max[stuck_set]
        self._nu = np.empty((n, d), np.float32)
        for core in range(n):
            self._nu[core] = self.devices.sample_nu(self._g_prog[core], rng)
        self._t_prog = np.full((n, d), now, np.float64)
        self._relax = np.zeros((n, d), np.float32)
        self._t_latest = np.full(n, now, np.float64)

        # Runtime randomness comes from per-core streams spawned from the injected generator:
        # what happens on one core never shifts another core's random numbers, so a run
        # resumed on a fresh simulated chip (same seed) reproduces an uninterrupted one.
        self._core_rngs = rng.spawn(n)
        self._core_mvm_rngs = rng.spawn(n)
        # MVM noise on a virtual clock is keyed to (core, time): see _mvm_stream.
        self._mvm_streams = [
            stream_factory(cast(np.random.SeedSequence, g.bit_generator.seed_seq))
            for g in self._core_mvm_rngs  # spawned above: their seed_seq is a SeedSequence
        ]
        self._mvm_seeded_at = np.full(n, np.nan)
        self._cache: list[_CoreCache | None] = [None] * n
        # Q_s(g_prog) of each core's devices: depends only on the programmed state, so it is
        # kept until the core is programmed again (a quarter of an operand rebuild)
        self._q_s: list[np.ndarray | None] = [None] * n
        self._ldpu = [LdpuCoefficients.identity() for _ in range(n)]
        self._ldpu_slices: dict[tuple[int, int, int], tuple[LdpuCoefficients, ...]] = {}
        self._read_voltage_mv = self.DEFAULT_READ_VOLTAGE_MV
        self.adc_saturation_count = 0

    # ---- construction helpers ---------------------------------------------------------------

    @classmethod
    def _split_parameters(
        cls, params: dict[str, Any]
    ) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
        adc_names = set(inspect.signature(AdcBank.__init__).parameters) - {
            "self",
            "rng",
            "n_cores",
            "rows",
        }
        pulse_names = set(inspect.signature(PulseModel.__init__).parameters) - {
            "self",
            "rng",
            "device",
        }
        chip_p = dict(cls._CHIP_DEFAULTS)
        adc_p: dict[str, Any] = {}
        pulse_p: dict[str, Any] = {}
        for key, value in params.items():
            if key in chip_p:
                chip_p[key] = float(value)
            elif key in adc_names:
                adc_p[key] = value
            elif key in pulse_names:
                pulse_p[key] = value
            else:
                raise TypeError(f"unknown model parameter {key!r}")
        return chip_p, adc_p, pulse_p

    # ---- properties -------------------------------------------------------------------------

    @property
    def mvm_read_voltage_mv(self) -> float:
        """MVM read voltage in mV (100..400, default 200) [EDT I; chip.md §1.3]."""
        return self._read_voltage_mv

    @mvm_read_voltage_mv.setter
    def mvm_read_voltage_mv(self, value: float) -> None:
        v = float(value)
        if not (math.isfinite(v) and 100.0 <= v <= 400.0):
            raise LimitError(f"MVM read voltage must be 100..400 mV, got {value!r}")
        self._read_voltage_mv = v

    # ---- time -------------------------------------------------------------------------------

    def _elapse(self, seconds: float) -> None:
        """Advance a virtual clock by a modelled latency (real time passes by itself)."""
        if isinstance(self.clock, VirtualClock) and seconds > 0.0:
            self.clock.advance(seconds)

    def _check_core(self, core: int) -> int:
        c = int(core)
        if not 0 <= c < self.n_cores:
            raise LimitError(f"core {core!r} outside 0..{self.n_cores - 1}")
        return c

    # ---- device state -----------------------------------------------------------------------

    def _device_state(
        self, core: int, idx: np.ndarray | slice
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(drifted G in µS, programmed G in µS, time since programming in s) now."""
        now = self.clock.now_s
        tau = np.maximum(now - self._t_prog[core, idx], 0.0)
        g_p = self._g_prog[core, idx]
        g_d = self.devices.conductance_us(g_p, self._relax[core, idx], self._nu[core, idx], tau)
        return g_d, g_p, tau

    def _read_sigma_us(self, g_d: np.ndarray, g_p: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """σ_read in µS of each device now (float32), from the device model."""
        return self.devices.read_sigma_us(g_p, g_d, tau)

    def _programmed(self, core: int) -> None:
        self._cache[core] = None
        self._q_s[core] = None
        self._t_latest[core] = self.clock.now_s

    def conductance_us(self, core: int) -> np.ndarray:
        """Ground truth: noiseless drifted conductances of ``core`` now (µS, float32 256×256×4)."""
        c = self._check_core(core)
        g_d, _, _ = self._device_state(c, slice(None))
        return g_d.reshape(ROWS, COLS, DEVICES)

    def set_conductances_us(self, core: int, g_us: np.ndarray) -> None:
        """Program all devices of ``core`` statistically (test/benchmark back door).

        g_p = max(g_T + N(0, σ_prog(g_T)), 0) with the device model's σ_prog (HERMES 1-device
        by default [AK; chip.md §3]); ν sampled from μ_ν(g_T), σ_ν(g_T); programming time =
        now; no relaxation offset. Targets above a device's SET maximum are clipped to it;
        stuck devices keep their state.

        Args:
            core: core index.
            g_us: float array (256, 256, 4) of target conductances in µS (finite, >= 0).
        """
        c = self._check_core(core)
        g = np.asarray(g_us, dtype=np.float32)
        if g.shape != (ROWS, COLS, DEVICES):
            raise LimitError(f"g_us must have shape (256, 256, 4), got {g.shape}")
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            raise LimitError("g_us must be finite and >= 0 µS")
        target = np.minimum(g.reshape(-1), self._g_set_max[c])
        rng = self._core_rngs[c]
        g_p = self.devices.sample_programmed_us(target, rng)
        nu = self.devices.sample_nu(target, rng)
        free = self._stuck[c] == STUCK_NONE
        self._g_prog[c, free] = g_p[free]
        self._nu[c, free] = nu[free]
        self._t_prog[c, free] = self.clock.now_s
        self._relax[c, free] = 0.0
        self._programmed(c)

    # ---- programming pulses -----------------------------------------------------------------

    def apply_pulses(
        self,
        core: int,
        row: np.ndarray,
        col: np.ndarray,
        device: np.ndarray,
        kind: np.ndarray,
        amplitude_ua: np.ndarray,
        width_ns: np.ndarray,
    ) -> None:
        """Apply programming pulses in order on ``core`` (see :mod:`drivers.sim.pulses`).

        Pulses on distinct devices are independent, so the batch is applied in rounds: round k
        holds the k-th pulse of every device addressed at least k + 1 times, which keeps the
        order for repeated addresses. Advances the clock by the write-head latency.
        """
        c = self._check_core(core)
        arrays = [
            np.asarray(a).reshape(-1) for a in (row, col, device, kind, amplitude_ua, width_ns)
        ]
        n = arrays[0].size
        if n < 1 or any(a.size != n for a in arrays):
            raise LimitError("pulse arrays must have the same length >= 1")
        r, cl, dv, kd, amp, wd = arrays
        flat = (r.astype(np.int64) * COLS + cl.astype(np.int64)) * DEVICES + dv.astype(np.int64)
        rank = _occurrence_rank(flat)
        for k in range(int(rank.max()) + 1):
            sel = np.flatnonzero(rank == k) if k or rank.any() else np.arange(n)
            idx = flat[sel]
            g_now, _, tau = self._device_state(c, idx)
            remaining = self._relax[c, idx] * (1.0 - self.devices.relaxation_progress(tau))
            g_new, relax = self.pulses.apply(
                g_now,
                self._g_set_max[c, idx],
                kd[sel],
                amp[sel],
                wd[sel],
                rng=self._core_rngs[c],
                relax_remaining_us=remaining,
            )
            nu = self.devices.sample_nu(g_new, self._core_rngs[c])
            free = self._stuck[c, idx] == STUCK_NONE
            idx_f = idx[free]
            self._g_prog[c, idx_f] = g_new[free]
            self._relax[c, idx_f] = relax[free]
            self._nu[c, idx_f] = nu[free]
            self._t_prog[c, idx_f] = self.clock.now_s
        self._programmed(c)
        heads = int(self._p["write_heads"])
        head = np.minimum(cl.astype(np.int64) * heads // COLS, heads - 1)
        busy_ns = np.bincount(head, weights=wd.astype(np.float64) + self._p["pulse_overhead_ns"])
        self._elapse(float(busy_ns.max()) * 1e-9)

    # ---- verify reads -----------------------------------------------------------------------

    def verify_read(
        self, core: int, row: np.ndarray, col: np.ndarray, device: np.ndarray
    ) -> np.ndarray:
        """Published verify read (0.2 V, 512 ns) of single devices: uint16 12-bit counts.

        G_read = max(G(t) + N(0, σ_read), 0), i = G_read·0.2 V, counts from the row's ADC in
        its verify configuration (own per-row gain, independent of the MVM trim; see
        :mod:`drivers.sim.adc`) over the effective verify integration (module docstring).
        """
        c = self._check_core(core)
        r = np.asarray(row).reshape(-1).astype(np.int64)
        cl = np.asarray(col).reshape(-1).astype(np.int64)
        dv = np.asarray(device).reshape(-1).astype(np.int64)
        if not (r.size == cl.size == dv.size) or r.size < 1:
            raise LimitError("read arrays must have the same length >= 1")
        idx = (r * COLS + cl) * DEVICES + dv
        g_d, g_p, tau = self._device_state(c, idx)
        sigma = self._read_sigma_us(g_d, g_p, tau)
        g_read = self.devices.sample_read_us(g_d, sigma, self._core_rngs[c])
        i_ua = g_read * np.float32(self._p["verify_read_voltage_v"])
        counts, n_sat = self.adc.convert(
            c, POSITIVE, i_ua, self._verify_t_eff_ns, rows=r, verify=True
        )
        self.adc_saturation_count += n_sat
        per_row = int(np.bincount(r, minlength=ROWS).max())
        self._elapse(
            per_row * (self._p["verify_window_ns"] + self._p["verify_precharge_ns"]) * 1e-9
        )
        return counts

    # ---- MVM --------------------------------------------------------------------------------

    def _core_cache(self, core: int) -> _CoreCache:
        now = self.clock.now_s
        cache = self._cache[core]
        if cache is not None and cache.v_mv == self._read_voltage_mv:
            age = now - self._t_latest[core] + self.devices.read_noise_t_floor_s
            if now - cache.t_s <= self._p["cache_rel_tol"] * age:
                return cache
        g_d, g_p, tau = self._device_state(core, slice(None))
        q_s = self._q_s[core]
        if q_s is None:
            q_s = self._q_s[core] = self.devices.q_s(g_p)
        var = self.devices.read_sigma_us(g_p, g_d, tau, q_s=q_s)
        np.square(var, out=var)
        operands = self.kernel.prepare(
            g_d.reshape(ROWS, COLS, DEVICES),
            var.reshape(ROWS, COLS, DEVICES),
            read_voltage_mv=self._read_voltage_mv,
            one_phase_asymmetry=self._p["one_phase_asymmetry"],
        )
        cache = _CoreCache(t_s=now, v_mv=self._read_voltage_mv, operands=operands)
        self._cache[core] = cache
        return cache

    def _mvm_stream(self, core: int) -> np.random.Generator:
        """The MVM noise stream of ``core``: on a virtual clock, re-seeded from (chip, core,
        time) whenever the clock has moved since the core's last MVM, so the noise depends
        only on the core's history since the clock last moved. A run resumed on a fresh chip
        of the same seed (the clock restored, the same operations replayed) therefore draws
        the same noise as the uninterrupted run, even after skipping MVMs (evaluations it
        already has). On a real-time clock the stream simply continues."""
        if not isinstance(self.clock, VirtualClock):
            return self._core_mvm_rngs[core]
        now = float(self.clock.now_s)
        if self._mvm_seeded_at[core] != now:
            ticks = int(round(now * 1e9))  # ns: the clock's resolution is far finer
            # PCG64(SeedSequence(entropy, spawn_key=(*core's key, ticks))), made by compiled code
            self._core_mvm_rngs[core] = self._mvm_streams[core](ticks)
            self._mvm_seeded_at[core] = now
        return self._core_mvm_rngs[core]

    def mvm_raw(
        self, cores: np.ndarray, inputs: np.ndarray, mode: int, rows: RowRange | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Noisy MVM on C cores in parallel: (positive, negative) uint16 counts (C, B, rows).

        y[row] = Σ_col W[row, col]·x[col]; ``inputs`` int8 (C, B, 256) in −127..127 drive the
        columns; ``mode`` 1 (one-phase) or 4 (four-phase); ``rows`` the output rows [start,
        stop) the host reads (default all; the silicon converts every row in parallel and the
        FPGA drops the others, so the latency is the same). Advances the clock by B MVM
        latencies. The arithmetic is the kernel's (:mod:`drivers.sim.mvm`).
        """
        call = self._mvm_call(cores, inputs, mode, rows)
        # A kernel written before row ranges existed still serves whole-row MVMs.
        selection: dict[str, Any] = {} if call.rows == (0, ROWS) else {"rows": call.rows}
        pos, neg, n_sat = self.kernel.run(
            *call.kernel_arguments(self.adc), window_ns=call.window_ns, **selection
        )
        self._mvm_done(call, n_sat)
        return pos, neg

    def mvm_ldpu(
        self, cores: np.ndarray, inputs: np.ndarray, mode: int, rows: RowRange | None = None
    ) -> np.ndarray:
        """:meth:`mvm_raw`, then each core's float16 LDPU chain: int8 (C, B, rows)."""
        if not hasattr(self.kernel, "run_ldpu"):  # a kernel written before run_ldpu
            pos, neg = self.mvm_raw(cores, inputs, mode, rows)
            r0, r1 = row_range(rows)
            ids = np.asarray(cores).reshape(-1)
            tables = [self._ldpu_rows(int(c), r0, r1) for c in ids]
            return np.stack([self.kernel.ldpu(*t) for t in zip(tables, pos, neg, strict=True)])
        call = self._mvm_call(cores, inputs, mode, rows)
        r0, r1 = call.rows
        tables = [self._ldpu_rows(int(c), r0, r1) for c in call.core_ids]
        out, n_sat = self.kernel.run_ldpu(
            *call.kernel_arguments(self.adc), tables, window_ns=call.window_ns, rows=call.rows
        )
        self._mvm_done(call, n_sat)
        return out

    def _mvm_call(
        self, cores: np.ndarray, inputs: np.ndarray, mode: int, rows: RowRange | None
    ) -> _MvmCall:
        """The checked arguments of an MVM, the cores' operands and noise streams."""
        core_ids = np.asarray(cores).reshape(-1).astype(np.int64)
        ids = core_ids.tolist()
        x = np.asarray(inputs)
        if x.ndim != 3 or x.shape[0] != len(ids) or x.shape[2] != COLS or x.shape[1] < 1:
            raise LimitError(f"inputs must have shape ({len(ids)}, B, 256), got {x.shape}")
        if mode not in (1, 4):
            raise LimitError(f"mode must be 1 or 4, got {mode!r}")
        if len(set(ids)) != len(ids):
            raise LimitError("a core appears twice")
        for c in ids:
            self._check_core(c)
        try:
            rows = row_range(rows)
        except ValueError as exc:
            raise LimitError(str(exc)) from None
        operands = [self._core_cache(c).operands for c in ids]
        rngs = [self._mvm_stream(c) for c in ids]
        return _MvmCall(core_ids, x, mode, rows, operands, rngs, self._p["mvm_window_ns"])

    def _mvm_done(self, call: _MvmCall, n_sat: int) -> None:
        """Count the saturations and advance the clock by the batch's MVM latencies."""
        key = "mvm_latency_1phase_ns" if call.mode == 1 else "mvm_latency_4phase_ns"
        self.adc_saturation_count += n_sat
        self._elapse(call.x.shape[1] * self._p[key] * 1e-9)

    def _ldpu_rows(self, core: int, r0: int, r1: int) -> LdpuCoefficients:
        """The LDPU coefficients of ``core``'s rows r0..r1 − 1 (the chain is per row), kept
        until the core's coefficients change."""
        table = self._ldpu[core]
        if (r0, r1) == (0, ROWS):
            return table
        key = (core, r0, r1)
        cached = self._ldpu_slices.get(key)
        if cached is None or cached[0] is not table:
            rows = LdpuCoefficients.from_stacked(
                np.stack(table.arrays())[:, r0:r1], relu=table.relu
            )
            cached = self._ldpu_slices[key] = (table, rows)
        return cached[1]

    # ---- periphery --------------------------------------------------------------------------

    def get_ldpu(self, core: int) -> LdpuCoefficients:
        """The LDPU coefficients of ``core``."""
        return self._ldpu[self._check_core(core)]

    def set_ldpu(self, core: int, coefficients: LdpuCoefficients) -> None:
        """Load LDPU coefficients onto ``core``."""
        if not isinstance(coefficients, LdpuCoefficients):
            raise TypeError("coefficients must be LdpuCoefficients")
        self._ldpu[self._check_core(core)] = coefficients

    def reset_periphery(self) -> None:
        """Board reset: LDPU identity, read voltage 200 mV, saturation count 0.

        Device states and the clock are untouched (PCM is non-volatile).
        """
        self._ldpu = [LdpuCoefficients.identity() for _ in range(self.n_cores)]
        self._read_voltage_mv = self.DEFAULT_READ_VOLTAGE_MV
        self.adc_saturation_count = 0

    def die_temperature_c(self) -> float:
        """Die temperature in °C (constant ``die_temperature_c``, UNCONFIRMED)."""
        return float(self._p["die_temperature_c"])


def _occurrence_rank(flat: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same value (0 for the first)."""
    n = flat.size
    order = np.argsort(flat, kind="stable")
    s = flat[order]
    start = np.ones(n, bool)
    start[1:] = s[1:] != s[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - run_start
    return rank
