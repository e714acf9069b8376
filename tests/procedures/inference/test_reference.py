"""Software forward passes: hand-computed small cases, and the shipped models' accuracies as
recorded in chipctl/models/README.md (float32 and int8 activations)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from chipctl.datasets import load_dataset
from chipctl.onnx_import import load_onnx
from procedures.inference.graph import (
    Add,
    BatchNorm,
    Dense,
    GlobalAvgPool,
    Graph,
    GraphError,
    Lstm,
    MaxPool,
    Relu,
)
from procedures.inference.reference import (
    activation_ranges,
    fake_quant,
    forward,
    forward_quantised,
    quantised_tensors,
)

MODELS = Path(__file__).resolve().parents[3] / "chipctl" / "models"


def test_dense_relu_residual_by_hand() -> None:
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    g = Graph(
        "x",
        (2,),
        (
            Dense("fc", ("x",), "h", weight=w, bias=[0.0, -1.0]),
            Relu("r", ("h",), "a"),
            Add("res", ("a", "x"), "y"),
        ),
        "y",
    )
    # x = (3, 1): h = (1, 0.5) → relu (1, 0.5) → + x = (4, 1.5); x = (1, 1): h = (-1, -0.5)
    np.testing.assert_allclose(forward(g, np.array([[3.0, 1.0], [1.0, 1.0]])), [[4, 1.5], [1, 1]])


def test_batchnorm_pool_by_hand() -> None:
    bn = BatchNorm("bn", ("x",), "b", scale=[2.0], bias=[1.0], mean=[1.0], var=[4.0], epsilon=0.0)
    g = Graph(
        "x",
        (1, 4),
        (bn, MaxPool("mp", ("b",), "m", kernel=(2,)), GlobalAvgPool("gap", ("m",), "y")),
        "y",
    )
    # BN: (x − 1)·2/2 + 1 = x → max pairs (3, 7) → mean 5
    np.testing.assert_allclose(forward(g, np.array([[[1.0, 3.0, 7.0, -2.0]]])), [[[5.0]]])


def test_lstm_single_step_by_hand() -> None:
    # one unit, one input, weights chosen so the gates are easy: z = (I, A, F, O) = (0, x, 0, 0)
    node = Lstm("l", ("x",), "y", w_input=[[0.0], [1.0], [0.0], [0.0]], w_hidden=np.zeros((4, 1)))
    g = Graph("x", (1, 1), (node,), "y")
    x = 0.7
    expected = 0.5 * np.tanh(0.5 * np.tanh(x))  # c = σ(0)·tanh(x); h = σ(0)·tanh(c)
    np.testing.assert_allclose(forward(g, np.array([[[x]]])), [[expected]], rtol=1e-6)


def test_input_checks() -> None:
    g = Graph("x", (2,), (Relu("r", ("x",), "y"),), "y")
    with pytest.raises(GraphError, match="does not match"):
        forward(g, np.zeros((3, 5)))
    with pytest.raises(GraphError, match="NaN"):
        forward(g, np.array([[np.nan, 0.0]]))
    with pytest.raises(GraphError, match="missing"):
        forward_quantised(g, np.zeros((1, 2)), {})


def test_fake_quant_is_int8_with_saturation() -> None:
    x = np.array([-2.0, -0.003, 0.5, 1.0, 3.0], np.float32)
    np.testing.assert_allclose(fake_quant(x, 1.0), np.array([-127, 0, 64, 127, 127]) / 127)


def _readme_accuracies() -> dict[str, tuple[float, float]]:
    text = (MODELS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)\.onnx` \|.*\| ([\d.]+) % \| ([\d.]+) % \|$", text, re.M)
    return {name: (float(f32), float(q)) for name, f32, q in rows}


@pytest.mark.parametrize(
    ("name", "dataset"),
    [("digits_mlp", "digits"), ("mnist1d_cnn", "mnist1d"), ("mnist1d_lstm", "mnist1d")],
)
def test_shipped_models_reproduce_the_readme_accuracies(
    name: str, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIPCTL_CACHE_DIR", str(tmp_path))
    expected = _readme_accuracies()[name]
    graph = load_onnx(MODELS / f"{name}.onnx")
    data = load_dataset(dataset)
    accuracy = 100 * np.mean(forward(graph, data.x_test).argmax(1) == data.y_test)
    ranges = activation_ranges(graph, data.x_train[:500])
    assert set(quantised_tensors(graph)) <= set(ranges)
    quantised = forward_quantised(graph, data.x_test, ranges)
    accuracy_q = 100 * np.mean(quantised.argmax(1) == data.y_test)
    assert (round(accuracy, 2), round(accuracy_q, 2)) == expected
