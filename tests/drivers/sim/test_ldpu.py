"""The float16 LDPU chain (drivers/ldpu.py; docs/protocol.md §3.6)."""

from __future__ import annotations

import numpy as np

from drivers.ldpu import LdpuCoefficients
from drivers.sim.ldpu import apply_ldpu


def _coefficients(relu: bool) -> LdpuCoefficients:
    def full(v: float) -> np.ndarray:
        return np.full(256, v)

    return LdpuCoefficients(
        full(0.1), full(0.5), full(0.1), full(0.25), full(0.5), full(-3.0), relu
    )


def test_hand_computed_float16_example() -> None:
    # gain 0.1 is 0.0999755859375 in float16.
    # p = f16(0.09997559·1000 = 99.9756) = 100.0 (ulp 0.0625); p + 0.5 = 100.5
    # n = f16(0.09997559·200 = 19.9951) = 20.0 (ulp 0.015625); n + 0.25 = 20.25
    # y = 100.5 − 20.25 = 80.25; 0.5·y = 40.125; − 3 = 37.125 → rint 37
    p = np.full((1, 256), 1000, np.uint16)
    n = np.full((1, 256), 200, np.uint16)
    out = apply_ldpu(_coefficients(False), p, n)
    assert out.dtype == np.int8
    assert np.all(out == 37)
    # float32 arithmetic would give 0.5·(0.09997559·1000 + 0.5 − 0.09997559·200 − 0.25) − 3
    # = 37.115 → 37 as well; a case where float16 rounding decides: P = 2049 → 2048 in float16
    coeff = LdpuCoefficients()
    assert (
        apply_ldpu(coeff, np.array([[2049] * 256], np.uint16), np.array([[1960] * 256]))[0, 0] == 88
    )


def test_saturation_and_relu() -> None:
    coeff = LdpuCoefficients()
    p = np.zeros((1, 256), np.uint16)
    n = np.zeros((1, 256), np.uint16)
    p[0, 0], n[0, 1] = 4000, 4000
    p[0, 2], n[0, 3] = 100, 100
    out = apply_ldpu(coeff, p, n)
    assert out[0, 0] == 127 and out[0, 1] == -128 and out[0, 2] == 100 and out[0, 3] == -100
    relu = LdpuCoefficients(relu=True)
    out = apply_ldpu(relu, p, n)
    assert out[0, 1] == 0 and out[0, 3] == 0 and out[0, 2] == 100
    big = LdpuCoefficients(gain_pos=np.full(256, 60000.0))
    assert apply_ldpu(big, p, n)[0, 0] == 127  # float16 overflow to inf saturates
