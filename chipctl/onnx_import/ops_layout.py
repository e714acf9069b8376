"""Layout operators: reshapes, transposes, selecting and joining (host, or free aliases)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from chipctl.onnx_import.ops_layers import HOST
from chipctl.onnx_import.state import Converter, Value, operator
from procedures.inference.graph import Concat, Mean, Select, Take, Transpose

RESHAPE = "host (a reshape; free where only the batch axis moves)"


@operator("Flatten", "axis after the batch axis (all later axes into one)", RESHAPE)
def flatten(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("axis",))
    value = c.value(node, 0)
    full = c.full_shape(value)
    axis = int(a.get("axis", 1)) % (len(full) or 1)
    target = (math.prod(full[:axis]), math.prod(full[axis:]))
    c.bind(node, node.output[0], c.reshaped(node, value, target))


@operator(
    "Reshape",
    "constant (or shape-only, folded) target keeping the batch axis; 0 and −1 entries",
    RESHAPE,
)
def reshape(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("allowzero",))
    value = c.value(node, 0)
    spec = c.const(node, 1, "shape")
    assert spec is not None
    full = c.full_shape(value)
    target = [int(v) for v in np.asarray(spec).reshape(-1)]
    if a.get("allowzero", 0) and 0 in target:
        raise c.fail(node, f"allowzero = 1 with a 0 in shape {target} gives an empty tensor")
    target = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(target)]
    if target.count(-1) > 1:
        raise c.fail(node, f"shape {target} has two -1 entries")
    if -1 in target:
        known = math.prod(v for v in target if v != -1)
        if known <= 0 or math.prod(full) % known:
            raise c.fail(node, f"cannot reshape {full} to {target}")
        target[target.index(-1)] = math.prod(full) // known
    if any(v < 1 for v in target) or math.prod(target) != math.prod(full):
        raise c.fail(node, f"cannot reshape {full} to {target}")
    c.bind(node, node.output[0], c.reshaped(node, value, target))


@operator("Transpose", "any perm; moving only the batch axis is free", RESHAPE)
def transpose(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("perm",))
    value = c.value(node, 0)
    rank = len(c.shapes[value.tensor]) + 1
    perm = [int(p) for p in a.get("perm", range(rank - 1, -1, -1))]
    if sorted(perm) != list(range(rank)):
        raise c.fail(node, f"perm {perm} is not a permutation of {rank} axes")
    batch = perm.index(value.batch_axis)
    sample = [p - (p > value.batch_axis) for p in perm if p != value.batch_axis]
    if sample == sorted(sample):
        c.bind(node, node.output[0], Value(value.tensor, batch))
        return
    out = Transpose(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        perm=tuple(sample),
    )
    c.emit(node, out, batch)


def _axes(c: Converter, node: Any) -> list[int] | None:
    given = c.const(node, 1, "axes")
    if given is not None:
        return [int(v) for v in np.asarray(given).reshape(-1)]
    attrs = c.check_attrs(node, ("axes",))
    return [int(v) for v in attrs["axes"]] if "axes" in attrs else None


@operator("Squeeze", "axes given (constant), not the batch axis", RESHAPE)
def squeeze(c: Converter, node: Any) -> None:
    value = c.value(node, 0)
    full = c.full_shape(value)
    axes = _axes(c, node)
    if axes is None:
        raise c.fail(node, "Squeeze without axes is not supported", "give the axes to squeeze")
    axes = sorted({a % len(full) for a in axes})
    if value.batch_axis in axes or any(full[a] != 1 for a in axes):
        raise c.fail(node, f"cannot squeeze axes {axes} of {full} (batch axis {value.batch_axis})")
    target = [d for i, d in enumerate(full) if i not in axes]
    c.bind(node, node.output[0], c.reshaped(node, value, target))


@operator("Unsqueeze", "axes given (constant)", RESHAPE)
def unsqueeze(c: Converter, node: Any) -> None:
    value = c.value(node, 0)
    full = list(c.full_shape(value))
    axes = _axes(c, node)
    if axes is None:
        raise c.fail(node, "axes are missing")
    rank = len(full) + len(axes)
    for axis in sorted(a % rank for a in axes):
        full.insert(axis, 1)
    c.bind(node, node.output[0], c.reshaped(node, value, full))


@operator("Gather", "one constant index on a non-batch axis (y[:, -1])", HOST)
def gather(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("axis",))
    value = c.value(node, 0)
    index = c.const(node, 1, "indices")
    assert index is not None
    if np.ndim(index) != 0:
        raise c.fail(
            node,
            f"indices of shape {np.shape(index)} are not supported (one scalar index)",
            "index with a single integer (y[:, -1]) or slice the model differently",
        )
    full_axis = int(a.get("axis", 0))
    axis = c.axis(node, value, full_axis)
    full_axis %= len(c.shapes[value.tensor]) + 1
    out = Take(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        axis=axis,
        index=int(index),
    )
    c.emit(node, out, value.batch_axis - (full_axis < value.batch_axis))


@operator("Concat", "computed tensors along a non-batch axis", HOST)
def concat(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("axis",))
    values = [c.value(node, i) for i in range(len(node.input))]
    if len({v.batch_axis for v in values}) != 1:
        raise c.fail(node, "inputs have their batch axes at different positions")
    if len(values) == 1:
        c.bind(node, node.output[0], values[0])
        return
    axis = c.axis(node, values[0], int(a["axis"]))
    out = Concat(
        c.unique(c.name(node)),
        tuple(v.tensor for v in values),
        c.tensor_name(node.output[0]),
        axis=axis,
    )
    c.emit(node, out, values[0].batch_axis)


@operator(
    "Slice", "constant starts/ends/axes/steps on non-batch axes (x[:, 2:-2], y[:, -3:])", HOST
)
def slice_(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    value = c.value(node, 0)
    full = c.full_shape(value)
    starts, ends = (c.const(node, i, what) for i, what in ((1, "starts"), (2, "ends")))
    axes, steps = (c.const(node, i, what) for i, what in ((3, "axes"), (4, "steps")))
    if starts is None or ends is None:
        raise c.fail(node, "starts and ends are missing")
    n = np.size(starts)
    axes = np.arange(n) if axes is None else np.asarray(axes).reshape(-1)
    steps = np.ones(n, np.int64) if steps is None else np.asarray(steps).reshape(-1)
    for start, end, axis, step in zip(
        np.reshape(starts, -1), np.reshape(ends, -1), axes, steps, strict=True
    ):
        dim = full[int(axis) % len(full)]
        indices = _slice_indices(int(start), int(end), int(step), dim)
        if len(indices) == dim and int(step) == 1:
            continue  # the whole axis (as x[:, :] exports)
        sample_axis = c.axis(node, value, int(axis))
        if not indices:
            raise c.fail(node, f"slice {start}:{end}:{step} of axis {axis} ({dim}) is empty")
        out = c.tensor_name(node.output[0])
        c.add(
            Select(c.unique(c.name(node)), (value.tensor,), out, axis=sample_axis, indices=indices)
        )
        value = Value(out, value.batch_axis)
    c.bind(node, node.output[0], value)


def _slice_indices(start: int, end: int, step: int, dim: int) -> tuple[int, ...]:
    """The indices ONNX Slice takes from an axis of size ``dim`` (its clamping rules)."""
    if step == 0:
        return ()
    start += dim if start < 0 else 0
    end += dim if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return tuple(range(start, end, step))


@operator(
    "ReduceMean",
    "over non-batch axes (x.mean(-1)); keepdims 0 or 1",
    HOST,
)
def reduce_mean(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("axes", "keepdims", "noop_with_empty_axes"))
    value = c.value(node, 0)
    given = c.const(node, 1, "axes")
    axes = [int(v) for v in np.reshape(given, -1)] if given is not None else a.get("axes")
    if not axes:
        raise c.fail(
            node,
            "a mean over every axis includes the batch axis",
            "give the axes to average (the non-batch ones)",
        )
    rank = len(c.full_shape(value))
    keep = bool(a.get("keepdims", 1))
    sample_axes = tuple(sorted(c.axis(node, value, axis) for axis in axes))
    before = sum(1 for axis in axes if axis % rank < value.batch_axis)
    out = Mean(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        axes=sample_axes,
        keepdims=keep,
    )
    c.emit(node, out, value.batch_axis - (0 if keep else before))
