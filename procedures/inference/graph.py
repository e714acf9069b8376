"""A small numpy description of a feed-forward or recurrent network, for the inference executor.

A :class:`Graph` is a list of nodes in topological order over named tensors, one input and one
output. Shapes exclude the batch dimension (every tensor carries a leading batch axis at run
time) and are channel-first like ONNX: ``(C, L)`` for 1-D and ``(C, H, W)`` for 2-D feature
maps, ``(T, I)`` for a sequence. Scripts build graphs directly::

    g = Graph(
        input_name="x", input_shape=(64,), output_name="y",
        nodes=(
            Dense("fc1", ("x",), "h", weight=w1, bias=b1),
            Relu("relu", ("h",), "a"),
            Dense("fc2", ("a",), "y", weight=w2, bias=b2),
        ),
    )

Construction validates everything before anything is mapped or programmed: unique node and tensor
names, inputs defined before use, shapes that agree (propagated from ``input_shape``) and finite
float32 weights. Errors are :class:`GraphError` naming the node.

Analog (weight) layers are :class:`Dense`, :class:`Conv` and :class:`Lstm`; their weight matrices,
as the crossbar sees them (rows = outputs = bit lines / ADCs, columns = inputs = PWM source lines,
chip.md §1.2-1.4), are given by :func:`weight_matrices`. Conv is unrolled (chip.md §2d): one MVM
per output position, the input vector of position p being the receptive field flattened in the
order (c_in, k_1[, k_2]), which matches ``weight.reshape(c_out, -1)``.

:class:`Gru` is a weight layer of the float32 reference only (the executor's mapping refuses it:
the GDPU computes the LSTM cell, chip.md §1.6). The other nodes run on the host in the digital
format: batch norm, ReLU, residual Add, pooling, reshapes, and the element-wise and layout nodes
exported networks bring (Sigmoid, Tanh, Clip, Softmax, ScaleShift, Transpose, Take, Select,
Mean, Concat); every axis they name is a non-batch axis counted from 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from drivers.errors import LimitError

Shape = tuple[int, ...]

LSTM_GATES = ("I", "A", "F", "O")
"""Gate order of :class:`Lstm` weight rows: input, activation (candidate, tanh), forget, output
(chip.md §1.6). ONNX stores i, o, f, c; the importer reorders."""


class GraphError(LimitError):
    """An invalid or unsupported network description (names the node where there is one)."""


def _array(node: str, what: str, value: object, ndim: int | tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise GraphError(f"node {node!r}: {what} must be numeric, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise GraphError(f"node {node!r}: {what} must be real")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in dims:
        raise GraphError(f"node {node!r}: {what} must have {ndim} dimensions, got {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise GraphError(f"node {node!r}: {what} contains NaN or infinite values")
    array.setflags(write=False)
    return array


def _ints(node: str, what: str, value: Sequence[int], n: int, minimum: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in value)
    if len(values) != n:
        raise GraphError(f"node {node!r}: {what} must have {n} values, got {values}")
    if any(v < minimum for v in values):
        raise GraphError(f"node {node!r}: {what} must be >= {minimum}, got {values}")
    return values


@dataclass(frozen=True, eq=False)
class Node:
    """Base class: a named operation from input tensor names to one output tensor name."""

    name: str
    inputs: tuple[str, ...]
    output: str
    op: ClassVar[str] = "Node"
    n_inputs: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GraphError(f"{self.op}: node name must be a non-empty string")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if len(self.inputs) != self.n_inputs:
            raise GraphError(
                f"node {self.name!r} ({self.op}) takes {self.n_inputs} input(s), "
                f"got {len(self.inputs)}"
            )

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        """Output shape (without batch) from the input shapes; GraphError when they disagree."""
        return shapes[0]

    def error(self, message: str) -> GraphError:
        """A :class:`GraphError` naming this node and its operator."""
        return GraphError(f"node {self.name!r} ({self.op}): {message}")


@dataclass(frozen=True, eq=False)
class Dense(Node):
    """y = W·x + b on the last axis. ``weight`` (out, in), ``bias`` (out,) or None."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    bias: np.ndarray | None = None
    op: ClassVar[str] = "Dense"

    def __post_init__(self) -> None:
        super().__post_init__()
        w = _array(self.name, "weight", self.weight, 2)
        if w.size == 0:
            raise self.error("weight is empty")
        object.__setattr__(self, "weight", w)
        if self.bias is not None:
            b = _array(self.name, "bias", self.bias, 1)
            if b.shape != (w.shape[0],):
                raise self.error(f"bias shape {b.shape} != ({w.shape[0]},)")
            object.__setattr__(self, "bias", b)

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise self.error(f"input shape {shape} does not match weight {self.weight.shape}")
        return (self.weight.shape[0],)


@dataclass(frozen=True, eq=False)
class Conv(Node):
    """1-D or 2-D convolution (groups = 1), channel-first, zero padding.

    ``weight`` (c_out, c_in, k_1[, k_2]); ``strides``, ``dilations`` per spatial axis; ``pads``
    as ONNX: (begin_1[, begin_2], end_1[, end_2]). Defaults: stride 1, no padding, dilation 1.
    """

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    bias: np.ndarray | None = None
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    op: ClassVar[str] = "Conv"

    def __post_init__(self) -> None:
        super().__post_init__()
        w = _array(self.name, "weight", self.weight, (3, 4))
        if w.size == 0:
            raise self.error("weight is empty")
        object.__setattr__(self, "weight", w)
        nd = w.ndim - 2
        if self.bias is not None:
            b = _array(self.name, "bias", self.bias, 1)
            if b.shape != (w.shape[0],):
                raise self.error(f"bias shape {b.shape} != ({w.shape[0]},)")
            object.__setattr__(self, "bias", b)
        strides = self.strides or (1,) * nd
        pads = self.pads or (0,) * (2 * nd)
        dilations = self.dilations or (1,) * nd
        object.__setattr__(self, "strides", _ints(self.name, "strides", strides, nd, 1))
        object.__setattr__(self, "pads", _ints(self.name, "pads", pads, 2 * nd, 0))
        object.__setattr__(self, "dilations", _ints(self.name, "dilations", dilations, nd, 1))

    @property
    def spatial(self) -> int:
        """Number of spatial axes (1 or 2)."""
        return int(self.weight.ndim - 2)

    @property
    def kernel(self) -> tuple[int, ...]:
        """Kernel size per spatial axis."""
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def matrix(self) -> np.ndarray:
        """The unrolled weight matrix (c_out, c_in·Πk), columns in (c_in, k…) order."""
        return self.weight.reshape(self.weight.shape[0], -1)

    def output_spatial(self, spatial: Shape) -> Shape:
        """Output size per spatial axis for input size ``spatial`` (GraphError if too small)."""
        nd = self.spatial
        out = []
        for i in range(nd):
            span = self.dilations[i] * (self.kernel[i] - 1) + 1
            padded = spatial[i] + self.pads[i] + self.pads[i + nd]
            if padded < span:
                raise self.error(f"kernel span {span} exceeds padded input size {padded}")
            out.append((padded - span) // self.strides[i] + 1)
        return tuple(out)

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) != 1 + self.spatial or shape[0] != self.weight.shape[1]:
            raise self.error(
                f"input shape {shape} does not match weight {self.weight.shape} "
                f"(expected (c_in={self.weight.shape[1]}, {self.spatial} spatial axes))"
            )
        return (int(self.weight.shape[0]), *self.output_spatial(shape[1:]))

    def unroll(self, x: np.ndarray) -> np.ndarray:
        """Receptive fields of a batch (N, c_in, *spatial) as (N, positions, c_in·Πk).

        Positions are in row-major order of the output map; one chip MVM each (chip.md §2d).
        """
        nd = self.spatial
        pad_width = [(0, 0), (0, 0)] + [(self.pads[i], self.pads[i + nd]) for i in range(nd)]
        xp = np.pad(x, pad_width)
        spans = [self.dilations[i] * (self.kernel[i] - 1) + 1 for i in range(nd)]
        win = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + nd)))
        index = (
            (slice(None), slice(None))
            + tuple(slice(None, None, s) for s in self.strides)
            + tuple(slice(None, None, d) for d in self.dilations)
        )
        win = win[index]  # (N, C, O..., k...)
        order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
        win = win.transpose(order)
        n_pos = int(np.prod(win.shape[1 : 1 + nd]))
        return np.ascontiguousarray(win).reshape(x.shape[0], n_pos, -1)


@dataclass(frozen=True, eq=False)
class BatchNorm(Node):
    """Inference batch norm over axis 1 (channels): γ·(x − μ)/√(σ² + ε) + β."""

    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    var: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    epsilon: float = 1e-5
    op: ClassVar[str] = "BatchNorm"

    def __post_init__(self) -> None:
        super().__post_init__()
        arrays = {k: _array(self.name, k, getattr(self, k), 1) for k in ("scale", "bias", "mean")}
        arrays["var"] = _array(self.name, "var", self.var, 1)
        n = arrays["scale"].shape[0]
        for key, value in arrays.items():
            if value.shape != (n,) or n == 0:
                raise self.error(f"{key} must have shape ({n},) with n > 0, got {value.shape}")
            object.__setattr__(self, key, value)
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise self.error(f"epsilon must be finite and >= 0, got {self.epsilon}")
        if np.any(arrays["var"] + self.epsilon <= 0):
            raise self.error("var + epsilon must be positive")

    @property
    def channels(self) -> int:
        """Number of channels normalised."""
        return int(self.scale.shape[0])

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (a, b) with BN(x) = a·x + b, float64."""
        a = self.scale.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + self.epsilon)
        return a, self.bias.astype(np.float64) - a * self.mean.astype(np.float64)

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) < 1 or shape[0] != self.channels:
            raise self.error(f"input shape {shape} does not have {self.channels} channels")
        return shape


@dataclass(frozen=True, eq=False)
class Relu(Node):
    """max(x, 0)."""

    op: ClassVar[str] = "Relu"


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Element-wise sum of two tensors of identical shape (residual add; no broadcasting)."""

    op: ClassVar[str] = "Add"
    n_inputs: ClassVar[int] = 2

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        if shapes[0] != shapes[1]:
            raise self.error(f"input shapes differ: {shapes[0]} and {shapes[1]}")
        return shapes[0]


@dataclass(frozen=True, eq=False)
class _Pool(Node):
    """Pooling window ``kernel`` per spatial axis (1-D or 2-D); ``strides`` default to the kernel
    (PyTorch's convention; the ONNX importer always passes them, ONNX's default being 1);
    ``pads`` as ONNX (begin…, end…), each smaller than the kernel."""

    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        nd = len(tuple(self.kernel))
        if nd not in (1, 2):
            raise self.error(f"kernel must have 1 or 2 values, got {self.kernel}")
        object.__setattr__(self, "kernel", _ints(self.name, "kernel", self.kernel, nd, 1))
        strides = self.strides or self.kernel
        object.__setattr__(self, "strides", _ints(self.name, "strides", strides, nd, 1))
        pads = self.pads or (0,) * (2 * nd)
        object.__setattr__(self, "pads", _ints(self.name, "pads", pads, 2 * nd, 0))
        for i in range(nd):
            if max(self.pads[i], self.pads[i + nd]) >= self.kernel[i]:
                raise self.error(f"padding {self.pads} must be smaller than the kernel")

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        nd = len(self.kernel)
        if len(shape) != 1 + nd:
            raise self.error(f"input shape {shape} is not (C, {nd} spatial axes)")
        out = []
        for i in range(nd):
            padded = shape[1 + i] + self.pads[i] + self.pads[i + nd]
            if padded < self.kernel[i]:
                raise self.error(f"kernel {self.kernel} larger than padded input {shape}")
            out.append((padded - self.kernel[i]) // self.strides[i] + 1)
        return (shape[0], *out)

    def windows(self, x: np.ndarray, fill: float) -> np.ndarray:
        """(N, C, O..., k...) pooling windows of x, padded with ``fill``."""
        nd = len(self.kernel)
        pad_width = [(0, 0), (0, 0)] + [(self.pads[i], self.pads[i + nd]) for i in range(nd)]
        xp = np.pad(x, pad_width, constant_values=fill)
        win = sliding_window_view(xp, self.kernel, axis=tuple(range(2, 2 + nd)))
        return win[(slice(None), slice(None), *(slice(None, None, s) for s in self.strides))]


@dataclass(frozen=True, eq=False)
class MaxPool(_Pool):
    """Max pooling (padding counts as −∞)."""

    op: ClassVar[str] = "MaxPool"


@dataclass(frozen=True, eq=False)
class AvgPool(_Pool):
    """Average pooling; padded positions count in the divisor only if ``count_include_pad``."""

    count_include_pad: bool = False
    op: ClassVar[str] = "AvgPool"


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Node):
    """Mean over all spatial axes, which are kept with size 1 (ONNX): (C, …) → (C, 1, …)."""

    op: ClassVar[str] = "GlobalAvgPool"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) < 2:
            raise self.error(f"input shape {shape} has no spatial axes")
        return (shape[0],) + (1,) * (len(shape) - 1)


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Flatten every non-batch axis (row-major)."""

    op: ClassVar[str] = "Flatten"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        return (math.prod(shapes[0]),)


@dataclass(frozen=True, eq=False)
class Reshape(Node):
    """Row-major reshape of the non-batch axes to ``shape`` (all positive)."""

    shape: tuple[int, ...] = ()
    op: ClassVar[str] = "Reshape"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(
            self, "shape", _ints(self.name, "shape", self.shape, len(tuple(self.shape)), 1)
        )
        if not self.shape:
            raise self.error("shape must not be empty")

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        if math.prod(shapes[0]) != math.prod(self.shape):
            raise self.error(f"cannot reshape {shapes[0]} to {self.shape}")
        return self.shape


class _Recurrent(Node):
    """What the recurrent layers share: a (T, I) sequence in, the last h (H,) or every h out.
    The fields are the subclasses' (dataclass fields are declared there)."""

    w_input: np.ndarray
    w_hidden: np.ndarray
    return_sequences: bool

    @property
    def hidden_size(self) -> int:
        """H, the number of hidden units."""
        return int(self.w_hidden.shape[1])

    @property
    def input_size(self) -> int:
        """I, the input features per time step."""
        return int(self.w_input.shape[1])

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) != 2 or shape[1] != self.input_size:
            raise self.error(f"input shape {shape} is not (T, {self.input_size})")
        return (shape[0], self.hidden_size) if self.return_sequences else (self.hidden_size,)


@dataclass(frozen=True, eq=False)
class Lstm(_Recurrent):
    """Single-layer, forward LSTM on a (T, I) sequence.

    ``w_input`` (4H, I), ``w_hidden`` (4H, H), ``bias`` (4H,) (input and recurrent biases
    summed); rows are gate-major in the order :data:`LSTM_GATES` (I, A, F, O): row g·H + j is
    gate g of hidden unit j. With i, f, o = σ(·) and a = tanh(·):
    c_t = f ⊙ c_{t−1} + i ⊙ a, h_t = o ⊙ tanh(c_t). ``initial_h``/``initial_c`` (H,), the
    same for every sample, default zero. Output: the last h (H,), with ``return_sequences``
    every h (T, H), with ``return_cell`` the last c (H,).
    """

    w_input: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    w_hidden: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    bias: np.ndarray | None = None
    return_sequences: bool = False
    initial_h: np.ndarray | None = None
    initial_c: np.ndarray | None = None
    return_cell: bool = False
    op: ClassVar[str] = "LSTM"

    def __post_init__(self) -> None:
        super().__post_init__()
        wi = _array(self.name, "w_input", self.w_input, 2)
        wh = _array(self.name, "w_hidden", self.w_hidden, 2)
        rows = wh.shape[0]
        if rows == 0 or rows % 4 or wh.shape != (rows, rows // 4):
            raise self.error(f"w_hidden must be (4H, H), got {wh.shape}")
        if wi.shape[0] != rows or wi.shape[1] == 0:
            raise self.error(f"w_input must be ({rows}, I), got {wi.shape}")
        bias = np.zeros(rows, np.float32) if self.bias is None else self.bias
        b = _array(self.name, "bias", bias, 1)
        if b.shape != (rows,):
            raise self.error(f"bias must be ({rows},), got {b.shape}")
        object.__setattr__(self, "w_input", wi)
        object.__setattr__(self, "w_hidden", wh)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))
        object.__setattr__(self, "return_cell", bool(self.return_cell))
        if self.return_cell and self.return_sequences:
            raise self.error("return_cell and return_sequences exclude each other")
        _initial_states(self, rows // 4)


def _initial_states(node: Lstm | Gru, hidden: int) -> None:
    for key in ("initial_h", "initial_c"):
        value = getattr(node, key, None)
        if value is not None:
            array = _array(node.name, key, value, 1)
            if array.shape != (hidden,):
                raise node.error(f"{key} must be ({hidden},), got {array.shape}")
            object.__setattr__(node, key, array)


GRU_GATES = ("Z", "R", "N")
"""Gate order of :class:`Gru` weight rows: update, reset, new (candidate); as ONNX."""


@dataclass(frozen=True, eq=False)
class Gru(_Recurrent):
    """Single-layer, forward GRU on a (T, I) sequence (ONNX GRU semantics).

    ``w_input`` (3H, I), ``w_hidden`` (3H, H), ``bias_input`` and ``bias_hidden`` (3H,), rows
    gate-major Z, R, N. With z, r = σ(·): with ``linear_before_reset`` (PyTorch's form)
    n = tanh(W_n·x + b_Wn + r ⊙ (R_n·h + b_Rn)), else n = tanh(W_n·x + R_n·(r ⊙ h) + b_Wn +
    b_Rn); h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}. ``initial_h`` (H,) default zero. Output: the last h
    (H,) or, with ``return_sequences``, every h (T, H).
    """

    w_input: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    w_hidden: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    bias_input: np.ndarray | None = None
    bias_hidden: np.ndarray | None = None
    linear_before_reset: bool = True
    return_sequences: bool = False
    initial_h: np.ndarray | None = None
    op: ClassVar[str] = "GRU"

    def __post_init__(self) -> None:
        super().__post_init__()
        wi = _array(self.name, "w_input", self.w_input, 2)
        wh = _array(self.name, "w_hidden", self.w_hidden, 2)
        rows = wh.shape[0]
        if rows == 0 or rows % 3 or wh.shape != (rows, rows // 3):
            raise self.error(f"w_hidden must be (3H, H), got {wh.shape}")
        if wi.shape[0] != rows or wi.shape[1] == 0:
            raise self.error(f"w_input must be ({rows}, I), got {wi.shape}")
        object.__setattr__(self, "w_input", wi)
        object.__setattr__(self, "w_hidden", wh)
        for key in ("bias_input", "bias_hidden"):
            value = getattr(self, key)
            b = _array(self.name, key, np.zeros(rows) if value is None else value, 1)
            if b.shape != (rows,):
                raise self.error(f"{key} must be ({rows},), got {b.shape}")
            object.__setattr__(self, key, b)
        object.__setattr__(self, "linear_before_reset", bool(self.linear_before_reset))
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))
        _initial_states(self, rows // 3)


# -- host (digital) operations added for exported networks -------------------------------------


@dataclass(frozen=True, eq=False)
class Sigmoid(Node):
    """1 / (1 + exp(−x))."""

    op: ClassVar[str] = "Sigmoid"


@dataclass(frozen=True, eq=False)
class Tanh(Node):
    """tanh(x)."""

    op: ClassVar[str] = "Tanh"


@dataclass(frozen=True, eq=False)
class Clip(Node):
    """min(max(x, low), high); ``None`` is unbounded on that side."""

    low: float | None = None
    high: float | None = None
    op: ClassVar[str] = "Clip"

    def __post_init__(self) -> None:
        super().__post_init__()
        for bound in (self.low, self.high):
            if bound is not None and math.isnan(bound):
                raise self.error("bounds must not be NaN")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise self.error(f"low {self.low} exceeds high {self.high}")


@dataclass(frozen=True, eq=False)
class Softmax(Node):
    """Softmax over the non-batch ``axis`` (0-based without the batch axis)."""

    axis: int = -1
    op: ClassVar[str] = "Softmax"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if not -len(shape) <= self.axis < len(shape):
            raise self.error(f"axis {self.axis} outside input shape {shape}")
        return shape


@dataclass(frozen=True, eq=False)
class ScaleShift(Node):
    """x · scale + shift with constants broadcast against one sample (None: 1 or 0)."""

    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    op: ClassVar[str] = "ScaleShift"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("scale", "shift"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _array(self.name, key, value, tuple(range(9))))
        if self.scale is None and self.shift is None:
            raise self.error("neither scale nor shift given")

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        for key in ("scale", "shift"):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                out = np.broadcast_shapes(shape, value.shape)
            except ValueError:
                out = ()
            if out != shape:
                raise self.error(f"{key} {value.shape} does not broadcast to {shape}")
        return shape


@dataclass(frozen=True, eq=False)
class Transpose(Node):
    """Permutes the non-batch axes: output axis i is input axis ``perm[i]``."""

    perm: tuple[int, ...] = ()
    op: ClassVar[str] = "Transpose"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if sorted(self.perm) != list(range(len(shape))):
            raise self.error(f"perm {self.perm} is not a permutation of {len(shape)} axes")
        return tuple(shape[p] for p in self.perm)


@dataclass(frozen=True, eq=False)
class Take(Node):
    """Element ``index`` of non-batch ``axis``, that axis dropped (``y[:, -1]`` of a sequence)."""

    axis: int = 0
    index: int = 0
    op: ClassVar[str] = "Take"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if len(shape) < 2 or not 0 <= self.axis < len(shape):
            raise self.error(f"axis {self.axis} of shape {shape} cannot be taken (2+ axes)")
        if not -shape[self.axis] <= self.index < shape[self.axis]:
            raise self.error(f"index {self.index} of axis {self.axis} outside shape {shape}")
        return shape[: self.axis] + shape[self.axis + 1 :]


@dataclass(frozen=True, eq=False)
class Select(Node):
    """The elements ``indices`` (in that order) of non-batch ``axis`` (a slice ``x[:, 2:-2]``)."""

    axis: int = 0
    indices: tuple[int, ...] = ()
    op: ClassVar[str] = "Select"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        if not 0 <= self.axis < len(shape):
            raise self.error(f"axis {self.axis} outside shape {shape}")
        if not self.indices or any(not 0 <= i < shape[self.axis] for i in self.indices):
            raise self.error(f"indices {self.indices} outside axis {self.axis} of {shape}")
        return (*shape[: self.axis], len(self.indices), *shape[self.axis + 1 :])


@dataclass(frozen=True, eq=False)
class Mean(Node):
    """Mean over the non-batch ``axes``; they stay with size 1 when ``keepdims``."""

    axes: tuple[int, ...] = ()
    keepdims: bool = True
    op: ClassVar[str] = "Mean"

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        axes = set(self.axes)
        if not axes or len(axes) != len(self.axes) or not axes <= set(range(len(shape))):
            raise self.error(f"axes {self.axes} are not distinct axes of {shape}")
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        out = tuple(d for i, d in enumerate(shape) if i not in axes)
        if not out:
            raise self.error(f"reducing every axis of {shape} leaves a scalar per sample")
        return out


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Concatenation of two or more tensors along the non-batch ``axis``."""

    axis: int = 0
    op: ClassVar[str] = "Concat"
    n_inputs: ClassVar[int] = 0  # any number from 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.name, str) or not self.name:
            raise GraphError(f"{self.op}: node name must be a non-empty string")
        if len(self.inputs) < 2:
            raise self.error(f"needs two or more inputs, got {len(self.inputs)}")

    def infer(self, shapes: Sequence[Shape]) -> Shape:
        first = shapes[0]
        if not 0 <= self.axis < len(first):
            raise self.error(f"axis {self.axis} outside input shape {first}")
        for shape in shapes[1:]:
            rest = shape[: self.axis] + shape[self.axis + 1 :]
            if len(shape) != len(first) or rest != first[: self.axis] + first[self.axis + 1 :]:
                raise self.error(f"input shapes {list(shapes)} differ outside axis {self.axis}")
        return (*first[: self.axis], sum(s[self.axis] for s in shapes), *first[self.axis + 1 :])


WEIGHT_OPS = (Dense, Conv, Lstm)
"""Node types whose weights live on the analog cores."""


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated network: ``nodes`` in topological order from ``input_name`` to
    ``output_name``; ``input_shape`` excludes the batch axis. ``shapes`` (filled in on
    construction) maps every tensor name to its shape."""

    input_name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    output_name: str
    shapes: dict[str, Shape] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        shape = tuple(int(s) for s in self.input_shape)
        if not shape or any(s < 1 for s in shape):
            raise GraphError(f"input shape must be positive sizes, got {self.input_shape}")
        object.__setattr__(self, "input_shape", shape)
        if not self.nodes:
            raise GraphError("the graph has no nodes")
        shapes: dict[str, Shape] = {self.input_name: shape}
        names: set[str] = set()
        for node in self.nodes:
            if not isinstance(node, Node):
                raise GraphError(f"{node!r} is not a graph node")
            if node.name in names:
                raise GraphError(f"node name {node.name!r} is used twice")
            names.add(node.name)
            missing = [t for t in node.inputs if t not in shapes]
            if missing:
                raise node.error(f"input tensor(s) {missing} are not defined before this node")
            if node.output in shapes:
                raise node.error(f"output tensor {node.output!r} is already defined")
            shapes[node.output] = node.infer([shapes[t] for t in node.inputs])
        if self.output_name not in shapes:
            raise GraphError(f"output tensor {self.output_name!r} is not produced by any node")
        object.__setattr__(self, "shapes", shapes)

    @property
    def output_shape(self) -> Shape:
        """Shape of the output tensor (without the batch axis)."""
        return self.shapes[self.output_name]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphError(f"no node named {name!r}")

    def producer(self, tensor: str) -> Node | None:
        """The node whose output is ``tensor`` (None for the graph input)."""
        return next((n for n in self.nodes if n.output == tensor), None)

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes that read ``tensor``."""
        return [n for n in self.nodes if tensor in n.inputs]

    def weight_nodes(self) -> list[Dense | Conv | Lstm]:
        """The analog layers (Dense, Conv, Lstm) in graph order."""
        return [n for n in self.nodes if isinstance(n, Dense | Conv | Lstm)]

    def n_parameters(self) -> int:
        """Number of stored parameters (weights, biases, BN statistics)."""
        total = 0
        for node in self.nodes:
            for value in vars(node).values():
                if isinstance(value, np.ndarray):
                    total += value.size
        return total

    def prepare_input(self, x: np.ndarray) -> np.ndarray:
        """A batch as float32 (N, *input_shape); (N, Π input_shape) rows are reshaped."""
        array = np.asarray(x, dtype=np.float32)
        size = math.prod(self.input_shape)
        if array.ndim == 2 and array.shape[1] == size:
            array = array.reshape(array.shape[0], *self.input_shape)
        if array.shape[1:] != self.input_shape:
            raise GraphError(
                f"input batch shape {np.shape(x)} does not match (N, {self.input_shape})"
            )
        if not np.all(np.isfinite(array)):
            raise GraphError("input batch contains NaN or infinite values")
        return array


def weight_matrices(node: Dense | Conv | Lstm) -> dict[str, np.ndarray]:
    """The crossbar matrices (rows = outputs, columns = inputs) of an analog layer.

    Dense: ``{"weight": W}``; Conv: ``{"weight": unrolled (c_out, c_in·Πk)}``; Lstm:
    ``{"input": w_input, "hidden": w_hidden}`` in gate-major I, A, F, O row order (the mapping
    interleaves the gates, see ``procedures.inference.mapping``).
    """
    if isinstance(node, Dense):
        return {"weight": node.weight}
    if isinstance(node, Conv):
        return {"weight": node.matrix}
    return {"input": node.w_input, "hidden": node.w_hidden}
