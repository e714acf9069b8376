"""Weight layers (onto the cores), batch norm and pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from chipctl.onnx_import.state import Converter, operator
from procedures.inference.graph import (
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    GlobalAvgPool,
    GraphError,
    MaxPool,
)

CORES = "cores (analog MVM)"
HOST = "host (digital)"


@operator(
    "Gemm",
    "transA = 0; B and C constant; alpha and beta folded into weight and bias",
    CORES,
)
def gemm(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("alpha", "beta", "transA", "transB"))
    if a.get("transA", 0):
        raise c.fail(node, "transA = 1 is not supported", "use x @ W.T (torch.nn.Linear)")
    x = c.batch_first(node, c.value(node, 0))
    w = c.weights(node, 1, "B")
    if w.ndim != 2:
        raise c.fail(node, f"B must be 2-D, got {w.shape}")
    w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
    bias = c.weights(node, 2, "C", required=False)
    if bias is not None:
        try:
            bias = np.broadcast_to(bias * np.float32(a.get("beta", 1.0)), (1, w.shape[0]))[0]
        except ValueError:
            raise c.fail(node, f"bias C shape {bias.shape} not broadcastable") from None
    dense = Dense(c.unique(c.name(node)), (x,), c.tensor_name(node.output[0]), w, bias)
    c.emit(node, dense)


@operator(
    "MatMul",
    "(N, in) × constant (in, out); an Add of a constant right after it becomes the bias",
    CORES,
)
def matmul(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    value = c.value(node, 0)
    w = c.weights(node, 1, "B")
    if w.ndim != 2 or len(c.shapes[value.tensor]) != 1:
        raise c.fail(
            node,
            f"only (N, in) × constant (in, out) is supported, got {c.full_shape(value)} × "
            f"{w.shape}",
            "flatten the input to (N, features) first",
        )
    x = c.batch_first(node, value)
    c.emit(node, Dense(c.unique(c.name(node)), (x,), c.tensor_name(node.output[0]), w.T))


def fold_bias(c: Converter, node: Any, onnx_input: str, bias: np.ndarray) -> bool:
    """Fold a constant Add into the Dense layer that computed ONNX tensor ``onnx_input`` just
    before (no bias yet, nothing else reads it); True if done."""
    tensor = c.values[onnx_input].tensor
    prev = c.nodes[-1] if c.nodes else None
    if not (isinstance(prev, Dense) and prev.output == tensor and prev.bias is None):
        return False
    if c.uses[onnx_input] != 1:
        return False
    try:
        b = np.broadcast_to(bias, (1, prev.weight.shape[0]))[0]
    except ValueError:
        return False
    c.nodes.pop()
    del c.shapes[tensor]
    c.emit(node, Dense(prev.name, prev.inputs, tensor, weight=prev.weight, bias=b))
    return True


@operator(
    "Conv",
    "1-D and 2-D; any strides, dilations and pads; auto_pad NOTSET, VALID, SAME_UPPER or "
    "SAME_LOWER; groups > 1 as one block-diagonal matrix (zeros off the group blocks)",
    CORES,
)
def conv(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
    x = c.batch_first(node, c.value(node, 0))
    w = c.weights(node, 1, "W")
    if w.ndim not in (3, 4):
        raise c.fail(
            node,
            f"only 1-D and 2-D convolutions are supported, W {w.shape}",
            "3-D convolutions have no mapping onto the cores",
        )
    groups = int(a.get("group", 1))
    c_in = c.shapes[x][0]
    if groups < 1 or c_in % groups or w.shape[0] % groups or w.shape[1] * groups != c_in:
        raise c.fail(node, f"group = {groups} does not fit W {w.shape} and {c_in} channels")
    if groups > 1:  # the crossbar takes the whole receptive field; other groups weigh zero
        full = np.zeros((w.shape[0], c_in, *w.shape[2:]), np.float32)
        per_out, per_in = w.shape[0] // groups, w.shape[1]
        for g in range(groups):
            rows = slice(g * per_out, (g + 1) * per_out)
            full[rows, g * per_in : (g + 1) * per_in] = w[rows]
        w = full
    kernel = tuple(int(k) for k in w.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise c.fail(node, f"kernel_shape {a['kernel_shape']} != W {kernel}")
    nd = len(kernel)
    strides = tuple(a.get("strides", (1,) * nd))
    dilations = tuple(a.get("dilations", (1,) * nd))
    pads = _pads(c, node, a, x, kernel, strides, dilations, same=True)
    bias = c.weights(node, 2, "B", required=False)
    layer = Conv(
        c.unique(c.name(node)),
        (x,),
        c.tensor_name(node.output[0]),
        weight=w,
        bias=bias,
        strides=strides,
        pads=pads,
        dilations=dilations,
    )
    c.emit(node, layer)


def _pads(
    c: Converter,
    node: Any,
    a: dict[str, Any],
    x: str,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    *,
    same: bool,
) -> tuple[int, ...]:
    nd = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        return tuple(a.get("pads", (0,) * (2 * nd)))
    if auto == "VALID":
        return (0,) * (2 * nd)
    if auto not in ("SAME_UPPER", "SAME_LOWER") or not same:
        raise c.fail(node, f"auto_pad = {auto} is not supported", "export with explicit pads")
    spatial = c.shapes[x][1:]
    if len(spatial) != nd or len(strides) != nd or len(dilations) != nd:
        raise c.fail(node, f"input shape {c.shapes[x]} does not match the kernel")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return (*begin, *end)


@operator(
    "BatchNormalization",
    "inference mode (training_mode = 0); folded into the Conv or Gemm it alone reads",
    "folded into the layer's LDPU affine, else host",
)
def batch_norm(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("epsilon", "momentum", "training_mode", "spatial"))
    if a.get("training_mode", 0):
        raise c.fail(node, "training_mode = 1 is not supported", "export in eval mode")
    if a.get("spatial", 1) != 1:
        raise c.fail(node, "spatial = 0 is not supported")
    if any(c.used(o) for o in node.output[1:]):
        raise c.fail(node, "running mean/var outputs are not supported", "export in eval mode")
    x = c.batch_first(node, c.value(node, 0))
    scale, bias, mean, var = (
        c.weights(node, i, what) for i, what in enumerate(("scale", "B", "mean", "var"), 1)
    )
    bn = BatchNorm(
        c.unique(c.name(node)),
        (x,),
        c.tensor_name(node.output[0]),
        scale=scale,
        bias=bias,
        mean=mean,
        var=var,
        epsilon=float(a.get("epsilon", 1e-5)),
    )
    c.emit(node, bn)


def _pool(
    c: Converter, node: Any, cls: type[MaxPool] | type[AvgPool], extra: Sequence[str]
) -> None:
    a = c.check_attrs(
        node, ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", *extra)
    )
    if len(node.output) > 1 and c.used(node.output[1]):
        raise c.fail(node, "the Indices output is not supported")
    if a.get("ceil_mode", 0):
        raise c.fail(node, "ceil_mode = 1 is not supported", "export with ceil_mode=False")
    kernel = tuple(a.get("kernel_shape", ()))
    if len(kernel) not in (1, 2):
        raise c.fail(node, f"only 1-D and 2-D pooling is supported, kernel {kernel}")
    if any(d != 1 for d in a.get("dilations", ())):
        raise c.fail(node, f"dilations {a['dilations']} are not supported")
    x = c.batch_first(node, c.value(node, 0))
    strides = tuple(a.get("strides", (1,) * len(kernel)))
    pads = _pads(c, node, a, x, kernel, strides, (1,) * len(kernel), same=False)
    kw: dict[str, Any] = {}
    if cls is AvgPool:
        kw["count_include_pad"] = bool(a.get("count_include_pad", 0))
    try:
        pool = cls(
            c.unique(c.name(node)),
            (x,),
            c.tensor_name(node.output[0]),
            kernel=kernel,
            strides=strides,
            pads=pads,
            **kw,
        )
    except GraphError as exc:
        raise c.fail(node, str(exc)) from None
    c.emit(node, pool)


@operator(
    "MaxPool",
    "1-D or 2-D, ceil_mode = 0, dilations 1, auto_pad NOTSET or VALID, no Indices output",
    HOST,
)
def max_pool(c: Converter, node: Any) -> None:
    _pool(c, node, MaxPool, ("storage_order",))


@operator("AveragePool", "as MaxPool; count_include_pad 0 or 1", HOST)
def average_pool(c: Converter, node: Any) -> None:
    _pool(c, node, AvgPool, ("count_include_pad",))


@operator("GlobalAveragePool", "1-D or 2-D; keeps the spatial axes with size 1 (as ONNX)", HOST)
def global_average_pool(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    x = c.batch_first(node, c.value(node, 0))
    c.emit(node, GlobalAvgPool(c.unique(c.name(node)), (x,), c.tensor_name(node.output[0])))
