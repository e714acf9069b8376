"""The data an inference run is scored on, and its check against the network.

:class:`InferenceData` holds calibration inputs (ranges, AdaBS) and labelled test inputs;
:func:`check_model_against_data` refuses a network whose input shape or number of classes does
not fit them, before anything reaches a board.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivers.errors import LimitError
from procedures.inference.graph import Graph, GraphError


@dataclass(frozen=True, eq=False)
class InferenceData:
    """Samples for one inference run: calibration inputs (ranges, AdaBS; from the training
    split) and labelled test inputs, float32 rows (samples, features)."""

    name: str
    x_calibration: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None
    """Classes of the data set (labels 0 .. n_classes-1), if known; else only the labels'
    range is checked against a network."""

    def __post_init__(self) -> None:
        for label in ("x_calibration", "x_test"):
            x = np.asarray(getattr(self, label), np.float32)
            if x.ndim < 2 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
                raise LimitError(f"{self.name}: {label} must be finite, non-empty (samples, …)")
            object.__setattr__(self, label, x)
        y = np.asarray(self.y_test)
        if y.shape != (self.x_test.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise LimitError(f"{self.name}: y_test must be integer labels, one per test sample")
        object.__setattr__(self, "y_test", y.astype(np.int64))
        if self.y_test.min() < 0:
            raise LimitError(
                f"data set {self.name}: label {self.y_test.min()} is negative "
                "(class labels are 0, 1, 2, ...)"
            )
        if self.n_classes is not None:
            if isinstance(self.n_classes, bool) or int(self.n_classes) < 1:
                raise LimitError(f"data set {self.name}: n_classes must be >= 1")
            if self.y_test.max() >= self.n_classes:
                raise LimitError(
                    f"data set {self.name}: label {self.y_test.max()} is outside the "
                    f"{self.n_classes} classes 0..{self.n_classes - 1}"
                )


class ModelDataMismatch(GraphError):
    """The network does not fit the data set: input shape or number of classes differ."""


def check_model_against_data(network: Graph, data: InferenceData, model: str) -> None:
    """Refuse a network whose input or output does not fit ``data``, naming both and the two
    numbers (:class:`ModelDataMismatch`, a ``LimitError``), before anything reaches a board.

    * input: the shape of the data's test and calibration samples must be the network's input
      shape, or a flat row of the same number of values (:meth:`Graph.prepare_input` reshapes it);
    * classes: the network's output width (values per sample; its argmax is the predicted
      class) must equal the data set's ``n_classes`` where that is known, and in any case
      exceed every test label, so that every label is a class the network can predict.
    """
    wanted = network.input_shape
    for what, x in (("samples", data.x_test), ("calibration samples", data.x_calibration)):
        given = tuple(int(n) for n in x.shape[1:])
        if given != wanted and not (len(given) == 1 and given[0] == math.prod(wanted)):
            raise ModelDataMismatch(
                f"model {model} takes inputs of shape {wanted} ({math.prod(wanted)} values), "
                f"which does not match the {what} of data set {data.name}: shape {given} "
                f"({math.prod(given)} values)"
            )
    outputs = math.prod(network.output_shape)
    largest = int(data.y_test.max())
    if data.n_classes is not None and outputs != data.n_classes:
        raise ModelDataMismatch(
            f"model {model} has {outputs} outputs (classes), data set {data.name} has "
            f"{data.n_classes} classes (labels 0..{data.n_classes - 1}); the model was not "
            "made for this data"
        )
    if largest >= outputs:
        raise ModelDataMismatch(
            f"model {model} has {outputs} outputs (classes 0..{outputs - 1}), data set "
            f"{data.name} has labels up to {largest} ({largest + 1} classes); the model was "
            "not made for this data"
        )
