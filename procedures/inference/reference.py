"""Software forward passes of a :class:`~procedures.inference.graph.Graph` in numpy.

* :func:`forward`: the float32 reference the chip is compared with (ONNX semantics; checked
  against PyTorch at export time by ``scripts/train_models.py`` and against hand-computed cases in
  the tests).
* :func:`forward_quantised`: the same network with the chip's *digital* quantisation only: int8
  activations at every analog-layer input, at the graph output, and at the GDPU's LSTM I/O (the
  LSTM cell itself runs through :class:`~procedures.inference.gdpu.GdpuLstmCell` in float16 with
  the tanh LUT). Weights stay exact. Its gap to :func:`forward` is the quantisation loss; the
  chip's further gap is the analog loss (programming noise, read noise, ADC, drift).

int8 convention (chip.md §1.3, §1.5): a tensor with range r (max |value| seen on calibration
data, :func:`activation_ranges`) has LSB r/127; values are rounded half-to-even and saturate at
±127 LSB (the hardware's int8 conversion, not a silent software clip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from procedures.inference.gdpu import (
    GdpuLstmCell,
    initial_lstm_state,
    interleave_gates,
    quantise_int8,
)
from procedures.inference.graph import (
    Add,
    AvgPool,
    BatchNorm,
    Clip,
    Concat,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    Graph,
    GraphError,
    Gru,
    Lstm,
    MaxPool,
    Mean,
    Node,
    Relu,
    Reshape,
    ScaleShift,
    Select,
    Sigmoid,
    Softmax,
    Take,
    Tanh,
    Transpose,
)

Ranges = dict[str, float]
"""Activation range (max |x|, float units) per tensor name; LSTM gate pre-activations under
``"<node name>.gates"``."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 + 0.5 * np.tanh(0.5 * x)).astype(np.float32)


def lstm_float(
    node: Lstm, x: np.ndarray, on_gates: Callable[[np.ndarray], None] | None = None
) -> np.ndarray:
    """Float32 LSTM over x (N, T, I); ``on_gates`` sees each step's pre-activations (N, 4H)."""
    n, steps, _ = x.shape
    hid = node.hidden_size
    h = _state(node.initial_h, n, hid)
    c = _state(node.initial_c, n, hid)
    outs = []
    x_proj = x @ node.w_input.T + node.bias  # (N, T, 4H)
    for t in range(steps):
        z = x_proj[:, t] + h @ node.w_hidden.T
        if on_gates is not None:
            on_gates(z)
        i, a, f, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(a)
        h = (_sigmoid(o) * np.tanh(c)).astype(np.float32)
        outs.append(h)
    if node.return_cell:
        return c.astype(np.float32)
    return np.stack(outs, axis=1) if node.return_sequences else h


def _state(initial: np.ndarray | None, n: int, hidden: int) -> np.ndarray:
    if initial is None:
        return np.zeros((n, hidden), np.float32)
    return np.broadcast_to(initial, (n, hidden)).astype(np.float32)


def gru_float(node: Gru, x: np.ndarray) -> np.ndarray:
    """Float32 GRU over x (N, T, I) (ONNX semantics, see :class:`Gru`)."""
    n, steps, _ = x.shape
    h = _state(node.initial_h, n, node.hidden_size)
    wz, wr, wn = np.split(node.w_hidden, 3, axis=0)
    assert node.bias_input is not None and node.bias_hidden is not None  # set on construction
    bz, br, bn = np.split(node.bias_hidden, 3)
    x_proj = x @ node.w_input.T + node.bias_input  # (N, T, 3H)
    outs = []
    for t in range(steps):
        xz, xr, xn = np.split(x_proj[:, t], 3, axis=1)
        z = _sigmoid(xz + h @ wz.T + bz)
        r = _sigmoid(xr + h @ wr.T + br)
        if node.linear_before_reset:
            cand = np.tanh(xn + r * (h @ wn.T + bn))
        else:
            cand = np.tanh(xn + (r * h) @ wn.T + bn)
        h = ((1 - z) * cand + z * h).astype(np.float32)
        outs.append(h)
    return np.stack(outs, axis=1) if node.return_sequences else h


def _host_node(node: Node, inputs: Sequence[np.ndarray]) -> np.ndarray | None:
    """The element-wise and layout nodes of exported networks (None: not one of them)."""
    x = inputs[0]
    if isinstance(node, Sigmoid):
        return _sigmoid(x)
    if isinstance(node, Tanh):
        return np.tanh(x)
    if isinstance(node, Clip):
        return np.clip(x, node.low, node.high) if (node.low, node.high) != (None, None) else x
    if isinstance(node, Softmax):
        axis = node.axis + 1 if node.axis >= 0 else node.axis
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        return (shifted / shifted.sum(axis=axis, keepdims=True)).astype(np.float32)
    if isinstance(node, ScaleShift):
        y = x if node.scale is None else x * node.scale
        return y if node.shift is None else y + node.shift
    if isinstance(node, Transpose):
        return np.ascontiguousarray(x.transpose(0, *(p + 1 for p in node.perm)))
    if isinstance(node, Take):
        return np.take(x, node.index, axis=node.axis + 1)
    if isinstance(node, Concat):
        return np.concatenate(inputs, axis=node.axis + 1)
    if isinstance(node, Select):
        return np.take(x, node.indices, axis=node.axis + 1)
    if isinstance(node, Mean):
        axes = tuple(a + 1 for a in node.axes)
        return x.mean(axis=axes, dtype=np.float32, keepdims=node.keepdims)
    return None


def run_node(node: Node, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Float32 output of one node for batched inputs (leading batch axis)."""
    x = inputs[0]
    if isinstance(node, Dense):
        y = x @ node.weight.T
        return y + node.bias if node.bias is not None else y
    if isinstance(node, Conv):
        cols = node.unroll(x)  # (N, P, K)
        y = cols @ node.matrix.T  # (N, P, C_out)
        if node.bias is not None:
            y = y + node.bias
        out_sp = node.output_spatial(x.shape[2:])
        return np.ascontiguousarray(np.moveaxis(y, 2, 1)).reshape(x.shape[0], -1, *out_sp)
    if isinstance(node, BatchNorm):
        a, b = node.affine()
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (
            x * a.astype(np.float32).reshape(shape) + b.astype(np.float32).reshape(shape)
        ).astype(np.float32)
    if isinstance(node, Relu):
        return np.maximum(x, np.float32(0))
    if isinstance(node, Add):
        return x + inputs[1]
    if isinstance(node, MaxPool):
        win = node.windows(x, -np.inf)
        return win.max(axis=tuple(range(-len(node.kernel), 0))).astype(np.float32)
    if isinstance(node, AvgPool):
        axes = tuple(range(-len(node.kernel), 0))
        total = node.windows(x, 0.0).sum(axis=axes)
        if node.count_include_pad:
            return (total / np.prod(node.kernel)).astype(np.float32)
        ones = np.ones((1, 1, *x.shape[2:]), np.float32)
        count = node.windows(ones, 0.0).sum(axis=axes)
        return (total / count).astype(np.float32)
    if isinstance(node, GlobalAvgPool):
        return x.mean(axis=tuple(range(2, x.ndim)), dtype=np.float32, keepdims=True)
    if isinstance(node, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, Reshape):
        return x.reshape(x.shape[0], *node.shape)
    if isinstance(node, Lstm):
        return lstm_float(node, x)
    if isinstance(node, Gru):
        return gru_float(node, x)
    y = _host_node(node, inputs)
    if y is not None:
        return y.astype(np.float32, copy=False)
    raise GraphError(f"node {node.name!r}: no reference implementation for {node.op}")


def forward(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float32 forward pass of a batch; returns the output (N, *output_shape).

    ``x`` is (N, *input_shape) or (N, Π input_shape).
    """
    return forward_tensors(graph, x)[graph.output_name]


def forward_tensors(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float32 forward pass returning every tensor by name (for per-layer error reports)."""
    values = {graph.input_name: graph.prepare_input(x)}
    for node in graph.nodes:
        values[node.output] = run_node(node, [values[t] for t in node.inputs]).astype(
            np.float32, copy=False
        )
    return values


def quantised_tensors(graph: Graph) -> list[str]:
    """Tensor names quantised to int8 by :func:`forward_quantised`: the graph input, every input
    of an analog layer (Dense, Conv, Lstm) and the graph output, in graph order."""
    names = [graph.input_name]
    for node in graph.weight_nodes():
        names += [t for t in node.inputs if t not in names]
    if graph.output_name not in names:
        names.append(graph.output_name)
    return names


def activation_ranges(graph: Graph, x: np.ndarray, *, percentile: float = 100.0) -> Ranges:
    """Ranges (float units) of the int8 tensors and LSTM gate pre-activations over a calibration
    batch ``x``: the ``percentile`` of |value| (100 = max). Zero ranges become 1 (an all-zero
    tensor quantises exactly with any step)."""
    if not 0 < percentile <= 100:
        raise GraphError(f"percentile must be in (0, 100], got {percentile}")
    values = forward_tensors(graph, x)
    ranges: Ranges = {}
    for name in quantised_tensors(graph):
        ranges[name] = float(np.percentile(np.abs(values[name]), percentile))
    for node in graph.weight_nodes():
        if isinstance(node, Lstm):
            ranges[f"{node.name}.gates"] = _gate_range(node, values[node.inputs[0]], percentile)
    return {k: (v if v > 0 else 1.0) for k, v in ranges.items()}


def _gate_range(node: Lstm, x: np.ndarray, percentile: float) -> float:
    seen: list[np.ndarray] = []
    lstm_float(node, x, on_gates=lambda z: seen.append(np.abs(z)))
    return float(np.percentile(np.stack(seen), percentile))


def fake_quant(x: np.ndarray, value_range: float) -> np.ndarray:
    """x → int8 (LSB value_range/127, saturating) → float32 value."""
    lsb = value_range / 127.0
    return (quantise_int8(x, lsb).astype(np.float32) * np.float32(lsb)).astype(np.float32)


def lstm_gdpu(node: Lstm, x: np.ndarray, gate_range: float) -> np.ndarray:
    """LSTM with int8 inputs/hidden state and the GDPU float16 cell; x (N, T, I) dequantised."""
    n, steps, _ = x.shape
    cell = GdpuLstmCell(node.hidden_size, (gate_range / 127.0,) * 4)
    c, h_q = initial_lstm_state(node, cell, n)
    lsb = np.float32(gate_range / 127.0)
    outs = []
    for t in range(steps):
        h = h_q.astype(np.float32) * np.float32(cell.h_lsb)
        z = x[:, t] @ node.w_input.T + h @ node.w_hidden.T + node.bias
        q = interleave_gates(quantise_int8(z, float(lsb)))
        h_q, c = cell.step(q, c)
        outs.append(h_q.astype(np.float32) * np.float32(cell.h_lsb))
    if node.return_cell:
        return c.astype(np.float32)
    return np.stack(outs, axis=1) if node.return_sequences else outs[-1]


def check_ranges(graph: Graph, ranges: Ranges, tensors: Sequence[str]) -> None:
    """GraphError naming what ``ranges`` lacks: any of ``tensors`` or an LSTM's gate range."""
    missing = [t for t in tensors if t not in ranges]
    missing += [
        f"{n.name}.gates"
        for n in graph.weight_nodes()
        if isinstance(n, Lstm) and f"{n.name}.gates" not in ranges
    ]
    if missing:
        raise GraphError(f"activation ranges missing for {missing}")


def forward_quantised(graph: Graph, x: np.ndarray, ranges: Ranges) -> np.ndarray:
    """Forward pass with int8 activations as on chip (see the module docstring); float32 out."""
    check_ranges(graph, ranges, quantised_tensors(graph))
    values = {graph.input_name: fake_quant(graph.prepare_input(x), ranges[graph.input_name])}
    for node in graph.nodes:
        args = [values[t] for t in node.inputs]
        if isinstance(node, Dense | Conv | Lstm):
            args = [fake_quant(a, ranges[t]) for a, t in zip(args, node.inputs, strict=True)]
        if isinstance(node, Lstm):
            out = lstm_gdpu(node, args[0], ranges[f"{node.name}.gates"])
        else:
            out = run_node(node, args)
        values[node.output] = out.astype(np.float32, copy=False)
    return fake_quant(values[graph.output_name], ranges[graph.output_name])


__all__ = [
    "Ranges",
    "activation_ranges",
    "check_ranges",
    "fake_quant",
    "forward",
    "forward_quantised",
    "forward_tensors",
    "gru_float",
    "lstm_float",
    "lstm_gdpu",
    "quantised_tensors",
    "run_node",
]
