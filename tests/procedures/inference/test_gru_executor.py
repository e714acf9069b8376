"""A GRU on the simulated chip: its two products on the cores, its gates on the host; the
calibration data of recurrent layers starts at their initial states."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.inference.calibration import gru_gate_sums, previous_hidden, tensor_ranges
from procedures.inference.compensation import adaptable_layers
from procedures.inference.digital import FixedPoint, Float16
from procedures.inference.executor import ChipExecutor
from procedures.inference.graph import Dense, Graph, Gru, Lstm
from procedures.inference.mapping import MappingError, map_graph
from procedures.inference.reference import forward_tensors

HIDDEN, FEATURES, STEPS = 24, 5, 12


def _gru(rng: np.random.Generator, **kwargs: object) -> Gru:
    rows = 3 * HIDDEN
    return Gru(
        "gru",
        ("x",),
        "h",
        w_input=rng.normal(0, 0.5, (rows, FEATURES)),
        w_hidden=rng.normal(0, 0.25, (rows, HIDDEN)),
        bias_input=rng.normal(0, 0.2, rows),
        bias_hidden=rng.normal(0, 0.2, rows),
        **kwargs,  # type: ignore[arg-type]
    )


def _gru_net(**kwargs: object) -> Graph:
    rng = np.random.default_rng(5)
    return Graph(
        input_name="x",
        input_shape=(STEPS, FEATURES),
        output_name="y",
        nodes=(
            _gru(rng, **kwargs),
            Dense("fc", ("h",), "y", weight=rng.normal(0, 0.4, (4, HIDDEN)), bias=np.zeros(4)),
        ),
    )


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[ChipExecutor, np.ndarray]]:
    graph = _gru_net(initial_h=np.linspace(-0.5, 0.5, HIDDEN))
    x = np.random.default_rng(6).normal(size=(200, STEPS, FEATURES)).astype(np.float32)
    board = Board("mockchip://?seed=3&cores=4")
    executor = ChipExecutor(
        board, graph, map_graph(graph, cores=range(3)), tensor_ranges(graph, x), Float16()
    )
    executor.use_calibration_data(x)
    for _ in executor.program("tdp"):
        pass
    for _ in executor.calibrate(256):
        pass
    yield executor, x
    board.close()


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_gru_maps_input_and_hidden_products_apart() -> None:
    graph = _gru_net()
    layer = map_graph(graph).layer("gru")
    node = graph.node("gru")
    assert isinstance(node, Gru) and node.bias_input is not None and node.bias_hidden is not None
    assert [m.part for m in layer.matrices] == ["input", "hidden"]
    np.testing.assert_array_equal(layer.matrix("hidden").matrix, node.w_hidden)  # gate-major
    # b_Rn stays out of the input side: the reset gate multiplies it with R_n·h.
    expected = node.bias_input.copy()
    expected[: 2 * HIDDEN] += node.bias_hidden[: 2 * HIDDEN]
    np.testing.assert_allclose(layer.affine_offset, expected, rtol=1e-6)
    assert layer.steps == STEPS


def test_gru_reset_before_the_product_is_refused_before_the_board() -> None:
    with pytest.raises(MappingError, match="linear_before_reset = 0"):
        map_graph(_gru_net(linear_before_reset=False))


def test_hidden_inputs_start_at_the_initial_state() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, STEPS, FEATURES)).astype(np.float32)
    h0 = np.linspace(-0.9, 0.9, HIDDEN)
    gru = _gru(rng, initial_h=h0)
    lstm = Lstm(
        "lstm",
        ("x",),
        "h",
        w_input=rng.normal(0, 0.5, (4 * HIDDEN, FEATURES)),
        w_hidden=rng.normal(0, 0.25, (4 * HIDDEN, HIDDEN)),
        initial_h=h0,
        initial_c=np.full(HIDDEN, 0.7),
    )
    for node in (gru, lstm):
        h_prev = previous_hidden(node, x)
        np.testing.assert_allclose(h_prev[:, 0], np.broadcast_to(h0, (3, HIDDEN)), rtol=1e-6)
        assert not np.allclose(h_prev[:, 1], previous_hidden(node, 0 * x)[:, 1])
    # The GRU's gate sums include the z and r pre-activations of step 0 from h0.
    sums = gru_gate_sums(gru, x)
    assert gru.bias_input is not None and gru.bias_hidden is not None
    z0 = x[:, 0] @ gru.w_input[:HIDDEN].T + gru.bias_input[:HIDDEN]
    z0 += h0 @ gru.w_hidden[:HIDDEN].T + gru.bias_hidden[:HIDDEN]
    np.testing.assert_allclose(sums[:, 0, :HIDDEN], z0, rtol=1e-4, atol=1e-5)


def test_gru_on_the_chip_follows_the_float32_model(
    deployed: tuple[ChipExecutor, np.ndarray],
) -> None:
    executor, x = deployed
    assert executor.plans["gru"].partial and executor.plans["gru"].recurrent
    values = executor.forward(x, keep=True)
    reference = forward_tensors(executor.graph, x)
    # 7.0 % (h) and 6.4 % (y) measured (int8 inputs and partial sums, 12 steps of analog
    # noise); leaving out b_Rn gives 18 %, swapping z and 1 − z 98 %.
    assert _relative_error(values["h"], reference["h"]) < 0.12
    assert _relative_error(values["y"], reference["y"]) < 0.12
    executor.digital = FixedPoint()
    try:
        fixed = executor.forward(x)["y"]
    finally:
        executor.digital = Float16()
    assert _relative_error(fixed, reference["y"]) < 0.12  # 6.2 % measured


def test_adabs_leaves_the_gru_alone(deployed: tuple[ChipExecutor, np.ndarray]) -> None:
    executor, _ = deployed
    assert adaptable_layers(executor) == ["fc"]


def test_gru_without_its_gate_range_is_refused() -> None:
    graph = _gru_net()
    x = np.zeros((4, STEPS, FEATURES), np.float32)
    ranges = tensor_ranges(graph, x)
    del ranges["gru.gates"]
    with Board("mockchip://?seed=1&cores=4") as board, pytest.raises(LimitError, match="gru"):
        ChipExecutor(board, graph, map_graph(graph, cores=range(3)), ranges, Float16())
