"""ONNX model → graph: checks, canonicalisation, one handler per operator, tidy-up."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from chipctl.onnx_import import ops_elementwise, ops_layers, ops_layout, ops_recurrent
from chipctl.onnx_import.canonical import canonicalise
from chipctl.onnx_import.state import (
    DOCS_SECTION,
    OPERATORS,
    Converter,
    OnnxImportError,
    Value,
)
from procedures.inference.graph import Flatten, Graph, GraphError, Node, Reshape

HANDLER_MODULES = (ops_layers, ops_elementwise, ops_layout, ops_recurrent)
"""The modules whose ``@operator`` handlers fill :data:`OPERATORS` (imported for that)."""

_HINTS = {
    "Shape": "its value depends on more than the batch size; export with fixed sizes after "
    "the batch axis",
    "ConstantOfShape": "its shape depends on the input values; export with fixed sizes",
    "Loop": "export without data-dependent control flow (unroll it)",
    "If": "export without data-dependent control flow",
    "Scan": "export without data-dependent control flow",
    "QuantizeLinear": "export the float32 model; the chip quantises activations itself",
    "DequantizeLinear": "export the float32 model; the chip quantises activations itself",
    "QLinearConv": "export the float32 model; the chip quantises activations itself",
    "QLinearMatMul": "export the float32 model; the chip quantises activations itself",
    "LogSoftmax": "use Softmax (or none) at the output: the class is the argmax either way",
}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise OnnxImportError("ONNX import needs the onnx package (pip install onnx)") from exc
    return onnx


def load_onnx(path: str | Path) -> Graph:
    """Read, check and convert the ONNX file at ``path``."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OnnxImportError(f"{path}: cannot read the ONNX file: {exc}") from exc
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxImportError(
            f"{path}: not a valid ONNX file (truncated or corrupted?): {exc}"
        ) from None
    return from_model(model, source=str(path))


def from_model(model: Any, *, source: str = "<model>") -> Graph:
    """Convert an ``onnx.ModelProto`` (checked with ``onnx.checker`` first; not changed)."""
    onnx = _onnx()
    if not model.HasField("graph") or not len(model.graph.node):
        raise OnnxImportError(f"{source}: not a valid ONNX model (no graph; truncated file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types
        raise OnnxImportError(f"{source}: ONNX checker rejected the model: {exc}") from None
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx"):
            raise OnnxImportError(
                f"{source}: operator set domain {opset.domain!r} is not supported; export "
                "with the standard ONNX operators only (no custom or contrib operators)"
            )
    canonical, consts, shapes, batch = canonicalise(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    c = Converter(canonical.graph, source, consts, shapes, batch, opset)
    x = _data_input(c)
    for node in canonical.graph.node:
        op = OPERATORS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if op is None:
            todo = _HINTS.get(
                node.op_type,
                f"replace it before export; the supported operators are in {DOCS_SECTION}",
            )
            raise c.fail(node, "unsupported operator", todo)
        op.handler(c, node)
    return _graph(c, x)


def _data_input(c: Converter) -> str:
    inputs = [i for i in c.g.input if i.name not in c.consts]
    if len(inputs) != 1:
        raise OnnxImportError(
            f"{c.source}: exactly one data input is supported, got {[i.name for i in inputs]}"
        )
    x = inputs[0]
    tt = x.type.tensor_type
    if tt.elem_type != 1:  # FLOAT
        raise OnnxImportError(f"{c.source}: input {x.name!r} must be float32")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise OnnxImportError(
            f"{c.source}: input {x.name!r} needs a batch axis first and fixed sizes after it, "
            f"got {dims}; export with only the batch axis dynamic"
        )
    c.shapes[x.name] = tuple(int(d) for d in dims[1:] if d is not None)
    c.values[x.name] = Value(x.name, 0)
    return str(x.name)


def _graph(c: Converter, input_name: str) -> Graph:
    if len(c.g.output) != 1:
        raise OnnxImportError(
            f"{c.source}: exactly one graph output is supported, got "
            f"{[o.name for o in c.g.output]}; export a model that returns only the logits"
        )
    name = c.g.output[0].name
    if name not in c.values:
        raise OnnxImportError(f"{c.source}: graph output {name!r} is not computed from the input")
    value = c.values[name]
    if value.batch_axis != 0:
        raise OnnxImportError(
            f"{c.source}: graph output {name!r} has its batch axis at position "
            f"{value.batch_axis}; transpose it to the front before the output"
        )
    nodes, output = _tidy(c.nodes, value.tensor, c.shapes)
    try:
        return Graph(input_name, c.shapes[input_name], tuple(nodes), output)
    except GraphError as exc:
        raise OnnxImportError(f"{c.source}: {exc}") from None


def _tidy(
    nodes: list[Node], output: str, shapes: dict[str, tuple[int, ...]]
) -> tuple[list[Node], str]:
    """Merge chains of reshapes (exporters emit Squeeze → Transpose → Reshape around RNNs) and
    drop reshapes that change nothing."""
    readers: dict[str, int] = {}
    for node in nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    producer = {n.output: n for n in nodes}
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    result: list[Node] = []
    for node in nodes:
        inputs = tuple(rename.get(t, t) for t in node.inputs)
        if inputs != node.inputs:
            node = dataclasses.replace(node, inputs=inputs)
        if isinstance(node, Reshape | Flatten):
            source = producer.get(node.inputs[0])
            if (
                isinstance(source, Reshape | Flatten)
                and readers.get(source.output, 0) == 1
                and source.output != output
            ):
                dropped.add(source.name)
                node = dataclasses.replace(node, inputs=source.inputs)
            if shapes[node.inputs[0]] == shapes[node.output] and node.output != output:
                rename[node.output] = node.inputs[0]
                dropped.add(node.name)
        producer[node.output] = node
        result.append(node)
    return [n for n in result if n.name not in dropped], rename.get(output, output)


def operator_table() -> str:
    """The supported-operator table (Markdown) as docs/inference.md shows it."""
    lines = [
        "| ONNX operator | supported | runs on |",
        "| --- | --- | --- |",
    ]
    for name in sorted(OPERATORS):
        op = OPERATORS[name]
        lines.append(f"| `{name}` | {op.supported} | {op.runs_on} |")
    return "\n".join(lines) + "\n"
