"""The forms exporters write, built by hand and checked against onnxruntime: LSTM/GRU layouts,
initial states and outputs, shape subgraphs, layout and element-wise operators; and the errors
for what cannot run per sample."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from chipctl.onnx_import import OnnxImportError, from_model
from procedures.inference.graph import Graph, Lstm
from procedures.inference.reference import activation_ranges, forward, forward_quantised

RNG = np.random.default_rng(15)


def _f32(*shape: int) -> np.ndarray:
    return (0.5 * RNG.standard_normal(shape)).astype(np.float32)


def _model(
    nodes: list[onnx.NodeProto],
    in_shape: list[int | str],
    inits: dict[str, np.ndarray],
    *,
    out_rank: int = 2,
    opset: int = 17,
) -> onnx.ModelProto:
    out_shape = [f"d{i}" for i in range(out_rank)]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _same_as_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> Graph:
    graph = from_model(model)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"x": x})
    ours = forward(graph, x)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * np.ptp(expected) + 1e-7)
    return graph


def _error(model: onnx.ModelProto) -> str:
    with pytest.raises(OnnxImportError) as info:
        from_model(model, source="m.onnx")
    return str(info.value)


def _lstm_inits(hid: int, n_in: int) -> dict[str, np.ndarray]:
    return {"W": _f32(1, 4 * hid, n_in), "R": _f32(1, 4 * hid, hid), "B": _f32(1, 8 * hid)}


@pytest.mark.parametrize("opset", [11, 17])
def test_lstm_layout0_as_pytorch_writes_it_with_a_shape_subgraph_zero_state(opset: int) -> None:
    """Transpose → LSTM(layout 0) with a zero state built from Shape/Gather/Concat/
    ConstantOfShape → Squeeze → Transpose → Gather(last step). Before opset 13 Squeeze and
    Unsqueeze take their axes as attributes (folded in the file's opset)."""
    hid, n_in, steps = 6, 3, 5
    inits = {
        **_lstm_inits(hid, n_in),
        "one": np.array([1], np.int64),
        "hid": np.array([hid], np.int64),
        "zero": np.array(0, np.int64),
        "axis0": np.array([0], np.int64),
        "axis1": np.array([1], np.int64),
        "last": np.array(-1, np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"])
        if opset >= 13
        else helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["one", "n1", "hid"], ["state_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["state_shape"], ["zeros"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM",
            ["xt", "W", "R", "B", "", "zeros", "zeros"],
            ["Y", "Y_h", "Y_c"],
            name="rnn",
            hidden_size=hid,
        ),  # fmt: skip
        helper.make_node("Squeeze", ["Y", "axis1"], ["ys"])
        if opset >= 13
        else helper.make_node("Squeeze", ["Y"], ["ys"], axes=[1]),
        helper.make_node("Transpose", ["ys"], ["yb"], perm=[1, 0, 2]),
        helper.make_node("Gather", ["yb", "last"], ["y"], axis=1),
    ]
    model = _model(nodes, ["N", steps, n_in], inits, opset=opset)
    graph = _same_as_onnxruntime(model, _f32(4, steps, n_in))
    assert [n.op for n in graph.nodes] == ["LSTM", "Take"]


def test_lstm_constant_initial_states_and_both_outputs() -> None:
    """Learned initial states (Expand over the batch folds to a constant) and Y with Y_h."""
    hid, n_in, steps = 4, 2, 6
    h0, c0 = _f32(1, 1, hid), _f32(1, 1, hid)
    inits = {
        **_lstm_inits(hid, n_in),
        "h0": h0,
        "c0": c0,
        "one": np.array([1], np.int64),
        "first": np.array(0, np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], start=0, end=1),
        helper.make_node("Concat", ["one", "shape", "one"], ["expand_to"], axis=0),
        helper.make_node("Expand", ["h0", "expand_to"], ["h0n"]),
        helper.make_node("Expand", ["c0", "expand_to"], ["c0n"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM", ["xt", "W", "R", "B", "", "h0n", "c0n"], ["Y", "Y_h"], hidden_size=hid
        ),
        helper.make_node("ReduceMean", ["Y"], ["ymean"], axes=[0, 1], keepdims=0),
        helper.make_node("Transpose", ["Y_h"], ["yht"], perm=[1, 0, 2]),
        helper.make_node("Flatten", ["yht"], ["yh"]),
        helper.make_node("Add", ["ymean", "yh"], ["y"]),
    ]
    x = _f32(3, steps, n_in)
    _same_as_onnxruntime(_model(nodes, ["N", steps, n_in], inits), x)  # mean over steps
    nodes[6] = helper.make_node("Gather", ["Y", "first"], ["y0"], axis=0)  # (1, N, H)
    nodes.insert(7, helper.make_node("Transpose", ["y0"], ["y0t"], perm=[1, 0, 2]))
    nodes.insert(8, helper.make_node("Flatten", ["y0t"], ["ymean"]))
    graph = _same_as_onnxruntime(_model(nodes, ["N", steps, n_in], inits), x)  # first step
    lstm = next(n for n in graph.nodes if n.op == "LSTM")
    np.testing.assert_array_equal(lstm.initial_h, h0.reshape(-1))


def test_lstm_initial_states_reach_the_gdpu_model() -> None:
    """The int8/GDPU forward (what the chip computes) starts from the given states too."""
    hid, n_in, steps = 8, 3, 3
    h0, c0 = np.full((1, 97, hid), 0.6, np.float32), np.full((1, 97, hid), -1.5, np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM", ["xt", "W", "R", "B", "", "h0", "c0"], ["", "", "Y_c"], hidden_size=hid
        ),
        helper.make_node("Transpose", ["Y_c"], ["yt"], perm=[1, 0, 2]),
        helper.make_node("Flatten", ["yt"], ["y"]),
    ]
    inits = {**_lstm_inits(hid, n_in), "h0": h0, "c0": c0}
    x = _f32(97, steps, n_in)  # the states' batch size
    graph = _same_as_onnxruntime(_model(nodes, ["N", steps, n_in], inits), x)
    exact = forward(graph, x)
    chip = forward_quantised(graph, x, activation_ranges(graph, x))
    assert np.max(np.abs(chip - exact)) < 0.05 * np.ptp(exact)
    lstm = next(n for n in graph.nodes if isinstance(n, Lstm))
    zero_state = dataclasses.replace(lstm, initial_h=None, initial_c=None)
    assert (
        np.max(
            np.abs(
                forward(dataclasses.replace(graph, nodes=(zero_state, *graph.nodes[1:])), x) - exact
            )
        )
        > 0.2
    )


def test_lstm_cell_state_output() -> None:
    hid, n_in = 3, 2
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "", "Y_c"], hidden_size=hid),
        helper.make_node("Transpose", ["Y_c"], ["yt"], perm=[1, 0, 2]),
        helper.make_node("Flatten", ["yt"], ["y"]),
    ]
    graph = _same_as_onnxruntime(
        _model(nodes, ["N", 7, n_in], _lstm_inits(hid, n_in)), _f32(2, 7, n_in)
    )
    assert next(n for n in graph.nodes if n.op == "LSTM").return_cell


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_with_initial_state(linear_before_reset: int) -> None:
    hid, n_in, steps = 5, 3, 4
    inits = {
        "W": _f32(1, 3 * hid, n_in),
        "R": _f32(1, 3 * hid, hid),
        "B": _f32(1, 6 * hid),
        "h0": np.broadcast_to(_f32(1, 1, hid), (1, 97, hid)).copy(),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "GRU",
            ["xt", "W", "R", "B", "", "h0"],
            ["", "Y_h"],
            hidden_size=hid,
            linear_before_reset=linear_before_reset,
        ),  # fmt: skip
        helper.make_node("Transpose", ["Y_h"], ["yt"], perm=[1, 0, 2]),
        helper.make_node("Flatten", ["yt"], ["y"]),
    ]
    model = _model(nodes, [97, steps, n_in], inits)  # a file with a fixed batch of 97
    _same_as_onnxruntime(model, _f32(97, steps, n_in))


def test_element_wise_and_layout_operators() -> None:
    """Mul/Sub/Div by constants, Clip, Sigmoid, Tanh, a real Transpose, Unsqueeze/Squeeze,
    Concat and Softmax at the output."""
    inits = {
        "scale": _f32(3, 1),
        "shift": _f32(4),
        "two": np.array(2.0, np.float32),
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(0.7, np.float32),
        "ax": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["a"]),
        helper.make_node("Sub", ["shift", "a"], ["b"]),
        helper.make_node("Div", ["b", "two"], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["d"]),
        helper.make_node("Sigmoid", ["a"], ["e"]),
        helper.make_node("Tanh", ["d"], ["f"]),
        helper.make_node("Transpose", ["e"], ["et"], perm=[0, 2, 1]),
        helper.make_node("Transpose", ["et"], ["e2"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["f", "ax"], ["fu"]),
        helper.make_node("Squeeze", ["fu", "ax"], ["f2"]),
        helper.make_node("Concat", ["e2", "f2"], ["g"], axis=2),
        helper.make_node("Flatten", ["g"], ["h"]),
        helper.make_node("Softmax", ["h"], ["y"]),
    ]
    graph = _same_as_onnxruntime(_model(nodes, ["N", 3, 4], inits), _f32(5, 3, 4))
    assert "Transpose" in {n.op for n in graph.nodes}


@pytest.mark.parametrize("opset", [17, 18])
def test_slice_and_reduce_mean(opset: int) -> None:
    """x[:, 1:-1, ::2] and x.mean(-1) (ReduceMean's axes an attribute before opset 18)."""
    inits = {
        "starts": np.array([1, 0], np.int64),
        "ends": np.array([-1, 99], np.int64),
        "axes": np.array([1, 2], np.int64),
        "steps": np.array([1, 2], np.int64),
        "last": np.array([-1], np.int64),
    }
    mean_axes = {"axes": [-1]} if opset < 18 else {}
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
        helper.make_node(
            "ReduceMean", ["s", "last"] if opset >= 18 else ["s"], ["m"], keepdims=0, **mean_axes
        ),
        helper.make_node("ReduceMean", ["s", "last"] if opset >= 18 else ["s"], ["k"], **mean_axes),
        helper.make_node("Flatten", ["k"], ["kf"]),
        helper.make_node("Concat", ["m", "kf"], ["y"], axis=1),
    ]
    model = _model(nodes, ["N", 5, 7], inits, opset=opset)
    graph = _same_as_onnxruntime(model, _f32(3, 5, 7))
    assert {"Select", "Mean"} <= {n.op for n in graph.nodes}


@pytest.mark.parametrize(
    ("node", "needle"),
    [
        (helper.make_node("Softmax", ["x"], ["y"], axis=0, name="sm"), "batch axis"),
        (helper.make_node("Reshape", ["x", "flat"], ["y"], name="rs"), "keep the batch axis"),
        (helper.make_node("Gather", ["x", "idx"], ["y"], axis=0, name="g"), "batch axis"),
        (helper.make_node("Mul", ["x", "x"], ["y"], name="sq"), "two computed tensors"),
    ],
)
def test_what_cannot_run_per_sample_is_refused_naming_the_node(
    node: onnx.NodeProto, needle: str
) -> None:
    inits = {"flat": np.array([-1], np.int64), "idx": np.array(0, np.int64)}
    message = _error(_model([node], ["N", 4], inits, out_rank=1))
    assert node.name in message and node.op_type in message and needle in message


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_reverse_and_bidirectional_layers(op: str, direction: str) -> None:
    """One forward layer per direction; Y (T, D, N, H) and Y_h (D, N, H) both used."""
    hid, n_in, steps = 3, 2, 5
    d = 2 if direction == "bidirectional" else 1
    gates = 4 if op == "LSTM" else 3
    inits = {
        "W": _f32(d, gates * hid, n_in),
        "R": _f32(d, gates * hid, hid),
        "B": _f32(d, 2 * gates * hid),
        "h0": np.broadcast_to(_f32(d, 1, hid), (d, 97, hid)).copy(),
    }
    rnn = helper.make_node(
        op, ["xt", "W", "R", "B", "", "h0"], ["Y", "Y_h"], hidden_size=hid, direction=direction
    )
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        rnn,
        helper.make_node("Transpose", ["Y"], ["yt"], perm=[2, 0, 1, 3]),  # (N, T, D, H)
        helper.make_node("Flatten", ["yt"], ["yf"]),
        helper.make_node("Transpose", ["Y_h"], ["ht"], perm=[1, 0, 2]),
        helper.make_node("Flatten", ["ht"], ["hf"]),
        helper.make_node("Concat", ["yf", "hf"], ["y"], axis=1),
    ]
    x = _f32(97, steps, n_in)  # the initial state's batch size
    graph = _same_as_onnxruntime(_model(nodes, ["N", steps, n_in], inits), x)
    assert sum(n.op == op for n in graph.nodes) == d


def test_importing_leaves_the_callers_model_unchanged(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "data" / "models" / "mnist1d_lstm.onnx"
    model = onnx.load(str(path))
    before = model.SerializeToString()
    from_model(model)
    assert model.SerializeToString() == before
