"""GDPU model: the piecewise-linear tanh LUT and the float16 LSTM cell against float32."""

from __future__ import annotations

import numpy as np
import pytest

from procedures.inference import gdpu
from procedures.inference.digital import Float16, int8_round
from procedures.inference.gdpu import (
    GdpuLstmCell,
    deinterleave_gates,
    interleave_gates,
    quantise_int8,
    tanh_lut,
)
from procedures.inference.gdpu_kernel import gate_codes, gate_codes_from_partial
from procedures.inference.graph import GraphError, Lstm
from procedures.inference.reference import lstm_float
from procedures.inference.streaming import Codes, _input_codes

LUT_MAX_ERROR = 3.0e-3
"""Measured: 2.94e-3 (float16 arithmetic), see the gdpu module docstring."""


def test_lut_has_17_comparators_18_bins_and_is_odd() -> None:
    assert gdpu.TANH_BREAKPOINTS.size == 17 and gdpu.TANH_SLOPES.size == 18
    assert np.all(np.diff(gdpu.TANH_BREAKPOINTS.astype(float)) > 0)
    x = np.linspace(-6, 6, 4001).astype(np.float16)
    x = x[~np.isin(x, gdpu.TANH_BREAKPOINTS)]  # a bin's minimax line jumps at its edges
    np.testing.assert_allclose(tanh_lut(x), -tanh_lut(-x), atol=1e-3)


def test_lut_max_error_against_numpy_tanh() -> None:
    x = np.linspace(-10, 10, 400_001).astype(np.float16)
    error = np.abs(tanh_lut(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert 1e-3 < error.max() < LUT_MAX_ERROR
    assert tanh_lut(np.float16(60000.0)) <= 1.0


def test_gate_interleaving_round_trip() -> None:
    z = np.arange(2 * 4 * 3).reshape(2, 12)
    inter = interleave_gates(z)
    assert list(inter[0, :8]) == [0, 3, 6, 9, 1, 4, 7, 10]  # I, A, F, O of unit 0, then unit 1
    np.testing.assert_array_equal(deinterleave_gates(inter), z)
    with pytest.raises(GraphError):
        interleave_gates(np.zeros(6))


def test_int8_saturates_as_hardware() -> None:
    q = quantise_int8(np.array([-3.0, -0.5, 0.26, 9.0]), 0.02)
    assert q.dtype == np.int8 and list(q) == [-127, -25, 13, 127]


def test_cell_follows_the_float32_lstm() -> None:
    rng = np.random.default_rng(11)
    hid, n_in, steps, batch = 64, 4, 10, 200
    node = Lstm(
        "l",
        ("x",),
        "y",
        w_input=rng.normal(0, 0.5, (4 * hid, n_in)),
        w_hidden=rng.normal(0, 0.15, (4 * hid, hid)),
        bias=rng.normal(0, 0.3, 4 * hid),
        return_sequences=True,
    )
    x = rng.standard_normal((batch, steps, n_in)).astype(np.float32)
    expected = lstm_float(node, x)
    gate_range = 6.0
    cell = GdpuLstmCell(hid, (gate_range / 127,) * 4)
    c = cell.initial_state(batch)
    h = np.zeros((batch, hid), np.float32)
    for t in range(steps):
        z = x[:, t] @ node.w_input.T + h @ node.w_hidden.T + node.bias
        h_q, c = cell.step(interleave_gates(quantise_int8(z, gate_range / 127)), c)
        assert h_q.dtype == np.int8 and c.dtype == np.float16
        h = h_q.astype(np.float32) / 127
        error = np.abs(h - expected[:, t])
        assert error.mean() < 0.01 and error.max() < 0.08, (t, error.mean(), error.max())


def test_cell_validates_its_inputs() -> None:
    cell = GdpuLstmCell(2, (0.05,) * 4)
    with pytest.raises(GraphError, match="int8"):
        cell.step(np.zeros((1, 8), np.float32), cell.initial_state(1))
    with pytest.raises(GraphError, match="gate_lsb"):
        GdpuLstmCell(2, (0.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize("gate_lsb", [(0.02, 0.03, 0.05, 0.01), (0.3,) * 4, (1e-3,) * 4])
def test_the_compiled_step_is_bit_identical_to_numpy(gate_lsb: tuple[float, ...]) -> None:
    """Every gate code, cell states from tiny to beyond float16's range (inf), NaN cells,
    several steps in a row: the compiled step and the numpy float16 step agree bit for bit."""
    rng = np.random.default_rng(4)
    cell_model = GdpuLstmCell(8, gate_lsb, h_lsb=1 / 127)
    gates = rng.integers(-128, 128, (600, 32)).astype(np.int8)
    gates[:256, 0] = np.arange(-128, 128)  # every code through the LUT
    scale = np.logspace(-6, 5, 600)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN on purpose
        cell = (rng.standard_normal((600, 8)) * scale).astype(np.float16)
    cell[0, :3] = [np.inf, -np.inf, np.nan]
    c_fast, c_ref = cell.copy(), cell.copy()
    for _ in range(3):
        h_fast, c_fast = cell_model.step(gates, c_fast)
        with np.errstate(over="ignore", invalid="ignore"):
            h_ref, c_ref = cell_model.step_numpy(gates, c_ref)
        assert h_fast.dtype == h_ref.dtype == np.int8
        np.testing.assert_array_equal(h_fast, h_ref)
        assert c_fast.dtype == np.float16
        np.testing.assert_array_equal(c_fast.view(np.uint16), c_ref.view(np.uint16))
        gates = np.roll(gates, 1, axis=0)


def test_fused_gate_codes_are_the_float16_steps() -> None:
    """streaming._lstm's compiled gate step equals its numpy float16 steps bit for bit, with
    sums that overflow float16, NaN from inf − inf, ties and a strided input."""
    rng = np.random.default_rng(21)
    projected = rng.normal(0.0, 60.0, (300, 3, 256))[:, 1]  # a time step of (batch, steps, 4H)
    hidden = rng.integers(-127, 128, (300, 256)).astype(np.float64)
    offset = Float16().coefficient(rng.normal(0.0, 20.0, 256))
    projected[0, :4] = [np.inf, -np.inf, 7e4, 0.5]
    hidden[0, :4] = [-np.inf, 1.0, 0.0, 0.0]
    lsb = 0.37
    fmt = Float16()
    with np.errstate(invalid="ignore"):  # inf − inf
        total = fmt.value(projected + hidden, lsb)
        gates = fmt.value(total + offset, lsb)
        expected = int8_round(gates / lsb).clip(-127, 127).astype(np.int8)
    assert expected[0, 0] == 0 and expected[0, 1] == -127 and expected[0, 2] == 127
    np.testing.assert_array_equal(gate_codes(projected, hidden, offset, lsb), expected)


@pytest.mark.parametrize("code_lsb", [0.37, 2.0**-20, 900.0])  # ordinary, subnormal, overflow
def test_gate_codes_from_a_tiles_codes_are_the_float16_steps(code_lsb: float) -> None:
    """The recurrent product as one tile's int8 codes: float16(code·lsb) formed inside the
    compiled step equals ``Float16.value`` of the product, then the steps above, bit for bit."""
    rng = np.random.default_rng(22)
    projected = rng.normal(0.0, 60.0, (300, 3, 256))[:, 2]
    codes = rng.integers(-127, 128, (300, 256)).astype(np.int8)
    codes[0, :5] = [-127, 127, 0, 1, -1]
    offset = Float16().coefficient(rng.normal(0.0, 20.0, 256))
    lsb = 0.37
    fmt = Float16()
    with np.errstate(invalid="ignore", over="ignore"):
        hidden = fmt.value(codes * code_lsb, code_lsb)
        expected = gate_codes(projected, hidden, offset, lsb)
    got = gate_codes_from_partial(projected, codes, code_lsb, offset, lsb)
    np.testing.assert_array_equal(got, expected)
    assert np.unique(got).size > 20  # the cases reach many codes, not only the rails


def test_a_step_on_the_float16_grid_is_the_float16_step() -> None:
    """The cell state kept as float32 between steps (the executor's LSTM loop) gives the same
    outputs and states as the float16 state, and a float16 state is refused there."""
    rng = np.random.default_rng(23)
    cell_model = GdpuLstmCell(16, (0.02, 0.03, 0.05, 0.01), h_lsb=1 / 127)
    gates = rng.integers(-127, 128, (200, 64)).astype(np.int8)
    c16 = cell_model.initial_state(200)
    c32 = c16.astype(np.float32)
    for _ in range(4):
        h16, c16 = cell_model.step(gates, c16)
        h32, c32 = cell_model.step_on_grid(gates, c32)
        np.testing.assert_array_equal(h32, h16)
        np.testing.assert_array_equal(c32, c16.astype(np.float32))
        gates = np.roll(gates, 3, axis=1)
    with pytest.raises(GraphError, match="float32"):
        cell_model.step_on_grid(gates, c16)


def test_quantise_int8_is_the_numpy_formula() -> None:
    """The compiled int8 conversion equals rint, nan_to_num and clip in numpy: ties to even,
    ±inf and beyond-range saturate to ±127, NaN is 0, a strided and a float32 input."""
    rng = np.random.default_rng(24)
    x = rng.normal(0.0, 80.0, (70, 33)) * 0.3
    x[0, :8] = [np.inf, -np.inf, np.nan, 0.5 * 0.3, 1.5 * 0.3, -2.5 * 0.3, 1e300, -0.0]
    with np.errstate(over="ignore"):  # 1e300 is inf in float32
        narrow = x.astype(np.float32)
    for values in (x, x[:, ::2], narrow):
        y = np.rint(np.asarray(values, np.float64) / 0.3)
        expected = np.clip(np.nan_to_num(y, nan=0.0, posinf=127.0, neginf=-127.0), -127, 127)
        got = quantise_int8(values, 0.3)
        assert got.dtype == np.int8 and got.shape == values.shape
        np.testing.assert_array_equal(got, expected.astype(np.int8))


@pytest.mark.parametrize("lsb", [0.0123, 1.0 / 127.0, 3.7e-5, 250.0])
def test_codes_sent_between_layers_are_what_quantising_their_values_gives(lsb: float) -> None:
    """The executor hands an analog layer's int8 outputs to the next layer as codes when the
    grids agree: the same codes as quantising their float values (−128 saturating to −127),
    and quantising when the grids differ."""
    codes = np.random.default_rng(31).integers(-128, 128, (300, 40)).astype(np.int8)
    codes[0, 0] = -128
    values = codes * lsb
    expected = gdpu.quantise_int8(values, lsb)
    np.testing.assert_array_equal(_input_codes(values, lsb, Codes(codes, lsb)), expected)
    np.testing.assert_array_equal(_input_codes(values, lsb, None), expected)
    other = lsb * 1.5
    np.testing.assert_array_equal(
        _input_codes(values, other, Codes(codes, lsb)), gdpu.quantise_int8(values, other)
    )
