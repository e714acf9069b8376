"""LSTM and GRU, one layer, any direction (matrices on the cores; LSTM cells in the GDPU, GRU
gates on the host).

A graph LSTM/GRU node runs forward over a (T, I) sequence. Other directions are composed from
it: ``reverse`` runs it over the time-reversed sequence (a :class:`Select` of the steps in
reverse order) and reverses its output sequence back; ``bidirectional`` is one layer per
direction (each on its own cores), their outputs joined along ONNX's direction axis by
:class:`Concat`, exactly as ONNX defines Y (T, D, N, H) and Y_h/Y_c (D, N, H).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from chipctl.onnx_import.state import Converter, Value, operator
from procedures.inference.graph import Concat, Gru, Lstm, Reshape, Select, Take

DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
DIRECTIONS = {
    "forward": ("forward",),
    "reverse": ("reverse",),
    "bidirectional": ("forward", "reverse"),
}


def _common(c: Converter, node: Any, extra: tuple[str, ...]) -> dict[str, Any]:
    a = c.check_attrs(
        node,
        (
            "activation_alpha",
            "activation_beta",
            "activations",
            "clip",
            "direction",
            "hidden_size",
            "layout",
            *extra,
        ),
    )
    if a.get("direction", "forward") not in DIRECTIONS:
        raise c.fail(node, f"direction = {a['direction']} is not defined")
    if "clip" in a:
        raise c.fail(node, "clip is not supported", "train without cell clipping")
    if "activation_alpha" in a or "activation_beta" in a:
        raise c.fail(node, "activation_alpha/beta are not supported")
    directions = len(DIRECTIONS[a.get("direction", "forward")])
    acts = a.get("activations", DEFAULT_ACTIVATIONS[node.op_type] * directions)
    if list(acts) != DEFAULT_ACTIVATIONS[node.op_type] * directions:
        raise c.fail(node, f"activations {acts} are not supported (the GDPU's are fixed)")
    if a.get("layout", 0) not in (0, 1):
        raise c.fail(node, f"layout = {a['layout']} is not defined")
    return a


def _sequence(c: Converter, node: Any, layout: int) -> Value:
    """Input X, checked to have the batch axis where ``layout`` puts it."""
    value = c.value(node, 0)
    wanted = 1 if layout == 0 else 0
    if value.batch_axis != wanted or len(c.shapes[value.tensor]) != 2:
        raise c.fail(
            node,
            f"input X {c.full_shape(value)} has its batch axis at {value.batch_axis}; layout = "
            f"{layout} reads (T, N, I) for layout 0 and (N, T, I) for layout 1",
        )
    lengths = c.const(node, 4, "sequence_lens")
    if lengths is not None and np.any(np.asarray(lengths) != c.shapes[value.tensor][0]):
        raise c.fail(node, "sequence_lens shorter than the sequence are not supported")
    return value


def _initial(
    c: Converter, node: Any, index: int, what: str, shape: tuple[int, int], layout: int
) -> list[Any]:
    """Per direction, a constant initial state (same for every sample) as (H,), None when zero
    or absent. ``shape`` is (directions, H)."""
    directions, hidden = shape
    state = c.weights(node, index, what, required=False)
    if state is None:
        return [None] * directions
    axis = 1 if layout == 0 else 0
    expected = [directions, directions, hidden]
    expected[axis] = c.batch
    if list(state.shape) != expected:
        raise c.fail(node, f"{what} has shape {state.shape}, expected {tuple(expected)}")
    first = np.take(state, [0], axis=axis)
    if not np.all(state == first):
        raise c.fail(node, f"{what} differs between samples", "give one state for all samples")
    per_direction = first.reshape(directions, hidden)
    return [row if np.any(row) else None for row in per_direction]


def _reversed(c: Converter, node: Any, tensor: str, what: str) -> str:
    """The steps of a (T, …) tensor in reverse order."""
    steps = c.shapes[tensor][0]
    out = c.tensor_name(f"{tensor}::reversed")
    indices = tuple(range(steps - 1, -1, -1))
    c.add(Select(c.unique(f"{c.name(node)}::{what}"), (tensor,), out, axis=0, indices=indices))
    return out


Layer = Callable[[int, str, str, bool], Lstm | Gru]
"""``make(direction index, name, input tensor, whole sequence?)`` → the direction's layer."""


def _directions(
    c: Converter, node: Any, x: str, direction: str, make: Layer, used: list[bool]
) -> tuple[list[str], list[str]]:
    """Run one layer per direction: (sequences (T, H) in forward time order, last states (H,)).
    ``used`` = [Y, Y_h]."""
    seqs, lasts = [], []
    for d, kind in enumerate(DIRECTIONS[direction]):
        suffix = "" if direction == "forward" else f"::{kind}"
        source = x if kind == "forward" else _reversed(c, node, x, f"{kind}_in")
        name = c.unique(f"{c.name(node)}{suffix}")
        layer = make(d, name, source, used[0])
        c.add(layer)
        run = layer.output
        if used[0]:
            seqs.append(run if kind == "forward" else _reversed(c, node, run, f"{kind}_out"))
            if used[1]:
                last = c.tensor_name(f"{run}::last")
                c.add(Take(c.unique(f"{name}::last"), (run,), last, axis=0, index=-1))
                lasts.append(last)
        else:
            lasts.append(run)
    return seqs, lasts


def _join(
    c: Converter, node: Any, index: int, parts: list[str], shape: tuple[int, ...], batch: int
) -> None:
    """Bind ONNX output ``index`` to the per-direction ``parts`` reshaped to ``shape`` (with a
    direction axis of 1) and concatenated along that axis."""
    axis = shape.index(1)
    pieces = []
    for part in parts:
        out = c.tensor_name(f"{part}::dir")
        c.add(Reshape(c.unique(f"{c.name(node)}::out{index}"), (part,), out, shape=shape))
        pieces.append(out)
    result = pieces[0]
    if len(pieces) > 1:
        result = c.tensor_name(node.output[index])
        c.add(Concat(c.unique(f"{c.name(node)}::join{index}"), tuple(pieces), result, axis=axis))
    c.bind(node, node.output[index], Value(result, batch))


def _bind_outputs(
    c: Converter, node: Any, seqs: list[str], lasts: list[str], layout: int, index: int = 1
) -> None:
    """Y from ``seqs`` and Y_h (or Y_c at ``index`` 2) from ``lasts``."""
    if seqs:
        steps, hidden = c.shapes[seqs[0]]
        _join(c, node, 0, seqs, (steps, 1, hidden), 2 if layout == 0 else 0)
    if lasts and index < len(node.output) and c.used(node.output[index]):
        (hidden,) = c.shapes[lasts[0]]
        _join(c, node, index, lasts, (1, hidden), 1 if layout == 0 else 0)


def _weights(
    c: Converter, node: Any, a: dict[str, Any], gates: int, x: Value
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """W, R, B (zeros when absent), H and the number of directions, shapes checked."""
    w, r = c.weights(node, 1, "W"), c.weights(node, 2, "R")
    directions = len(DIRECTIONS[a.get("direction", "forward")])
    hid = int(a["hidden_size"]) if "hidden_size" in a else int(r.shape[-1])
    features = c.shapes[x.tensor][1]
    if w.shape != (directions, gates * hid, features) or r.shape != (directions, gates * hid, hid):
        raise c.fail(
            node,
            f"W {w.shape} / R {r.shape} do not fit hidden_size {hid}, {directions} direction(s) "
            f"and {features} input features",
        )
    b = c.weights(node, 3, "B", required=False)
    b = np.zeros((directions, 2 * gates * hid), np.float32) if b is None else b
    if b.shape != (directions, 2 * gates * hid):
        raise c.fail(node, f"B {b.shape} does not fit hidden_size {hid}")
    return w, r, b, hid, directions


@operator(
    "LSTM",
    "forward, reverse or bidirectional (one layer per direction), layout 0 or 1, default "
    "activations, no clip or peepholes, input_forget = 0; initial_h/initial_c zero, absent or "
    "constant; outputs Y and/or Y_h, or Y_c alone",
    "cores (matrices) + GDPU (cell)",
)
def lstm(c: Converter, node: Any) -> None:
    a = _common(c, node, ("input_forget",))
    if a.get("input_forget", 0):
        raise c.fail(node, "input_forget = 1 is not supported")
    if len(node.input) > 7 and node.input[7]:
        raise c.fail(node, "peepholes (input P) are not supported", "export nn.LSTM as is")
    layout = int(a.get("layout", 0))
    x = _sequence(c, node, layout)
    w, r, b, hid, directions = _weights(c, node, a, 4, x)
    initial_h = _initial(c, node, 5, "initial_h", (directions, hid), layout)
    initial_c = _initial(c, node, 6, "initial_c", (directions, hid), layout)
    used = [c.used(o) for o in node.output] + [False] * 3
    if used[2] and (used[0] or used[1]):
        raise c.fail(node, "Y_c together with Y or Y_h is not supported", "use one of them")
    if not any(used[:3]):
        raise c.fail(node, "none of the outputs is used")

    def ours(m: np.ndarray) -> np.ndarray:  # ONNX i, o, f, c -> I, A, F, O
        i, o, f, cand = np.split(m, 4, axis=0)
        return np.concatenate([i, cand, f, o], axis=0)

    def make(d: int, name: str, source: str, sequence: bool) -> Lstm:
        return Lstm(
            name,
            (source,),
            c.tensor_name(f"{name}::out"),
            w_input=ours(w[d]),
            w_hidden=ours(r[d]),
            bias=ours(b[d].reshape(2, 4 * hid).sum(axis=0)),
            return_sequences=sequence,
            initial_h=initial_h[d],
            initial_c=initial_c[d],
            return_cell=used[2],
        )

    seqs, lasts = _directions(c, node, x.tensor, a.get("direction", "forward"), make, used)
    _bind_outputs(c, node, seqs, lasts, layout, 2 if used[2] else 1)


@operator(
    "GRU",
    "forward, reverse or bidirectional, layout 0 or 1, default activations, no clip, "
    "linear_before_reset 0 or 1; initial_h zero, absent or constant; Y and/or Y_h",
    "cores (input and hidden matrices) + host (gates, element-wise products; see the notes)",
)
def gru(c: Converter, node: Any) -> None:
    a = _common(c, node, ("linear_before_reset",))
    layout = int(a.get("layout", 0))
    x = _sequence(c, node, layout)
    w, r, b, hid, directions = _weights(c, node, a, 3, x)
    initial_h = _initial(c, node, 5, "initial_h", (directions, hid), layout)
    used = [c.used(o) for o in node.output] + [False] * 2
    if not any(used[:2]):
        raise c.fail(node, "none of the outputs is used")

    def make(d: int, name: str, source: str, sequence: bool) -> Gru:
        return Gru(
            name,
            (source,),
            c.tensor_name(f"{name}::out"),
            w_input=w[d],
            w_hidden=r[d],
            bias_input=b[d, : 3 * hid],
            bias_hidden=b[d, 3 * hid :],
            linear_before_reset=bool(a.get("linear_before_reset", 0)),
            return_sequences=sequence,
            initial_h=initial_h[d],
        )

    seqs, lasts = _directions(c, node, x.tensor, a.get("direction", "forward"), make, used)
    _bind_outputs(c, node, seqs, lasts, layout)
