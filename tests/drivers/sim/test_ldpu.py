"""The float16 LDPU chain (drivers/ldpu.py; docs/protocol.md §3.6)."""

from __future__ import annotations

import numpy as np
import pytest

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


def _reference_float16_chain(c: LdpuCoefficients, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The chain written plainly in numpy float16 arithmetic (the definition)."""
    f16 = np.float16
    with np.errstate(over="ignore", invalid="ignore"):
        a = p.astype(f16) * c.gain_pos + c.offset_pos
        b = n.astype(f16) * c.gain_neg + c.offset_neg
        y = (a - b) * c.affine_scale + c.affine_offset
        if c.relu:
            y = np.maximum(y, f16(0))
        y = np.nan_to_num(np.rint(y.astype(np.float32)), nan=0.0, posinf=127.0, neginf=-128.0)
    return np.clip(y, -128, 127).astype(np.int8)


@pytest.mark.parametrize("seed", range(4))
def test_fast_chain_is_bit_identical_to_float16_arithmetic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 2, size=(6, 256))
    stacked = rng.normal(size=(6, 256)) * scale
    stacked[:, :8] = 60000.0  # some rows overflow float16 on the way
    stacked[:4, 100:140] = 0.0  # inactive rows: only the affine offset remains
    for relu in (False, True):
        c = LdpuCoefficients.from_stacked(stacked, relu=relu)
        p = rng.integers(0, 4096, size=(64, 256)).astype(np.uint16)
        n = rng.integers(0, 4096, size=(64, 256)).astype(np.uint16)
        np.testing.assert_array_equal(c.apply(p, n), _reference_float16_chain(c, p, n))


def test_chain_broadcasts_and_rounds_float_counts_once() -> None:
    c = LdpuCoefficients(affine_offset=np.full(256, -2048.0))
    p = np.full((3, 256), 2049.00001)
    n = np.zeros(256)
    reference = _reference_float16_chain(c, p, np.broadcast_to(n, p.shape))
    np.testing.assert_array_equal(c.apply(p, n), reference)
    assert c.apply(p, n).shape == (3, 256)
