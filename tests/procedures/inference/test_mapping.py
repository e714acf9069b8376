"""Mapping: fewest equal tiles, zero padding, core allocation, BN folding, LSTM interleaving and
the time/energy estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from procedures.inference.gdpu import deinterleave_gates
from procedures.inference.graph import BatchNorm, Conv, Dense, Flatten, Graph, Lstm, Relu
from procedures.inference.mapping import (
    LAYER_STEP_ENERGY_PER_CORE_J,
    MappingError,
    map_graph,
    split_matrix,
)
from procedures.inference.reference import forward_tensors

RNG = np.random.default_rng(5)


def test_paper_example_2016_by_224() -> None:
    s = split_matrix(2016, 224)
    assert (s.n_row_tiles, s.n_col_tiles, s.tile_rows, s.tile_cols) == (8, 1, 252, 224)
    t = split_matrix(224, 2016)  # our orientation: outputs × unrolled inputs
    assert (t.n_tiles, t.tile_rows, t.tile_cols) == (8, 224, 252)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (256, 256), (257, 10), (10, 640), (777, 513)])
def test_fewest_equal_tiles_cover_the_matrix(rows: int, cols: int) -> None:
    s = split_matrix(rows, cols)
    assert s.n_tiles == math.ceil(rows / 256) * math.ceil(cols / 256)  # cannot be fewer
    assert s.tile_rows <= 256 and s.tile_cols <= 256
    padded_r, padded_c = s.padded_shape
    assert rows <= padded_r < rows + s.n_row_tiles and cols <= padded_c < cols + s.n_col_tiles


def _dense_graph(widths: list[int]) -> Graph:
    nodes = []
    prev = "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        nodes.append(Dense(f"fc{i}", (prev,), f"h{i}", weight=RNG.standard_normal((b, a))))
        prev = f"h{i}"
    return Graph("x", (widths[0],), tuple(nodes), prev)


def test_tiles_are_zero_padded_and_reassemble() -> None:
    g = _dense_graph([300, 10])  # 10 × 300 → 2 tiles of 10 × 150
    m = map_graph(g)
    layer = m.layer("fc0")
    mm = layer.matrix("weight")
    assert layer.cores == (0, 1)
    assert [(t.col_start, t.col_stop) for t in mm.tiles] == [(0, 150), (150, 300)]
    tile = mm.core_weights(mm.tiles[1])
    assert tile.shape == (256, 256)
    np.testing.assert_array_equal(tile[:10, :150], g.nodes[0].weight[:, 150:])
    assert not tile[10:].any() and not tile[:, 150:].any()
    back = mm.assemble([mm.core_weights(t) for t in mm.tiles])
    np.testing.assert_array_equal(back, g.nodes[0].weight)


def test_allocation_order_and_given_cores() -> None:
    g = _dense_graph([600, 300, 10])  # fc0: 300×600 → 2×3 tiles; fc1: 10×300 → 1×2
    m = map_graph(g, cores=[10, 11, 12, 13, 14, 15, 40, 41])
    fc0 = m.layer("fc0").matrix("weight")
    assert [(t.core, t.row_tile, t.col_tile) for t in fc0.tiles] == [
        (10, 0, 0), (11, 0, 1), (12, 0, 2), (13, 1, 0), (14, 1, 1), (15, 1, 2)
    ]  # fmt: skip
    assert m.layer("fc1").cores == (40, 41)
    assert set(m.core_table()) == set(m.cores_used)


def test_model_that_does_not_fit_says_by_how_much() -> None:
    g = _dense_graph([2048, 2048, 10])  # 8×8 + 1×8 = 72 tiles
    with pytest.raises(MappingError, match=r"needs 72 cores but only 64 .*8 short"):
        map_graph(g)
    with pytest.raises(MappingError, match="3 short"):
        map_graph(_dense_graph([256, 256, 256, 256, 256]), cores=[0])


def test_batchnorm_folds_into_the_per_row_affine() -> None:
    w = RNG.standard_normal((6, 3, 3)).astype(np.float32)
    bn = BatchNorm(
        "bn",
        ("c",),
        "b",
        scale=RNG.uniform(0.5, 2, 6),
        bias=RNG.standard_normal(6),
        mean=RNG.standard_normal(6),
        var=RNG.uniform(0.1, 3, 6),
        epsilon=1e-3,
    )
    conv = Conv("conv", ("x",), "c", weight=w, bias=RNG.standard_normal(6), pads=(1, 1))
    g = Graph("x", (3, 9), (conv, bn, Relu("r", ("b",), "y")), "y")
    layer = map_graph(g).layer("conv")
    assert layer.folded_batchnorm == "bn" and layer.output == "b" and layer.steps == 9
    x = RNG.standard_normal((4, 3, 9)).astype(np.float32)
    raw = conv.unroll(x) @ layer.matrix("weight").matrix.T  # what the cores compute
    affine = raw * layer.affine_scale + layer.affine_offset  # what the LDPU adds
    expected = forward_tensors(g, x)["b"]
    np.testing.assert_allclose(np.moveaxis(affine, 2, 1), expected, rtol=1e-4, atol=1e-4)


def test_unfolded_layer_keeps_its_bias() -> None:
    g = _dense_graph([4, 3])
    layer = map_graph(g).layer("fc0")
    assert layer.folded_batchnorm is None
    np.testing.assert_array_equal(layer.affine_scale, np.ones(3))
    np.testing.assert_array_equal(layer.affine_offset, np.zeros(3))


def test_lstm_gate_rows_interleaved_and_round_trip() -> None:
    hid, n_in = 100, 7  # 400 gate rows → 2 row tiles of 50 units (200 rows) each
    node = Lstm(
        "lstm",
        ("x",),
        "y",
        w_input=RNG.standard_normal((4 * hid, n_in)),
        w_hidden=RNG.standard_normal((4 * hid, hid)),
        bias=RNG.standard_normal(4 * hid),
    )
    g = Graph("x", (12, n_in), (node,), "y")
    layer = map_graph(g).layer("lstm")
    assert [m.part for m in layer.matrices] == ["input", "hidden"]
    assert layer.cores == (0, 1, 2, 3) and layer.steps == 12
    hidden = layer.matrix("hidden")
    assert (hidden.split.tile_rows, hidden.split.n_row_tiles) == (200, 2)
    # bit line 4j + g holds gate g (I, A, F, O) of unit j
    for j, gate in [(0, 0), (0, 3), (37, 2), (99, 1)]:
        np.testing.assert_array_equal(hidden.matrix[4 * j + gate], node.w_hidden[gate * hid + j])
    np.testing.assert_array_equal(deinterleave_gates(hidden.matrix.T).T, node.w_hidden)
    np.testing.assert_array_equal(deinterleave_gates(layer.affine_offset), node.bias)
    np.testing.assert_array_equal(layer.row_order, np.argsort(np.argsort(layer.row_order)))


def test_time_and_energy_estimate_formula() -> None:
    # conv: 10 × 300 unrolled → 2 tiles, 10 output positions; dense 5 × 100: 1 tile, 1 step
    conv = Conv("conv", ("x",), "c", weight=RNG.standard_normal((10, 100, 3)))
    fc = Dense("fc", ("f",), "y", weight=RNG.standard_normal((5, 100)))
    g = Graph("x", (100, 12), (conv, Flatten("flat", ("c",), "f"), fc), "y")
    m = map_graph(g)
    assert m.layer("conv").n_tiles == 2 and m.layer("conv").steps == 10
    e4, e1 = m.estimate(4), m.estimate(1)
    assert e4.core_mvms == e1.core_mvms == 2 * 10 + 1
    assert e4.time_s == pytest.approx(11 * 1518e-9)
    assert e1.time_s == pytest.approx(11 * 1131e-9)
    assert e4.energy_mvm_j == pytest.approx(21 * 3.38e-6 / 64)  # ≈ 53 nJ per core-MVM
    assert e1.energy_mvm_j == pytest.approx(21 * 13.4e-9, rel=0.01)
    assert e4.energy_j == pytest.approx(21 * LAYER_STEP_ENERGY_PER_CORE_J[4])
    assert e4.per_layer["conv"]["core_mvms"] == 20
    with pytest.raises(MappingError, match="mode"):
        m.estimate(2)
