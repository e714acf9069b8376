"""The data an inference run is scored on, and its check against the network.

:class:`InferenceData` holds calibration inputs (ranges, AdaBS) and labelled test inputs;
:func:`apply_input_layout` reorders the axes of their samples where the data's layout differs
from the network's (``HWC->CHW``); :func:`check_model_against_data` refuses a network whose
input shape or number of classes does not fit them, before anything reaches a board.
"""

from __future__ import annotations

import dataclasses
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
    note: str = ""
    """Where the test and calibration samples come from (the split), as a run reports it."""

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


CHANNELS_LAST = "channels-last"
"""The input layout that moves each sample's last axis to the front (NHWC → NCHW, NLC → NCL)."""


def layout_permutation(layout: str, sample_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axis order that turns samples of ``sample_shape`` in ``layout`` into the network's.

    ``layout`` is ``""`` (as given: None), ``channels-last`` (the last axis moves to the front),
    or ``SRC->DST``: one letter per sample axis, the data's order and the network's (``HWC->CHW``,
    ``LC->CL``; a leading ``N`` batch letter on both sides is allowed and ignored). A layout whose
    letters do not fit the samples is a :class:`~drivers.errors.LimitError` naming both.
    """
    text = str(layout).strip()
    rank = len(sample_shape)
    if not text:
        return None
    if text.lower() == CHANNELS_LAST:
        if rank < 2:
            raise LimitError(
                f"input_layout {CHANNELS_LAST}: the samples have shape {sample_shape}, a flat "
                "row; a layout needs one axis per dimension (e.g. (8, 8, 3), not (192,))"
            )
        return (rank - 1, *range(rank - 1))
    source, arrow, target = text.upper().replace(" ", "").partition("->")
    if not arrow or not source.isalpha() or not target.isalpha():
        raise LimitError(
            f"input_layout {layout!r} is not a layout like HWC->CHW, NLC->NCL or {CHANNELS_LAST}"
        )
    if source[0] == target[0] == "N" and len(source) == len(target) == rank + 1:
        source, target = source[1:], target[1:]
    if len(set(source)) != len(source) or sorted(source) != sorted(target):
        raise LimitError(f"input_layout {layout!r}: both sides must name the same axes, each once")
    if len(source) != rank:
        raise LimitError(
            f"input_layout {layout!r} names {len(source)} axes per sample, but the samples have "
            f"shape {sample_shape} ({rank} axes)"
            + ("; flat rows cannot be reordered: save x with one axis per letter" if rank == 1
               else "")
        )  # fmt: skip
    return tuple(source.index(letter) for letter in target)


def apply_input_layout(data: InferenceData, layout: str) -> InferenceData:
    """``data`` with its samples' axes reordered by ``layout`` (:func:`layout_permutation`);
    ``data`` itself when the layout is empty."""
    order = layout_permutation(layout, tuple(int(n) for n in data.x_test.shape[1:]))
    if order is None:
        return data
    if data.x_calibration.shape[1:] != data.x_test.shape[1:]:
        raise LimitError(
            f"data set {data.name}: calibration samples have shape "
            f"{data.x_calibration.shape[1:]}, test samples {data.x_test.shape[1:]}; the layout "
            "applies to both, so they must be equal"
        )
    axes = (0, *(1 + a for a in order))
    before = tuple(int(n) for n in data.x_test.shape[1:])
    after = tuple(before[a] for a in order)
    note = f"samples reordered by input_layout {layout} from {before} to {after}"
    return dataclasses.replace(
        data,
        x_calibration=np.ascontiguousarray(data.x_calibration.transpose(axes)),
        x_test=np.ascontiguousarray(data.x_test.transpose(axes)),
        note="; ".join(part for part in (data.note, note) if part),
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
                f"({math.prod(given)} values)" + _layout_hint(given, wanted)
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


def _layout_hint(given: tuple[int, ...], wanted: tuple[int, ...]) -> str:
    """A suggested input_layout when ``given`` holds ``wanted``'s axes in another order (or a
    reshape when the model takes flat rows)."""
    if len(wanted) == 1 and len(given) > 1 and math.prod(given) == wanted[0]:
        return "; the model takes flat rows: save x.reshape(len(x), -1) (row-major)"
    if len(given) < 2 or sorted(given) != sorted(wanted):
        return ""
    if given[-1:] + given[:-1] == wanted:
        return f"; the data is channels-last: set input_layout (--input-layout) to {CHANNELS_LAST}"
    return "; the same axes in another order: set input_layout (--input-layout) like HWC->CHW"
