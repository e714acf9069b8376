"""The forward pass through the deployed network: int8 activations, MVMs, the LDPU chain.

[LG Methods p.9; chip.md §1.5, §1.6, §2b, §2c, §2d; DESIGN.md "Inference executor"].

**LDPU chain per tile** (drivers/ldpu.py), with k = 1/median(u₊) so the intermediate stays in
ADC-count magnitudes in float16:

* gain_pos = k·u₊, gain_neg = k·u₋, offset_pos = k·o: the calibrated value v = k·W·x;
* a tile that holds a whole output row range (one column tile, not LSTM): affine_scale =
  a·lsb_in/(k·α·lsb_out), affine_offset = b/lsb_out, ReLU when the layer's only consumer is a
  ReLU (fused): the int8 output *is* the next tensor on its int8 grid. a, b: bias and folded
  batch norm (:class:`~procedures.inference.mapping.LayerMapping`); α: the drift factor.
* a tile whose output is a partial sum (several column tiles, or the LSTM input/hidden pair
  summed "vertically", chip.md §2d): affine_scale = lsb_in/(k·α·lsb_ps), no offset, no ReLU: an
  int8 partial sum on the tile's grid lsb_ps = max|W_tile·x|/127 over the calibration data.
  The partial sums are added in the digital format (float16 or fixed point), then a·s + b,
  ReLU, int8 at lsb_out. On the chip one tile's LDPU adds the others' int8 partial sums
  [chip.md §1.5 step 4]; here the host does it from every tile's int8 output, which adds the
  aggregating tile's own int8 rounding (documented deviation).

**Between layers** activations are int8 with LSB range/127, the range of each tensor taken from
the float32 model on calibration data (:func:`procedures.inference.calibration.tensor_ranges`).
Residual adds, pooling, unfolded batch norm and unfused ReLU run on the host in the digital
format; layer-to-layer activations leave the chip through the FPGA anyway [LG §V]. LSTM gate
pre-activations go to the GDPU model (``procedures.inference.gdpu``) as int8.

**GRU.** The GDPU computes the LSTM cell only (chip.md §1.6), and a GRU's reset gate multiplies
the recurrent product before the candidate's tanh: n = tanh(W_n·x + b_Wn + r ⊙ (R_n·h + b_Rn))
(``linear_before_reset``, PyTorch's form). So the two products run on the cores as an LSTM's do
(input W·x for all steps at once, hidden R·h once per step, each as partial sums), and the host
forms the gates in the digital format: z, r = σ(·) of the summed pre-activations, the candidate,
h_t = n + z ⊙ (h_{t−1} − n). The host keeps h in the digital format; its int8 code (grid
max(1, |h_0|)/127) is the next step's hidden input and the layer's output.

**Digital format.** ``float16`` uses the board's LDPU (``mvm(output="ldpu")``, int8 out);
``fixed`` asks for raw counts and runs the same chain on the host in fixed point
(:mod:`procedures.inference.digital`), as the near-memory unit of [NMPU] would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from drivers.ldpu import ROWS, LdpuCoefficients
from procedures.inference.deployment import Deployment, LayerPlan
from procedures.inference.digital import int8_round
from procedures.inference.gdpu import GdpuLstmCell, initial_lstm_state, quantise_int8
from procedures.inference.gdpu_kernel import gate_codes, gate_codes_from_partial
from procedures.inference.graph import Conv, Dense, Gru, Lstm, Node
from procedures.inference.mapping import CORE_COLS
from procedures.inference.reference import run_node

Observer = Callable[[LayerPlan, np.ndarray], None]
"""``observe(plan, pre)``: sees an analog layer's outputs W·x + b before its affine (AdaBS)."""


# -- LDPU coefficients --------------------------------------------------------------------------


def coefficients(deployment: Deployment, core: int) -> LdpuCoefficients:
    """The LDPU coefficients of ``core`` for the current calibration, drift factor and
    affine (the chain of the module docstring)."""
    state = deployment.tiles[core]
    plan = deployment.plans[state.layer]
    tile = state.tile
    rows = tile.shape[0]
    k = state.k
    in_lsb = plan.in_lsb[state.part]
    scale = np.zeros(ROWS)
    offset = np.zeros(ROWS)
    if plan.partial:
        scale[:rows] = in_lsb / (k * state.alpha * state.partial_lsb)
        relu = False
    else:
        rows_of = slice(tile.row_start, tile.row_stop)  # affine arrays are in mapped order
        scale[:rows] = plan.scale[rows_of] * in_lsb / (k * state.alpha * plan.out_lsb)
        offset[:rows] = plan.offset[rows_of] / plan.out_lsb
        relu = plan.relu
    return LdpuCoefficients(
        gain_pos=k * state.u_pos,
        offset_pos=k * state.offset,
        gain_neg=k * state.u_neg,
        offset_neg=np.zeros(ROWS),
        affine_scale=scale,
        affine_offset=offset,
        relu=relu,
    )


def load(deployment: Deployment) -> None:
    """Load every tile's LDPU coefficients onto the board."""
    for core in deployment.tiles:
        deployment.board.load_ldpu(core, coefficients(deployment, core))
    deployment.stale = False


# -- MVM frames on the tiles -------------------------------------------------------------------


def _chunk(deployment: Deployment, n_cores: int, raw: bool, n_rows: int = ROWS) -> int:
    """Inputs per core and MVM call: the deployment's batch, or fewer if the request or the
    reply (``n_rows`` outputs per input) would not fit in one frame."""
    limit = deployment.board.identity.max_payload - 64
    per_input = n_cores * max(CORE_COLS, n_rows * (4 if raw else 1))
    return max(1, min(deployment.batch, limit // per_input))


def _rows_read(deployment: Deployment, cores: list[int]) -> tuple[int, int]:
    """The output rows the host reads of these tiles: 0 up to the tallest tile's rows."""
    return (0, max(deployment.tiles[c].tile.shape[0] for c in cores))


def raw_counts(
    deployment: Deployment,
    cores: list[int],
    x: np.ndarray,
    *,
    rows: tuple[int, int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw counts per core for inputs x (cores, batch, 256), each (batch, 256).

    ``rows`` (start, stop): only these rows are converted and sent (the MVM's row range);
    the others are returned as zero counts, so the caller must not read them.
    """
    n_rows = ROWS if rows is None else rows[1] - rows[0]
    step = _chunk(deployment, len(cores), True, n_rows)
    parts_p, parts_n = [], []
    for s in range(0, x.shape[1], step):
        counts = deployment.board.mvm(
            cores, x[:, s : s + step], mode=deployment.mvm_mode, output="raw", rows=rows
        )
        parts_p.append(counts.positive)
        parts_n.append(counts.negative)
    if rows is None:
        p = np.concatenate(parts_p, axis=1)
        n = np.concatenate(parts_n, axis=1)
    else:
        p = np.zeros((len(cores), x.shape[1], ROWS), np.uint16)
        n = np.zeros_like(p)
        np.concatenate(parts_p, axis=1, out=p[:, :, rows[0] : rows[1]])
        np.concatenate(parts_n, axis=1, out=n[:, :, rows[0] : rows[1]])
    return [(p[i], n[i]) for i in range(len(cores))]


def _tile_outputs(
    deployment: Deployment, cores: list[int], x: np.ndarray, *, use_board_ldpu: bool
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]] | None]:
    """int8 outputs per core (int8 from the board's LDPU, float64 from the host's) for inputs
    (cores, batch, 256); with raw counts also returned when the host computes the chain.

    Only the rows the tiles use are converted and sent (the MVM's row range); callers read a
    tile's first ``tile.shape[0]`` rows only."""
    rows = _rows_read(deployment, cores)
    if use_board_ldpu:
        step = _chunk(deployment, len(cores), False, rows[1] - rows[0])
        outs = [
            deployment.board.mvm(
                cores, x[:, s : s + step], mode=deployment.mvm_mode, output="ldpu", rows=rows
            )
            for s in range(0, x.shape[1], step)
        ]
        # int8 kept as is: callers take the tile's used rows only (numpy converts those)
        q = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
        return [q[i] for i in range(len(cores))], None
    counts = raw_counts(deployment, cores, x, rows=rows)
    return [
        deployment.digital.ldpu(coefficients(deployment, c), p, n)
        for c, (p, n) in zip(cores, counts, strict=True)
    ], counts


def _layer_outputs(
    deployment: Deployment, plan: LayerPlan, part: str, codes: np.ndarray, host: bool
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]] | None]:
    """The MVMs of one matrix of a layer on int8 input codes (samples, cols): each tile's
    outputs and, with ``host``, its raw counts (:func:`_tile_outputs`)."""
    mm = plan.mapping.matrix(part)
    cores = [t.core for t in mm.tiles]
    x = np.zeros((len(cores), codes.shape[0], CORE_COLS), np.int8)
    codes8 = codes.astype(np.int8, copy=False)  # int8 values in a wider type: copies are casts
    for i, tile in enumerate(mm.tiles):
        width = tile.shape[1]
        for j in range(deployment.tiles[tile.core].replicas):
            x[i, :, j * width : (j + 1) * width] = codes8[:, tile.col_start : tile.col_stop]
    return _tile_outputs(deployment, cores, x, use_board_ldpu=not host)


def _one_tile_codes(
    deployment: Deployment, plan: LayerPlan, part: str, codes: np.ndarray
) -> tuple[np.ndarray, float]:
    """A partial matrix that one tile holds whole, on the board's LDPU: its int8 output codes
    (samples, rows) and their LSB (value = code·LSB in the number format, units of W·x), for a
    caller that forms the values itself. See :func:`_held_by_one_tile`."""
    (out,), _ = _layer_outputs(deployment, plan, part, codes, host=False)
    tile = plan.mapping.matrix(part).tiles[0]
    return out[:, : tile.shape[0]], deployment.tiles[tile.core].partial_lsb


def _held_by_one_tile(plan: LayerPlan, part: str) -> bool:
    """Whether one tile holds the whole of a partial matrix (its value is that tile's)."""
    mm = plan.mapping.matrix(part)
    return plan.partial and len(mm.tiles) == 1 and mm.tiles[0].shape[0] == mm.matrix.shape[0]


def _layer_mvm(
    deployment: Deployment,
    plan: LayerPlan,
    part: str,
    codes: np.ndarray,
    *,
    host: bool = False,
    observe: Observer | None = None,
) -> np.ndarray:
    """One matrix of an analog layer on int8 input codes (samples, cols).

    Returns the int8 output codes (samples, rows) of a whole layer (as int8 from the board's
    LDPU when one tile holds it, else as floats), or, for a partial layer, the summed partial
    values (float, units of W·x). ``host`` computes the LDPU chain on the host from raw counts;
    ``observe`` (AdaBS, whole layers) sees the pre-BN outputs before the final coefficients are
    applied.
    """
    mm = plan.mapping.matrix(part)
    outputs, counts = _layer_outputs(deployment, plan, part, codes, host)
    cores = [t.core for t in mm.tiles]
    rows_total = mm.matrix.shape[0]
    if observe is not None and counts is not None and not plan.partial:
        pre = np.zeros((codes.shape[0], rows_total))
        for tile, (p, n) in zip(mm.tiles, counts, strict=True):
            state = deployment.tiles[tile.core]
            r = tile.shape[0]
            value = (state.calibrated(p, n)[:, :r] + state.offset[:r]) / state.alpha
            pre[:, tile.row_start : tile.row_stop] = value * plan.in_lsb[part]
        observe(plan, pre + _bias(plan.node, rows_total))
        outputs = [
            deployment.digital.ldpu(coefficients(deployment, c), p, n)
            for c, (p, n) in zip(cores, counts, strict=True)
        ]
    if not plan.partial:
        if len(mm.tiles) == 1 and mm.tiles[0].shape[0] == rows_total:
            return outputs[0][:, :rows_total]  # one tile holds every row: its codes as they are
        out = np.zeros((codes.shape[0], rows_total))
        for tile, q in zip(mm.tiles, outputs, strict=True):
            out[:, tile.row_start : tile.row_stop] = q[:, : tile.shape[0]]
        return out
    fmt = deployment.digital
    # The sums live on the grid of the finest partial sum they add (the tensor they belong
    # to: W·x in float units), not on the layer output's grid.
    grid = min(deployment.tiles[t.core].partial_lsb for t in mm.tiles)
    if _held_by_one_tile(plan, part) and outputs[0].dtype == np.int8:
        # one tile holds the whole matrix: its partial value is the sum (0 + v is v: int8
        # codes times a positive LSB are never −0.0)
        lsb = deployment.tiles[mm.tiles[0].core].partial_lsb
        return fmt.value(outputs[0][:, :rows_total] * lsb, grid)
    total = np.zeros((codes.shape[0], rows_total))
    for tile, q in zip(mm.tiles, outputs, strict=True):
        lsb = deployment.tiles[tile.core].partial_lsb
        block = total[:, tile.row_start : tile.row_stop]
        block[:] = fmt.value(block + q[:, : tile.shape[0]].astype(np.float64) * lsb, grid)
    return total


def _finish_partial(deployment: Deployment, plan: LayerPlan, total: np.ndarray) -> np.ndarray:
    """Affine, ReLU and int8 of summed partials (samples, rows): int8 codes."""
    fmt = deployment.digital
    scale = fmt.coefficient(plan.scale)
    offset = fmt.coefficient(plan.offset)
    y = fmt.value(fmt.value(total * scale, plan.out_lsb) + offset, plan.out_lsb)
    return int8_round(y / plan.out_lsb, plan.relu)


# -- the forward pass ---------------------------------------------------------------------------


def forward(
    deployment: Deployment,
    x: np.ndarray,
    *,
    observe: Observer | None = None,
    keep: bool = False,
) -> dict[str, np.ndarray]:
    """Run a batch through the chip; returns the output tensor (float, dequantised) under
    the graph's output name, and with ``keep`` every tensor.

    ``observe(plan, pre)`` (AdaBS) sees each non-recurrent analog layer's outputs W·x + b before
    its affine and may change the plan's affine before the layer's outputs are formed (host
    LDPU).
    """
    g = deployment.graph
    values: dict[str, np.ndarray] = {g.input_name: g.prepare_input(x).astype(np.float64)}
    codes: dict[str, Codes] = {}  # tensors that left an analog layer as int8 codes

    def value(name: str) -> np.ndarray:
        """A tensor as floats: one that left an analog layer as codes only is formed when
        something reads it (the next analog layer reads the codes themselves)."""
        if name not in values:
            values[name] = codes[name].value()
        return values[name]

    if deployment.stale and deployment.digital.name == "float16" and observe is None:
        load(deployment)
    for node in g.nodes:
        if node.name in deployment.fused:
            continue
        if node.name in deployment.plans:
            plan = deployment.plans[node.name]
            y = _analog(deployment, plan, value, observe, codes)
            if y is not None:
                values[plan.output] = y
        else:
            values[node.output] = _digital_node(deployment, node, [value(t) for t in node.inputs])
    if keep:
        for name in codes:
            value(name)
        return values
    return {g.output_name: value(g.output_name)}


class Codes(NamedTuple):
    """A tensor as the int8 codes an analog layer sent (its value is code·lsb)."""

    codes: np.ndarray
    lsb: float

    def value(self) -> np.ndarray:
        """The tensor as floats, code·lsb."""
        return self.codes * self.lsb


def _codes_serve(sent: Codes | None, lsb: float) -> bool:
    """Whether codes an analog layer sent are a tensor's int8 codes on the grid ``lsb`` as
    they are (see :func:`_input_codes`)."""
    return sent is not None and sent.lsb == lsb and 1e-300 < lsb < 1e300


def _input_codes(x: np.ndarray | None, lsb: float, sent: Codes | None) -> np.ndarray:
    """The int8 codes of x on the grid ``lsb``: ``quantise_int8(x, lsb)``, or, when x left the
    previous layer as int8 codes on the same grid, those codes (code·lsb/lsb rounds back to
    the code; −128 saturates to −127 as quantise_int8 does): no round trip through floats.
    x may be None when the codes serve (:func:`_codes_serve`)."""
    if not _codes_serve(sent, lsb):
        assert x is not None
        return quantise_int8(x, lsb)
    assert sent is not None
    if sent.codes.size and sent.codes.min() == -128:
        return np.maximum(sent.codes, np.int8(-127))
    return sent.codes


def _analog(
    deployment: Deployment,
    plan: LayerPlan,
    value: Callable[[str], np.ndarray],
    observe: Observer | None,
    codes: dict[str, Codes],
) -> np.ndarray | None:
    """An analog layer on its input tensor: the int8 codes ``codes[name]`` when it left an
    analog layer as codes on this layer's grid (``codes``: such tensors by name), else its
    floats ``value(name)``. Returns the output's floats, or None when the output leaves as
    codes only (then added to ``codes``; :func:`forward` forms its floats when something reads
    them)."""
    node = plan.node
    source = node.inputs[0]
    host = deployment.digital.name != "float16" or observe is not None
    if isinstance(node, Lstm):
        return _lstm(deployment, plan, value(source), host)
    if isinstance(node, Gru):
        return _gru(deployment, plan, value(source), host)
    lsb = plan.in_lsb["weight"]
    sent = codes.get(source)
    in_codes = _input_codes(None if _codes_serve(sent, lsb) else value(source), lsb, sent)
    obs = observe  # every non-recurrent layer (AdaBS adapts layers without batch norm too)
    n = in_codes.shape[0]
    positions = 1
    flat = in_codes
    if isinstance(node, Conv):
        unrolled = node.unroll(in_codes.astype(np.float32))
        positions = unrolled.shape[1]
        flat = unrolled.reshape(n * positions, -1).astype(np.int16)
    result = _layer_mvm(deployment, plan, "weight", flat, host=host, observe=obs)
    if plan.partial:
        if obs is not None:
            obs(plan, result + _bias(node, result.shape[1]))
        result = _finish_partial(deployment, plan, result)
    elif result.dtype == np.int8 and not isinstance(node, Conv):
        codes[plan.output] = Codes(result, plan.out_lsb)
        return None  # its floats (code·lsb, 17 µs for 359 × 128) only if something reads them
    y = result * plan.out_lsb
    if isinstance(node, Conv):
        out_shape = deployment.graph.shapes[node.output]
        y = np.moveaxis(y.reshape(n, positions, out_shape[0]), 2, 1).reshape(n, *out_shape)
    return y


def _lstm(deployment: Deployment, plan: LayerPlan, x: np.ndarray, host: bool) -> np.ndarray:
    node = plan.node
    assert isinstance(node, Lstm)
    n, steps, _ = x.shape
    cell = GdpuLstmCell(node.hidden_size, (plan.out_lsb,) * 4)
    codes = quantise_int8(x, plan.in_lsb["input"]).reshape(n * steps, -1)
    projected = _layer_mvm(deployment, plan, "input", codes, host=host).reshape(n, steps, -1)
    state16, h8 = initial_lstm_state(node, cell, n)
    state = state16.astype(np.float32)  # float16 values, kept as float32 between steps
    h = h8.astype(np.int16)
    outs = []
    offset = deployment.digital.coefficient(plan.offset)  # mapped (interleaved) order
    fused = deployment.digital.name == "float16"  # the float16 steps below, compiled
    one_tile = fused and not host and _held_by_one_tile(plan, "hidden")
    for t in range(steps):
        if one_tile:  # the recurrent product's values formed in the compiled gate step
            h_codes, h_lsb = _one_tile_codes(deployment, plan, "hidden", h)
            q = gate_codes_from_partial(projected[:, t], h_codes, h_lsb, offset, plan.out_lsb)
        else:
            hidden = _layer_mvm(deployment, plan, "hidden", h, host=host)
            if fused:
                q = gate_codes(projected[:, t], hidden, offset, plan.out_lsb)
            else:
                total = deployment.digital.value(projected[:, t] + hidden, plan.out_lsb)
                gates = deployment.digital.value(total + offset, plan.out_lsb)
                q = int8_round(gates / plan.out_lsb).clip(-127, 127).astype(np.int8)
        h8, state = cell.step_on_grid(q, state)
        h = h8.astype(np.int16)
        outs.append(h.astype(np.float64) * cell.h_lsb)
    if node.return_cell:
        return state.astype(np.float64)
    return np.stack(outs, axis=1) if node.return_sequences else outs[-1]


def _gru(deployment: Deployment, plan: LayerPlan, x: np.ndarray, host: bool) -> np.ndarray:
    """A GRU: its products on the cores, its gates on the host (module docstring)."""
    node = plan.node
    assert isinstance(node, Gru) and node.bias_hidden is not None
    n, steps, _ = x.shape
    hid = node.hidden_size
    fmt = deployment.digital
    lsb, h_lsb = plan.out_lsb, plan.in_lsb["hidden"]
    unit = 1.0 / 127.0  # grid of the gates' outputs in [-1, 1]
    codes = quantise_int8(x, plan.in_lsb["input"]).reshape(n * steps, -1)
    projected = _layer_mvm(deployment, plan, "input", codes, host=host).reshape(n, steps, -1)
    input_bias = fmt.coefficient(plan.offset)  # b_W + (b_Rz, b_Rr, 0)
    recurrent_bias = fmt.coefficient(node.bias_hidden[2 * hid :].astype(np.float64))
    h = np.zeros((n, hid))
    if node.initial_h is not None:
        h[:] = fmt.value(node.initial_h.astype(np.float64), h_lsb)
    h_codes = quantise_int8(h, h_lsb).astype(np.int16)
    outs = []
    for t in range(steps):
        recurrent = _layer_mvm(deployment, plan, "hidden", h_codes, host=host)
        xp = fmt.value(projected[:, t] + input_bias, lsb)
        zr = fmt.value(xp[:, : 2 * hid] + recurrent[:, : 2 * hid], lsb)
        gate = fmt.value(0.5 + 0.5 * np.tanh(0.5 * zr), unit)  # σ, as the GDPU forms it
        z, r = gate[:, :hid], gate[:, hid:]
        hn = fmt.value(recurrent[:, 2 * hid :] + recurrent_bias, lsb)
        pre = fmt.value(xp[:, 2 * hid :] + fmt.value(r * hn, lsb), lsb)
        cand = fmt.value(np.tanh(pre), unit)
        h = fmt.value(cand + fmt.value(z * fmt.value(h - cand, unit), unit), unit)
        h_codes = quantise_int8(h, h_lsb).astype(np.int16)
        outs.append(h_codes.astype(np.float64) * h_lsb)
    return np.stack(outs, axis=1) if node.return_sequences else outs[-1]


def _digital_node(deployment: Deployment, node: Node, inputs: list[np.ndarray]) -> np.ndarray:
    """A non-analog node on the host in the digital format."""
    y = run_node(node, [v.astype(np.float32) for v in inputs]).astype(np.float64)
    return deployment.digital.value(y, deployment.lsb(node.output))


def _bias(node: Dense | Conv | Lstm | Gru, rows: int) -> np.ndarray:
    bias = getattr(node, "bias", None)
    return np.zeros(rows) if bias is None else np.asarray(bias, np.float64)
