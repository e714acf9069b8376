"""Per-row current-controlled-oscillator (CCO) ADC bank of the simulated chip.

One ADC per row (output line), 256 per core, each with a positive and a negative current
mirror (separate 4-bit gain trims α_P, α_N) feeding a CCO and two 12-bit ripple counters
[LG p.3; KA §III, Fig 3; chip.md §1.4]. Transfer per mirror [KA Eq 8]::

    f(i) = A·i / (1 + B·i) + C        (f in MHz, i in µA)

counts = floor(min(f, f_peak)·T_window), clipped to the 12-bit counter (0..4095).

Defaults (chip.md §1.4, §2b):

- A = 35 MHz/µA after trim, residual spread σ 7.09 % truncated at ±21 % [KA §III-D].
- B_NL = 5e-4 /µA mean, σ 1e-4 /µA (UNCONFIRMED: the trim "raises β to minimise B_NL"; this
  gives ~5 % compression at 100 µA, i.e. a few LSB of INL at full scale).
- C = 0 MHz mean, σ 0.5 MHz (UNCONFIRMED: "relative offsets → ~0 %"; 0.5 MHz is 0.06 counts in
  128 ns). One offset per ADC, shared by both mirrors: it is trimmed through the read-voltage
  tap ṽ_read of the ADC [KA Fig 3], not per mirror.
- f_peak = 3300 MHz: the CCO peak (~3.3 GHz, > 420 levels in 128 ns) [KA]. With the nominal A
  and B the CCO saturates at i ≈ 99 µA, matching the ~100 µA linear limit [LG Methods].

Verify-read configuration (assumption, UNCONFIRMED): the single-device verify read (0.2 V,
512 ns + 256 ns pre-charge, ~2 µA per device [LG Methods; chip.md §2a]) needs about 8× the
resolution of an MVM conversion, so the ADC is modelled as switching to a separate high-gain
configuration for it (its own mirror ratio / integration setting), whose per-row gain mismatch
is independent of the MVM-path α trim: A_verify = A·(1 + r_v) with r_v ~ N(0,
``verify_gain_sigma_rel`` = 2 %) truncated at ±``gain_limit_rel``, B_NL and C shared with the
positive mirror. Program-and-verify programs conductances in verify counts, so the MVM gain
*relative to the programmed targets*, A_MVM/A_verify, keeps a per-row spread of
√(7.0² + 2²) ≈ 7.3 % (positive and negative mirrors separately): this is the spread the LDPU's
per-ADC FP16 gain equalises (chip.md §2b step 2). With a shared configuration (σ_v → the MVM
gain itself) a row's gain error would cancel between programming and MVM, which the published
need for per-ADC digital calibration argues against.

Sampling: each core's ADC parameters come from its own child generator spawned from the chip's
generator (core c gets child c), so core c's ADCs do not depend on how many cores the simulated
chip has (a calibration set of ``mockchip://?seed=1`` holds for ``...&cores=2`` too).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

POSITIVE, NEGATIVE = 0, 1


class AdcBank:
    """Per-row ADC parameters of every core, sampled once from the injected ``rng``.

    Args:
        rng: the chip's Generator.
        n_cores: number of cores.
        rows: ADCs per core (one per row).
        gain_mhz_per_ua: nominal trimmed gain A in MHz/µA [KA §III-D].
        gain_sigma_rel: relative σ of A after trim (0.0709) [KA §III-D].
        gain_limit_rel: truncation of the gain spread (±0.21) [KA §III-D].
        b_nl_per_ua: mean non-linearity B_NL in 1/µA (UNCONFIRMED).
        b_nl_sigma_per_ua: σ of B_NL in 1/µA (UNCONFIRMED).
        offset_sigma_mhz: σ of the offset C in MHz (UNCONFIRMED).
        f_peak_mhz: CCO peak frequency in MHz [KA].
        counter_bits: counter width (12) [LG p.3].
        verify_gain_sigma_rel: relative σ of the verify configuration's gain, independent of
            the MVM trim (0.02, UNCONFIRMED; module docstring).

    Attributes:
        gain_mhz_per_ua, b_nl_per_ua: float32 arrays (n_cores, 2, rows), index 1 is the mirror
            (POSITIVE, NEGATIVE).
        offset_mhz: float32 array (n_cores, rows).
        verify_gain_mhz_per_ua: float32 array (n_cores, rows), gain of the verify configuration.
    """

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        n_cores: int,
        rows: int = 256,
        gain_mhz_per_ua: float = 35.0,
        gain_sigma_rel: float = 0.0709,
        gain_limit_rel: float = 0.21,
        b_nl_per_ua: float = 5e-4,
        b_nl_sigma_per_ua: float = 1e-4,
        offset_sigma_mhz: float = 0.5,
        f_peak_mhz: float = 3300.0,
        counter_bits: int = 12,
        verify_gain_sigma_rel: float = 0.02,
    ) -> None:
        for name, value in (
            ("gain_sigma_rel", gain_sigma_rel),
            ("verify_gain_sigma_rel", verify_gain_sigma_rel),
            ("gain_limit_rel", gain_limit_rel),
        ):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not 0 < gain_limit_rel < 1:
            raise ValueError(f"gain_limit_rel must be within (0, 1), got {gain_limit_rel!r}")
        try:
            streams = rng.spawn(n_cores)
        except TypeError:  # a Generator without a seed sequence: one shared stream
            streams = [rng] * n_cores

        def truncated(gen: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
            rel = gen.standard_normal(shape) * sigma
            bad = np.abs(rel) > gain_limit_rel
            while np.any(bad):  # truncated normal by resampling (deterministic for the rng)
                rel[bad] = gen.standard_normal(int(bad.sum())) * sigma
                bad = np.abs(rel) > gain_limit_rel
            return rel

        rel = np.empty((n_cores, 2, rows))
        b = np.empty((n_cores, 2, rows))
        offset = np.empty((n_cores, rows))
        rel_v = np.empty((n_cores, rows))
        for core, gen in enumerate(streams):
            rel[core] = truncated(gen, (2, rows), gain_sigma_rel)
            b[core] = b_nl_per_ua + b_nl_sigma_per_ua * gen.standard_normal((2, rows))
            offset[core] = offset_sigma_mhz * gen.standard_normal(rows)
            rel_v[core] = truncated(gen, (rows,), verify_gain_sigma_rel)
        self.nominal_gain_mhz_per_ua = float(gain_mhz_per_ua)
        self.gain_mhz_per_ua = (gain_mhz_per_ua * (1.0 + rel)).astype(np.float32)
        self.b_nl_per_ua = np.maximum(b, 0.0).astype(np.float32)
        self.offset_mhz = offset.astype(np.float32)
        self.verify_gain_mhz_per_ua = (gain_mhz_per_ua * (1.0 + rel_v)).astype(np.float32)
        self.f_peak_mhz = float(f_peak_mhz)
        self.counter_max = (1 << counter_bits) - 1
        # The parameters are fixed at construction: read-only, so that the constants derived
        # from them below can be kept (an MVM asks for them on every call).
        for array in (
            self.gain_mhz_per_ua,
            self.b_nl_per_ua,
            self.offset_mhz,
            self.verify_gain_mhz_per_ua,
        ):
            array.flags.writeable = False
        self._constants: dict[tuple[object, ...], tuple[np.ndarray, ...]] = {}

    def frequency_mhz(
        self,
        core: int,
        polarity: int,
        i_ua: np.ndarray,
        rows: np.ndarray | None = None,
        *,
        verify: bool = False,
    ) -> np.ndarray:
        """CCO frequency in MHz for line currents ``i_ua`` (µA, >= 0), before saturation.

        ``rows`` selects the ADC of each current (same shape as ``i_ua``); without it the last
        axis of ``i_ua`` is the row. ``verify`` uses the verify configuration's gain (module
        docstring; B_NL and C of the given mirror).
        """
        sel = slice(None) if rows is None else rows
        if verify:
            a = self.verify_gain_mhz_per_ua[core, sel]
        else:
            a = self.gain_mhz_per_ua[core, polarity, sel]
        b = self.b_nl_per_ua[core, polarity, sel]
        c = self.offset_mhz[core, sel]
        i = np.asarray(i_ua, dtype=np.float32)
        return a * i / (1.0 + b * i) + c

    def saturation_counts(self, window_ns: float) -> float:
        """Largest count of one conversion in ``window_ns`` (CCO peak or counter ceiling)."""
        return min(self.f_peak_mhz * window_ns * 1e-3, float(self.counter_max))

    def convert(
        self,
        core: int,
        polarity: int,
        i_ua: np.ndarray,
        window_ns: float,
        rows: np.ndarray | None = None,
        *,
        verify: bool = False,
    ) -> tuple[np.ndarray, int]:
        """One conversion per current: (uint16 counts, number of saturated conversions).

        counts = floor(clip(f(i)·T, 0, saturation_counts(T))); a conversion is saturated when
        the CCO reached its peak or the counter its ceiling. ``verify`` selects the verify
        configuration's gain (module docstring).
        """
        counts = self.frequency_mhz(core, polarity, i_ua, rows, verify=verify)
        counts *= np.float32(window_ns * 1e-3)
        top = self.saturation_counts(window_ns)
        n_sat = int(np.count_nonzero(counts >= top))
        np.clip(counts, 0.0, top, out=counts)
        return counts.astype(np.uint16), n_sat

    def row_constants(
        self, core: int, polarity: int, window_ns: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, c) per row for the hot path: counts = a·i/(1 + b·i) + c, i in µA.

        a = A·T and c = C·T in counts (T = window_ns), b = B_NL in 1/µA; float32 (rows,).
        Made once per (core, polarity, window) and shared: callers must not write to them
        (they are left writeable, as the compiled kernel is compiled for writeable arrays).
        """

        def make() -> tuple[np.ndarray, ...]:
            t_us = np.float32(window_ns * 1e-3)
            return (
                self.gain_mhz_per_ua[core, polarity] * t_us,
                self.b_nl_per_ua[core, polarity].copy(),
                self.offset_mhz[core] * t_us,
            )

        a, b, c = self._kept(("row", core, polarity, window_ns), make)
        return a, b, c

    def signed_constants(
        self, core: int, window_ns: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Constants for converting a signed current through the mirror its sign selects.

        With s = |i|: counts = (ā·s + Δa·i)/(1 + b̄·s + Δb·i) + c, where ā = (a_P + a_N)/2,
        Δa = (a_P − a_N)/2 (likewise b): for i ≥ 0 this is the positive mirror's transfer, for
        i < 0 the negative mirror's, without a per-element select. Returns (ā, Δa, b̄, Δb, c)
        per row, float32 (rows,), in counts and 1/µA. Shared like :meth:`row_constants`'.
        """

        def make() -> tuple[np.ndarray, ...]:
            t_us = np.float32(window_ns * 1e-3)
            a = self.gain_mhz_per_ua[core] * t_us
            b = self.b_nl_per_ua[core]
            half = np.float32(0.5)
            return (
                (a[0] + a[1]) * half,
                (a[0] - a[1]) * half,
                (b[0] + b[1]) * half,
                (b[0] - b[1]) * half,
                self.offset_mhz[core] * t_us,
            )

        a_mean, a_diff, b_mean, b_diff, c = self._kept(("signed", core, window_ns), make)
        return a_mean, a_diff, b_mean, b_diff, c

    def _kept(
        self, key: tuple[object, ...], make: Callable[[], tuple[np.ndarray, ...]]
    ) -> tuple[np.ndarray, ...]:
        """The constants under ``key``, made by ``make`` the first time."""
        kept = self._constants.get(key)
        if kept is None:
            kept = self._constants[key] = make()
        return kept


def convert_inplace(
    i_ua: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    top: float,
    scratch: np.ndarray,
    flags: np.ndarray | None = None,
) -> int:
    """Hot-path conversion in place: i_ua ← clip(a·i/(1 + b·i) + c, 0, top) (float counts).

    ``a``, ``b``, ``c`` broadcast against ``i_ua`` (per-row constants from
    :meth:`AdcBank.row_constants`); ``scratch`` is a float32 array of the same shape. Returns
    the number of saturated conversions. The caller floors (casts) to integer counts.
    ``flags`` (bool, same shape) is an optional scratch for the saturation test.
    """
    np.multiply(i_ua, b, out=scratch)
    scratch += 1.0
    i_ua *= a
    i_ua /= scratch
    i_ua += c
    top32 = np.float32(top)
    flags = np.greater_equal(i_ua, top32, out=flags)
    n_sat = int(np.count_nonzero(flags))
    np.clip(i_ua, np.float32(0.0), top32, out=i_ua)
    return n_sat
