"""The executor on small hand-built networks through mockchip://: the data path is right
(chip output close to the float32 model), partial sums, replication, drift compensation, the
digital number formats, and errors before anything reaches the board."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.infer import Infer, parse_compensations, parse_durations
from procedures.inference.calibration import tensor_ranges
from procedures.inference.data import InferenceData
from procedures.inference.digital import FixedPoint, Float16, number_format
from procedures.inference.executor import ChipExecutor
from procedures.inference.gdpu import quantise_int8 as quantise
from procedures.inference.graph import (
    Add,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    Graph,
    GraphError,
    Relu,
)
from procedures.inference.mapping import map_graph
from procedures.inference.reference import forward, forward_tensors

RNG = np.random.default_rng(11)


def _conv_net() -> Graph:
    """Conv(2→10, k3) BN ReLU → Flatten (10·30 = 300) → Dense 300→300 → ReLU → Dense 300→5.

    The 300×300 dense layer needs 2 row tiles × 2 column tiles (partial sums)."""
    rng = np.random.default_rng(3)
    c = 10
    conv_w, conv_b = rng.normal(0, 0.4, (c, 2, 3)), rng.normal(0, 0.1, c)
    fc2_w, fc2_b = rng.normal(0, 0.08, (5, 300)), rng.normal(0, 0.1, 5)
    return Graph(
        input_name="x",
        input_shape=(2, 32),
        output_name="y",
        nodes=(
            Conv("conv", ("x",), "c", weight=conv_w, bias=conv_b),
            BatchNorm(
                "bn", ("c",), "b",
                scale=rng.uniform(0.5, 1.5, c), bias=rng.normal(0, 0.1, c),
                mean=rng.normal(0, 0.1, c), var=rng.uniform(0.5, 2.0, c),
            ),
            Relu("relu", ("b",), "r"),
            Flatten("flat", ("r",), "f"),
            Dense("fc1", ("f",), "h", weight=rng.normal(0, 0.08, (300, 300)), bias=np.zeros(300)),
            Relu("relu1", ("h",), "a"),
            Dense("fc2", ("a",), "y", weight=fc2_w, bias=fc2_b),
        ),
    )  # fmt: skip


@pytest.fixture(scope="module")
def deployed() -> tuple[ChipExecutor, np.ndarray]:
    graph = _conv_net()
    x = RNG.normal(size=(300, 2, 32)).astype(np.float32)
    board = Board("mockchip://?seed=4&cores=12")
    mapping = map_graph(graph, cores=range(12))
    executor = ChipExecutor(board, graph, mapping, tensor_ranges(graph, x), Float16())
    executor.use_calibration_data(x)
    for _ in executor.program("tdp"):
        pass
    for _ in executor.calibrate(512):
        pass
    yield executor, x
    board.close()


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_mapping_uses_partial_sums_and_replication(
    deployed: tuple[ChipExecutor, np.ndarray],
) -> None:
    executor, _ = deployed
    assert not executor.plans["conv"].partial and executor.plans["fc1"].partial
    assert executor.plans["conv"].relu and executor.plans["fc1"].relu  # BN folded, ReLU fused
    conv_core = executor.mapping.layer("conv").cores[0]
    state = executor.tiles[conv_core]
    assert state.replicas > 1  # 6 inputs: repeated across the core
    assert state.g_max >= 0.5 * 160  # ... but not below half the TDP Gmax
    w = executor.core_weights(conv_core)
    np.testing.assert_array_equal(w[:10, 6:12], w[:10, :6])
    assert len(executor.mapping.layer("fc1").cores) == 4


def test_chip_outputs_follow_the_float32_model(deployed: tuple[ChipExecutor, np.ndarray]) -> None:
    executor, x = deployed
    executor.compensate("none")
    values = executor.forward(x, keep=True)
    reference = forward_tensors(executor.graph, x)
    for tensor, limit in (("r", 0.12), ("a", 0.15), ("y", 0.2)):
        assert _relative_error(values[tensor], reference[tensor]) < limit, tensor
    # An untrained random network has close logits, so its argmax is fragile: 89 % measured.
    agree = np.mean(values["y"].argmax(1) == reference["y"].argmax(1))
    assert agree > 0.85


def test_fixed_point_digital_unit_close_to_float16(
    deployed: tuple[ChipExecutor, np.ndarray],
) -> None:
    executor, x = deployed
    reference = forward(executor.graph, x)
    executor.digital = FixedPoint()
    try:
        fixed = executor.forward(x)["y"]
    finally:
        executor.digital = Float16()
    float16 = executor.forward(x)["y"]
    # Both carry the same analog error; the digital formats differ far less than that.
    assert _relative_error(fixed, reference) < 0.2
    assert abs(_relative_error(fixed, reference) - _relative_error(float16, reference)) < 0.03


def test_gdc_restores_the_output_scale_after_a_day(
    deployed: tuple[ChipExecutor, np.ndarray],
) -> None:
    executor, x = deployed
    board = executor.board
    reference = forward(executor.graph, x)
    board.advance_clock(86400.0)
    factors = executor.compensate("gdc")
    assert all(0.5 < a < 0.95 for a in factors.values())  # conductances drift down [LG §IV]
    compensated = executor.forward(x)["y"]
    executor.compensate("none")
    drifted = executor.forward(x)["y"]
    assert _relative_error(compensated, reference) < 0.6 * _relative_error(drifted, reference)
    before = {n: p.scale.copy() for n, p in executor.plans.items()}
    batches = [x[i : i + 50] for i in range(0, 200, 50)]
    executor.compensate("gdc")
    change = executor.adapt_batchnorm(batches)
    assert set(change) == {"conv"}
    assert not np.allclose(executor.plans["conv"].scale, before["conv"])
    executor.reset_batchnorm()
    np.testing.assert_array_equal(executor.plans["conv"].scale, before["conv"])


def test_board_coefficients_follow_new_calibration_data(
    deployed: tuple[ChipExecutor, np.ndarray],
) -> None:
    executor, x = deployed
    executor.compensate("none")
    executor.forward(x[:4])
    partial_core = executor.mapping.layer("fc1").cores[0]
    before = executor.board.read_ldpu(partial_core)
    try:
        executor.use_calibration_data(x, percentile=99.0)  # new partial-sum grids
        executor.forward(x[:4])
        after = executor.board.read_ldpu(partial_core)
        assert after == executor.coefficients(partial_core) and after != before
    finally:
        executor.use_calibration_data(x)
        executor.forward(x[:4])


def test_calibration_needs_the_calibration_data_first() -> None:
    graph = _conv_net()
    x = np.zeros((4, 2, 32), np.float32)
    with Board("mockchip://?seed=1&cores=8") as board:
        executor = ChipExecutor(board, graph, map_graph(graph), tensor_ranges(graph, x), Float16())
        with pytest.raises(LimitError, match="use_calibration_data"):
            next(executor.calibrate())


def test_fixed_point_rounding_rules() -> None:
    f = FixedPoint(coefficient_bits=8, fraction_bits=2)
    q = f.coefficient(np.array([1.0, 0.3, -0.77]))
    assert q[0] == 1.0  # a power of two as the largest value is kept exactly
    assert np.all(np.abs(q - [1.0, 0.3, -0.77]) <= 2.0 ** (1 - 6) / 2 + 1e-12)
    q = f.coefficient(np.array([0.9, 0.3, -0.77]))
    assert np.all(np.abs(q - [0.9, 0.3, -0.77]) <= 2.0 ** (0 - 7) / 2 + 1e-12)
    assert np.array_equal(f.value(np.array([0.3, -0.6]), 1.0), [0.25, -0.5])
    with pytest.raises(GraphError, match="coefficient bits"):
        FixedPoint(coefficient_bits=2)
    with pytest.raises(GraphError, match="float16"):
        number_format("bfloat16")


def test_float16_format_rounds_as_numpy_float16() -> None:
    """The compiled rounding of the host's float16 steps equals numpy's float16, shapes,
    overflow to ±inf, NaN and non-contiguous inputs included."""
    x = np.random.default_rng(3).normal(0.0, 3e4, (40, 30))[:, ::2]
    x[0, :3] = [np.nan, 7e4, -1e-9]
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float64)
    for rounded in (Float16().value(x, 1.0), Float16().coefficient(x)):
        assert rounded.shape == x.shape and rounded.dtype == np.float64
        np.testing.assert_array_equal(rounded, expected)
    assert Float16().value(np.float64(1.0 + 2.0**-11), 1.0) == 1.0  # a tie, to even


def test_quantise_saturates_at_127_lsb() -> None:
    assert quantise(np.array([0.0, 1.004, -300.0, 300.0]), 1.0).tolist() == [0, 1, -127, 127]


def test_errors_before_the_board() -> None:
    graph = _conv_net()
    x = np.zeros((4, 2, 32), np.float32)
    data = InferenceData("toy", x, x, np.zeros(4, np.int64))
    with pytest.raises(LimitError, match="needs 7 cores but only 2"):
        Infer(network=graph, data=data, cores="0-1", drift="25s", compensation="none")
    with pytest.raises(LimitError, match="not a duration"):
        Infer(network=graph, data=data, drift="25 parsecs")
    with pytest.raises(LimitError, match="unknown"):
        Infer(network=graph, data=data, compensation="none,magic")
    with pytest.raises(LimitError, match="samples 9"):
        Infer(network=graph, data=data, samples=9, compensation="none")
    with pytest.raises(LimitError, match="AdaBS needs 400"):
        Infer(network=graph, data=data)
    bad = InferenceData("toy", x, np.zeros((4, 3, 32), np.float32), np.zeros(4, np.int64))
    with pytest.raises(GraphError, match="does not match"):
        Infer(network=graph, data=bad, compensation="none")
    with pytest.raises(LimitError, match="finite"):
        InferenceData("toy", x, np.full((4, 2, 32), np.nan, np.float32), np.zeros(4, np.int64))
    board = Board("mockchip://?seed=1&cores=4")
    try:
        with pytest.raises(LimitError, match="the board has 4"):
            ChipExecutor(board, graph, map_graph(graph), tensor_ranges(graph, x), Float16())
    finally:
        board.close()


def test_drift_and_compensation_lists() -> None:
    assert parse_durations("1d, 25s,1h") == [("25s", 25.0), ("1h", 3600.0), ("1d", 86400.0)]
    assert parse_durations("90min")[0][1] == 5400.0
    assert parse_compensations("gdc,none") == ["gdc", "none"]
    for text in ("0s", "-1h", "1h,3600", ""):
        with pytest.raises(LimitError):
            parse_durations(text)
    with pytest.raises(LimitError, match="repeat"):
        parse_compensations("gdc,gdc")


def _codes_net() -> Graph:
    """Dense 24→40 ReLU → Dense 40→40 ReLU, its output read by Dense 40→6 and by a residual
    Add: each dense layer fits one tile, so its outputs leave as int8 codes."""
    rng = np.random.default_rng(5)
    return Graph(
        input_name="x",
        input_shape=(24,),
        output_name="y",
        nodes=(
            Dense("fc1", ("x",), "h1", weight=rng.normal(0, 0.3, (40, 24)), bias=np.zeros(40)),
            Relu("r1", ("h1",), "a1"),
            Dense("fc2", ("a1",), "h2", weight=rng.normal(0, 0.2, (40, 40)), bias=np.zeros(40)),
            Relu("r2", ("h2",), "a2"),
            Add("skip", ("a1", "a2"), "s"),
            Dense("fc3", ("a2",), "y", weight=rng.normal(0, 0.2, (6, 40)), bias=np.zeros(6)),
        ),
    )  # fmt: skip


_CODES_X = np.random.default_rng(6).normal(size=(64, 24)).astype(np.float32)


def _codes_run(keep: bool) -> dict[str, np.ndarray]:
    graph = _codes_net()
    x = _CODES_X
    with Board("mockchip://?seed=2&cores=4") as board:
        executor = ChipExecutor(
            board, graph, map_graph(graph, cores=range(4)), tensor_ranges(graph, x), Float16()
        )
        executor.use_calibration_data(x)
        for _ in executor.program("tdp"):
            pass
        for _ in executor.calibrate(256):
            pass
        board.advance_clock(25.0)
        return executor.forward(x, keep=keep)


def test_tensors_sent_as_codes_are_formed_as_floats_when_read() -> None:
    """A layer's output that leaves as int8 codes is formed as floats (code·lsb) only when
    something reads it: the digital Add here, keep=True, the graph output. The outputs are the
    same whether or not every tensor is kept (boards of the same seed)."""
    kept = _codes_run(keep=True)
    plain = _codes_run(keep=False)
    assert set(plain) == {"y"}
    np.testing.assert_array_equal(kept["y"], plain["y"])
    assert {"a1", "a2", "s"} <= set(kept)
    # the Add in the digital unit's float16
    np.testing.assert_allclose(kept["s"], kept["a1"] + kept["a2"], rtol=2**-10, atol=1e-6)
    for name in ("a1", "a2"):
        values = kept[name]
        assert values.dtype == np.float64 and values.shape == (64, 40)
        assert np.all(values >= 0.0) and np.any(values > 0.0)  # ReLU fused, not all zero
        steps = values / np.min(values[values > 0])  # on a grid: multiples of the step
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    reference = forward_tensors(_codes_net(), _CODES_X)
    for name in ("a1", "a2", "s", "y"):  # the floats on the float32 model's scale
        assert _relative_error(kept[name], reference[name]) < 0.15, name
