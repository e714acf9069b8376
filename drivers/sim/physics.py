"""HERMES statistical fits of programming noise, drift exponent and read noise.

All formulas and constants are those of aihwkit's ``HermesNoiseModel`` [AK hermes.py], fitted
on the 14-nm HERMES chip, as transcribed in ``reference/chip.md`` §3. Conductances are in µS,
times in seconds. ``x`` below is the normalised conductance ``|g| / g_max`` (g_max 10.35 µS for
one device per polarity, 20.7 µS for two).

The fits are defined on 0 <= x <= 1 (the characterised range). Outside it ``x`` is clipped to
[1e-7, 1] (our choice: the cubic and quadratic fits extrapolate to unphysical values, e.g. a
negative mean drift exponent, above x = 1).
"""

from __future__ import annotations

from typing import Final

import numpy as np

_X_MIN: Final = 1e-7


class HermesStatistics:
    """HERMES-fitted device statistics for ``num_devices`` devices per polarity (1 or 2).

    Args:
        num_devices: 1 (one device per polarity, ODP) or 2 (two devices, TDP).

    Attributes:
        g_max_us: 10.35 µS (1 device) or 20.7 µS (2 devices) [AK hermes.py; chip.md §1.2, §3].
        t0_s: drift reference time, 200 s (1 device) or 300 s (2 devices) [AK; chip.md §3].
        t_read_s: read-pulse duration of the fits, 512 ns (= verify pulse width) [AK; chip.md §3].
    """

    _SIGMA_PROG_COEFF: Final = {
        1: (0.15782, 2.32444, -2.16311, 0.68842),
        2: (0.16603, 4.71806, -8.48101, 4.68961),
    }

    def __init__(self, num_devices: int = 1) -> None:
        if num_devices not in (1, 2):
            raise ValueError(f"num_devices must be 1 or 2, got {num_devices!r}")
        self.num_devices = num_devices
        self.g_max_us = 10.35 if num_devices == 1 else 20.7
        self.t0_s = 200.0 if num_devices == 1 else 300.0
        self.t_read_s = 512e-9

    def _x(self, g_us: np.ndarray | float) -> np.ndarray:
        g = np.asarray(g_us)
        if not np.issubdtype(g.dtype, np.floating):
            g = g.astype(np.float64)
        return np.clip(np.abs(g) / g.dtype.type(self.g_max_us), _X_MIN, 1.0)

    def sigma_prog_us(self, g_target_us: np.ndarray | float) -> np.ndarray:
        """Programming-noise σ in µS at target ``g_target_us`` (µS) [AK hermes.py; chip.md §3].

        σ = c0 + c1·x + c2·x² + c3·x³ with x = g_T/g_max; 1 device c = [0.15782, 2.32444,
        −2.16311, 0.68842] (0.16 / 0.87 / 1.01 µS at x = 0 / 0.5 / 1), 2 devices c = [0.16603,
        4.71806, −8.48101, 4.68961].
        """
        x = self._x(g_target_us)
        c0, c1, c2, c3 = self._SIGMA_PROG_COEFF[self.num_devices]
        return c0 + x * (c1 + x * (c2 + x * c3))

    def mu_nu(self, g_us: np.ndarray | float) -> np.ndarray:
        """Mean drift exponent ν (dimensionless) at conductance ``g_us`` [AK; chip.md §3].

        x < 0.0945: clip(−0.0387·ln x − 0.0182, 0.072, 0.13); otherwise
        −0.0436·x² − 0.0126·x + 0.0736 (same for 1 and 2 devices).
        """
        x = self._x(g_us)
        low = np.clip(-0.0387 * np.log(x) - 0.0182, 0.072, 0.13)
        high = -0.0436 * x * x - 0.0126 * x + 0.0736
        return np.where(x < 0.0945, low, high)

    def sigma_nu(self, g_us: np.ndarray | float) -> np.ndarray:
        """Spread σ of the drift exponent ν at conductance ``g_us`` [AK; chip.md §3].

        1 device: x < 0.3039: clip(−0.0120·ln x − 0.0023, 0.0124, 0.04), else
        −0.0165·x² + 0.0116·x + 0.0104. 2 devices: x < 0.3055: clip(−0.0117·ln x − 0.0057,
        0.0091, 0.04), else −0.0118·x² + 0.0093·x + 0.0073.
        """
        x = self._x(g_us)
        if self.num_devices == 1:
            low = np.clip(-0.0120 * np.log(x) - 0.0023, 0.0124, 0.04)
            high = -0.0165 * x * x + 0.0116 * x + 0.0104
            return np.where(x < 0.3039, low, high)
        low = np.clip(-0.0117 * np.log(x) - 0.0057, 0.0091, 0.04)
        high = -0.0118 * x * x + 0.0093 * x + 0.0073
        return np.where(x < 0.3055, low, high)

    def q_s(self, g_us: np.ndarray | float) -> np.ndarray:
        """Relative read-noise amplitude Q_s at programmed conductance ``g_us`` [AK; chip.md §3].

        1 device: x < 0.1591: clip(−0.0078·ln x + 0.0038, 0.0179, 0.04), else
        0.0664·x³ − 0.1352·x² + 0.0768·x + 0.0088. 2 devices: x < 0.16: clip(−0.0117·ln x −
        0.0069, 0.015, 0.04), else 0.0069·x³ − 0.0280·x² + 0.0211·x + 0.0123.
        """
        x = self._x(g_us)
        if self.num_devices == 1:
            low = np.clip(-0.0078 * np.log(x) + 0.0038, 0.0179, 0.04)
            high = x * (x * (0.0664 * x - 0.1352) + 0.0768) + 0.0088
            return np.where(x < 0.1591, low, high)
        low = np.clip(-0.0117 * np.log(x) - 0.0069, 0.015, 0.04)
        high = x * (x * (0.0069 * x - 0.0280) + 0.0211) + 0.0123
        return np.where(x < 0.16, low, high)

    def read_noise_factor(self, t_s: np.ndarray | float) -> np.ndarray:
        """The 1/f integration factor √ln((t + t_read)/(2·t_read)) (dimensionless) [AK pcm.py].

        ``t_s`` is the observation time in s (the chip passes the time since programming,
        floored, see :class:`drivers.sim.chip.SimulatedChip`). The logarithm is clipped at 0
        (t < t_read would give a negative variance).
        """
        t = np.asarray(t_s)
        if not np.issubdtype(t.dtype, np.floating):
            t = t.astype(np.float64)
        t_read = t.dtype.type(self.t_read_s)
        return np.sqrt(np.maximum(np.log((t + t_read) / (2 * t_read)), 0.0))

    def read_noise_sigma_us(
        self,
        g_prog_us: np.ndarray | float,
        g_drifted_us: np.ndarray | float,
        t_s: np.ndarray | float,
    ) -> np.ndarray:
        """Read-noise σ in µS: |g_d|·Q_s(g_p)·√ln((t + t_read)/(2·t_read)) [AK; chip.md §3].

        Args:
            g_prog_us: conductance right after programming in µS (Q_s is computed from it,
                not from the drifted value, as in aihwkit).
            g_drifted_us: current (drifted) conductance in µS.
            t_s: observation time in s (see :meth:`read_noise_factor`).
        """
        g_d = np.abs(np.asarray(g_drifted_us))
        return g_d * self.q_s(g_prog_us) * self.read_noise_factor(t_s)
