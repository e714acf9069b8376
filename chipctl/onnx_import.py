"""ONNX → :class:`procedures.inference.graph.Graph`, before anything is mapped or programmed.

Supported (default ONNX domain, any opset the ``onnx`` checker accepts; tensors batch-first):

========================  ========================================================================
Gemm                      transA = 0; B and C constant; alpha/beta folded into the weights/bias
MatMul (+ Add)            (N, in) × constant (in, out); a following Add of a constant bias is
                          folded into the same Dense layer
Conv                      1-D and 2-D, group = 1, any strides/dilations/pads; auto_pad NOTSET,
                          VALID, SAME_UPPER or SAME_LOWER (resolved to explicit pads)
BatchNormalization        inference mode (training_mode = 0), one output
Relu, Add                 Add of two computed tensors of the same shape (residual)
MaxPool / AveragePool     1-D or 2-D, ceil_mode = 0, dilations 1, auto_pad NOTSET or VALID, no
                          Indices output
GlobalAveragePool         keeps the spatial axes with size 1 (as ONNX)
Flatten                   axis = 1
Reshape                   constant shape keeping the batch axis (0 or −1 first), allowzero = 0
LSTM                      forward, layout = 1 (batch-first), default activations, no clip, no
                          peepholes (P), no sequence_lens / initial_h / initial_c, input_forget = 0;
                          one of Y or Y_h used (Y_c not supported)
Identity, Constant        aliases and constants
========================  ========================================================================

Anything else, or any attribute outside these, raises :class:`OnnxImportError` naming the
operator type and the node (``node 'conv3' (Conv): group = 2 is not supported``). A file that is
not a valid ONNX model (truncated, corrupted, failing ``onnx.checker``) raises
:class:`OnnxImportError` naming the file. After conversion the propagated shapes are
cross-checked against ONNX shape inference wherever it knows every non-batch size.

ONNX files exported by ``torch.onnx.export`` (TorchScript exporter) for Linear/Conv/BatchNorm/
ReLU/pooling/Flatten models import as they are; PyTorch's LSTM export (sequence-first layout with
Transpose/Squeeze around it) does not: write the LSTM with layout = 1 as
``scripts/train_models.py`` does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.errors import ChipctlError
from procedures.inference.graph import (
    Add,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    Graph,
    GraphError,
    Lstm,
    MaxPool,
    Node,
    Relu,
    Reshape,
    Shape,
)


class OnnxImportError(ChipctlError, GraphError):
    """An ONNX file or graph that cannot be imported (names the file or node)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise OnnxImportError("ONNX import needs the onnx package (pip install onnx)") from exc
    return onnx


def load_onnx(path: str | Path) -> Graph:
    """Read, check and convert the ONNX file at ``path`` (see the module docstring)."""
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
    """Convert an ``onnx.ModelProto`` (checked with ``onnx.checker`` first)."""
    onnx = _onnx()
    if not model.HasField("graph") or not len(model.graph.node):
        raise OnnxImportError(f"{source}: not a valid ONNX model (no graph; truncated file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types
        raise OnnxImportError(f"{source}: ONNX checker rejected the model: {exc}") from None
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"{source}: operator set domain {opset.domain!r} not supported")
    graph = _Converter(model.graph, source).convert()
    _cross_check_shapes(model, graph, source)
    return graph


def _cross_check_shapes(model: Any, graph: Graph, source: str) -> None:
    """Compare our propagated shapes with ONNX shape inference wherever it knows every
    non-batch size: a disagreement means the file is not what the importer understood."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is only a cross-check; the checker passed
        return
    for info in inferred.graph.value_info:
        if info.name not in graph.shapes:
            continue
        dims = info.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(sizes) < 2 or None in sizes[1:]:
            continue
        if tuple(sizes[1:]) != graph.shapes[info.name]:
            raise OnnxImportError(
                f"{source}: tensor {info.name!r} has shape {tuple(sizes[1:])} by ONNX shape "
                f"inference but {graph.shapes[info.name]} as imported"
            )


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


class _Converter:
    def __init__(self, graph: Any, source: str) -> None:
        from onnx import numpy_helper

        self.g = graph
        self.source = source
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.alias: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {}
        self.uses = Counter(name for n in graph.node for name in n.input if name)
        for out in graph.output:
            self.uses[out.name] += 1

    # -- helpers ------------------------------------------------------------------------------

    def fail(self, node: Any, message: str) -> OnnxImportError:
        return OnnxImportError(
            f"{self.source}: node {self._name(node)!r} ({node.op_type}): {message}"
        )

    @staticmethod
    def _name(node: Any) -> str:
        return node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}"

    def tensor(self, node: Any, name: str) -> str:
        name = self.alias.get(name, name)
        if name in self.consts:
            raise self.fail(node, f"input {name!r} is a constant where a computed tensor is needed")
        if name not in self.shapes:
            raise self.fail(node, f"input {name!r} is not produced by any supported node")
        return name

    def const(
        self, node: Any, index: int, what: str, *, optional: bool = False
    ) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            if optional:
                return None
            raise self.fail(node, f"{what} input is missing")
        name = self.alias.get(node.input[index], node.input[index])
        if name not in self.consts:
            raise self.fail(node, f"{what} ({name!r}) must be a constant initializer")
        return self.consts[name]

    def weights(self, node: Any, index: int, what: str) -> np.ndarray:
        """A required constant floating-point, finite input, as float32."""
        value = self.maybe_weights(node, index, what)
        if value is None:
            raise self.fail(node, f"{what} input is missing")
        return value

    def maybe_weights(self, node: Any, index: int, what: str) -> np.ndarray | None:
        """An optional constant floating-point, finite input, as float32 (None when absent)."""
        value = self.const(node, index, what, optional=True)
        if value is None:
            return None
        if not np.issubdtype(value.dtype, np.floating):
            raise self.fail(node, f"{what} must be floating point, got {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise self.fail(node, f"{what} contains NaN or infinite values")
        return value.astype(np.float32)

    def check_attrs(self, node: Any, allowed: Sequence[str]) -> dict[str, Any]:
        attrs = _attrs(node)
        extra = sorted(set(attrs) - set(allowed))
        if extra:
            raise self.fail(node, f"attribute(s) {extra} not supported")
        return {k: _text(v) for k, v in attrs.items()}

    def used(self, name: str) -> bool:
        return bool(name) and self.uses[name] > 0

    def add(self, node: Node) -> None:
        try:
            shape = node.infer([self.shapes[t] for t in node.inputs])
        except GraphError as exc:
            raise OnnxImportError(f"{self.source}: {exc}") from None
        self.nodes.append(node)
        self.shapes[node.output] = shape

    def outputs(self, node: Any, n: int) -> None:
        if sum(1 for o in node.output[n:] if self.used(o)):
            raise self.fail(node, f"only the first {n} output(s) are supported")

    # -- conversion ---------------------------------------------------------------------------

    def convert(self) -> Graph:
        inputs = [i for i in self.g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise OnnxImportError(
                f"{self.source}: exactly one data input is supported, got "
                f"{[i.name for i in inputs]}"
            )
        x = inputs[0]
        tt = x.type.tensor_type
        if tt.elem_type != 1:  # FLOAT
            raise OnnxImportError(f"{self.source}: input {x.name!r} must be float32")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise OnnxImportError(
                f"{self.source}: input {x.name!r} needs a batch axis and fixed sizes after it, "
                f"got {dims}"
            )
        input_shape = tuple(int(d) for d in dims[1:] if d is not None)
        self.shapes[x.name] = input_shape
        for node in self.g.node:
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise self.fail(node, "unsupported operator")
            handler(node)
        if len(self.g.output) != 1:
            raise OnnxImportError(f"{self.source}: exactly one graph output is supported")
        out = self.alias.get(self.g.output[0].name, self.g.output[0].name)
        if out not in self.shapes:
            raise OnnxImportError(f"{self.source}: graph output {out!r} is not computed")
        try:
            graph = Graph(x.name, input_shape, tuple(self.nodes), out)
        except GraphError as exc:
            raise OnnxImportError(f"{self.source}: {exc}") from None
        declared = [
            d.dim_value if d.HasField("dim_value") else None
            for d in self.g.output[0].type.tensor_type.shape.dim
        ]
        if declared and None not in declared[1:] and tuple(declared[1:]) != graph.output_shape:
            raise OnnxImportError(
                f"{self.source}: output shape {graph.output_shape} differs from the declared "
                f"{tuple(declared[1:])}"
            )
        return graph

    def op_Constant(self, node: Any) -> None:
        from onnx import numpy_helper

        attrs = _attrs(node)
        if set(attrs) != {"value"}:
            raise self.fail(node, f"only the 'value' attribute is supported, got {sorted(attrs)}")
        self.consts[node.output[0]] = numpy_helper.to_array(attrs["value"])

    def op_Identity(self, node: Any) -> None:
        source = self.alias.get(node.input[0], node.input[0])
        if source in self.consts:
            self.consts[node.output[0]] = self.consts[source]
        else:
            self.alias[node.output[0]] = self.tensor(node, source)

    def op_Gemm(self, node: Any) -> None:
        a = self.check_attrs(node, ("alpha", "beta", "transA", "transB"))
        if a.get("transA", 0):
            raise self.fail(node, "transA = 1 is not supported")
        x = self.tensor(node, node.input[0])
        w = self.weights(node, 1, "B")
        if w.ndim != 2:
            raise self.fail(node, f"B must be 2-D, got {w.shape}")
        w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
        c = self.maybe_weights(node, 2, "C")
        bias = None
        if c is not None:
            try:
                bias = np.broadcast_to(c * np.float32(a.get("beta", 1.0)), (1, w.shape[0]))[0]
            except ValueError:
                raise self.fail(node, f"bias C shape {c.shape} not broadcastable") from None
        self.add(Dense(self._name(node), (x,), node.output[0], weight=w, bias=bias))

    def op_MatMul(self, node: Any) -> None:
        self.check_attrs(node, ())
        x = self.tensor(node, node.input[0])
        w = self.weights(node, 1, "B")
        if w.ndim != 2 or len(self.shapes[x]) != 1:
            raise self.fail(node, "only (N, in) × constant (in, out) is supported")
        self.add(Dense(self._name(node), (x,), node.output[0], weight=w.T))

    def op_Add(self, node: Any) -> None:
        self.check_attrs(node, ())
        names = [self.alias.get(n, n) for n in node.input]
        constant = [n in self.consts for n in names]
        if not any(constant):
            a, b = (self.tensor(node, n) for n in names)
            self.add(Add(self._name(node), (a, b), node.output[0]))
            return
        if all(constant):
            raise self.fail(node, "adding two constants is not supported")
        tensor = names[constant.index(False)]
        bias = self.weights(node, constant.index(True), "bias")
        prev = self.nodes[-1] if self.nodes else None
        if (
            isinstance(prev, Dense)
            and prev.output == tensor
            and prev.bias is None
            and self.uses[tensor] == 1
        ):
            try:
                b = np.broadcast_to(bias, (1, prev.weight.shape[0]))[0]
            except ValueError:
                raise self.fail(node, f"bias shape {bias.shape} does not fit") from None
            self.nodes.pop()
            del self.shapes[tensor]
            self.add(Dense(prev.name, prev.inputs, node.output[0], weight=prev.weight, bias=b))
            return
        raise self.fail(node, "a constant Add is supported only as the bias right after MatMul")

    def op_Conv(self, node: Any) -> None:
        a = self.check_attrs(
            node, ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
        )
        if a.get("group", 1) != 1:
            raise self.fail(node, f"group = {a['group']} is not supported (only 1)")
        x = self.tensor(node, node.input[0])
        w = self.weights(node, 1, "W")
        if w.ndim not in (3, 4):
            raise self.fail(node, f"only 1-D and 2-D convolutions are supported, W {w.shape}")
        nd = w.ndim - 2
        kernel = tuple(w.shape[2:])
        if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
            raise self.fail(node, f"kernel_shape {a['kernel_shape']} != W {kernel}")
        strides = tuple(a.get("strides", (1,) * nd))
        dilations = tuple(a.get("dilations", (1,) * nd))
        pads = self._pads(node, a, x, kernel, strides, dilations)
        bias = self.maybe_weights(node, 2, "B")
        self.add(
            Conv(
                self._name(node),
                (x,),
                node.output[0],
                weight=w,
                bias=bias,
                strides=strides,
                pads=pads,
                dilations=dilations,
            )
        )

    def _pads(
        self,
        node: Any,
        a: dict[str, Any],
        x: str,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        *,
        same: bool = True,
    ) -> tuple[int, ...]:
        nd = len(kernel)
        auto = a.get("auto_pad", "NOTSET")
        if auto == "NOTSET":
            return tuple(a.get("pads", (0,) * (2 * nd)))
        if "pads" in a:
            raise self.fail(node, "pads together with auto_pad is not allowed")
        if auto == "VALID":
            return (0,) * (2 * nd)
        if auto not in ("SAME_UPPER", "SAME_LOWER") or not same:
            raise self.fail(node, f"auto_pad = {auto} is not supported")
        spatial = self.shapes[x][1:]
        if len(spatial) != nd or len(strides) != nd or len(dilations) != nd:
            raise self.fail(node, f"input shape {self.shapes[x]} does not match the kernel")
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return (*begin, *end)

    def op_BatchNormalization(self, node: Any) -> None:
        a = self.check_attrs(node, ("epsilon", "momentum", "training_mode", "spatial"))
        if a.get("training_mode", 0):
            raise self.fail(node, "training_mode = 1 is not supported")
        if a.get("spatial", 1) != 1:
            raise self.fail(node, "spatial = 0 is not supported")
        self.outputs(node, 1)
        x = self.tensor(node, node.input[0])
        scale, bias, mean, var = (
            self.weights(node, i, what) for i, what in enumerate(("scale", "B", "mean", "var"), 1)
        )
        self.add(
            BatchNorm(
                self._name(node),
                (x,),
                node.output[0],
                scale=scale,
                bias=bias,
                mean=mean,
                var=var,
                epsilon=float(a.get("epsilon", 1e-5)),
            )
        )

    def op_Relu(self, node: Any) -> None:
        self.check_attrs(node, ())
        self.add(Relu(self._name(node), (self.tensor(node, node.input[0]),), node.output[0]))

    def _pool(self, node: Any, cls: type[MaxPool] | type[AvgPool], extra: Sequence[str]) -> None:
        a = self.check_attrs(
            node,
            ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", *extra),
        )
        self.outputs(node, 1)
        if a.get("ceil_mode", 0):
            raise self.fail(node, "ceil_mode = 1 is not supported")
        kernel = tuple(a.get("kernel_shape", ()))
        if len(kernel) not in (1, 2):
            raise self.fail(node, f"only 1-D and 2-D pooling is supported, kernel {kernel}")
        if any(d != 1 for d in a.get("dilations", ())):
            raise self.fail(node, f"dilations {a['dilations']} are not supported")
        x = self.tensor(node, node.input[0])
        strides = tuple(a.get("strides", (1,) * len(kernel)))
        pads = self._pads(node, a, x, kernel, strides, (1,) * len(kernel), same=False)
        kw: dict[str, Any] = {}
        if cls is AvgPool:
            kw["count_include_pad"] = bool(a.get("count_include_pad", 0))
        try:
            pool = cls(
                self._name(node),
                (x,),
                node.output[0],
                kernel=kernel,
                strides=strides,
                pads=pads,
                **kw,
            )
        except GraphError as exc:
            raise self.fail(node, str(exc)) from None
        self.add(pool)

    def op_MaxPool(self, node: Any) -> None:
        self._pool(node, MaxPool, ("storage_order",))

    def op_AveragePool(self, node: Any) -> None:
        self._pool(node, AvgPool, ("count_include_pad",))

    def op_GlobalAveragePool(self, node: Any) -> None:
        self.check_attrs(node, ())
        x = self.tensor(node, node.input[0])
        self.add(GlobalAvgPool(self._name(node), (x,), node.output[0]))

    def op_Flatten(self, node: Any) -> None:
        a = self.check_attrs(node, ("axis",))
        if a.get("axis", 1) != 1:
            raise self.fail(node, f"axis = {a['axis']} is not supported (only 1)")
        self.add(Flatten(self._name(node), (self.tensor(node, node.input[0]),), node.output[0]))

    def op_Reshape(self, node: Any) -> None:
        a = self.check_attrs(node, ("allowzero",))
        if a.get("allowzero", 0):
            raise self.fail(node, "allowzero = 1 is not supported")
        x = self.tensor(node, node.input[0])
        target = self.const(node, 1, "shape")
        assert target is not None
        spec = [int(v) for v in np.asarray(target).reshape(-1)]
        src = self.shapes[x]
        if not spec or spec[0] not in (0, -1):
            raise self.fail(node, f"shape {spec} must keep the batch axis (0 or -1 first)")
        rest = [src[i - 1] if v == 0 and i - 1 < len(src) else v for i, v in enumerate(spec)][1:]
        if spec[0] == -1 and -1 in rest:
            raise self.fail(node, f"shape {spec} has two -1 entries")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if known <= 0 or math.prod(src) % known:
                raise self.fail(node, f"cannot reshape {src} to {spec}")
            rest[rest.index(-1)] = math.prod(src) // known
        if any(v < 1 for v in rest) or math.prod(rest) != math.prod(src):
            raise self.fail(node, f"cannot reshape per-sample shape {src} to {spec}")
        self.add(Reshape(self._name(node), (x,), node.output[0], shape=tuple(rest)))

    def op_LSTM(self, node: Any) -> None:
        a = self.check_attrs(
            node,
            (
                "activation_alpha",
                "activation_beta",
                "activations",
                "clip",
                "direction",
                "hidden_size",
                "input_forget",
                "layout",
            ),
        )
        if a.get("direction", "forward") != "forward":
            raise self.fail(node, f"direction = {a['direction']} is not supported (forward only)")
        if a.get("layout", 0) != 1:
            raise self.fail(node, "layout = 0 (sequence-first) is not supported; use layout = 1")
        if "clip" in a:
            raise self.fail(node, "clip is not supported")
        if a.get("input_forget", 0):
            raise self.fail(node, "input_forget = 1 is not supported")
        if "activation_alpha" in a or "activation_beta" in a:
            raise self.fail(node, "activation_alpha/beta are not supported")
        acts = a.get("activations", ["Sigmoid", "Tanh", "Tanh"])
        if list(acts) != ["Sigmoid", "Tanh", "Tanh"]:
            raise self.fail(node, f"activations {acts} are not supported")
        for index, what in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c")):
            if index < len(node.input) and node.input[index]:
                raise self.fail(node, f"input {what} is not supported")
        if len(node.input) > 7 and node.input[7]:
            raise self.fail(node, "peepholes (input P) are not supported")
        x = self.tensor(node, node.input[0])
        w, r = self.weights(node, 1, "W"), self.weights(node, 2, "R")
        hid = int(a["hidden_size"]) if "hidden_size" in a else int(r.shape[2])
        if w.ndim != 3 or w.shape[0] != 1 or r.shape != (1, 4 * hid, hid):
            raise self.fail(node, f"W {w.shape} / R {r.shape} do not fit hidden_size {hid}")
        b = self.maybe_weights(node, 3, "B")
        bias = np.zeros(4 * hid, np.float32) if b is None else b.reshape(2, 4 * hid).sum(axis=0)

        def ours(m: np.ndarray) -> np.ndarray:  # ONNX i, o, f, c -> I, A, F, O
            i, o, f, c = np.split(m, 4, axis=0)
            return np.concatenate([i, c, f, o], axis=0)

        used = [self.used(o) for o in node.output]
        if len(used) > 2 and used[2]:
            raise self.fail(node, "output Y_c is not supported")
        if sum(used[:2]) != 1:
            raise self.fail(node, "exactly one of the outputs Y and Y_h must be used")
        seq = used[0]
        inner = f"{node.output[0 if seq else 1]}::lstm"
        name = self._name(node)
        lstm = Lstm(
            name,
            (x,),
            inner,
            w_input=ours(w[0]),
            w_hidden=ours(r[0]),
            bias=ours(bias),
            return_sequences=seq,
        )
        self.add(lstm)
        steps = self.shapes[x][0]
        shape = (steps, 1, hid) if seq else (1, hid)
        self.add(Reshape(f"{name}::reshape", (inner,), node.output[0 if seq else 1], shape=shape))
