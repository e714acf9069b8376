"""The ``infer`` procedure with its model and data loaded from the command line's names.

:class:`InferModel` is :class:`procedures.infer.Infer` whose ``model`` parameter is a shipped
model name (``chipctl/models/<name>.onnx``: ``digits_mlp``, ``mnist1d_cnn``, ``mnist1d_lstm``)
or the path of an ONNX file, and whose ``dataset`` parameter names a built-in data set of
:mod:`chipctl.datasets` (``digits``, ``digits-stratified``, ``mnist1d``) or the user's own
``.npz`` file (:func:`own_inference_data`). Loading errors (missing or truncated file,
unsupported operator, data set unavailable or refused) are :class:`~drivers.errors.LimitError`
naming the file, raised when the procedure is created, before anything reaches the board; so
is a model that does not fit the data set (input shape, number of outputs against the data
set's classes: :func:`procedures.inference.data.check_model_against_data`). This is what
``chipctl infer``, the recipes, the TUI and ``chipctl sweep`` run under the catalog name
``infer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.datasets import DATASETS, SPLITS, DatasetError, load_dataset, load_npz
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


CALIBRATION_SEED = 0
"""Seed of the permutation that picks the calibration rows of an .npz file without x_cal."""


def inference_data(dataset: str, *, calibration_samples: int = 500) -> InferenceData:
    """Calibration and test samples of a built-in data set (its training and test split) or of
    an ``.npz`` file (:func:`own_inference_data`)."""
    if dataset not in DATASETS:
        return own_inference_data(dataset, calibration_samples=calibration_samples)
    try:
        data = load_dataset(dataset)
    except DatasetError as exc:
        raise LimitError(f"data set {dataset!r}: {exc}") from exc
    return InferenceData(
        data.name,
        data.x_train,
        data.x_test,
        data.y_test,
        n_classes=data.n_classes,
        note=SPLITS[data.name],
    )


def own_inference_data(path: str, *, calibration_samples: int = 500) -> InferenceData:
    """The samples of the user's ``.npz`` file (:func:`chipctl.datasets.load_npz`).

    With ``x_cal`` every sample of ``x`` is scored and ``x_cal`` calibrates. Without it,
    ``calibration_samples`` rows of ``x`` calibrate, the first ones of
    ``numpy.random.default_rng(0).permutation(len(x))`` (spread over the file even when it is
    sorted by class), and they are left out of scoring; they may be at most half of ``x``.
    The returned data's ``note`` says which, and the run's results keep it.
    """
    if not path.strip() or (not Path(path).exists() and not path.endswith(".npz")):
        raise LimitError(
            f"data set {path!r}: not a built-in data set ({', '.join(DATASETS)}) and no such "
            "file; give one of those or an .npz file with arrays x and y"
        )
    try:
        own = load_npz(path)
    except DatasetError as exc:
        raise LimitError(f"data set {exc}") from exc
    digest = f"sha256 {own.sha256[:16]}"
    if own.x_cal is not None:
        note = (
            f"{path} ({digest}): all {len(own.x)} samples of x scored; calibration: its "
            f"{len(own.x_cal)} x_cal samples"
        )
        return InferenceData(own.name, own.x_cal, own.x, own.y, note=note)
    n = len(own.x)
    if 2 * calibration_samples > n:
        raise LimitError(
            f"data set {path}: without an x_cal array, {calibration_samples} of the {n} samples "
            "of x would calibrate and be left out of scoring, more than half; add x_cal to the "
            "file or give fewer calibration samples (--calibration-samples)"
        )
    rows = np.random.default_rng(CALIBRATION_SEED).permutation(n)[:calibration_samples]
    scored = np.setdiff1d(np.arange(n), rows)
    note = (
        f"{path} ({digest}) has no x_cal: {calibration_samples} samples of x calibrate (rows "
        f"numpy.random.default_rng({CALIBRATION_SEED}).permutation({n})[:{calibration_samples}])"
        f" and are not scored; scored: the other {len(scored)}"
    )
    return InferenceData(own.name, own.x[np.sort(rows)], own.x[scored], own.y[scored], note=note)


class InferModel(Infer):
    """Inference of an ONNX model (shipped name or path) on a built-in data set or an .npz file."""

    def load_inputs(self) -> tuple[Graph, InferenceData]:
        p = self.params
        data = inference_data(p["dataset"], calibration_samples=p["calibration_samples"])
        return load_onnx(model_path(p["model"])), data

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
    ]
    if results.get("data_note"):
        lines.append(f"  data: {results['data_note']}")
    lines.append("  chip accuracy %    " + "".join(f"{label:>9}" for label in labels))
    for compensation, row in accuracy.items():
        cells = "".join(f"{100 * row[label]:9.2f}" for label in labels)
        lines.append(f"  {compensation:<18} {cells}")
    lines += _compensation_notes(results)
    estimate = results.get("estimate", {})
    if estimate:
        lines.append(
            f"  on chip (estimate, [LG Tab I]): {estimate['core_mvms']} core-MVMs, "
            f"{1e6 * estimate['time_s']:.1f} µs, {1e6 * estimate['energy_j']:.2f} µJ per "
            f"inference; through the link {results.get('inferences_per_s', 0):.0f} inferences/s"
        )
    return "\n".join(lines)


def _compensation_notes(results: Mapping[str, Any]) -> list[str]:
    """What Gmax rule, recalibration and AdaBS did (procedures/infer.py's results)."""
    notes = []
    gmax = results.get("gmax")
    if gmax:
        cores = gmax["per_core"].values()
        chosen = [c["g_max"] for c in cores]
        worst = [c["worst_case"] for c in cores]
        saturated = max(c["saturated_fraction"] for c in cores)
        notes.append(
            f"  Gmax ({gmax['rule']}): {min(chosen):.0f}-{max(chosen):.0f} counts (worst-case "
            f"rule {min(worst):.0f}-{max(worst):.0f}); calibration inputs saturating a "
            f"conversion: at most {100 * saturated:.2f} % on a core"
        )
    if "recal_core_mvms" in results:
        notes.append(f"  recal: {results['recal_core_mvms']} core-MVMs per recalibration")
    for label, layers in results.get("adabs", {}).items():
        kinds = sorted({layer["kind"] for layer in layers.values()})
        change = max(layer["scale_change_mean"] for layer in layers.values())
        notes.append(
            f"  adabs at {label}: {len(layers)} layers adapted ({', '.join(kinds)}), "
            f"mean |scale change| up to {100 * change:.1f} %"
        )
    return notes
