"""Calibrating a deployed network: int8 ranges, partial-sum grids and per-tile ADC fits.

[LG Methods p.9; LG §IV; chip.md §2b; DESIGN.md "Inference executor"].

**From the float32 model** (no board): the int8 range of every tensor (:func:`tensor_ranges`),
and, per tile, the grid lsb_ps = max|W_tile·x|/127 of a tile that emits partial sums and the
typical int8 input vectors the layer will see (:func:`use_calibration_data`). A recurrent
layer's hidden matrix sees h_{t−1} from the layer's own initial state on: h_0 (given or zero),
then the float32 model's hidden states. The gate range of an LSTM is that of its gate
pre-activations (the GDPU's int8 input); a GRU's is that of every sum its host-side gates form
(z and r pre-activations, the candidate's input and recurrent parts and their sum).

**Calibration** (per tile, right after programming, :func:`calibrate`). ``calibration_inputs``
random int8 inputs (30 % zeros, [LG §IV]) on the tile's used columns, raw counts P, N; per used
row a least-squares fit of the *target* output t = W_tile·x (weight units × input LSB) on the
counts, t ≈ u₊·P − u₋·N + o (four-phase: u₊ = u₋), as the calibration procedure does against
read-back conductances (:func:`procedures.calibrate.fit_adc`). Fitting against the targets folds
each row's ADC gain and its mean programming gain into one per-channel factor: the per-ADC and
per-channel corrections of chip.md §2b in one step. The same fit gives the reference outputs
R₀ of 64 fixed inputs for global drift compensation (:mod:`procedures.inference.compensation`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from drivers.errors import LimitError
from procedures.calibrate import fit_adc
from procedures.inference.deployment import Deployment
from procedures.inference.gdpu import quantise_int8
from procedures.inference.graph import Conv, Dense, Graph, Gru, Lstm
from procedures.inference.mapping import CORE_COLS, AnalogNode, analog_layers
from procedures.inference.reference import _gate_range as gate_range
from procedures.inference.reference import forward_tensors, gru_float, lstm_float
from procedures.inference.streaming import raw_counts

GDC_INPUTS = 64
"""Fixed random inputs per tile whose outputs give the drift factor α̂."""


def tensor_ranges(graph: Graph, x: np.ndarray, percentile: float = 100.0) -> dict[str, float]:
    """int8 range (the ``percentile`` of |value|, float units) of *every* tensor of ``graph``
    over calibration inputs ``x``, plus ``"<layer>.gates"`` for LSTM and GRU gates (module
    docstring). Zero ranges become 1."""
    if not 0 < percentile <= 100:
        raise LimitError(f"range percentile must be in (0, 100], got {percentile}")
    values = forward_tensors(graph, x)
    ranges = {k: float(np.percentile(np.abs(v), percentile)) for k, v in values.items()}
    for node in analog_layers(graph):
        if isinstance(node, Lstm):
            ranges[f"{node.name}.gates"] = gate_range(node, values[node.inputs[0]], percentile)
        elif isinstance(node, Gru):
            sums = gru_gate_sums(node, values[node.inputs[0]])
            ranges[f"{node.name}.gates"] = float(np.percentile(np.abs(sums), percentile))
    return {k: (v if v > 0 else 1.0) for k, v in ranges.items()}


def use_calibration_data(
    deployment: Deployment, x: np.ndarray, percentile: float = 100.0, *, max_rows: int = 4096
) -> None:
    """Learn from calibration inputs ``x`` (float32 model, no board): the partial-sum
    grids lsb_ps of tiles that emit partial sums, and each tile's typical int8 input
    vectors, which :func:`calibrate` mixes into its fit."""
    values = forward_tensors(deployment.graph, x)
    rng = np.random.default_rng(0xDA7A)
    for plan in deployment.plans.values():
        for mm in plan.mapping.matrices:
            inputs = _software_inputs(plan.node, mm.part, values)
            codes = quantise_int8(inputs, plan.in_lsb[mm.part])
            if codes.shape[0] > max_rows:
                codes = codes[rng.choice(codes.shape[0], max_rows, replace=False)]
            for tile in mm.tiles:
                cols = slice(tile.col_start, tile.col_stop)
                state = deployment.tiles[tile.core]
                state.data_codes = codes[:, cols].astype(np.int8)
                if not plan.partial:
                    continue
                ps = inputs[:, cols] @ mm.matrix[tile.row_start : tile.row_stop, cols].T
                top = float(np.percentile(np.abs(ps), percentile)) if ps.size else 0.0
                state.partial_lsb = (top if top > 0 else 1.0) / 127.0
    deployment.learned = True
    deployment.stale = True


def _software_inputs(node: AnalogNode, part: str, values: dict[str, np.ndarray]) -> np.ndarray:
    """The float32 model's input vectors of one matrix of ``node`` (samples, cols)."""
    x = values[node.inputs[0]]
    if isinstance(node, Conv):
        return node.unroll(x).reshape(-1, node.matrix.shape[1])
    if isinstance(node, Dense):
        return x
    if part == "input":
        return x.reshape(-1, node.input_size)
    return previous_hidden(node, x).reshape(-1, node.hidden_size)


def previous_hidden(node: Lstm | Gru, x: np.ndarray) -> np.ndarray:
    """h_{t−1} at every step t of the float32 layer on x (N, T, I): (N, T, H), starting at the
    layer's initial state (given or zero)."""
    n, hidden = x.shape[0], node.hidden_size
    h0 = np.zeros((n, 1, hidden), np.float32)
    if node.initial_h is not None:
        h0[:] = node.initial_h
    if isinstance(node, Lstm):
        seq = lstm_float(replace(node, return_sequences=True, return_cell=False), x)
    else:
        seq = gru_float(replace(node, return_sequences=True), x)
    return np.concatenate([h0, seq[:, :-1]], axis=1)


def gru_gate_sums(node: Gru, x: np.ndarray) -> np.ndarray:
    """Every sum a GRU's host-side gates form on x (N, T, I), side by side: the z and r
    pre-activations, the candidate's input part W_n·x + b_Wn, its recurrent part R_n·h + b_Rn
    and their reset-gated sum (``linear_before_reset``, the form the executor maps)."""
    hidden = node.hidden_size
    assert node.bias_input is not None and node.bias_hidden is not None
    xp = x @ node.w_input.T + node.bias_input
    hp = previous_hidden(node, x) @ node.w_hidden.T + node.bias_hidden
    zr = xp[..., : 2 * hidden] + hp[..., : 2 * hidden]
    r = 1.0 / (1.0 + np.exp(-zr[..., hidden:]))
    candidate = xp[..., 2 * hidden :] + r * hp[..., 2 * hidden :]
    return np.concatenate([zr, xp[..., 2 * hidden :], hp[..., 2 * hidden :], candidate], -1)


def calibrate(deployment: Deployment, n_inputs: int = 512, seed: int = 0) -> Iterator[int]:
    """Fit every tile's per-row gains against its target weights; yields each core done.

    Inputs: random int8 (30 % zeros), half of them replaced by the layer's own typical
    inputs when :func:`use_calibration_data` has run."""
    if n_inputs < 16:
        raise LimitError(f"calibration needs at least 16 inputs, got {n_inputs}")
    if not deployment.learned:
        raise LimitError(
            "call use_calibration_data(x) first: partial-sum grids and typical layer "
            "inputs come from the float32 model on calibration samples"
        )
    for core, state in deployment.tiles.items():
        x = calibration_inputs(deployment, core, n_inputs, seed)
        p, n = raw_counts(deployment, [core], x[None])[0]
        fit_tile(deployment, core, x[:n_inputs], p[:n_inputs], n[:n_inputs])
        state.keep_fit()
        state.reference_inputs = x[n_inputs:]
        state.reference_outputs = state.calibrated(p[n_inputs:], n[n_inputs:])
        yield core


def calibration_inputs(deployment: Deployment, core: int, n_inputs: int, seed: int) -> np.ndarray:
    """The int8 calibration inputs of ``core`` (n_inputs + GDC_INPUTS, 256): random (30 %
    zeros), half of the first ``n_inputs`` the layer's typical inputs, the last GDC_INPUTS the
    GDC reference inputs; the same for the same (core, n_inputs, seed) and calibration data,
    so the host can run them again (:mod:`procedures.inference.recalibration`)."""
    state = deployment.tiles[core]
    cols = state.tile.shape[1] * state.replicas
    rng = np.random.default_rng([seed, core, 0xCA1B])
    x = np.zeros((n_inputs + GDC_INPUTS, CORE_COLS), np.int8)
    body = rng.integers(-127, 128, size=(x.shape[0], cols))
    body[rng.random(body.shape) < 0.3] = 0
    if state.data_codes is not None and state.data_codes.shape[0]:
        # Half the fit on the layer's own input distribution (from the float32 model on
        # calibration data), as it will run: a fit on random inputs alone misses the
        # ADC's behaviour at the currents real activations drive (one-phase above all).
        n_data = n_inputs // 2
        pick = rng.choice(state.data_codes.shape[0], n_data)
        body[:n_data] = np.tile(state.data_codes[pick], (1, state.replicas))
    x[:, :cols] = body
    return x


def fit_tile(
    deployment: Deployment, core: int, x: np.ndarray, positive: np.ndarray, negative: np.ndarray
) -> None:
    """Fit ``core``'s per-row gains and offset on inputs ``x`` (n, 256) and their raw counts
    against the target outputs W·x; sets the fit in use (drift factor 1)."""
    state = deployment.tiles[core]
    rows, cols = state.tile.shape
    cols *= state.replicas
    w = deployment.core_weights(core)[:rows, :cols].astype(np.float64)
    # Replicas see the same input at run time, so the fit targets their mean: W·x.
    t = x[:, :cols].astype(np.float64) @ w.T / state.replicas
    try:
        u_pos, u_neg, offset, _ = fit_adc(
            t, positive[:, :rows], negative[:, :rows], deployment.mvm_mode
        )
    except LimitError as exc:
        raise LimitError(f"core {core}: {exc}") from None
    for array, fitted in ((state.u_pos, u_pos), (state.u_neg, u_neg)):
        array[:] = 0.0
        array[:rows] = fitted
    state.offset[:] = 0.0
    state.offset[:rows] = offset
    used = np.abs(u_pos[np.isfinite(u_pos)])
    state.k = 1.0 / float(np.median(used)) if used.size and np.median(used) > 0 else 1.0
    state.alpha = 1.0
    deployment.stale = True
