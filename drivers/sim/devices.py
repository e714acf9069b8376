"""Device models of the simulator: the statistics and equations of one PCM device.

A device model says how a phase-change-memory device behaves once a pulse has left it at a
conductance: the programming noise around a target, the drift exponent ν sampled at
programming, the drift and the post-programming relaxation over time, and the read noise of
every read. The simulated chip (:class:`drivers.sim.chip.SimulatedChip`, arrays of devices)
and the simulated station's test device (:class:`drivers.sim.instruments.smu.SimulatedTestDevice`,
one device on the SMU) hold device *state*; they take one :class:`DeviceModel` and call its
equations, so each equation is written once, here. Pulse responses (how a pulse changes the
device) are in :mod:`drivers.sim.pulses`, whose relaxation calibration uses the model's σ_prog
and read noise.

Equations (:class:`DeviceModel`; τ = t − t_p is the time since the device's own programming)::

    programmed:  g_p = max(g_T + N(0, σ_prog(g_T)), 0)                  (statistical back door)
    ν          = |N(μ_ν(g_p), σ_ν(g_p))|, sampled once per programming
    G(t)       = max((g_p + relax·r(τ)) · exp(−ν·ln(1 + τ/t0)), 0)    = (g_p + …)·((τ + t0)/t0)^−ν
    r(τ)       = min(1, ln(1 + τ/τ_r) / ln(1 + t0/τ_r))                 (relaxation shown by τ)
    σ_read     = |G(t)| · Q_s(g_p) · √ln((t_obs + t_read)/(2·t_read)),  t_obs = max(τ, t_floor)
    read       = max(G(t) + N(0, σ_read), 0)

This is the form of aihwkit's PCM noise models [AK ``inference/noise/pcm.py``, ``hermes.py``;
chip.md §3], which count t from t0 after programming; here each device's own programming time
starts its clock, and ``read_noise_t_floor_s`` (1 ms, UNCONFIRMED) stands for the shortest time
between programming and a read (the verify reads of a program-and-verify loop). The statistics
σ_prog, μ_ν, σ_ν and Q_s are the hooks a model fills in, functions of the normalised
conductance x = |g|/g_max clipped to [1e-7, 1] (the fits are defined on the characterised
range; above it the cubic and quadratic fits extrapolate to unphysical values, e.g. a negative
mean ν).

Models (:data:`DEVICE_MODELS`, selected by name with the URL option ``devices=``):

- ``hermes`` (:class:`HermesPcm`, default): the fits of the 14-nm HERMES chip, aihwkit's
  ``HermesNoiseModel`` [AK hermes.py; chip.md §3].
- ``pcmlike`` (:class:`PcmLike`): aihwkit's ``PCMLikeNoiseModel`` statistics, fitted on an
  earlier 90-nm PCM array [AK pcm.py; chip.md §3]: smaller drift, a different read noise.

Random numbers: the model has no generator of its own; every sampling method takes the
generator of the call (the chip passes each core's own stream, so one core's activity never
shifts another core's numbers). The arrays' dtype is kept (the chip works in float32, the
station's single device in float64), and so is the order of the draws. Time comes from the
clock of the holder, passed in as τ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Final, NamedTuple

import numpy as np

from drivers.errors import DriverError, LimitError

_X_MIN: Final = 1e-7

ArrayLike = np.ndarray | float


class UnknownDeviceModelError(DriverError, ValueError):
    """No device model of that name (the message lists the known ones)."""


def _floating(values: ArrayLike) -> np.ndarray:
    """``values`` as a float32 or float64 array (integers and Python floats become float64)."""
    a = np.asarray(values)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return a


class DeviceModel(ABC):
    """Statistics and equations of a PCM device (equations in the module docstring).

    Subclasses give the statistics: :meth:`sigma_prog_us`, :meth:`mu_nu`, :meth:`sigma_nu` and
    :meth:`q_s`; everything else is written here once.

    Args:
        g_max_us: conductance that normalises the fits, x = |g|/g_max (µS).
        t0_s: drift reference time t0 (s).
        t_read_s: duration of a read in the 1/f integration factor (s).
        read_noise_t_floor_s: shortest observation time of the read noise (s; UNCONFIRMED,
            1 ms: the verify reads of a program-and-verify loop follow the pulse by about that).
        relax_tau_s: time constant τ_r of the post-programming relaxation (s; UNCONFIRMED,
            calibrated with :mod:`drivers.sim.pulses`); the relaxation is complete at t0.
    """

    name: ClassVar[str] = ""
    """Name of the model in :data:`DEVICE_MODELS` (the URL option ``devices=NAME``)."""

    def __init__(
        self,
        *,
        g_max_us: float,
        t0_s: float,
        t_read_s: float,
        read_noise_t_floor_s: float = 1e-3,
        relax_tau_s: float = 1.0,
    ) -> None:
        for label, value in (
            ("g_max_us", g_max_us),
            ("t0_s", t0_s),
            ("t_read_s", t_read_s),
            ("read_noise_t_floor_s", read_noise_t_floor_s),
            ("relax_tau_s", relax_tau_s),
        ):
            if not (np.isfinite(value) and value > 0):
                raise LimitError(f"{label} must be finite and > 0, got {value!r}")
        self.g_max_us = float(g_max_us)
        self.t0_s = float(t0_s)
        self.t_read_s = float(t_read_s)
        self.read_noise_t_floor_s = float(read_noise_t_floor_s)
        self.relax_tau_s = float(relax_tau_s)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(g_max_us={self.g_max_us!r}, t0_s={self.t0_s!r}, "
            f"t_read_s={self.t_read_s!r})"
        )

    # ---- statistics: the hooks ----------------------------------------------------------------

    def normalised(self, g_us: ArrayLike) -> np.ndarray:
        """x = |g|/g_max clipped to [1e-7, 1], in the dtype of ``g_us`` (float64 for non-floats)."""
        g = _floating(g_us)
        return np.clip(np.abs(g) / g.dtype.type(self.g_max_us), _X_MIN, 1.0)

    @abstractmethod
    def sigma_prog_us(self, g_target_us: ArrayLike) -> np.ndarray:
        """Programming-noise σ in µS at target conductance ``g_target_us`` (µS)."""

    @abstractmethod
    def mu_nu(self, g_us: ArrayLike) -> np.ndarray:
        """Mean drift exponent ν (dimensionless) at conductance ``g_us`` (µS)."""

    @abstractmethod
    def sigma_nu(self, g_us: ArrayLike) -> np.ndarray:
        """Spread σ of the drift exponent ν at conductance ``g_us`` (µS)."""

    @abstractmethod
    def q_s(self, g_us: ArrayLike) -> np.ndarray:
        """Relative read-noise amplitude Q_s at programmed conductance ``g_us`` (µS)."""

    # ---- sampling at programming ----------------------------------------------------------------

    def sample_programmed_us(self, g_target_us: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """g_p = max(g_T + N(0, σ_prog(g_T)), 0) in µS, one normal per device from ``rng``."""
        target = _floating(g_target_us)
        z = rng.standard_normal(target.shape, dtype=target.dtype)
        return np.maximum(target + self.sigma_prog_us(target) * z, 0.0)

    def sample_nu(self, g_us: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """ν = |N(μ_ν(g), σ_ν(g))| per device at conductance ``g_us`` (µS), from ``rng``."""
        g = _floating(g_us)
        z = rng.standard_normal(g.shape, dtype=g.dtype)
        nu = self.mu_nu(g) + self.sigma_nu(g) * z
        return np.abs(nu).astype(g.dtype)

    # ---- time -------------------------------------------------------------------------------

    def drift_factor(self, nu: ArrayLike, tau_s: ArrayLike) -> np.ndarray:
        """((τ + t0)/t0)^−ν, computed as exp(−ν·ln(1 + τ/t0)) in the dtype of ``nu``."""
        n = _floating(nu)
        log_age = np.log1p(np.asarray(tau_s, dtype=np.float64) / self.t0_s).astype(n.dtype)
        return np.exp(-n * log_age)

    def relaxation_progress(self, tau_s: ArrayLike) -> np.ndarray:
        """r(τ): share of the relaxation offset shown τ s after programming, float32 in 0..1."""
        tau = np.maximum(np.asarray(tau_s, dtype=np.float64), 0.0)
        r = np.log1p(tau / self.relax_tau_s) / np.log1p(self.t0_s / self.relax_tau_s)
        return np.minimum(r, 1.0).astype(np.float32)

    def conductance_us(
        self, g_prog_us: ArrayLike, relax_us: ArrayLike, nu: ArrayLike, tau_s: ArrayLike
    ) -> np.ndarray:
        """Noiseless G(t) in µS: (g_p + relax·r(τ))·((τ + t0)/t0)^−ν, floored at 0.

        Args:
            g_prog_us: conductance right after programming (µS).
            relax_us: the device's relaxation offset (µS, see :mod:`drivers.sim.pulses`).
            nu: drift exponents.
            tau_s: time since programming (s, >= 0).
        """
        g_p = _floating(g_prog_us)
        relax = _floating(relax_us) * self.relaxation_progress(tau_s)
        return np.maximum((g_p + relax) * self.drift_factor(nu, tau_s), 0.0).astype(g_p.dtype)

    # ---- reads -----------------------------------------------------------------------------

    def read_noise_factor(self, t_s: ArrayLike) -> np.ndarray:
        """The 1/f integration factor √ln((t + t_read)/(2·t_read)) (dimensionless) [AK pcm.py].

        ``t_s`` is the observation time in s. The logarithm is clipped at 0 (t < t_read would
        give a negative variance).
        """
        t = _floating(t_s)
        t_read = t.dtype.type(self.t_read_s)
        return np.sqrt(np.maximum(np.log((t + t_read) / (2 * t_read)), 0.0))

    def read_noise_sigma_us(
        self,
        g_prog_us: ArrayLike,
        g_drifted_us: ArrayLike,
        t_s: ArrayLike,
        q_s: np.ndarray | None = None,
    ) -> np.ndarray:
        """Read-noise σ in µS at time ``t_s``: |g_d|·Q_s(g_p)·√ln((t + t_read)/(2·t_read)).

        Args:
            g_prog_us: conductance right after programming in µS (Q_s is computed from it,
                not from the drifted value, as in aihwkit).
            g_drifted_us: current (drifted) conductance in µS.
            t_s: observation time in s (see :meth:`read_noise_factor`).
            q_s: ``self.q_s(g_prog_us)`` if the caller kept it (it changes only when the
                devices are programmed).
        """
        g_d = np.abs(np.asarray(g_drifted_us))
        amplitude = self.q_s(g_prog_us) if q_s is None else q_s
        return g_d * amplitude * self.read_noise_factor(t_s)

    def read_sigma_us(
        self,
        g_prog_us: ArrayLike,
        g_us: ArrayLike,
        tau_s: ArrayLike,
        q_s: np.ndarray | None = None,
    ) -> np.ndarray:
        """σ_read in µS of a read τ s after programming (t_obs = max(τ, floor)); dtype of g.
        ``q_s`` as in :meth:`read_noise_sigma_us`."""
        g = _floating(g_us)
        t_obs = np.maximum(tau_s, self.read_noise_t_floor_s).astype(g.dtype)
        return self.read_noise_sigma_us(g_prog_us, g, t_obs, q_s).astype(g.dtype)

    def sample_read_us(
        self, g_us: ArrayLike, sigma_us: ArrayLike, rng: np.random.Generator
    ) -> np.ndarray:
        """One noisy read per device: max(G + σ·N(0, 1), 0) in µS, one normal each from ``rng``."""
        g = _floating(g_us)
        read = g + sigma_us * rng.standard_normal(g.shape, dtype=g.dtype)
        return np.maximum(read, 0.0)


def _check_coefficients(label: str, values: tuple[float, ...], n: int) -> tuple[float, ...]:
    """Coefficients as Python floats (so float32 arrays stay float32), ``n`` of them."""
    if len(values) != n:
        raise LimitError(f"{label} needs {n} coefficients, got {len(values)}")
    out = tuple(float(v) for v in values)
    if not all(np.isfinite(out)):
        raise LimitError(f"{label} must be finite, got {values!r}")
    return out


Coefficients3 = tuple[float, float, float]
Coefficients4 = tuple[float, float, float, float]


class _HermesFit(NamedTuple):
    """The statistics that differ between the 1- and 2-device HERMES fits."""

    g_max_us: float
    t0_s: float
    sigma_prog_coeff_us: Coefficients4
    sigma_nu_low: Coefficients4
    sigma_nu_high: Coefficients3
    sigma_nu_break: float
    q_s_low: Coefficients4
    q_s_high: Coefficients4
    q_s_break: float


class HermesPcm(DeviceModel):
    """The HERMES chip's device statistics, aihwkit's ``HermesNoiseModel`` [AK hermes.py].

    Fitted on the 14-nm 64-core chip this project drives (chip.md §3). Every statistic is a
    constructor argument; ``None`` takes the fit for ``num_devices``. ``x`` = |g|/g_max.

    Args:
        num_devices: devices per polarity the fits describe: 1 (ODP, the default and what the
            simulated chip models per device) or 2 (TDP).
        g_max_us: 10.35 µS (1 device) or 20.7 µS (2 devices) [AK hermes.py; chip.md §1.2, §3].
        t0_s: 200 s (1 device) or 300 s (2 devices) [AK; chip.md §3].
        t_read_s: 512 ns, the verify pulse width [AK; chip.md §3].
        sigma_prog_coeff_us: σ_prog = c0 + c1·x + c2·x² + c3·x³ in µS; 1 device
            (0.15782, 2.32444, −2.16311, 0.68842), 2 devices (0.16603, 4.71806, −8.48101,
            4.68961) [AK; chip.md §3].
        mu_nu_low: (a, b, lo, hi): μ_ν = clip(a·ln x + b, lo, hi) below ``mu_nu_break``;
            (−0.0387, −0.0182, 0.072, 0.13) for 1 and 2 devices [AK; chip.md §3].
        mu_nu_high: (a2, a1, a0): μ_ν = a2·x² + a1·x + a0 from the break up;
            (−0.0436, −0.0126, 0.0736).
        mu_nu_break: 0.0945.
        sigma_nu_low, sigma_nu_high, sigma_nu_break: the same forms for σ_ν; 1 device
            (−0.0120, −0.0023, 0.0124, 0.04), (−0.0165, 0.0116, 0.0104), 0.3039; 2 devices
            (−0.0117, −0.0057, 0.0091, 0.04), (−0.0118, 0.0093, 0.0073), 0.3055.
        q_s_low, q_s_high, q_s_break: Q_s = clip(a·ln x + b, lo, hi) below the break, else the
            cubic ((q3·x + q2)·x + q1)·x + q0 with ``q_s_high`` = (q3, q2, q1, q0); 1 device
            (−0.0078, 0.0038, 0.0179, 0.04), (0.0664, −0.1352, 0.0768, 0.0088), 0.1591;
            2 devices (−0.0117, −0.0069, 0.015, 0.04), (0.0069, −0.0280, 0.0211, 0.0123), 0.16.
        read_noise_t_floor_s, relax_tau_s: see :class:`DeviceModel`.
    """

    name = "hermes"

    _FITS: Final = {
        1: _HermesFit(
            g_max_us=10.35,
            t0_s=200.0,
            sigma_prog_coeff_us=(0.15782, 2.32444, -2.16311, 0.68842),
            sigma_nu_low=(-0.0120, -0.0023, 0.0124, 0.04),
            sigma_nu_high=(-0.0165, 0.0116, 0.0104),
            sigma_nu_break=0.3039,
            q_s_low=(-0.0078, 0.0038, 0.0179, 0.04),
            q_s_high=(0.0664, -0.1352, 0.0768, 0.0088),
            q_s_break=0.1591,
        ),
        2: _HermesFit(
            g_max_us=20.7,
            t0_s=300.0,
            sigma_prog_coeff_us=(0.16603, 4.71806, -8.48101, 4.68961),
            sigma_nu_low=(-0.0117, -0.0057, 0.0091, 0.04),
            sigma_nu_high=(-0.0118, 0.0093, 0.0073),
            sigma_nu_break=0.3055,
            q_s_low=(-0.0117, -0.0069, 0.015, 0.04),
            q_s_high=(0.0069, -0.0280, 0.0211, 0.0123),
            q_s_break=0.16,
        ),
    }

    def __init__(
        self,
        num_devices: int = 1,
        *,
        g_max_us: float | None = None,
        t0_s: float | None = None,
        t_read_s: float = 512e-9,
        sigma_prog_coeff_us: Coefficients4 | None = None,
        mu_nu_low: Coefficients4 = (-0.0387, -0.0182, 0.072, 0.13),
        mu_nu_high: Coefficients3 = (-0.0436, -0.0126, 0.0736),
        mu_nu_break: float = 0.0945,
        sigma_nu_low: Coefficients4 | None = None,
        sigma_nu_high: Coefficients3 | None = None,
        sigma_nu_break: float | None = None,
        q_s_low: Coefficients4 | None = None,
        q_s_high: Coefficients4 | None = None,
        q_s_break: float | None = None,
        read_noise_t_floor_s: float = 1e-3,
        relax_tau_s: float = 1.0,
    ) -> None:
        if num_devices not in (1, 2):
            raise LimitError(f"num_devices must be 1 or 2, got {num_devices!r}")
        fit = self._FITS[num_devices]
        super().__init__(
            g_max_us=fit.g_max_us if g_max_us is None else g_max_us,
            t0_s=fit.t0_s if t0_s is None else t0_s,
            t_read_s=t_read_s,
            read_noise_t_floor_s=read_noise_t_floor_s,
            relax_tau_s=relax_tau_s,
        )
        self.num_devices = num_devices
        self.sigma_prog_coeff_us = _check_coefficients(
            "sigma_prog_coeff_us",
            fit.sigma_prog_coeff_us if sigma_prog_coeff_us is None else sigma_prog_coeff_us,
            4,
        )
        self.mu_nu_low = _check_coefficients("mu_nu_low", mu_nu_low, 4)
        self.mu_nu_high = _check_coefficients("mu_nu_high", mu_nu_high, 3)
        self.mu_nu_break = float(mu_nu_break)
        self.sigma_nu_low = _check_coefficients(
            "sigma_nu_low", fit.sigma_nu_low if sigma_nu_low is None else sigma_nu_low, 4
        )
        self.sigma_nu_high = _check_coefficients(
            "sigma_nu_high", fit.sigma_nu_high if sigma_nu_high is None else sigma_nu_high, 3
        )
        self.sigma_nu_break = float(
            fit.sigma_nu_break if sigma_nu_break is None else sigma_nu_break
        )
        self.q_s_low = _check_coefficients(
            "q_s_low", fit.q_s_low if q_s_low is None else q_s_low, 4
        )
        self.q_s_high = _check_coefficients(
            "q_s_high", fit.q_s_high if q_s_high is None else q_s_high, 4
        )
        self.q_s_break = float(fit.q_s_break if q_s_break is None else q_s_break)

    @staticmethod
    def _log_clip(x: np.ndarray, low: tuple[float, ...]) -> np.ndarray:
        a, b, lo, hi = low
        return np.clip(a * np.log(x) + b, lo, hi)

    def sigma_prog_us(self, g_target_us: ArrayLike) -> np.ndarray:
        """σ_prog = c0 + c1·x + c2·x² + c3·x³ in µS [AK hermes.py; chip.md §3].

        1 device: 0.16 / 0.87 / 1.01 µS at x = 0 / 0.5 / 1.
        """
        x = self.normalised(g_target_us)
        c0, c1, c2, c3 = self.sigma_prog_coeff_us
        return c0 + x * (c1 + x * (c2 + x * c3))

    def mu_nu(self, g_us: ArrayLike) -> np.ndarray:
        """μ_ν: 0.13 at x = 0.01, 0.069 at 0.2, 0.056 at 0.5, 0.017 at 1 [AK; chip.md §3]."""
        x = self.normalised(g_us)
        a2, a1, a0 = self.mu_nu_high
        high = a2 * x * x + a1 * x + a0
        return np.where(x < self.mu_nu_break, self._log_clip(x, self.mu_nu_low), high)

    def sigma_nu(self, g_us: ArrayLike) -> np.ndarray:
        """σ_ν, log-clipped below the break, quadratic above [AK; chip.md §3]."""
        x = self.normalised(g_us)
        a2, a1, a0 = self.sigma_nu_high
        high = a2 * x * x + a1 * x + a0
        return np.where(x < self.sigma_nu_break, self._log_clip(x, self.sigma_nu_low), high)

    def q_s(self, g_us: ArrayLike) -> np.ndarray:
        """Q_s, log-clipped below the break, cubic above [AK; chip.md §3]."""
        x = self.normalised(g_us)
        q3, q2, q1, q0 = self.q_s_high
        high = x * (x * (q3 * x + q2) + q1) + q0
        return np.where(x < self.q_s_break, self._log_clip(x, self.q_s_low), high)


class PcmLike(DeviceModel):
    """aihwkit's ``PCMLikeNoiseModel`` statistics [AK inference/noise/pcm.py; chip.md §3].

    Measured on an earlier PCM array (the aihwkit default PCM model, not this chip): larger
    g_max, smaller and conductance-dependent drift, read noise falling with G as a power law.
    A second model that shows the seam is real (``mockchip://?devices=pcmlike``); x = |g|/g_max.

    Args:
        g_max_us: 25 µS [AK pcm.py].
        t0_s: 20 s [AK pcm.py].
        t_read_s: 250 ns [AK pcm.py].
        prog_coeff: σ_prog = (p0 + p1·x + p2·x²)·(g_max/25 µS) µS; (0.26348, 1.9650, −1.1731)
            (0.26 / 0.95 / 1.06 µS at x = 0 / 0.5 / 1) [AK; chip.md §3].
        mu_nu_log: (a, b, lo, hi): μ_ν = clip(a·ln x + b, lo, hi); (−0.0155, 0.0244, 0.049, 0.1)
            (0.060 at x = 0.1, 0.049 from x ≈ 0.25) [AK; chip.md §3].
        sigma_nu_log: σ_ν in the same form; (−0.0125, −0.0059, 0.008, 0.045) (0.023 at x = 0.1)
            [AK; chip.md §3].
        q_s_coeff: (q, exponent, x_floor, cap): Q_s = min(q/max(x^exponent, x_floor), cap);
            (0.0088, 0.65, 1e-3, 0.2) [AK; chip.md §3].
        read_noise_t_floor_s, relax_tau_s: see :class:`DeviceModel`.
    """

    name = "pcmlike"

    def __init__(
        self,
        *,
        g_max_us: float = 25.0,
        t0_s: float = 20.0,
        t_read_s: float = 250e-9,
        prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731),
        mu_nu_log: tuple[float, float, float, float] = (-0.0155, 0.0244, 0.049, 0.1),
        sigma_nu_log: tuple[float, float, float, float] = (-0.0125, -0.0059, 0.008, 0.045),
        q_s_coeff: tuple[float, float, float, float] = (0.0088, 0.65, 1e-3, 0.2),
        read_noise_t_floor_s: float = 1e-3,
        relax_tau_s: float = 1.0,
    ) -> None:
        super().__init__(
            g_max_us=g_max_us,
            t0_s=t0_s,
            t_read_s=t_read_s,
            read_noise_t_floor_s=read_noise_t_floor_s,
            relax_tau_s=relax_tau_s,
        )
        self.prog_coeff = _check_coefficients("prog_coeff", prog_coeff, 3)
        self.mu_nu_log = _check_coefficients("mu_nu_log", mu_nu_log, 4)
        self.sigma_nu_log = _check_coefficients("sigma_nu_log", sigma_nu_log, 4)
        self.q_s_coeff = _check_coefficients("q_s_coeff", q_s_coeff, 4)

    def sigma_prog_us(self, g_target_us: ArrayLike) -> np.ndarray:
        """σ_prog = (p0 + p1·x + p2·x²)·(g_max/25) in µS [AK pcm.py; chip.md §3]."""
        x = self.normalised(g_target_us)
        p0, p1, p2 = self.prog_coeff
        return (p0 + x * (p1 + x * p2)) * (self.g_max_us / 25.0)

    def mu_nu(self, g_us: ArrayLike) -> np.ndarray:
        """μ_ν = clip(−0.0155·ln x + 0.0244, 0.049, 0.1) [AK pcm.py; chip.md §3]."""
        a, b, lo, hi = self.mu_nu_log
        return np.clip(a * np.log(self.normalised(g_us)) + b, lo, hi)

    def sigma_nu(self, g_us: ArrayLike) -> np.ndarray:
        """σ_ν = clip(−0.0125·ln x − 0.0059, 0.008, 0.045) [AK pcm.py; chip.md §3]."""
        a, b, lo, hi = self.sigma_nu_log
        return np.clip(a * np.log(self.normalised(g_us)) + b, lo, hi)

    def q_s(self, g_us: ArrayLike) -> np.ndarray:
        """Q_s = min(0.0088/max(x^0.65, 1e-3), 0.2) [AK pcm.py; chip.md §3]."""
        q, exponent, x_floor, cap = self.q_s_coeff
        x = self.normalised(g_us)
        return np.minimum(q / np.maximum(x**exponent, x_floor), cap)


DEVICE_MODELS: dict[str, Callable[[], DeviceModel]] = {
    HermesPcm.name: HermesPcm,
    PcmLike.name: PcmLike,
}
"""Device models by name (the URL option ``devices=NAME``), each built with its defaults."""

DEFAULT_DEVICE_MODEL: Final = HermesPcm.name


def device_model(name: str) -> DeviceModel:
    """A new device model of the registered ``name`` with its default statistics.

    Raises:
        UnknownDeviceModelError: ``name`` is not in :data:`DEVICE_MODELS`.
    """
    factory = DEVICE_MODELS.get(name)
    if factory is None:
        raise UnknownDeviceModelError(
            f"unknown device model {name!r}; known: {', '.join(sorted(DEVICE_MODELS))}"
        )
    return factory()
