"""Element-wise operators, run on the host in the digital format (ReLU also fused in the LDPU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chipctl.onnx_import.ops_layers import HOST, fold_bias
from chipctl.onnx_import.state import Converter, Value, operator
from procedures.inference.graph import Add, Clip, Relu, ScaleShift, Sigmoid, Softmax, Tanh

ALIAS = "nothing (an alias)"


def _alias(c: Converter, node: Any) -> None:
    c.bind(node, node.output[0], c.value(node, 0))


@operator("Identity", "any", ALIAS)
def identity(c: Converter, node: Any) -> None:
    _alias(c, node)


@operator("Dropout", "inference (training_mode absent or constant false); the mask unused", ALIAS)
def dropout(c: Converter, node: Any) -> None:
    training = c.const(node, 2, "training_mode")
    if training is not None and bool(np.asarray(training)):
        raise c.fail(node, "training_mode = true is not supported", "export in eval mode")
    if len(node.output) > 1 and c.used(node.output[1]):
        raise c.fail(node, "the mask output is not supported", "export in eval mode")
    _alias(c, node)


@operator("Cast", "to float32 of a float32 tensor", ALIAS)
def cast(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("saturate", "to", "round_mode"))
    if a.get("to") != 1:  # FLOAT
        raise c.fail(node, f"cast to type {a.get('to')} is not supported (float32 only)")
    _alias(c, node)


def _unary(c: Converter, node: Any, cls: type[Relu] | type[Sigmoid] | type[Tanh]) -> None:
    c.check_attrs(node, ())
    value = c.value(node, 0)
    out = cls(c.unique(c.name(node)), (value.tensor,), c.tensor_name(node.output[0]))
    c.emit(node, out, value.batch_axis)


@operator("Relu", "any", "LDPU (fused after a weight layer), else host")
def relu(c: Converter, node: Any) -> None:
    _unary(c, node, Relu)


@operator("Sigmoid", "any", HOST)
def sigmoid(c: Converter, node: Any) -> None:
    _unary(c, node, Sigmoid)


@operator("Tanh", "any", HOST)
def tanh(c: Converter, node: Any) -> None:
    _unary(c, node, Tanh)


@operator("Clip", "min and max constant or absent (ReLU6, hardtanh)", HOST)
def clip(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("min", "max"))
    value = c.value(node, 0)
    bounds = []
    for index, key in ((1, "min"), (2, "max")):
        given = c.const(node, index, key)
        bound = a.get(key) if given is None else np.asarray(given)
        if bound is not None and np.size(bound) != 1:
            raise c.fail(node, f"{key} must be a scalar, got shape {np.shape(bound)}")
        bounds.append(None if bound is None else float(np.asarray(bound).reshape(())))
    out = Clip(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        low=bounds[0],
        high=bounds[1],
    )
    c.emit(node, out, value.batch_axis)


@operator("Softmax", "over one non-batch axis; at the output (where argmax is the class)", HOST)
def softmax(c: Converter, node: Any) -> None:
    a = c.check_attrs(node, ("axis",))
    value = c.value(node, 0)
    rank = len(c.shapes[value.tensor]) + 1
    default = -1 if c.opset >= 13 else 1
    axis = a.get("axis", default)
    if c.opset < 13 and axis % rank != rank - 1:
        raise c.fail(node, "opset < 13 Softmax over several axes is not supported", "use opset 13+")
    out = Softmax(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        axis=c.axis(node, value, axis),
    )
    c.emit(node, out, value.batch_axis)


def _per_sample_constant(c: Converter, node: Any, value: Value, constant: np.ndarray) -> Any:
    """A constant operand broadcast against ``value``'s ONNX shape, without its batch axis."""
    full = c.full_shape(value)
    array = np.asarray(constant, np.float32)
    if array.ndim > len(full):
        raise c.fail(node, f"constant {array.shape} has more axes than the tensor {full}")
    array = array.reshape((1,) * (len(full) - array.ndim) + array.shape)
    if array.shape[value.batch_axis] != 1:
        raise c.fail(node, f"constant {constant.shape} differs between samples of {full}")
    try:
        np.broadcast_shapes(full, array.shape)
    except ValueError:
        raise c.fail(node, f"constant {constant.shape} does not broadcast to {full}") from None
    if not np.all(np.isfinite(array)):
        raise c.fail(node, "the constant contains NaN or infinite values")
    return np.squeeze(array, axis=value.batch_axis)


def _scale_shift(
    c: Converter, node: Any, value: Value, scale: Any = None, shift: Any = None
) -> None:
    out = ScaleShift(
        c.unique(c.name(node)),
        (value.tensor,),
        c.tensor_name(node.output[0]),
        scale=scale,
        shift=shift,
    )
    c.emit(node, out, value.batch_axis)


def _operands(c: Converter, node: Any) -> tuple[int, np.ndarray | None]:
    """(index of the computed operand, the constant one or None when both are computed)."""
    const = [c.is_const(n) for n in node.input[:2]]
    if all(const):  # canonicalisation folds these; only a failed fold gets here
        raise c.fail(node, "both operands are constants and could not be folded")
    if not any(const):
        return 0, None
    return const.index(False), c.consts[node.input[const.index(True)]]


@operator(
    "Add",
    "two computed tensors of the same shape (residual), or a constant (broadcast; after "
    "MatMul: the bias)",
    "host (a bias: LDPU)",
)
def add(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    index, constant = _operands(c, node)
    if constant is None:
        a, b = c.value(node, 0), c.value(node, 1)
        if a.batch_axis != b.batch_axis or c.shapes[a.tensor] != c.shapes[b.tensor]:
            raise c.fail(
                node,
                f"operand shapes {c.full_shape(a)} and {c.full_shape(b)} differ",
                "only same-shape sums (residual connections) are supported",
            )
        out = Add(c.unique(c.name(node)), (a.tensor, b.tensor), c.tensor_name(node.output[0]))
        c.emit(node, out, a.batch_axis)
        return
    value = c.value(node, index)
    if fold_bias(c, node, node.input[index], constant.astype(np.float32)):
        return
    _scale_shift(c, node, value, shift=_per_sample_constant(c, node, value, constant))


@operator("Sub", "one operand constant", HOST)
def sub(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    index, constant = _operands(c, node)
    if constant is None:
        raise c.fail(node, "difference of two computed tensors is not supported")
    value = c.value(node, index)
    shift = _per_sample_constant(c, node, value, constant)
    if index == 0:
        _scale_shift(c, node, value, shift=-shift)
    else:
        _scale_shift(c, node, value, scale=np.float32(-1), shift=shift)


@operator("Mul", "by a constant (broadcast)", HOST)
def mul(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    index, constant = _operands(c, node)
    if constant is None:
        raise c.fail(
            node,
            "product of two computed tensors is not supported",
            "only multiplication by constants (scaling) maps",
        )
    value = c.value(node, index)
    _scale_shift(c, node, value, scale=_per_sample_constant(c, node, value, constant))


@operator("Div", "by a non-zero constant", HOST)
def div(c: Converter, node: Any) -> None:
    c.check_attrs(node, ())
    index, constant = _operands(c, node)
    if constant is None or index != 0:
        raise c.fail(node, "only division by a constant is supported")
    value = c.value(node, index)
    divisor = _per_sample_constant(c, node, value, constant)
    if np.any(divisor == 0):
        raise c.fail(node, "division by zero")
    _scale_shift(c, node, value, scale=(1.0 / divisor).astype(np.float32))
