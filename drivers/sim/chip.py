"""The simulated 64-core PCM analog in-memory-computing chip (HERMES class).

Numbers and sources: ``reference/chip.md`` (tags [LG], [KA], [AK], [NK], [JO]); design:
``DESIGN.md`` ("The simulated chip"). The board model (:mod:`drivers.sim.board_model`) serves
this chip over the wire protocol; everything here is in physical units (µS, µA, ns, s) or ADC
counts.

Device state (per PCM device, arrays over all cores, flat index (row·256 + col)·4 + device):
conductance right after programming ``g_p`` (µS, float32), drift exponent ν (float32, sampled at
programming from the HERMES 1-device fits, ν = |N(μ_ν(G), σ_ν(G))|), programming time ``t_p``
(s, float64: a float32 time loses sub-second resolution after a few days), the device's own SET
maximum (µS), the post-programming relaxation offset (µS, see :mod:`drivers.sim.pulses`) and a
stuck flag (uint8). 25 bytes per device, 420 MB for 64 cores.

Conductance at time t (τ = t − t_p), aihwkit form [AK; chip.md §3]::

    G(t) = (g_p + relax·r(τ)) · ((τ + t0)/t0)^−ν,     t0 = 200 s (1 device, HERMES)

Read noise on every verify read and every MVM [AK; chip.md §3]::

    σ_read = |G(t)| · Q_s(g_p) · √ln((t_obs + t_read)/(2·t_read)),   t_read = 512 ns

with t_obs = max(τ, ``read_noise_t_floor_s``): the 1/f noise a read sees grows with the time
since programming (the lowest frequency of the integrated band); the floor, 1 ms
(UNCONFIRMED), stands for the shortest time between programming and a read (the verify reads of
a P&V loop), so a read just after programming gets the factor √ln(1 ms/1.024 µs) = 2.62 and a
read t0 later √ln(200 s/1.024 µs) = 4.37 (aihwkit, which counts t from t0, gives 4.45 there).

Verify read [LG Methods; chip.md §2a]: 0.2 V on one device, through its row's ADC (positive
mirror and counter). The nominal scale is 80 counts at 10.35 µS (7.73 counts/µS, an inference,
chip.md §1.2, UNCONFIRMED); with the ADC's nominal 35 MHz/µA this is an effective integration of
1.104 µs (the published window is 512 ns plus 256 ns pre-charge; the factor is UNCONFIRMED).
The row's ADC converts in its verify configuration, whose per-row gain mismatch is independent
of the MVM-path trim (assumption, UNCONFIRMED; :mod:`drivers.sim.adc`), so the per-ADC gain
error of the MVM does not cancel against the verify read that programmed the weights: relative
to the programmed targets it keeps a spread of ≈ 7.3 % (chip.md §2b), which the LDPU calibrates.
Non-linearity and offset of the positive mirror apply.

MVM [LG p.3; KA; chip.md §1.3-1.4]: inputs are 8-bit PWM (sign + 7 bit, |x|/127 of the 128 ns
window). The PWM current of each column is modelled by its time average over the window
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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.errors import LimitError
from drivers.ldpu import LdpuCoefficients
from drivers.sim.adc import POSITIVE, AdcBank, convert_inplace
from drivers.sim.clock import RealTimeClock, VirtualClock
from drivers.sim.fastnormal import standard_normal_f32
from drivers.sim.ldpu import apply_ldpu
from drivers.sim.physics import HermesStatistics
from drivers.sim.pulses import STUCK_NONE, STUCK_SET, PulseModel

PULSE_RESET, PULSE_SET, PULSE_PARTIAL = 0, 1, 2
ROWS = COLS = 256
DEVICES = 4
DEVICES_PER_CORE = ROWS * COLS * DEVICES

_EXECUTOR: ThreadPoolExecutor | None = None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None or _EXECUTOR._max_workers < workers:
        _EXECUTOR = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simchip")
    return _EXECUTOR


_WorkItem = tuple[int, int, int, np.random.Generator]


class _BlasThreads:
    """Temporarily set OpenBLAS's thread count (numpy's bundled OpenBLAS, found via ctypes).

    The MVM runs one single-threaded GEMM per core in each of its worker threads, which beats
    OpenBLAS's own threading on 256×256 GEMMs and leaves no BLAS threads spinning while the
    elementwise work runs. A no-op where the library or the symbols are not found.
    """

    _lib: Any = None
    _searched = False

    @classmethod
    def _find(cls) -> Any:
        if not cls._searched:
            cls._searched = True
            try:
                import ctypes

                with open("/proc/self/maps") as maps:
                    paths = sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower()})
                for path in paths:
                    lib = ctypes.CDLL(path)
                    for prefix in ("scipy_openblas_", "openblas_"):
                        for suffix in ("64_", ""):
                            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                            put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                            if get is not None and put is not None:
                                cls._lib = (get, put)
                                return cls._lib
            except (OSError, IndexError):
                cls._lib = None
        return cls._lib

    # Process-wide setting: the first of overlapping users (two threads running MVMs) saves the
    # count and sets it, the last one restores it, so it can never be left at 1.
    _lock = threading.Lock()
    _users = 0
    _saved: int | None = None

    def __init__(self, n: int) -> None:
        self._n = n

    def __enter__(self) -> None:
        lib = self._find()
        if lib is None:
            return
        with _BlasThreads._lock:
            if _BlasThreads._users == 0:
                _BlasThreads._saved = int(lib[0]())
                lib[1](self._n)
            _BlasThreads._users += 1

    def __exit__(self, *exc: object) -> None:
        lib = self._find()
        if lib is None:
            return
        with _BlasThreads._lock:
            _BlasThreads._users -= 1
            if _BlasThreads._users == 0 and _BlasThreads._saved is not None:
                lib[1](_BlasThreads._saved)


@dataclass
class _CoreCache:
    """Matmul-ready matrices of one core (µA per input LSB, µA² per LSB²), float32."""

    t_s: float
    v_mv: float
    m1: np.ndarray  # (512, 256): one-phase mean, rows [x; |x|]
    m4: np.ndarray  # (256, 512): four-phase mean, columns [G+ | G−]
    v_sum: np.ndarray  # (256, 256): (σ+² + σ−²) for x²
    v_diff: np.ndarray  # (256, 256): (σ+² − σ−²) for x·|x|


class SimulatedChip:
    """A HERMES-class chip: 64 cores of 256×256 weights, 4 PCM devices per weight.

    Args:
        rng: the one Generator all randomness comes from.
        n_cores: number of cores (1..64).
        clock: a :class:`VirtualClock` (advanced by modelled latencies) or a
            :class:`RealTimeClock`; default a new VirtualClock at 0 s.
        chip_id: identifier reported by IDENTIFY.
        **model_parameters: overrides of the chip constants below, of :class:`AdcBank`
            (e.g. ``gain_sigma_rel``) and of :class:`PulseModel` (e.g. ``i_melt_ua``), by name.

    Chip constants (model_parameters): ``drift_t0_s`` 200 s [AK hermes], ``read_noise_t_floor_s``
    1e-3 s (UNCONFIRMED), ``verify_read_voltage_v`` 0.2 V [LG], ``verify_counts_per_us``
    80/10.35 (UNCONFIRMED inference, chip.md §1.2), ``verify_window_ns`` 512 and
    ``verify_precharge_ns`` 256 [LG], ``mvm_window_ns`` 128 [KA], ``mvm_latency_1phase_ns`` 133
    and ``mvm_latency_4phase_ns`` 520 [LG Tab I], ``one_phase_asymmetry`` 0.03 (UNCONFIRMED),
    ``write_heads`` 32 [LG], ``pulse_overhead_ns`` 100 (UNCONFIRMED), ``cache_rel_tol`` 1e-3,
    ``die_temperature_c`` 30.0 (UNCONFIRMED), ``threads`` 2.
    """

    _CHIP_DEFAULTS: dict[str, float] = {
        "drift_t0_s": 200.0,
        "read_noise_t_floor_s": 1e-3,
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
        **model_parameters: Any,
    ) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        if not 1 <= int(n_cores) <= 64:
            raise LimitError(f"n_cores must be 1..64, got {n_cores!r}")
        chip_p, adc_p, pulse_p = self._split_parameters(model_parameters)
        self.n_cores = int(n_cores)
        self.chip_id = chip_id
        self.clock: VirtualClock | RealTimeClock = clock if clock is not None else VirtualClock()
        self._rng = rng
        self._p = chip_p
        self._t0_s = float(chip_p["drift_t0_s"])
        self._t_floor_s = float(chip_p["read_noise_t_floor_s"])
        self._hermes = HermesStatistics(num_devices=1)
        self.adc = AdcBank(rng=rng, n_cores=self.n_cores, rows=ROWS, **adc_p)
        pulse_p.setdefault("counts_per_us", chip_p["verify_counts_per_us"])
        self.pulses = PulseModel(
            rng=rng, hermes=self._hermes, t_verify_s=self._t_floor_s, t0_s=self._t0_s, **pulse_p
        )
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
            self._nu[core] = self._sample_nu(self._g_prog[core], rng)
        self._t_prog = np.full((n, d), now, np.float64)
        self._relax = np.zeros((n, d), np.float32)
        self._t_latest = np.full(n, now, np.float64)

        # Runtime randomness comes from per-core streams spawned from the injected generator:
        # what happens on one core never shifts another core's random numbers, so a run
        # resumed on a fresh simulated chip (same seed) reproduces an uninterrupted one.
        self._core_rngs = rng.spawn(n)
        self._core_mvm_rngs = rng.spawn(n)
        # MVM noise on a virtual clock is keyed to (core, time): see _mvm_stream.
        self._mvm_seeds: list[np.random.SeedSequence] = [
            g.bit_generator.seed_seq  # type: ignore[misc]
            for g in self._core_mvm_rngs
        ]
        self._mvm_seeded_at = np.full(n, np.nan)
        self._threads = max(1, int(chip_p["threads"]))
        self._cache: list[_CoreCache | None] = [None] * n
        self._buffers: dict[str, np.ndarray] = {}
        self._ldpu = [LdpuCoefficients.identity() for _ in range(n)]
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
            "hermes",
            "t_verify_s",
            "t0_s",
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

    def _sample_nu(self, g_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """ν = |N(μ_ν(G), σ_ν(G))| per device, HERMES 1-device fits [AK; chip.md §3]."""
        g = np.asarray(g_us, dtype=np.float32)
        z = rng.standard_normal(g.shape, dtype=np.float32)
        nu = self._hermes.mu_nu(g) + self._hermes.sigma_nu(g) * z
        return np.abs(nu).astype(np.float32)

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
        log_age = np.log1p(tau / self._t0_s).astype(np.float32)
        drift = np.exp(-self._nu[core, idx] * log_age)
        relax = self._relax[core, idx] * self.pulses.relaxation_progress(tau)
        g_d = np.maximum((g_p + relax) * drift, 0.0).astype(np.float32)
        return g_d, g_p, tau

    def _read_sigma_us(self, g_d: np.ndarray, g_p: np.ndarray, tau: np.ndarray) -> np.ndarray:
        t_obs = np.maximum(tau, self._t_floor_s).astype(np.float32)
        return self._hermes.read_noise_sigma_us(g_p, g_d, t_obs).astype(np.float32)

    def _programmed(self, core: int) -> None:
        self._cache[core] = None
        self._t_latest[core] = self.clock.now_s

    def conductance_us(self, core: int) -> np.ndarray:
        """Ground truth: noiseless drifted conductances of ``core`` now (µS, float32 256×256×4)."""
        c = self._check_core(core)
        g_d, _, _ = self._device_state(c, slice(None))
        return g_d.reshape(ROWS, COLS, DEVICES)

    def set_conductances_us(self, core: int, g_us: np.ndarray) -> None:
        """Program all devices of ``core`` statistically (test/benchmark back door).

        g_p = max(g_T + N(0, σ_prog(g_T)), 0) with the HERMES 1-device σ_prog [AK; chip.md §3];
        ν sampled from μ_ν(g_T), σ_ν(g_T); programming time = now; no relaxation offset. Targets
        above a device's SET maximum are clipped to it; stuck devices keep their state.

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
        z = rng.standard_normal(DEVICES_PER_CORE, dtype=np.float32)
        g_p = np.maximum(target + self._hermes.sigma_prog_us(target) * z, 0.0)
        nu = self._sample_nu(target, rng)
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
            remaining = self._relax[c, idx] * (1.0 - self.pulses.relaxation_progress(tau))
            g_new, relax = self.pulses.apply(
                g_now,
                self._g_set_max[c, idx],
                kd[sel],
                amp[sel],
                wd[sel],
                rng=self._core_rngs[c],
                relax_remaining_us=remaining,
            )
            nu = self._sample_nu(g_new, self._core_rngs[c])
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
        g_read = g_d + sigma * self._core_rngs[c].standard_normal(idx.size, dtype=np.float32)
        np.maximum(g_read, 0.0, out=g_read)
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
            age = now - self._t_latest[core] + self._t_floor_s
            if now - cache.t_s <= self._p["cache_rel_tol"] * age:
                return cache
        g_d, g_p, tau = self._device_state(core, slice(None))
        var = self._read_sigma_us(g_d, g_p, tau)
        np.square(var, out=var)
        g4 = g_d.reshape(ROWS, COLS, DEVICES)
        v4 = var.reshape(ROWS, COLS, DEVICES)
        g_pos = g4[..., 0] + g4[..., 1]
        g_neg = g4[..., 2] + g4[..., 3]
        v_pos = v4[..., 0] + v4[..., 1]
        v_neg = v4[..., 2] + v4[..., 3]
        k = self._read_voltage_mv * 1e-3 / 127.0  # µA per (µS · input LSB)
        delta = self._p["one_phase_asymmetry"]
        m1 = np.empty((2 * COLS, ROWS), np.float32)
        m1[:COLS] = ((1.0 - delta / 2) * k * (g_pos - g_neg)).T
        m1[COLS:] = ((delta / 2) * k * (g_pos + g_neg)).T
        m4 = np.empty((COLS, 2 * ROWS), np.float32)
        m4[:, :ROWS] = (k * g_pos).T
        m4[:, ROWS:] = (k * g_neg).T
        cache = _CoreCache(
            t_s=now,
            v_mv=self._read_voltage_mv,
            m1=m1,
            m4=m4,
            v_sum=np.ascontiguousarray((k * k * (v_pos + v_neg)).T, dtype=np.float32),
            v_diff=np.ascontiguousarray((k * k * (v_pos - v_neg)).T, dtype=np.float32),
        )
        self._cache[core] = cache
        return cache

    def _work_items(self, core_ids: np.ndarray, batch: int) -> list[list[_WorkItem]]:
        """Split (core position, batch start, batch stop, generator) over the worker threads.

        A core whose batch is split gets child generators spawned from its own MVM stream, so
        the noise depends only on that core's history, never on thread timing.
        """
        groups = self._threads
        n_cores = core_ids.size
        rngs = [self._mvm_stream(int(c)) for c in core_ids]
        if n_cores >= groups:
            bounds = np.linspace(0, n_cores, groups + 1).astype(int)
            return [
                [(k, 0, batch, rngs[k]) for k in range(bounds[g], bounds[g + 1])]
                for g in range(groups)
            ]
        split: list[_WorkItem] = []
        for k in range(n_cores):
            edges = np.linspace(0, batch, groups // n_cores + 1).astype(int)
            pieces = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
            children = rngs[k].spawn(len(pieces)) if len(pieces) > 1 else [rngs[k]]
            split += [(k, a, b, gen) for (a, b), gen in zip(pieces, children, strict=True)]
        out: list[list[_WorkItem]] = [[] for _ in range(groups)]
        for i, item in enumerate(split):
            out[i * groups // len(split)].append(item)
        return out

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
            base = self._mvm_seeds[core]
            sequence = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, ticks))
            self._core_mvm_rngs[core] = np.random.Generator(np.random.PCG64(sequence))
            self._mvm_seeded_at[core] = now
        return self._core_mvm_rngs[core]

    def _run_groups(self, work: Any, groups: list[list[_WorkItem]]) -> int:
        jobs = [(g, items) for g, items in enumerate(groups) if items]
        if len(jobs) == 1:
            return int(work(*jobs[0]))
        pool = _executor(self._threads)
        with _BlasThreads(1):
            return sum(f.result() for f in [pool.submit(work, g, items) for g, items in jobs])

    def mvm_raw(
        self, cores: np.ndarray, inputs: np.ndarray, mode: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Noisy MVM on C cores in parallel: (positive, negative) uint16 counts (C, B, 256).

        y[row] = Σ_col W[row, col]·x[col]; ``inputs`` int8 (C, B, 256) in −127..127 drive the
        columns; ``mode`` 1 (one-phase) or 4 (four-phase). Advances the clock by B MVM
        latencies.
        """
        core_ids = np.asarray(cores).reshape(-1).astype(np.int64)
        x = np.asarray(inputs)
        if x.ndim != 3 or x.shape[0] != core_ids.size or x.shape[2] != COLS or x.shape[1] < 1:
            raise LimitError(f"inputs must have shape ({core_ids.size}, B, 256), got {x.shape}")
        if mode not in (1, 4):
            raise LimitError(f"mode must be 1 or 4, got {mode!r}")
        if np.unique(core_ids).size != core_ids.size:
            raise LimitError("a core appears twice")
        for c in core_ids:
            self._check_core(int(c))
        n_c, batch = x.shape[0], x.shape[1]
        caches = [self._core_cache(int(c)) for c in core_ids]
        pos = np.empty((n_c, batch, ROWS), np.uint16)
        neg = np.empty((n_c, batch, ROWS), np.uint16)
        groups = self._work_items(core_ids, batch)
        if mode == 1:
            n_sat = self._mvm_one_phase(core_ids, caches, x, pos, neg, groups)
            latency_ns = self._p["mvm_latency_1phase_ns"]
        else:
            n_sat = self._mvm_four_phase(core_ids, caches, x, pos, neg, groups)
            latency_ns = self._p["mvm_latency_4phase_ns"]
        self.adc_saturation_count += n_sat
        self._elapse(batch * latency_ns * 1e-9)
        return pos, neg

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """A persistent work buffer (fresh pages cost more than the arithmetic on them)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[name] = buf
        return buf

    def _mvm_one_phase(
        self,
        core_ids: np.ndarray,
        caches: list[_CoreCache],
        x: np.ndarray,
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[_WorkItem]],
    ) -> int:
        window = self._p["mvm_window_ns"]
        top = np.float32(self.adc.saturation_counts(window))
        consts = [self.adc.signed_constants(int(c), window) for c in core_ids]

        def work(g: int, items: list[_WorkItem]) -> int:
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
                np.matmul(x1, caches[k].m1, out=i_ua)
                np.square(x1[:, :COLS], out=sq)
                np.matmul(sq, caches[k].v_sum, out=num)
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

        return self._run_groups(work, groups)

    def _mvm_four_phase(
        self,
        core_ids: np.ndarray,
        caches: list[_CoreCache],
        x: np.ndarray,
        pos: np.ndarray,
        neg: np.ndarray,
        groups: list[list[_WorkItem]],
    ) -> int:
        window = self._p["mvm_window_ns"]
        top = np.float32(self.adc.saturation_counts(window))
        consts = []
        for c in core_ids:
            a, b, off = self.adc.row_constants(int(c), POSITIVE, window)
            consts.append((np.tile(a, 2), np.tile(b, 2), np.tile(off, 2)))

        def work(g: int, items: list[_WorkItem]) -> int:
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
                np.matmul(x4, caches[k].m4, out=mk)
                np.square(xk, out=sq)
                np.matmul(sq, caches[k].v_sum, out=s)
                np.abs(xk, out=sq)
                sq *= xk
                np.matmul(sq, caches[k].v_diff, out=d)
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

        return self._run_groups(work, groups)

    def mvm_ldpu(self, cores: np.ndarray, inputs: np.ndarray, mode: int) -> np.ndarray:
        """:meth:`mvm_raw`, then each core's float16 LDPU chain: int8 (C, B, 256)."""
        pos, neg = self.mvm_raw(cores, inputs, mode)
        core_ids = np.asarray(cores).reshape(-1)
        out = np.empty(pos.shape, np.int8)
        for k, c in enumerate(core_ids):
            out[k] = apply_ldpu(self._ldpu[int(c)], pos[k], neg[k])
        return out

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
