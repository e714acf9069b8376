"""The ``infer`` procedure with its model and data loaded from the command line's names.

:class:`InferModel` is :class:`procedures.infer.Infer` whose ``model`` parameter is a shipped
model name (``chipctl/models/<name>.onnx``: ``digits_mlp``, ``mnist1d_cnn``, ``mnist1d_lstm``)
or the path of an ONNX file, and whose ``dataset`` parameter names a data set of
:mod:`chipctl.datasets`. Loading errors (missing or truncated file, unsupported operator, data
set unavailable) are :class:`~drivers.errors.LimitError` naming the file, raised when the
procedure is created, before anything reaches the board; so is a model that does not fit the
data set (input shape, number of outputs against the data set's classes:
:func:`procedures.inference.data.check_model_against_data`). This is what ``chipctl infer``, the
recipes, the TUI and ``chipctl sweep`` run under the catalog name ``infer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chipctl.datasets import DatasetError, load_dataset
from chipctl.onnx_import import load_onnx
from drivers.errors import LimitError
from procedures.infer import Infer
from procedures.inference.data import InferenceData
from procedures.inference.graph import Graph

MODELS_DIR = Path(__file__).parent / "models"
"""Where the shipped ONNX models live."""


def model_path(name: str) -> Path:
    """The ONNX file of a shipped model name, or ``name`` itself as a path."""
    shipped = MODELS_DIR / f"{name}.onnx"
    if "/" not in name and "\\" not in name and not name.endswith(".onnx") and shipped.exists():
        return shipped
    path = Path(name)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.onnx")))
        raise LimitError(f"model {name!r}: no such file and not a shipped model ({known})")
    return path


def inference_data(dataset: str) -> InferenceData:
    """Calibration (training split) and test samples of a named data set."""
    try:
        data = load_dataset(dataset)
    except DatasetError as exc:
        raise LimitError(f"data set {dataset!r}: {exc}") from exc
    return InferenceData(
        data.name, data.x_train, data.x_test, data.y_test, n_classes=data.n_classes
    )


class InferModel(Infer):
    """Inference of an ONNX model (by shipped name or path) on a named data set."""

    def load_inputs(self) -> tuple[Graph, InferenceData]:
        return load_onnx(model_path(self.params["model"])), inference_data(self.params["dataset"])

    @staticmethod
    def summary_text(results: Mapping[str, Any]) -> str:
        """What ``chipctl infer`` prints after the run: :func:`accuracy_table`."""
        return accuracy_table(results)


def accuracy_table(results: Mapping[str, Any]) -> str:
    """Software vs chip accuracy over drift time, as the CLI and the demo print it."""
    accuracy = results.get("accuracy", {})
    if not accuracy:
        return ""
    labels = list(next(iter(accuracy.values())).keys())
    software = results.get("software_accuracy", float("nan"))
    lines = [
        f"{results.get('model', '?')} on {results.get('dataset', '?')} "
        f"({results.get('samples', '?')} test samples): float32 software "
        f"{100 * software:.2f} %, int8 digital {100 * results.get('quantised_accuracy', 0):.2f} %",
        "  chip accuracy %    " + "".join(f"{label:>9}" for label in labels),
    ]
    for compensation, row in accuracy.items():
        cells = "".join(f"{100 * row[label]:9.2f}" for label in labels)
        lines.append(f"  {compensation:<18} {cells}")
    estimate = results.get("estimate", {})
    if estimate:
        lines.append(
            f"  on chip (estimate, [LG Tab I]): {estimate['core_mvms']} core-MVMs, "
            f"{1e6 * estimate['time_s']:.1f} µs, {1e6 * estimate['energy_j']:.2f} µJ per "
            f"inference; through the link {results.get('inferences_per_s', 0):.0f} inferences/s"
        )
    return "\n".join(lines)
