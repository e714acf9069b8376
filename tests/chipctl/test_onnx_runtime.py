"""Every model file in the suite against onnxruntime, and the operator table in the docs.

The PyTorch exports (tests/data/models, both exporters) and the shipped models: the importer's
float32 forward (procedures.inference.reference) must give onnxruntime's logits within 1e-4 of
the logit range on the whole test set, and the accuracy the README states.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from chipctl.datasets import load_dataset
from chipctl.onnx_import import load_onnx, operator_table
from procedures.inference.reference import forward

REPO = Path(__file__).resolve().parents[2]
EXPORTS = REPO / "tests" / "data" / "models"
SHIPPED = REPO / "chipctl" / "models"

# file stem: (data, graph operators after import, float32 test accuracy in its README, as
# printed there: rounded to 0.01 %)
PYTORCH_MODELS = {
    "mnist1d_resnet_cnn": (
        "mnist1d",
        {"Reshape", "Conv", "Relu", "MaxPool", "Add", "Flatten", "Dense"},
        0.9820,
    ),
    "digits_cnn2d": (
        "digits-stratified",
        {"Reshape", "Conv", "Relu", "MaxPool", "AvgPool", "Flatten", "Dense"},
        0.9907,
    ),
    "mnist1d_lstm": ("mnist1d", {"Reshape", "LSTM", "Take", "Dense"}, 0.9030),
    "mnist1d_gru": ("mnist1d", {"Reshape", "GRU", "Take", "Dense"}, 0.8960),
    "digits_wide_mlp": ("digits-stratified", {"Dense", "Relu"}, 0.9796),
}
SHIPPED_MODELS = {
    "digits_mlp": ("digits", {"Dense", "Relu"}, 0.9861),
    "mnist1d_cnn": (
        "mnist1d",
        {"Conv", "BatchNorm", "Relu", "Add", "MaxPool", "Flatten", "Dense"},
        0.9900,
    ),
    "mnist1d_lstm": ("mnist1d", {"Reshape", "LSTM", "Dense"}, 0.8880),
}


@cache
def _test_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset(name)
    return data.x_test, data.y_test


def _check(path: Path, data: str, ops: set[str], accuracy: float) -> None:
    graph = load_onnx(path)
    assert {n.op for n in graph.nodes} == ops
    x, y = _test_set(data)
    ours = forward(graph, x)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x.reshape(len(x), *graph.input_shape)
    (reference,) = session.run(None, {session.get_inputs()[0].name: feed})
    assert ours.shape == reference.shape
    gap = np.max(np.abs(ours - reference)) / np.ptp(reference)
    assert gap <= 1e-4, f"{path.name}: max |Δ| {gap:.2e} of the logit range"
    assert round(100 * float(np.mean(ours.argmax(axis=1) == y)), 2) == round(100 * accuracy, 2)


@pytest.mark.parametrize("exporter", ["", ".dynamo"])
@pytest.mark.parametrize("stem", sorted(PYTORCH_MODELS))
def test_pytorch_export_equals_onnxruntime(stem: str, exporter: str) -> None:
    _check(EXPORTS / f"{stem}{exporter}.onnx", *PYTORCH_MODELS[stem])


@pytest.mark.parametrize("stem", sorted(SHIPPED_MODELS))
def test_shipped_model_equals_onnxruntime(stem: str) -> None:
    _check(SHIPPED / f"{stem}.onnx", *SHIPPED_MODELS[stem])


@pytest.mark.parametrize("exporter", ["", ".dynamo"])
@pytest.mark.parametrize("form", ["recurrent", "activations", "strided2d"])
def test_exported_forms_equal_onnxruntime(form: str, exporter: str) -> None:
    """Untrained networks in other exporter forms (tests/data/models/forms.py) on random
    inputs. (The dynamo export of ``recurrent`` fixed the batch at the example's 3: the
    importer folds with that batch size, onnxruntime takes only that.)"""
    path = EXPORTS / f"forms_{form}{exporter}.onnx"
    graph = load_onnx(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    n = batch if isinstance(batch, int) else 50
    x = np.random.default_rng(3).standard_normal((n, *graph.input_shape)).astype(np.float32)
    (reference,) = session.run(None, {"x": x})
    gap = np.max(np.abs(forward(graph, x) - reference)) / np.ptp(reference)
    assert gap <= 1e-4, f"{path.name}: max |Δ| {gap:.2e} of the output range"


def test_docs_operator_table_is_the_importers() -> None:
    text = (REPO / "docs" / "inference.md").read_text()
    start = text.index("<!-- onnx-operators:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- onnx-operators:end -->")
    assert text[start:end] == operator_table(), (
        "docs/inference.md's operator table differs from the importer's; paste "
        "chipctl.onnx_import.operator_table() between the onnx-operators markers"
    )
