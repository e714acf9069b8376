"""The converter's state and helpers, and the registry of supported operators.

Every ONNX tensor the network computes is a :class:`Value`: the name of the graph tensor that
holds it batch-first, and where its batch axis is in the ONNX tensor (exporters move it: an LSTM
with ``layout = 0`` takes (T, N, I)). The per-sample shape of the graph tensor is the ONNX shape
without its batch axis, other axes in ONNX order; ``Transpose`` that only moves the batch axis
is therefore free, and every operator's axes are translated through :meth:`Converter.axis`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipctl.errors import ChipctlError
from procedures.inference.graph import Flatten, GraphError, Node, Reshape, Shape

DOCS_SECTION = "docs/inference.md, 'Supported ONNX operators'"


class OnnxImportError(ChipctlError, GraphError):
    """An ONNX file or graph that cannot be imported (names the file or node, and what to do)."""


@dataclass(frozen=True)
class Value:
    """A computed ONNX tensor: graph tensor ``tensor`` with its batch axis at ``batch_axis``."""

    tensor: str
    batch_axis: int


Handler = Callable[["Converter", Any], None]


@dataclass(frozen=True)
class Operator:
    """One supported ONNX operator: its conversion and what of it is supported (for the docs)."""

    name: str
    handler: Handler
    supported: str
    runs_on: str


OPERATORS: dict[str, Operator] = {}
"""Supported ONNX operators by type (filled by the ``ops_*`` modules)."""


def operator(name: str, supported: str, runs_on: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ONNX operator ``name`` with its documentation row, which is
    also the handler's docstring unless it has its own (one text for the table and the API)."""

    def register(handler: Handler) -> Handler:
        OPERATORS[name] = Operator(name, handler, supported, runs_on)
        if not handler.__doc__:
            handler.__doc__ = f"ONNX ``{name}``: {supported}; runs on: {runs_on}."
        return handler

    return register


def attributes(node: Any) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    from onnx import helper

    def text(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, list):
            return [text(v) for v in value]
        return value

    return {a.name: text(helper.get_attribute_value(a)) for a in node.attribute}


class Converter:
    """Walks a canonical ONNX graph (see :mod:`.canonical`) building graph nodes."""

    def __init__(
        self,
        graph: Any,
        source: str,
        consts: dict[str, np.ndarray],
        onnx_shapes: dict[str, tuple[int, ...]],
        batch: int,
        opset: int,
    ) -> None:
        self.g = graph
        self.source = source
        self.consts = consts
        self.onnx_shapes = onnx_shapes
        self.batch = batch
        self.opset = opset
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {}
        self.uses = Counter(name for n in graph.node for name in n.input if name)
        for out in graph.output:
            self.uses[out.name] += 1
        self._names: set[str] = set()

    # -- errors -------------------------------------------------------------------------------

    def fail(self, node: Any, message: str, todo: str = "") -> OnnxImportError:
        """An error naming the node, its operator, what is wrong and (``todo``) what to do."""
        hint = f"; {todo}" if todo else ""
        return OnnxImportError(
            f"{self.source}: node {self.name(node)!r} ({node.op_type}): {message}{hint}"
        )

    @staticmethod
    def name(node: Any) -> str:
        """The node's name, or one made from its type and first output."""
        return str(node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}")

    def check_attrs(self, node: Any, allowed: Sequence[str]) -> dict[str, Any]:
        """Attributes, refusing any outside ``allowed``."""
        attrs = attributes(node)
        extra = sorted(set(attrs) - set(allowed))
        if extra:
            raise self.fail(node, f"attribute(s) {extra} not supported", f"see {DOCS_SECTION}")
        return attrs

    # -- inputs -------------------------------------------------------------------------------

    def is_const(self, name: str) -> bool:
        """Whether tensor ``name`` is a constant (initializer, Constant or folded)."""
        return name in self.consts

    def value(self, node: Any, index: int) -> Value:
        """Computed input ``index`` of ``node``."""
        name = node.input[index] if index < len(node.input) else ""
        if name in self.consts:
            raise self.fail(node, f"input {name!r} is a constant where a computed tensor is needed")
        if name not in self.values:
            raise self.fail(node, f"input {name!r} is not produced by any supported node")
        return self.values[name]

    def const(self, node: Any, index: int, what: str) -> np.ndarray | None:
        """Constant input ``index`` (None when absent); refuses a computed one."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise self.fail(
                node,
                f"{what} ({name!r}) must be a constant",
                "it is computed from the input values; export with it as a parameter or buffer",
            )
        return self.consts[name]

    def weights(self, node: Any, index: int, what: str, *, required: bool = True) -> Any:
        """A finite floating-point constant input as float32 (None if absent and optional)."""
        value = self.const(node, index, what)
        if value is None:
            if required:
                raise self.fail(node, f"{what} input is missing")
            return None
        if not np.issubdtype(value.dtype, np.floating):
            raise self.fail(node, f"{what} must be floating point, got {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise self.fail(node, f"{what} contains NaN or infinite values")
        return value.astype(np.float32)

    def full_shape(self, value: Value) -> tuple[int, ...]:
        """The ONNX shape of a computed tensor for the fold batch size."""
        shape = list(self.shapes[value.tensor])
        shape.insert(value.batch_axis, self.batch)
        return tuple(shape)

    def axis(self, node: Any, value: Value, axis: int, what: str = "axis") -> int:
        """ONNX ``axis`` of ``value`` (negative allowed) as a per-sample axis; refuses the
        batch axis."""
        rank = len(self.shapes[value.tensor]) + 1
        if not -rank <= axis < rank:
            raise self.fail(node, f"{what} {axis} outside rank {rank}")
        axis %= rank
        if axis == value.batch_axis:
            raise self.fail(
                node,
                f"{what} {axis} is the batch axis",
                "operations across samples cannot run per sample; keep the batch axis intact",
            )
        return axis - (axis > value.batch_axis)

    def batch_first(self, node: Any, value: Value) -> str:
        """The graph tensor of ``value``, refusing one whose batch axis is not axis 0."""
        if value.batch_axis != 0:
            raise self.fail(
                node,
                f"its input has the batch axis at position {value.batch_axis}, expected 0",
                "transpose the batch axis back to the front before this operator",
            )
        return value.tensor

    def used(self, name: str) -> bool:
        """Whether ONNX tensor ``name`` is read by a node or is a graph output."""
        return bool(name) and self.uses[name] > 0

    # -- outputs ------------------------------------------------------------------------------

    def unique(self, base: str) -> str:
        """A node name not used yet."""
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}#{n}"
        self._names.add(name)
        return name

    def add(self, node: Node) -> None:
        """Append a graph node (its shape inferred; errors name it)."""
        try:
            shape = node.infer([self.shapes[t] for t in node.inputs])
        except GraphError as exc:
            raise OnnxImportError(f"{self.source}: {exc}") from None
        self.nodes.append(node)
        self.shapes[node.output] = shape

    def bind(self, node: Any, onnx_name: str, value: Value) -> None:
        """ONNX tensor ``onnx_name`` is ``value``; its shape must agree with ONNX inference."""
        known = self.onnx_shapes.get(onnx_name)
        if known is not None and known != self.full_shape(value):
            raise self.fail(
                node,
                f"tensor {onnx_name!r} has shape {known} by ONNX shape inference but "
                f"{self.full_shape(value)} as imported (batch {self.batch})",
            )
        self.values[onnx_name] = value

    def tensor_name(self, onnx_name: str) -> str:
        """A fresh graph tensor name for ONNX tensor ``onnx_name``."""
        name, n = onnx_name, 1
        while name in self.shapes:
            n += 1
            name = f"{onnx_name}#{n}"
        return name

    def emit(self, node: Any, graph_node: Node, batch_axis: int = 0, index: int = 0) -> None:
        """Add ``graph_node`` as the producer of ONNX output ``index`` of ``node``."""
        self.add(graph_node)
        self.bind(node, node.output[index], Value(graph_node.output, batch_axis))

    def per_sample(self, node: Any, full: Sequence[int], batch_axis: int) -> tuple[int, ...]:
        """An ONNX shape without its batch axis (checked to be the fold batch size)."""
        if full[batch_axis] != self.batch:
            raise self.fail(node, f"shape {tuple(full)} lost the batch axis")
        return tuple(int(d) for i, d in enumerate(full) if i != batch_axis)

    def reshaped(self, node: Any, value: Value, full: Sequence[int]) -> Value:
        """``value`` reshaped (row-major) to ONNX shape ``full``, which must keep the batch axis
        with the same amount of data before it (otherwise samples would mix)."""
        before = math.prod(self.full_shape(value)[: value.batch_axis])
        axes = [q for q, d in enumerate(full) if d == self.batch and math.prod(full[:q]) == before]
        if len(axes) != 1:
            raise self.fail(
                node,
                f"reshaping {self.full_shape(value)} to {tuple(full)} (batch {self.batch}) "
                "does not keep the batch axis",
                "reshape only the axes after the batch axis (e.g. x.reshape(len(x), -1))",
            )
        shape = self.per_sample(node, full, axes[0])
        if shape == self.shapes[value.tensor]:
            return Value(value.tensor, axes[0])
        out = self.tensor_name(node.output[0])
        name = self.unique(self.name(node))
        if len(shape) == 1 and axes[0] == 0 and value.batch_axis == 0:
            self.add(Flatten(name, (value.tensor,), out))
        else:
            self.add(Reshape(name, (value.tensor,), out, shape=shape))
        return Value(out, axes[0])
