"""Pulse-level programming model of one PCM device (RESET, SET and partial pulses).

Published pulse set [LG Methods p.7-8; chip.md §2a]: RESET 125 ns square at 700 µA; SET 250 ns
at 125 µA with a 50 ns trailing edge; iterative ("partial") pulses 125 ns square, 125-700 µA,
the next amplitude updated in proportion to (target − read) (Papandreou 2011). For that update
to converge the device response must be monotone in the amplitude. The [NK] reference model
(chip.md §5.3) describes gradual SET-type increments only; the published scheme instead uses
melt-quench pulses whose result is set by the amplitude. This model therefore has two regimes
(all constants are constructor arguments; every number below is UNCONFIRMED unless a source is
given):

**Melt-quench** (amplitude jittered by ``amplitude_jitter_ua`` ≥ ``i_melt_ua``; RESET and
PARTIAL kinds): the device forgets its state; the amorphous fraction grows linearly with the
amplitude, so

    G = G_reset + (G_set − G_reset)·s·(1 + σ_rel·ξ)
    s = clip((I_full − I)/(I_full − I_melt), 0, 1)

with G_reset the device's RESET level (|N(0.05, 0.05)| µS, within the "|G_RESET| < 5 counts"
yield cut [LG §IV]), G_set its own SET maximum (with 2 % cycle-to-cycle spread), I_melt 250 µA,
I_full 650 µA (full amorphisation: the 700 µA RESET always gives G_reset), σ_rel 4 %, and the
amplitude jitter 10 µA (melt-threshold variability). G decreases monotonically with the
amplitude: the proportional update converges. Width above ~10 ns is assumed to reach the melt
steady state (no width dependence).

**Crystallisation** (amplitude < I_melt; PARTIAL/RESET kinds, or a SET pulse too short or too
weak): G ← G + κ·(G_set − G)·(1 + σ_rel·ξ) with κ = 1 − exp(−(w/τ_c)·(I − I_th)/(I_melt − I_th)),
I_th 100 µA, τ_c 500 ns: a 125 ns pulse moves G by 4-23 % of the way to G_set, as in the
gradual-SET picture of [NK].

**SET** (kind SET, amplitude ≥ 90 µA, width ≥ 100 ns): full crystallisation, G = G_set.

**Per-device SET maximum** G_set: log-normal, median 15.7 µS × a per-core factor (log-normal,
σ 0.04), σ_ln 0.25 per device. With 64 cores the 10th percentile of the least conductive core
is ≈ 10.35 µS = 80 counts, matching Gmax(ODP) = 80 counts [LG §IV; chip.md §1.2] and a "wide"
SET distribution [LG ED Fig 5c].

**Stuck devices** (yield): 0.65 % stuck near RESET (never SET) and 0.05 % stuck at SET (never
RESET) on every core, ×16/7 on one outlier core, so the cut |G_RESET| < 5 and G_SET > 50
counts fails ~0.7-0.8 % of devices on typical cores (> 99 % pass) and ~1.6 % on the outlier
(~98.4 %) [LG §IV]. The split is UNCONFIRMED; most failures are taken as stuck-low because a
stuck-high device adds a full SET conductance to its weight, and 1 % of those would put the
uncompensated ODP MVM error near 30 %, far above the 64-core errors of [LG Fig 2d].

**Post-programming relaxation**: after every state-changing pulse a random offset
``relax_us`` ~ N(0, σ_relax(G)) is drawn; it appears gradually, G(τ) includes
relax·min(1, ln(1 + τ/τ_r)/ln(1 + t0/τ_r)) (τ_r = 1 s; the r(τ) of the device model,
:mod:`drivers.sim.devices`), so the verify reads of a P&V loop (µs after the pulse) do not see
it but a read t0 later does. σ_relax is calibrated so that the published P&V loop (5-count
tolerance, ≤ 30 iterations) ends with the device model's σ_prog at t0 (by default the HERMES
1-device fit [AK; chip.md §3]; another device model recalibrates it by itself):
σ_relax² = max(0, σ_prog² − σ_band² − σ_read(t_verify)² − σ_read(t0)²), with σ_band =
``band_fraction``·5 counts the spread the tolerance band leaves (0.35·5 counts, calibrated by
simulating the loop of tests/drivers/sim/test_pulses.py: most devices converge in 1-2 pulses,
so the accepted reads cluster inside the band; a uniform band would give 0.58) and σ_read the
device model's read noise of the verify read right after programming (t_verify = the model's
read-noise floor) and of the read at t0. Physically this stands for the structural relaxation
and early 1/f fluctuations that make σ_prog larger than the verify tolerance (UNCONFIRMED as a
mechanism; calibrated, not measured).

Only a share ``relax_read_noise_share`` = 0.4 of σ_read(t0)² is subtracted (changed from 1.0 for
procedures/program_verify, 2026): whether the HERMES σ_prog is the spread of *reads* at t0 (read
noise included; tests/drivers/sim/test_pulses.py) or of the *true* conductance at t0 (aihwkit
adds read noise on top of g_prog; tests/procedures/test_program_fidelity.py) is not stated, and
at high G the two differ by up to 25 % (σ_read(t0) ≈ 0.75·σ_prog at x = 1). Splitting the
difference keeps both within ±20 % (true-G ratio ≈ 0.87-1.1, read ratio ≈ 1.0-1.13).

A sub-melt (crystallisation) pulse does not re-amorphise the device: it keeps the part of its
relaxation offset still to come (``relax_remaining_us``) and adds a fresh one scaled by the share
of the SET range it crystallised, σ_relax(G)·√(|ΔG|/G_set) (UNCONFIRMED; without it a small GDP
correction pulse would re-randomise the whole device).

RESET-level samples of a pulse come from the generator of the call (the core's own stream), so
one core's pulses never shift another core's random numbers.
"""

from __future__ import annotations

import numpy as np

from drivers.sim.devices import DeviceModel

PULSE_RESET, PULSE_SET, PULSE_PARTIAL = 0, 1, 2

STUCK_NONE, STUCK_RESET, STUCK_SET = 0, 1, 2


class PulseModel:
    """Stochastic response of PCM devices to programming pulses; all randomness from ``rng``.

    Args:
        rng: the chip's Generator.
        device: the device model (:mod:`drivers.sim.devices`): its σ_prog and read noise
            calibrate the relaxation, its read-noise floor is the age of a verify read right
            after programming, and its t0 is when the relaxation is complete.
        counts_per_us: nominal verify-read scale in counts/µS (80/10.35, chip.md §1.2).
        Other arguments: see the module docstring (units in the names).
    """

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        device: DeviceModel,
        counts_per_us: float = 80.0 / 10.35,
        g_reset_mean_us: float = 0.05,
        g_reset_sigma_us: float = 0.05,
        g_set_median_us: float = 15.7,
        g_set_sigma_ln: float = 0.25,
        g_set_core_sigma_ln: float = 0.04,
        set_c2c_sigma_rel: float = 0.02,
        i_melt_ua: float = 250.0,
        i_full_reset_ua: float = 650.0,
        amplitude_jitter_ua: float = 10.0,
        result_sigma_rel: float = 0.04,
        cryst_threshold_ua: float = 100.0,
        cryst_tau_ns: float = 500.0,
        set_min_amplitude_ua: float = 90.0,
        set_min_width_ns: float = 100.0,
        stuck_reset_fraction: float = 0.0065,
        stuck_set_fraction: float = 0.0005,
        outlier_core_factor: float = 16.0 / 7.0,
        verify_tolerance_counts: float = 5.0,
        band_fraction: float = 0.35,
        relax_read_noise_share: float = 0.4,
    ) -> None:
        self.rng = rng
        self.device = device
        self.counts_per_us = float(counts_per_us)
        self.g_reset_mean_us = float(g_reset_mean_us)
        self.g_reset_sigma_us = float(g_reset_sigma_us)
        self.g_set_median_us = float(g_set_median_us)
        self.g_set_sigma_ln = float(g_set_sigma_ln)
        self.g_set_core_sigma_ln = float(g_set_core_sigma_ln)
        self.set_c2c_sigma_rel = float(set_c2c_sigma_rel)
        self.i_melt_ua = float(i_melt_ua)
        self.i_full_reset_ua = float(i_full_reset_ua)
        self.amplitude_jitter_ua = float(amplitude_jitter_ua)
        self.result_sigma_rel = float(result_sigma_rel)
        self.cryst_threshold_ua = float(cryst_threshold_ua)
        self.cryst_tau_ns = float(cryst_tau_ns)
        self.set_min_amplitude_ua = float(set_min_amplitude_ua)
        self.set_min_width_ns = float(set_min_width_ns)
        self.stuck_reset_fraction = float(stuck_reset_fraction)
        self.stuck_set_fraction = float(stuck_set_fraction)
        self.outlier_core_factor = float(outlier_core_factor)
        self.verify_tolerance_counts = float(verify_tolerance_counts)
        self.band_fraction = float(band_fraction)
        self.relax_read_noise_share = float(relax_read_noise_share)

    # ---- sampling of per-device properties -------------------------------------------------

    def sample_set_max_us(self, n_cores: int, devices_per_core: int) -> np.ndarray:
        """Per-device SET maximum in µS, float32 (n_cores, devices_per_core)."""
        core_ln = self.g_set_core_sigma_ln * self.rng.standard_normal((n_cores, 1))
        out = self.rng.standard_normal((n_cores, devices_per_core), dtype=np.float32)
        out *= np.float32(self.g_set_sigma_ln)
        out += (np.log(self.g_set_median_us) + core_ln).astype(np.float32)
        np.exp(out, out=out)
        return out

    def sample_stuck(self, n_cores: int, devices_per_core: int) -> tuple[np.ndarray, int | None]:
        """Stuck flags uint8 (n_cores, devices_per_core) and the outlier core (None if 1 core)."""
        outlier = int(self.rng.integers(n_cores)) if n_cores > 1 else None
        u = self.rng.random((n_cores, devices_per_core), dtype=np.float32)
        factor = np.ones((n_cores, 1), np.float32)
        if outlier is not None:
            factor[outlier] = self.outlier_core_factor
        p_reset = np.float32(self.stuck_reset_fraction) * factor
        p_set = np.float32(self.stuck_set_fraction) * factor
        stuck = np.zeros((n_cores, devices_per_core), np.uint8)
        stuck[u < p_reset] = STUCK_RESET
        stuck[(u >= p_reset) & (u < p_reset + p_set)] = STUCK_SET
        return stuck, outlier

    def sample_reset_us(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """RESET-state conductances in µS, |N(g_reset_mean, g_reset_sigma)|, float32 (n,)."""
        rng = self.rng if rng is None else rng
        g = rng.standard_normal(n, dtype=np.float32) * np.float32(self.g_reset_sigma_us)
        g += np.float32(self.g_reset_mean_us)
        return np.abs(g)

    # ---- relaxation ---------------------------------------------------------------------------

    def relaxation_sigma_us(self, g_us: np.ndarray) -> np.ndarray:
        """σ of the post-programming relaxation offset in µS at conductance ``g_us``."""
        g = np.asarray(g_us, dtype=np.float64)
        d = self.device
        band_us = self.band_fraction * self.verify_tolerance_counts / self.counts_per_us
        var = (
            d.sigma_prog_us(g) ** 2
            - band_us**2
            - d.read_noise_sigma_us(g, g, d.read_noise_t_floor_s) ** 2
            - self.relax_read_noise_share * d.read_noise_sigma_us(g, g, d.t0_s) ** 2
        )
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)

    # ---- pulses -------------------------------------------------------------------------------

    def apply(
        self,
        g_us: np.ndarray,
        g_set_max_us: np.ndarray,
        kind: np.ndarray,
        amplitude_ua: np.ndarray,
        width_ns: np.ndarray,
        *,
        rng: np.random.Generator | None = None,
        relax_remaining_us: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply one pulse to each of n distinct devices.

        Args:
            g_us: conductance before the pulse in µS (drifted, as the device is now), (n,).
            g_set_max_us: the devices' SET maxima in µS, (n,).
            kind: pulse kind codes (PULSE_RESET / PULSE_SET / PULSE_PARTIAL), (n,).
            amplitude_ua: amplitude in µA, (n,).
            width_ns: width in ns, (n,).
            rng: generator for this call (the chip passes the core's own stream); default the
                model's.
            relax_remaining_us: relaxation offset each device still has to show (µS, (n,));
                kept by crystallisation pulses. Default none.

        Returns:
            (new conductance in µS right after the pulse, relaxation offset in µS), float32.
        """
        n = g_us.shape[0]
        rng = self.rng if rng is None else rng
        g = np.asarray(g_us, dtype=np.float64)
        amp = np.asarray(amplitude_ua, dtype=np.float64)
        width = np.asarray(width_ns, dtype=np.float64)
        kind = np.asarray(kind)
        xi = rng.standard_normal((4, n))
        g_set = np.asarray(g_set_max_us, dtype=np.float64) * (1.0 + self.set_c2c_sigma_rel * xi[0])
        g_reset = self.sample_reset_us(n, rng).astype(np.float64)
        amp_eff = amp + self.amplitude_jitter_ua * xi[1]

        full_set = (
            (kind == PULSE_SET)
            & (amp >= self.set_min_amplitude_ua)
            & (width >= self.set_min_width_ns)
        )
        melt = (kind != PULSE_SET) & (amp_eff >= self.i_melt_ua)

        s = np.clip(
            (self.i_full_reset_ua - amp_eff) / (self.i_full_reset_ua - self.i_melt_ua), 0, 1
        )
        g_melt = g_reset + (g_set - g_reset) * s * (1.0 + self.result_sigma_rel * xi[2])

        drive = np.clip(
            (amp - self.cryst_threshold_ua) / (self.i_melt_ua - self.cryst_threshold_ua), 0.0, None
        )
        kappa = -np.expm1(-(width / self.cryst_tau_ns) * drive)
        g_cryst = g + kappa * np.maximum(g_set - g, 0.0) * (1.0 + self.result_sigma_rel * xi[3])

        g_new = np.where(full_set, g_set, np.where(melt, g_melt, g_cryst))
        g_new = np.clip(g_new, 0.0, np.maximum(g_set, g)).astype(np.float32)
        relax = self.relaxation_sigma_us(g_new) * rng.standard_normal(n, dtype=np.float32)
        cryst = ~full_set & ~melt
        if np.any(cryst):
            share = np.sqrt(np.clip(np.abs(g_new - g) / np.maximum(g_set, 1e-3), 0.0, 1.0))
            remaining = 0.0 if relax_remaining_us is None else relax_remaining_us
            relax = np.where(cryst, remaining + relax * share, relax)
        return g_new, relax.astype(np.float32)
