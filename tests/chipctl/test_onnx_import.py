"""ONNX import: shipped models, one hand-built graph per operator (checked against hand-computed
numpy), and clear errors for unsupported operators/attributes and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from chipctl.onnx_import import OnnxImportError, load_onnx
from procedures.inference.graph import Lstm
from procedures.inference.reference import forward

MODELS = Path(__file__).resolve().parents[2] / "chipctl" / "models"
RNG = np.random.default_rng(7)


def _model(
    nodes: list[onnx.NodeProto],
    in_shape: list[int | str],
    out_shape: list[int | str] | None,
    inits: dict[str, np.ndarray],
    *,
    opset: int = 17,
    out: str = "y",
) -> onnx.ModelProto:
    if out_shape is None:  # same rank as the input, sizes left to the importer
        out_shape = [f"d{i}" for i in range(len(in_shape))]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _load(model: onnx.ModelProto, tmp_path: Path) -> object:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return load_onnx(path)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- shipped models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ops", "input_shape"),
    [
        ("digits_mlp", {"Dense", "Relu"}, (64,)),
        (
            "mnist1d_cnn",
            {"Conv", "BatchNorm", "Relu", "Add", "MaxPool", "Flatten", "Dense"},
            (1, 40),
        ),
        ("mnist1d_lstm", {"Reshape", "LSTM", "Dense"}, (40,)),
    ],
)
def test_shipped_models_import(name: str, ops: set[str], input_shape: tuple[int, ...]) -> None:
    graph = load_onnx(MODELS / f"{name}.onnx")
    assert {n.op for n in graph.nodes} == ops
    assert graph.input_shape == input_shape
    assert graph.output_shape == (10,)


# -- one operator at a time ---------------------------------------------------------------------


def test_gemm_with_alpha_beta_and_untransposed_b(tmp_path: Path) -> None:
    b, c = _f32(5, 3), _f32(3)
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="g", alpha=0.5, beta=2.0)
    graph = _load(_model([node], ["N", 5], ["N", 3], {"B": b, "C": c}), tmp_path)
    x = _f32(4, 5)
    np.testing.assert_allclose(forward(graph, x), 0.5 * x @ b + 2.0 * c, rtol=1e-5, atol=1e-6)


def test_matmul_plus_bias_becomes_one_dense_layer(tmp_path: Path) -> None:
    w, bias = _f32(6, 4), _f32(4)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["y"], name="bias"),
    ]
    graph = _load(_model(nodes, ["N", 6], ["N", 4], {"W": w, "b": bias}), tmp_path)
    assert [n.op for n in graph.nodes] == ["Dense"]
    x = _f32(3, 6)
    np.testing.assert_allclose(forward(graph, x), x @ w + bias, rtol=1e-5, atol=1e-6)


def _conv1d_direct(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int, p: int, d: int
) -> np.ndarray:
    n, c_in, length = x.shape
    c_out, _, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    out_len = (length + 2 * p - d * (k - 1) - 1) // s + 1
    y = np.zeros((n, c_out, out_len))
    for o in range(out_len):
        for j in range(k):
            y[:, :, o] += xp[:, :, o * s + j * d] @ w[:, :, j].T
    return y + b[None, :, None]


def test_conv1d_stride_padding_dilation(tmp_path: Path) -> None:
    w, b = _f32(4, 3, 3), _f32(4)
    node = helper.make_node(
        "Conv", ["x", "W", "B"], ["y"], name="c1", strides=[2], pads=[2, 2], dilations=[2]
    )
    graph = _load(_model([node], ["N", 3, 11], None, {"W": w, "B": b}), tmp_path)
    x = _f32(2, 3, 11)
    expected = _conv1d_direct(x, w, b, 2, 2, 2)
    assert graph.output_shape == expected.shape[1:]
    np.testing.assert_allclose(forward(graph, x), expected, rtol=1e-4, atol=1e-5)


def test_conv2d_against_direct_sum(tmp_path: Path) -> None:
    w = _f32(2, 3, 2, 3)
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="c2", strides=[1, 2], pads=[1, 0, 0, 1])
    graph = _load(_model([node], ["N", 3, 4, 5], None, {"W": w}), tmp_path)
    x = _f32(2, 3, 4, 5)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 1)))
    oh, ow = (5 - 2) + 1, (6 - 3) // 2 + 1
    y = np.zeros((2, 2, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i : i + 2, 2 * j : 2 * j + 3]
            y[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    np.testing.assert_allclose(forward(graph, x), y, rtol=1e-4, atol=1e-5)


def test_conv_same_upper_padding_keeps_length(tmp_path: Path) -> None:
    w = _f32(2, 1, 4)
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="same", auto_pad="SAME_UPPER")
    graph = _load(_model([node], ["N", 1, 9], None, {"W": w}), tmp_path)
    assert graph.output_shape == (2, 9)
    conv = graph.nodes[0]
    assert conv.pads == (1, 2)  # total 3: the extra one at the end (SAME_UPPER)


def test_batchnorm_relu_add(tmp_path: Path) -> None:
    scale, bias, mean = _f32(3), _f32(3), _f32(3)
    var = RNG.uniform(0.5, 2.0, 3).astype(np.float32)
    nodes = [
        helper.make_node(
            "BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], name="bn", epsilon=1e-3
        ),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "x"], ["y"], name="res"),
    ]
    inits = {"s": scale, "b": bias, "m": mean, "v": var}
    graph = _load(_model(nodes, ["N", 3, 5], ["N", 3, 5], inits), tmp_path)
    x = _f32(2, 3, 5)
    c = (slice(None), None)
    bn = scale[c] * (x - mean[c]) / np.sqrt(var[c] + 1e-3) + bias[c]
    np.testing.assert_allclose(forward(graph, x), np.maximum(bn, 0) + x, rtol=1e-5, atol=1e-5)


def test_pooling_flatten(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["mp"], name="mp", kernel_shape=[2], strides=[2]),
        helper.make_node(
            "AveragePool", ["mp"], ["ap"], name="ap", kernel_shape=[3], strides=[1], pads=[1, 1]
        ),
        helper.make_node("Flatten", ["ap"], ["y"], name="fl", axis=1),
    ]
    graph = _load(_model(nodes, ["N", 2, 8], ["N", 8], {}), tmp_path)
    x = _f32(3, 2, 8)
    mp = x.reshape(3, 2, 4, 2).max(axis=3)
    padded = np.pad(mp, ((0, 0), (0, 0), (1, 1)))
    counts = np.array([2, 3, 3, 2])  # count_include_pad = 0
    ap = (padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]) / counts
    np.testing.assert_allclose(forward(graph, x), ap.reshape(3, 8), rtol=1e-5, atol=1e-6)


def test_average_pool_count_include_pad_and_global_pool(tmp_path: Path) -> None:
    nodes = [
        helper.make_node(
            "AveragePool",
            ["x"],
            ["ap"],
            name="ap",
            kernel_shape=[2, 2],
            pads=[1, 1, 0, 0],
            count_include_pad=1,
        ),
        helper.make_node("GlobalAveragePool", ["ap"], ["y"], name="gap"),
    ]
    graph = _load(_model(nodes, ["N", 2, 3, 3], ["N", 2, 1, 1], {}), tmp_path)
    x = _f32(2, 2, 3, 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (1, 0)))
    ap = (xp[..., :-1, :-1] + xp[..., 1:, :-1] + xp[..., :-1, 1:] + xp[..., 1:, 1:]) / 4  # stride 1
    np.testing.assert_allclose(
        forward(graph, x), ap.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6
    )


def test_reshape_with_zero_and_minus_one(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="rs")]
    inits = {"shape": np.array([0, -1, 4], np.int64)}
    graph = _load(_model(nodes, ["N", 12], ["N", 3, 4], inits), tmp_path)
    x = _f32(2, 12)
    np.testing.assert_array_equal(forward(graph, x), x.reshape(2, 3, 4))


def _lstm_onnx_reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Straight from the ONNX operator definition (gates i, o, f, c), float64."""
    hid = r.shape[-1]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((x.shape[0], hid))
    c = np.zeros_like(h)
    for t in range(x.shape[1]):
        z = x[:, t] @ w[0].T + h @ r[0].T + b[0, : 4 * hid] + b[0, 4 * hid :]
        i, o, f, g = np.split(z, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
    return h


def test_lstm_layout1_last_hidden(tmp_path: Path) -> None:
    hid, n_in, steps = 5, 3, 6
    w, r, b = _f32(1, 4 * hid, n_in), _f32(1, 4 * hid, hid), _f32(1, 8 * hid)
    nodes = [
        helper.make_node(
            "LSTM", ["x", "W", "R", "B"], ["", "yh"], name="lstm", hidden_size=hid, layout=1
        ),
        helper.make_node("Flatten", ["yh"], ["y"], name="fl"),
    ]
    graph = _load(_model(nodes, ["N", steps, n_in], ["N", hid], {"W": w, "R": r, "B": b}), tmp_path)
    assert any(isinstance(n, Lstm) for n in graph.nodes)
    x = _f32(4, steps, n_in)
    np.testing.assert_allclose(
        forward(graph, x), _lstm_onnx_reference(x, w, r, b), rtol=1e-4, atol=1e-5
    )


# -- errors -----------------------------------------------------------------------------------


def _error(model: onnx.ModelProto, tmp_path: Path) -> str:
    with pytest.raises(OnnxImportError) as info:
        _load(model, tmp_path)
    return str(info.value)


def test_grouped_conv_is_one_block_diagonal_matrix(tmp_path: Path) -> None:
    w = _f32(4, 1, 3)  # depthwise-like: 2 groups of 1 input channel -> 2 outputs each
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="grouped3", group=2, pads=[1, 1])
    graph = _load(_model([node], ["N", 2, 8], None, {"W": w}), tmp_path)
    matrix = graph.weight_nodes()[0].matrix  # (4, 2·3): zeros where the groups do not meet
    assert np.all(matrix[:2, 3:] == 0) and np.all(matrix[2:, :3] == 0)
    x = _f32(3, 2, 8)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    expected = np.stack(
        [
            np.stack([np.sum(xp[:, o // 2, i : i + 3] * w[o, 0], axis=1) for i in range(8)], 1)
            for o in range(4)
        ],
        axis=1,
    )
    np.testing.assert_allclose(forward(graph, x), expected, rtol=1e-5, atol=1e-5)


def test_unsupported_operator_names_type_node_and_what_to_do(tmp_path: Path) -> None:
    node = helper.make_node("Sin", ["x"], ["y"], name="wave")
    message = _error(_model([node], ["N", 4], ["N", 4], {}), tmp_path)
    assert "wave" in message and "Sin" in message and "unsupported operator" in message
    assert "docs/inference.md" in message


@pytest.mark.parametrize(
    ("attrs", "extra_inputs", "needle"),
    [
        ({"input_forget": 1}, [], "input_forget"),
        ({}, ["", "", "", "P"], "peephole"),
        ({"layout": 0}, [], "layout"),
        ({"clip": 3.0}, [], "clip"),
    ],
)
def test_unsupported_lstm_variants(
    tmp_path: Path, attrs: dict[str, object], extra_inputs: list[str], needle: str
) -> None:
    hid = 2
    attrs = {"hidden_size": hid, "layout": 1, **attrs}
    node = helper.make_node(
        "LSTM", ["x", "W", "R", "B", *extra_inputs], ["", "yh"], name="rnn7", **attrs
    )
    flat = helper.make_node("Flatten", ["yh"], ["y"], name="fl")
    inits = {"W": _f32(1, 8, 3), "R": _f32(1, 8, 2), "B": _f32(1, 16)}
    if extra_inputs:
        inits["P"] = _f32(1, 3 * hid)
    message = _error(_model([node, flat], ["N", 4, 3], ["N", hid], inits), tmp_path)
    assert "rnn7" in message and "LSTM" in message and needle in message


def test_unsupported_pool_attribute(tmp_path: Path) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], name="mp9", kernel_shape=[2], ceil_mode=1)
    message = _error(_model([node], ["N", 1, 5], None, {}), tmp_path)
    assert "mp9" in message and "ceil_mode" in message


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    data = (MODELS / "mnist1d_cnn.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxImportError, match="cut.onnx"):
        load_onnx(path)


def test_garbage_and_missing_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\x00not an onnx model at all" * 10)
    with pytest.raises(OnnxImportError, match="junk.onnx"):
        load_onnx(path)
    with pytest.raises(OnnxImportError, match="absent.onnx"):
        load_onnx(tmp_path / "absent.onnx")


def test_constant_and_identity_nodes(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([-1, 2, 3], np.int64), "shape_value")
    nodes = [
        helper.make_node("Constant", [], ["shape"], name="const", value=shape),
        helper.make_node("Identity", ["x"], ["xi"], name="id"),
        helper.make_node("Reshape", ["xi", "shape"], ["y"], name="rs"),
    ]
    graph = _load(_model(nodes, ["N", 6], ["N", 2, 3], {}), tmp_path)
    assert [n.op for n in graph.nodes] == ["Reshape"]
    x = _f32(2, 6)
    np.testing.assert_array_equal(forward(graph, x), x.reshape(2, 2, 3))
