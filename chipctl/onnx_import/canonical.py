"""Canonical form of an exported ONNX graph: shapes known, shape-only subgraphs folded.

Exporters compute glue from the batch size at run time: PyTorch's LSTM export builds its zero
initial state with ``Shape → Gather → Unsqueeze → Concat → ConstantOfShape``, the dynamo
exporter reorders LSTM weights with ``Slice``/``Concat`` and reshapes with shapes computed by
``Shape``/``Slice``/``Mul``. None of this is network; all of it is constant once the batch size
is. :func:`canonicalise` fixes the batch axis at :data:`FOLD_BATCH` (or the file's own fixed
batch size), runs ``onnx.shape_inference`` with data propagation, replaces ``Shape`` of a tensor
of known shape by its value, and evaluates every node whose inputs are all constant with
``onnx.reference.ReferenceEvaluator`` (onnx's own operator implementations; no hand-written
folding). It repeats until nothing changes, because a folded ``Reshape`` target makes the next
shapes known.

The batch size used for folding is a prime that no layer size of these networks is, so that the
importer can tell the batch axis in a folded shape (``Reshape`` to ``(10, 97, 64)``) from a data
axis; a constant that depends on the batch (an all-zero initial state of shape (1, 97, H)) is
recognised by the importer by its batch axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLD_BATCH = 97
"""Batch size the shape subgraphs are evaluated for when the file's batch axis is symbolic."""

_MAX_ROUNDS = 32


def _helpers() -> tuple[Any, Any, Any]:
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    return onnx, numpy_helper, ReferenceEvaluator


def input_batch(model: Any) -> int | None:
    """The fixed batch size of the model's first data input, or None when symbolic."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
        return None
    return None


def canonicalise(
    model: Any,
) -> tuple[Any, dict[str, np.ndarray], dict[str, tuple[int, ...]], int]:
    """(model with the batch fixed and constant subgraphs folded, constants by tensor name,
    the tensor shapes ONNX shape inference knows, the batch size used). The caller's model is
    not changed."""
    onnx, numpy_helper, _ = _helpers()
    work = onnx.ModelProto()
    work.CopyFrom(model)
    batch = input_batch(work) or FOLD_BATCH
    initializers = {t.name for t in work.graph.initializer}
    for value in work.graph.input:
        if value.name not in initializers and value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].dim_value = batch
    for value in work.graph.output:  # their batch axis is whatever the graph computes
        if value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].Clear()
    consts = {t.name: numpy_helper.to_array(t) for t in work.graph.initializer}
    opset = next((o.version for o in work.opset_import if o.domain in ("", "ai.onnx")), 17)
    for _ in range(_MAX_ROUNDS):
        shapes = _known_shapes(work)
        kept = []
        changed = False
        for node in work.graph.node:
            values = _fold(node, consts, shapes, opset)
            if values is None:
                kept.append(node)
                continue
            consts.update(values)
            changed = True
        if not changed:
            return work, consts, shapes, batch
        del work.graph.node[:]
        work.graph.node.extend(kept)
    return work, consts, _known_shapes(work), batch


def _known_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    onnx, _, _ = _helpers()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes stay unknown; the importer reports what it needs
        inferred = model
    g = inferred.graph
    shapes = {}
    for info in (*g.input, *g.value_info, *g.output):
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


_NEVER_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})


def _fold(
    node: Any, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], opset: int
) -> dict[str, np.ndarray] | None:
    """Output values of ``node`` if it is constant for the fixed batch, else None."""
    reference_evaluator = _helpers()[2]
    if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
        return None
    if node.op_type == "Shape":
        if node.input[0] not in shapes:
            return None
        shape = np.asarray(shapes[node.input[0]], np.int64)
        attrs = {a.name: a.i for a in node.attribute}
        rank = len(shape)
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        return {node.output[0]: shape[slice(start, end)].copy()}
    if node.op_type == "Size" and node.input[0] in shapes:
        return {node.output[0]: np.asarray(np.prod(shapes[node.input[0]]), np.int64)}
    inputs = [name for name in node.input if name]
    if any(name not in consts for name in inputs):
        return None
    try:
        evaluator = reference_evaluator(_single_node_model(node, consts, opset))
        results = evaluator.run(None, {name: consts[name] for name in inputs})
    except Exception:  # noqa: BLE001 - left in the graph; the importer names the node
        return None
    outputs = {}
    for name, value in zip(node.output, results, strict=False):
        if name:
            outputs[name] = np.asarray(value)
    return outputs


def _single_node_model(node: Any, consts: dict[str, np.ndarray], opset: int) -> Any:
    """``node`` alone in a model of the file's opset (a bare node would run the newest version
    of its operator, which differs for opsets before 13: Unsqueeze's axes, Softmax's axis)."""
    onnx = _helpers()[0]
    helper = onnx.helper
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(consts[name].dtype), consts[name].shape
        )
        for name in dict.fromkeys(n for n in node.input if n)
    ]
    outputs = [onnx.ValueInfoProto(name=name) for name in node.output if name]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
