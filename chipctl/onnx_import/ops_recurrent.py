"""LSTM and GRU (one direction, one layer; matrices on the cores, cells in the GDPU or host)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chipctl.onnx_import.state import Converter, Value, operator
from procedures.inference.graph import Gru, Lstm, Reshape, Take

DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


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
    if a.get("direction", "forward") != "forward":
        raise c.fail(
            node,
            f"direction = {a['direction']} is not supported",
            "export a forward (unidirectional) layer, one per direction",
        )
    if "clip" in a:
        raise c.fail(node, "clip is not supported", "train without cell clipping")
    if "activation_alpha" in a or "activation_beta" in a:
        raise c.fail(node, "activation_alpha/beta are not supported")
    acts = a.get("activations", DEFAULT_ACTIVATIONS[node.op_type])
    if list(acts) != DEFAULT_ACTIVATIONS[node.op_type]:
        raise c.fail(node, f"activations {acts} are not supported (the GDPU's are fixed)")
    if a.get("layout", 0) not in (0, 1):
        raise c.fail(node, f"layout = {a['layout']} is not defined")
    return a


def _sequence(c: Converter, node: Any, layout: int) -> tuple[Value, int]:
    """Input X and the sequence length T."""
    value = c.value(node, 0)
    wanted = 1 if layout == 0 else 0
    if value.batch_axis != wanted or len(c.shapes[value.tensor]) != 2:
        raise c.fail(
            node,
            f"input X {c.full_shape(value)} has its batch axis at {value.batch_axis}; layout = "
            f"{layout} reads (T, N, I) for layout 0 and (N, T, I) for layout 1",
        )
    steps = c.shapes[value.tensor][0]
    lengths = c.const(node, 4, "sequence_lens")
    if lengths is not None and np.any(np.asarray(lengths) != steps):
        raise c.fail(node, "sequence_lens shorter than the sequence are not supported")
    return value, steps


def _initial(c: Converter, node: Any, index: int, what: str, hidden: int, layout: int) -> Any:
    """A constant initial state (same for every sample) as (H,), None when zero or absent."""
    state = c.weights(node, index, what, required=False)
    if state is None:
        return None
    axis = 1 if layout == 0 else 0
    expected = [1, 1, hidden]
    expected[axis] = c.batch
    if list(state.shape) != expected:
        raise c.fail(node, f"{what} has shape {state.shape}, expected {tuple(expected)}")
    first = np.take(state, 0, axis=axis).reshape(hidden)
    if not np.all(state == np.expand_dims(first.reshape(1, hidden), axis)):
        raise c.fail(node, f"{what} differs between samples", "give one state for all samples")
    return None if not np.any(first) else first


def _outputs(c: Converter, node: Any, seq: str, last: str, layout: int, hidden: int) -> None:
    """Bind ONNX outputs Y (from graph tensor ``seq``, or "") and Y_h (``last``)."""
    name = c.name(node)
    if seq:
        steps = c.shapes[seq][0]
        out = c.tensor_name(node.output[0])
        c.add(Reshape(c.unique(f"{name}::Y"), (seq,), out, shape=(steps, 1, hidden)))
        c.bind(node, node.output[0], Value(out, 2 if layout == 0 else 0))
    if last:
        out = c.tensor_name(node.output[1])
        c.add(Reshape(c.unique(f"{name}::Y_h"), (last,), out, shape=(1, hidden)))
        c.bind(node, node.output[1], Value(out, 1 if layout == 0 else 0))


def _last_of(c: Converter, node: Any, seq: str) -> str:
    """The last step (H,) of a (T, H) sequence tensor, for Y and Y_h both used."""
    out = c.tensor_name(f"{node.output[1]}::last")
    c.add(Take(c.unique(f"{c.name(node)}::last"), (seq,), out, axis=0, index=-1))
    return out


@operator(
    "LSTM",
    "forward, layout 0 or 1, default activations, no clip or peepholes, input_forget = 0; "
    "initial_h/initial_c zero, absent or constant; outputs Y and/or Y_h, or Y_c alone",
    "cores (matrices) + GDPU (cell)",
)
def lstm(c: Converter, node: Any) -> None:
    a = _common(c, node, ("input_forget",))
    if a.get("input_forget", 0):
        raise c.fail(node, "input_forget = 1 is not supported")
    if len(node.input) > 7 and node.input[7]:
        raise c.fail(node, "peepholes (input P) are not supported", "export nn.LSTM as is")
    layout = int(a.get("layout", 0))
    x, _ = _sequence(c, node, layout)
    w, r = c.weights(node, 1, "W"), c.weights(node, 2, "R")
    hid = int(a["hidden_size"]) if "hidden_size" in a else int(r.shape[-1])
    if w.shape != (1, 4 * hid, c.shapes[x.tensor][1]) or r.shape != (1, 4 * hid, hid):
        raise c.fail(node, f"W {w.shape} / R {r.shape} do not fit hidden_size {hid}")
    b = c.weights(node, 3, "B", required=False)
    bias = np.zeros(4 * hid, np.float32) if b is None else b.reshape(2, 4 * hid).sum(axis=0)

    def ours(m: np.ndarray) -> np.ndarray:  # ONNX i, o, f, c -> I, A, F, O
        i, o, f, cand = np.split(m, 4, axis=0)
        return np.concatenate([i, cand, f, o], axis=0)

    used = [c.used(o) for o in node.output] + [False] * 3
    if used[2] and (used[0] or used[1]):
        raise c.fail(node, "Y_c together with Y or Y_h is not supported", "use one of them")
    if not any(used[:3]):
        raise c.fail(node, "none of the outputs is used")
    name = c.unique(c.name(node))
    inner = c.tensor_name(f"{node.output[0] or node.output[1]}::lstm")
    layer = Lstm(
        name,
        (x.tensor,),
        inner,
        w_input=ours(w[0]),
        w_hidden=ours(r[0]),
        bias=ours(bias),
        return_sequences=used[0],
        initial_h=_initial(c, node, 5, "initial_h", hid, layout),
        initial_c=_initial(c, node, 6, "initial_c", hid, layout),
        return_cell=used[2],
    )
    c.add(layer)
    if used[2]:
        out = c.tensor_name(node.output[2])
        c.add(Reshape(c.unique(f"{name}::Y_c"), (inner,), out, shape=(1, hid)))
        c.bind(node, node.output[2], Value(out, 1 if layout == 0 else 0))
        return
    last = (_last_of(c, node, inner) if used[0] else inner) if used[1] else ""
    _outputs(c, node, inner if used[0] else "", last, layout, hid)


@operator(
    "GRU",
    "forward, layout 0 or 1, default activations, no clip, linear_before_reset 0 or 1; "
    "initial_h zero, absent or constant; Y and/or Y_h",
    "float32 reference only; `chipctl infer` refuses it (see the notes)",
)
def gru(c: Converter, node: Any) -> None:
    a = _common(c, node, ("linear_before_reset",))
    layout = int(a.get("layout", 0))
    x, _ = _sequence(c, node, layout)
    w, r = c.weights(node, 1, "W"), c.weights(node, 2, "R")
    hid = int(a["hidden_size"]) if "hidden_size" in a else int(r.shape[-1])
    if w.shape != (1, 3 * hid, c.shapes[x.tensor][1]) or r.shape != (1, 3 * hid, hid):
        raise c.fail(node, f"W {w.shape} / R {r.shape} do not fit hidden_size {hid}")
    b = c.weights(node, 3, "B", required=False)
    biases = np.zeros((2, 3 * hid), np.float32) if b is None else b.reshape(2, 3 * hid)
    used = [c.used(o) for o in node.output] + [False] * 2
    if not any(used[:2]):
        raise c.fail(node, "none of the outputs is used")
    name = c.unique(c.name(node))
    inner = c.tensor_name(f"{node.output[0] or node.output[1]}::gru")
    layer = Gru(
        name,
        (x.tensor,),
        inner,
        w_input=w[0],
        w_hidden=r[0],
        bias_input=biases[0],
        bias_hidden=biases[1],
        linear_before_reset=bool(a.get("linear_before_reset", 0)),
        return_sequences=used[0],
        initial_h=_initial(c, node, 5, "initial_h", hid, layout),
    )
    c.add(layer)
    last = (_last_of(c, node, inner) if used[0] else inner) if used[1] else ""
    _outputs(c, node, inner if used[0] else "", last, layout, hid)
