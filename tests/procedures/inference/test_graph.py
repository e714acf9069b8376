"""The numpy network description: validation and the conv unrolling shared with the mapping."""

from __future__ import annotations

import numpy as np
import pytest

from procedures.inference.graph import (
    Add,
    BatchNorm,
    Conv,
    Dense,
    Graph,
    GraphError,
    Lstm,
    Relu,
    weight_matrices,
)

RNG = np.random.default_rng(3)


def _mlp(w1: np.ndarray | None = None) -> Graph:
    w1 = RNG.standard_normal((8, 4)) if w1 is None else w1
    return Graph(
        input_name="x",
        input_shape=(4,),
        output_name="y",
        nodes=(
            Dense("fc1", ("x",), "h", weight=w1, bias=np.zeros(8)),
            Relu("relu", ("h",), "a"),
            Dense("fc2", ("a",), "y", weight=RNG.standard_normal((3, 8))),
        ),
    )


def test_a_script_builds_a_graph_and_shapes_propagate() -> None:
    g = _mlp()
    assert g.shapes == {"x": (4,), "h": (8,), "a": (8,), "y": (3,)}
    assert [n.name for n in g.weight_nodes()] == ["fc1", "fc2"]
    assert g.n_parameters() == 8 * 4 + 8 + 3 * 8
    assert g.nodes[0].weight.dtype == np.float32 and not g.nodes[0].weight.flags.writeable


def test_nan_weight_is_refused_naming_the_node() -> None:
    w = np.ones((8, 4))
    w[2, 1] = np.nan
    with pytest.raises(GraphError, match="fc1.*NaN"):
        _mlp(w)


def test_shape_mismatch_is_refused_naming_the_node() -> None:
    with pytest.raises(GraphError, match="fc1"):
        _mlp(np.ones((8, 5)))


def test_undefined_input_and_duplicate_names() -> None:
    dense = Dense("fc", ("nowhere",), "y", weight=np.ones((2, 2)))
    with pytest.raises(GraphError, match="not defined"):
        Graph("x", (2,), (dense,), "y")
    a = Relu("r", ("x",), "a")
    with pytest.raises(GraphError, match="used twice"):
        Graph("x", (2,), (a, Relu("r", ("a",), "b")), "b")
    with pytest.raises(GraphError, match="shapes differ"):
        Graph(
            "x",
            (2,),
            (Dense("d", ("x",), "h", weight=np.ones((3, 2))), Add("s", ("h", "x"), "y")),
            "y",
        )


def test_batchnorm_and_lstm_validation() -> None:
    with pytest.raises(GraphError, match="var"):
        BatchNorm("bn", ("x",), "y", scale=[1.0], bias=[0.0], mean=[0.0], var=[-1.0], epsilon=0.0)
    with pytest.raises(GraphError, match="w_hidden"):
        Lstm("l", ("x",), "y", w_input=np.ones((8, 1)), w_hidden=np.ones((8, 3)))


def test_conv_unroll_matches_weight_matrix_order() -> None:
    conv = Conv("c", ("x",), "y", weight=RNG.standard_normal((5, 3, 2, 2)), pads=(1, 0, 0, 1))
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    cols = conv.unroll(x)
    out_hw = conv.output_spatial((4, 4))
    assert out_hw == (4, 4) and cols.shape == (2, 16, 12)
    # position (1, 2): rows 0..1 and cols 2..3 of the padded input, flattened (c, ky, kx)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 1)))
    np.testing.assert_array_equal(cols[:, 1 * 4 + 2], xp[:, :, 1:3, 2:4].reshape(2, -1))
    assert weight_matrices(conv)["weight"].shape == (5, 12)
