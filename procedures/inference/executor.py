"""Run a mapped network on the chip: program the tiles, calibrate them, stream activations.

[LG Methods p.9; chip.md §1.5, §1.6, §2b, §2c, §2d; DESIGN.md "Inference executor"].

**Programming.** Each tile (``procedures.inference.mapping``) is programmed by
program-and-verify (``procedures.program_verify``) with its own Wmax = max|W_tile| and Gmax per
core: 80 (ODP) or 160 (TDP) counts, lowered so no bit-line current exceeds 100 µA at full-scale
inputs in the chosen MVM mode (:func:`~procedures.program_verify.line_limited_g_max`). Cores
are programmed in lockstep groups.

**Replication** (ours, on by default). A tile narrower than half a core is repeated
r = ⌊256/cols⌋ times side by side and its input vector with it; the LDPU divides by r (inside
the calibrated gain). The signal grows r-fold, programming errors of the copies average out
(÷√r) and the output-referred read noise and ADC errors shrink relative to the signal. Gmax is
then set by the line-current limit for the replicated matrix. Costs nothing: same cores, same
MVMs. (A first layer of 5 inputs had a 27 % output error without it.)

**Calibration** (per tile, right after programming). ``calibration_inputs`` random int8 inputs
(30 % zeros, [LG §IV]) on the tile's used columns, raw counts P, N; per used row a least-squares
fit of the *target* output t = W_tile·x (weight units × input LSB) on the counts,
t ≈ u₊·P − u₋·N + o (four-phase: u₊ = u₋), as the calibration procedure does against read-back
conductances (:func:`procedures.calibrate.fit_adc`). Fitting against the targets folds each
row's ADC gain and its mean programming gain into one per-channel factor: the per-ADC and
per-channel corrections of chip.md §2b in one step. The same fit gives the reference outputs
R₀ of 64 fixed inputs for global drift compensation.

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
the float32 model on calibration data (:func:`activation_ranges`). Residual adds, pooling,
unfolded batch norm and unfused ReLU run on the host in the digital format; layer-to-layer
activations leave the chip through the FPGA anyway [LG §V]. LSTM gate pre-activations go to the
GDPU model (``procedures.inference.gdpu``) as int8.

**Digital format.** ``float16`` uses the board's LDPU (``mvm(output="ldpu")``, int8 out);
``fixed`` asks for raw counts and runs the same chain on the host in fixed point
(:mod:`procedures.inference.digital`), as the near-memory unit of [NMPU] would.

**Drift compensation.** GDC (global drift compensation [JO Methods E], per core on the chip
[LG p.5]): per tile α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩ over the 64 reference inputs' calibrated outputs,
merged into the affine scale. AdaBS [JO §II-E, Methods F]: GDC, then the batch-norm statistics
of every layer with a folded batch norm are re-estimated from calibration mini-batches through
the chip (momentum p = 0.015^(1/n) over n batches, γ and β kept), and the new affine loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from drivers.ldpu import ROWS, LdpuCoefficients
from procedures.calibrate import fit_adc
from procedures.inference.digital import NumberFormat, int8_round
from procedures.inference.gdpu import (
    GdpuLstmCell,
    deinterleave_gates,
    interleave_gates,
    quantise_int8,
)
from procedures.inference.graph import (
    BatchNorm,
    Conv,
    Dense,
    Graph,
    Lstm,
    Node,
    Relu,
)
from procedures.inference.mapping import (
    CORE_COLS,
    LayerMapping,
    Mapping,
    MatrixMapping,
    Tile,
)
from procedures.inference.reference import _gate_range as gate_range
from procedures.inference.reference import check_ranges, forward_tensors, lstm_float, run_node
from procedures.program_verify import (
    G_MAX_ODP_COUNTS,
    G_MAX_TDP_COUNTS,
    CoreProgram,
    GdpSettings,
    GdpState,
    IterationStats,
    ProgramSettings,
    gdp_refine,
    line_limited_g_max,
    program_group,
)

GDC_INPUTS = 64
"""Fixed random inputs per tile whose outputs give the drift factor α̂."""
ADABS_MOMENTUM_BASE = 0.015
"""AdaBS running-statistics momentum p = 0.015^(1/n) over n batches [JO Methods F]."""
LINE_CURRENT_LIMIT_UA = 100.0
"""Bit-line current limit of the row ADC [KA §III-D; chip.md §1.4]."""


# -- activation ranges --------------------------------------------------------------------------


def tensor_ranges(graph: Graph, x: np.ndarray, percentile: float = 100.0) -> dict[str, float]:
    """int8 range (the ``percentile`` of |value|, float units) of *every* tensor of ``graph``
    over calibration inputs ``x``, plus ``"<lstm>.gates"`` for LSTM gate pre-activations.
    Zero ranges become 1."""
    if not 0 < percentile <= 100:
        raise LimitError(f"range percentile must be in (0, 100], got {percentile}")
    values = forward_tensors(graph, x)
    ranges = {k: float(np.percentile(np.abs(v), percentile)) for k, v in values.items()}
    for node in graph.weight_nodes():
        if isinstance(node, Lstm):
            ranges[f"{node.name}.gates"] = gate_range(node, values[node.inputs[0]], percentile)
    return {k: (v if v > 0 else 1.0) for k, v in ranges.items()}


# -- per-tile state -----------------------------------------------------------------------------


@dataclass
class TileState:
    """One programmed core: its tile, programming scale, calibration and drift factor."""

    layer: str
    part: str
    tile: Tile
    g_max: float = 0.0
    w_max: float = 1.0
    u_pos: np.ndarray = field(default_factory=lambda: np.zeros(ROWS))
    u_neg: np.ndarray = field(default_factory=lambda: np.zeros(ROWS))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(ROWS))
    k: float = 1.0
    reference_inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, CORE_COLS), np.int8))
    reference_outputs: np.ndarray = field(default_factory=lambda: np.zeros((0, ROWS)))
    alpha: float = 1.0
    partial_lsb: float = 1.0
    replicas: int = 1
    data_codes: np.ndarray | None = None
    converged_fraction: float = 0.0
    iterations: int = 0
    pulses: int = 0

    @property
    def core(self) -> int:
        """The core the tile sits on."""
        return self.tile.core

    def calibrated(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """u₊·P − u₋·N (without the offset), float64: W·x estimate in weight units × LSB."""
        return self.u_pos * positive.astype(np.float64) - self.u_neg * negative.astype(np.float64)


@dataclass
class LayerPlan:
    """How one analog layer's outputs are produced and where they go."""

    mapping: LayerMapping
    node: Dense | Conv | Lstm
    output: str
    relu: bool
    scale: np.ndarray
    offset: np.ndarray
    out_lsb: float
    in_lsb: dict[str, float]

    @property
    def partial(self) -> bool:
        """Whether the layer's tiles emit partial sums added off-core."""
        m = self.mapping
        return m.op == Lstm.op or any(mm.split.n_col_tiles > 1 for mm in m.matrices)


# -- the executor -------------------------------------------------------------------------------


class ChipExecutor:
    """A :class:`Graph` deployed on a board's cores.

    Args:
        board: the board (any URL: simulator or hardware).
        graph: the network.
        mapping: its tile mapping (``map_graph``).
        ranges: int8 ranges of every tensor (:func:`tensor_ranges`).
        digital: the number format of the digital post-processing.
        mvm_mode: 1 or 4 (four-phase is the more accurate [LG p.3]).
        batch: inputs per MVM frame and core (the frame limit may lower it).
        max_replicas: most copies of a narrow tile across the core's unused columns (1 = no
            replication; see the module docstring).
        min_g_max_fraction: fewer copies when more would push the line-limited Gmax below this
            fraction of the mode's Gmax.
    """

    def __init__(
        self,
        board: Board,
        graph: Graph,
        mapping: Mapping,
        ranges: dict[str, float],
        digital: NumberFormat,
        *,
        mvm_mode: int = 4,
        batch: int = 2048,
        max_replicas: int = 64,
        min_g_max_fraction: float = 0.5,
    ) -> None:
        if mvm_mode not in (1, 4):
            raise LimitError(f"MVM mode must be 1 or 4, got {mvm_mode}")
        n_cores = board.identity.n_cores
        outside = [c for c in mapping.cores_used if c >= n_cores]
        if outside:
            raise LimitError(f"the mapping uses cores {outside}, the board has {n_cores}")
        check_ranges(graph, ranges, list(graph.shapes))
        self.board = board
        self.graph = graph
        self.mapping = mapping
        self.ranges = ranges
        self.digital = digital
        self.mvm_mode = mvm_mode
        self.batch = batch
        if not (max_replicas >= 1 and 0 <= min_g_max_fraction <= 1):
            raise LimitError(
                f"max_replicas must be >= 1 and min_g_max_fraction in [0, 1], got "
                f"{max_replicas}, {min_g_max_fraction}"
            )
        self.max_replicas = int(max_replicas)
        self.min_g_max_fraction = float(min_g_max_fraction)
        self.tiles: dict[int, TileState] = {}
        for lm in mapping.layers:
            for mm in lm.matrices:
                for tile in mm.tiles:
                    self.tiles[tile.core] = TileState(lm.node, mm.part, tile)
        self.plans = {lm.node: self._plan(lm) for lm in mapping.layers}
        self._skip = self._fused_nodes()
        self._dirty = True
        self._learned = False

    # ---- plans ------------------------------------------------------------------------------

    def lsb(self, tensor: str) -> float:
        """int8 step of ``tensor``."""
        return self.ranges[tensor] / 127.0

    def _plan(self, lm: LayerMapping) -> LayerPlan:
        node = self.graph.node(lm.node)
        assert isinstance(node, Dense | Conv | Lstm)
        output, relu = lm.output, False
        consumers = self.graph.consumers(output)
        if (
            not isinstance(node, Lstm)
            and len(consumers) == 1
            and isinstance(consumers[0], Relu)
            and output != self.graph.output_name
        ):
            output, relu = consumers[0].output, True
        if isinstance(node, Lstm):
            in_lsb = {"input": self.lsb(node.inputs[0]), "hidden": 1.0 / 127.0}
            out_lsb = self.ranges[f"{node.name}.gates"] / 127.0
        else:
            in_lsb = {"weight": self.lsb(node.inputs[0])}
            out_lsb = self.lsb(output)
        return LayerPlan(
            mapping=lm,
            node=node,
            output=output,
            relu=relu,
            scale=lm.affine_scale.astype(np.float64),
            offset=lm.affine_offset.astype(np.float64),
            out_lsb=out_lsb,
            in_lsb=in_lsb,
        )

    def _fused_nodes(self) -> set[str]:
        """Nodes done inside an analog layer's LDPU: folded batch norms and fused ReLUs."""
        skip: set[str] = set()
        for plan in self.plans.values():
            if plan.mapping.folded_batchnorm:
                skip.add(plan.mapping.folded_batchnorm)
            if plan.relu:
                skip.add(self.graph.consumers(plan.mapping.output)[0].name)
        return skip

    def use_calibration_data(
        self, x: np.ndarray, percentile: float = 100.0, *, max_rows: int = 4096
    ) -> None:
        """Learn from calibration inputs ``x`` (float32 model, no board): the partial-sum
        grids lsb_ps of tiles that emit partial sums, and each tile's typical int8 input
        vectors, which :meth:`calibrate` mixes into its fit."""
        values = forward_tensors(self.graph, x)
        rng = np.random.default_rng(0xDA7A)
        for plan in self.plans.values():
            for mm in plan.mapping.matrices:
                inputs = self._software_inputs(plan.node, mm.part, values)
                codes = quantise_int8(inputs, plan.in_lsb[mm.part])
                if codes.shape[0] > max_rows:
                    codes = codes[rng.choice(codes.shape[0], max_rows, replace=False)]
                for tile in mm.tiles:
                    cols = slice(tile.col_start, tile.col_stop)
                    state = self.tiles[tile.core]
                    state.data_codes = codes[:, cols].astype(np.int8)
                    if not plan.partial:
                        continue
                    ps = inputs[:, cols] @ mm.matrix[tile.row_start : tile.row_stop, cols].T
                    top = float(np.percentile(np.abs(ps), percentile)) if ps.size else 0.0
                    state.partial_lsb = (top if top > 0 else 1.0) / 127.0
        self._learned = True
        self._dirty = True

    def _software_inputs(
        self, node: Dense | Conv | Lstm, part: str, values: dict[str, np.ndarray]
    ) -> np.ndarray:
        x = values[node.inputs[0]]
        if isinstance(node, Conv):
            return node.unroll(x).reshape(-1, node.matrix.shape[1])
        if isinstance(node, Dense):
            return x
        if part == "input":
            return x.reshape(-1, node.input_size)
        hs: list[np.ndarray] = []
        seq = Lstm(
            node.name,
            node.inputs,
            node.output,
            w_input=node.w_input,
            w_hidden=node.w_hidden,
            bias=node.bias,
            return_sequences=True,
        )
        hs.append(np.zeros((x.shape[0], 1, node.hidden_size), np.float32))
        hs.append(lstm_float(seq, x)[:, :-1])
        return np.concatenate(hs, axis=1).reshape(-1, node.hidden_size)

    # ---- programming ------------------------------------------------------------------------

    def program(
        self,
        mode: str = "tdp",
        settings: ProgramSettings | None = None,
        *,
        group_size: int = 8,
        cores: Sequence[int] | None = None,
        gdp: GdpSettings | None = None,
        seed: int = 0,
    ) -> Iterator[tuple[list[int], IterationStats]]:
        """Program the tiles (all, or those on ``cores``) in lockstep groups; yields (group
        cores, stats) after every iteration (and every GDP step when ``gdp`` is given; their
        iteration numbers continue the program-and-verify ones)."""
        if mode not in ("odp", "tdp"):
            raise LimitError(f"programming mode must be 'odp' or 'tdp', got {mode!r}")
        settings = settings or ProgramSettings()
        base = G_MAX_ODP_COUNTS if mode == "odp" else G_MAX_TDP_COUNTS
        read_mv = float(self.board.mvm_read_voltage_mv)
        order = list(self.tiles) if cores is None else [int(c) for c in cores]
        for start in range(0, len(order), group_size):
            jobs = []
            for core in order[start : start + group_size]:
                state = self.tiles[core]
                state.replicas, state.g_max = self._replicas_and_g_max(state, base, read_mv)
                w = self.core_weights(core)
                state.w_max = float(np.abs(w).max()) or 1.0
                targets = (w * (state.g_max / state.w_max)).astype(np.float32)
                jobs.append(CoreProgram(core, targets, mode, settings))
            group = [job.core for job in jobs]
            last = None
            for last in program_group(self.board, jobs):
                yield group, last
            if gdp is not None and last is not None:
                states = [GdpState(job, gdp, seed) for job in jobs]
                for step in gdp_refine(self.board, states):
                    yield (
                        group,
                        IterationStats(
                            last.iteration + step, last.fraction_converged, last.error_percentiles
                        ),
                    )
            for job in jobs:
                result = job.result()
                state = self.tiles[job.core]
                state.converged_fraction = result.converged_fraction
                state.iterations = result.iterations
                state.pulses = result.pulses

    def _replicas_and_g_max(
        self, state: TileState, base: float, read_mv: float
    ) -> tuple[int, float]:
        """Most copies (≤ the replication limit) whose line-limited Gmax stays at or above
        ``min_g_max_fraction``·base, and that Gmax."""
        cols = state.tile.shape[1]
        for replicas in range(self._copies(cols), 0, -1):
            state.replicas = replicas
            g_max = line_limited_g_max(
                self.core_weights(state.core),
                g_max_counts=base,
                mvm_mode=self.mvm_mode,
                line_current_limit_ua=LINE_CURRENT_LIMIT_UA,
                read_voltage_mv=read_mv,
            )
            if g_max >= self.min_g_max_fraction * base or replicas == 1:
                return replicas, g_max
        raise AssertionError("unreachable")

    def _copies(self, cols: int) -> int:
        return max(1, min(self.max_replicas, CORE_COLS // cols))

    def core_weights(self, core: int) -> np.ndarray:
        """The (256, 256) float32 weights programmed on ``core``: the tile, its columns repeated
        ``replicas`` times side by side, zero-padded."""
        state = self.tiles[core]
        w = self._matrix(state).core_weights(state.tile)
        rows, cols = state.tile.shape
        for j in range(1, state.replicas):
            w[:rows, j * cols : (j + 1) * cols] = w[:rows, :cols]
        return w

    def _matrix(self, state: TileState) -> MatrixMapping:
        return self.mapping.layer(state.layer).matrix(state.part)

    # ---- calibration ------------------------------------------------------------------------

    def calibrate(self, n_inputs: int = 512, seed: int = 0) -> Iterator[int]:
        """Fit every tile's per-row gains against its target weights; yields each core done.

        Inputs: random int8 (30 % zeros), half of them replaced by the layer's own typical
        inputs when :meth:`use_calibration_data` has run."""
        if n_inputs < 16:
            raise LimitError(f"calibration needs at least 16 inputs, got {n_inputs}")
        if not self._learned:
            raise LimitError(
                "call use_calibration_data(x) first: partial-sum grids and typical layer "
                "inputs come from the float32 model on calibration samples"
            )
        for core, state in self.tiles.items():
            rows, cols = state.tile.shape
            cols *= state.replicas
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
            counts = self._raw([core], x[None])[0]
            p, n = counts
            w = self.core_weights(core)[:rows, :cols].astype(np.float64)
            # Replicas see the same input at run time, so the fit targets their mean: W·x.
            t = body[:n_inputs].astype(np.float64) @ w.T / state.replicas
            u_pos, u_neg, offset, _ = fit_adc(
                t, p[:n_inputs, :rows], n[:n_inputs, :rows], self.mvm_mode
            )
            for array, fitted in ((state.u_pos, u_pos), (state.u_neg, u_neg)):
                array[:] = 0.0
                array[:rows] = fitted
            state.offset[:] = 0.0
            state.offset[:rows] = offset
            used = np.abs(u_pos[np.isfinite(u_pos)])
            state.k = 1.0 / float(np.median(used)) if used.size and np.median(used) > 0 else 1.0
            state.reference_inputs = x[n_inputs:]
            state.reference_outputs = state.calibrated(p[n_inputs:], n[n_inputs:])
            state.alpha = 1.0
            self._dirty = True
            yield core

    def mark_calibrated(self) -> None:
        """Calibration set from outside (a resumed run): coefficients must be loaded again."""
        self._learned = True
        self._dirty = True

    # ---- drift compensation ---------------------------------------------------------------------

    def drift_factors(self) -> dict[int, float]:
        """α̂ per core from the reference inputs (GDC readout), without changing anything."""
        cores = list(self.tiles)
        x = np.stack([self.tiles[c].reference_inputs for c in cores])
        counts = self._raw(cores, x)
        factors = {}
        for core, (p, n) in zip(cores, counts, strict=True):
            state = self.tiles[core]
            r0 = state.reference_outputs
            r = state.calibrated(p, n)
            energy = float(np.sum(r0 * r0))
            # A tile whose reference outputs are all zero has nothing to measure drift by.
            factors[core] = float(np.sum(r * r0) / energy) if energy > 0 else 1.0
        return factors

    def compensate(self, method: str) -> dict[int, float]:
        """Set the drift factors: "none" (α = 1), "gdc" (α̂ per core); returns them."""
        if method == "none":
            factors = dict.fromkeys(self.tiles, 1.0)
        elif method == "gdc":
            factors = self.drift_factors()
        else:
            raise LimitError(f"compensation must be 'none' or 'gdc' here, got {method!r}")
        for core, alpha in factors.items():
            if not (math.isfinite(alpha) and alpha > 0):
                raise LimitError(f"core {core}: drift factor {alpha} is not positive")
            self.tiles[core].alpha = alpha
        self._dirty = True
        return factors

    def adapt_batchnorm(self, batches: Sequence[np.ndarray]) -> dict[str, float]:
        """AdaBS: re-estimate the folded batch norms from ``batches`` through the chip.

        Returns the relative change of the mean affine scale per adapted layer.
        """
        adapted = [p for p in self.plans.values() if p.mapping.folded_batchnorm]
        if not adapted or not batches:
            return {}
        momentum = ADABS_MOMENTUM_BASE ** (1.0 / len(batches))
        stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for plan in adapted:
            bn = self.graph.node(plan.mapping.folded_batchnorm or "")
            assert isinstance(bn, BatchNorm)
            stats[plan.mapping.node] = (bn.mean.astype(np.float64), bn.var.astype(np.float64))

        def observe(plan: LayerPlan, pre: np.ndarray) -> None:
            # pre: (samples, channels) pre-BN outputs W·x + bias measured through the chip.
            name = plan.mapping.node
            mean, var = stats[name]
            batch_mean = pre.mean(axis=0)
            batch_var = pre.var(axis=0)
            mean = momentum * mean + (1 - momentum) * batch_mean
            var = momentum * var + (1 - momentum) * batch_var
            stats[name] = (mean, var)
            self._set_batchnorm(plan, mean, var)

        before = {p.mapping.node: float(np.mean(np.abs(p.scale))) for p in adapted}
        for x in batches:
            self.forward(x, observe=observe)
        return {
            name: float(np.mean(np.abs(self.plans[name].scale)) / before[name] - 1.0)
            for name in before
        }

    def _set_batchnorm(self, plan: LayerPlan, mean: np.ndarray, var: np.ndarray) -> None:
        bn = self.graph.node(plan.mapping.folded_batchnorm or "")
        assert isinstance(bn, BatchNorm)
        a = bn.scale.astype(np.float64) / np.sqrt(var + bn.epsilon)
        # mean is that of W·x + bias, so b = β − a·mean already carries the bias.
        plan.scale = a
        plan.offset = bn.bias.astype(np.float64) - a * mean
        self._dirty = True

    def reset_batchnorm(self) -> None:
        """Back to the software batch-norm statistics (undo AdaBS)."""
        for plan in self.plans.values():
            plan.scale = plan.mapping.affine_scale.astype(np.float64)
            plan.offset = plan.mapping.affine_offset.astype(np.float64)
        self._dirty = True

    # ---- LDPU coefficients ------------------------------------------------------------------

    def coefficients(self, core: int) -> LdpuCoefficients:
        """The LDPU coefficients of ``core`` for the current calibration, drift factor and
        affine (see the module docstring)."""
        state = self.tiles[core]
        plan = self.plans[state.layer]
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

    def load(self) -> None:
        """Load every tile's LDPU coefficients onto the board."""
        for core in self.tiles:
            self.board.load_ldpu(core, self.coefficients(core))
        self._dirty = False

    # ---- MVMs -------------------------------------------------------------------------------

    def _chunk(self, n_cores: int, raw: bool) -> int:
        limit = self.board.identity.max_payload - 64
        per_input = n_cores * ROWS * (4 if raw else 1)
        return max(1, min(self.batch, limit // per_input))

    def _raw(self, cores: list[int], x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw counts per core for inputs x (cores, batch, 256)."""
        step = self._chunk(len(cores), True)
        parts_p, parts_n = [], []
        for s in range(0, x.shape[1], step):
            counts = self.board.mvm(cores, x[:, s : s + step], mode=self.mvm_mode, output="raw")
            parts_p.append(counts.positive)
            parts_n.append(counts.negative)
        p = np.concatenate(parts_p, axis=1)
        n = np.concatenate(parts_n, axis=1)
        return [(p[i], n[i]) for i in range(len(cores))]

    def _tile_outputs(
        self, cores: list[int], x: np.ndarray, *, use_board_ldpu: bool
    ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]] | None]:
        """int8 outputs per core (int8 from the board's LDPU, float64 from the host's) for inputs
        (cores, batch, 256); with raw counts also returned when the host computes the chain."""
        if use_board_ldpu:
            step = self._chunk(len(cores), False)
            outs = [
                self.board.mvm(cores, x[:, s : s + step], mode=self.mvm_mode, output="ldpu")
                for s in range(0, x.shape[1], step)
            ]
            # int8 kept as is: callers take the tile's used rows only (numpy converts those)
            q = np.concatenate(outs, axis=1)
            return [q[i] for i in range(len(cores))], None
        counts = self._raw(cores, x)
        return [
            self.digital.ldpu(self.coefficients(c), p, n)
            for c, (p, n) in zip(cores, counts, strict=True)
        ], counts

    def _layer_mvm(
        self,
        plan: LayerPlan,
        part: str,
        codes: np.ndarray,
        *,
        host: bool = False,
        observe: Callable[[LayerPlan, np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """One matrix of an analog layer on int8 input codes (samples, cols).

        Returns the int8 output codes (samples, rows) of a whole layer, or, for a partial
        layer, the summed partial values (float, units of W·x). ``host`` computes the LDPU
        chain on the host from raw counts; ``observe`` (AdaBS, whole layers) sees the pre-BN
        outputs before the final coefficients are applied.
        """
        mm = plan.mapping.matrix(part)
        cores = [t.core for t in mm.tiles]
        x = np.zeros((len(cores), codes.shape[0], CORE_COLS), np.int8)
        for i, tile in enumerate(mm.tiles):
            width = tile.shape[1]
            for j in range(self.tiles[tile.core].replicas):
                x[i, :, j * width : (j + 1) * width] = codes[:, tile.col_start : tile.col_stop]
        outputs, counts = self._tile_outputs(cores, x, use_board_ldpu=not host)
        rows_total = mm.matrix.shape[0]
        if observe is not None and counts is not None and not plan.partial:
            pre = np.zeros((codes.shape[0], rows_total))
            for tile, (p, n) in zip(mm.tiles, counts, strict=True):
                state = self.tiles[tile.core]
                r = tile.shape[0]
                value = (state.calibrated(p, n)[:, :r] + state.offset[:r]) / state.alpha
                pre[:, tile.row_start : tile.row_stop] = value * plan.in_lsb[part]
            observe(plan, pre + _bias(plan.node, rows_total))
            outputs = [
                self.digital.ldpu(self.coefficients(c), p, n)
                for c, (p, n) in zip(cores, counts, strict=True)
            ]
        if not plan.partial:
            out = np.zeros((codes.shape[0], rows_total))
            for tile, q in zip(mm.tiles, outputs, strict=True):
                out[:, tile.row_start : tile.row_stop] = q[:, : tile.shape[0]]
            return out
        total = np.zeros((codes.shape[0], rows_total))
        fmt = self.digital
        # The sums live on the grid of the finest partial sum they add (the tensor they belong
        # to: W·x in float units), not on the layer output's grid.
        grid = min(self.tiles[t.core].partial_lsb for t in mm.tiles)
        for tile, q in zip(mm.tiles, outputs, strict=True):
            lsb = self.tiles[tile.core].partial_lsb
            block = total[:, tile.row_start : tile.row_stop]
            block[:] = fmt.value(block + q[:, : tile.shape[0]].astype(np.float64) * lsb, grid)
        return total

    def _finish_partial(self, plan: LayerPlan, total: np.ndarray) -> np.ndarray:
        """Affine, ReLU and int8 of summed partials (samples, rows): int8 codes."""
        fmt = self.digital
        scale = fmt.coefficient(plan.scale)
        offset = fmt.coefficient(plan.offset)
        y = fmt.value(fmt.value(total * scale, plan.out_lsb) + offset, plan.out_lsb)
        return int8_round(y / plan.out_lsb, plan.relu)

    # ---- forward ----------------------------------------------------------------------------

    def forward(
        self,
        x: np.ndarray,
        *,
        observe: Callable[[LayerPlan, np.ndarray], None] | None = None,
        keep: bool = False,
    ) -> dict[str, np.ndarray]:
        """Run a batch through the chip; returns the output tensor (float, dequantised) under
        the graph's output name, and with ``keep`` every tensor.

        ``observe(plan, pre)`` (AdaBS) sees each batch-norm-folded layer's pre-BN outputs and
        may change the plan's affine before the layer's outputs are formed (host LDPU).
        """
        g = self.graph
        values: dict[str, np.ndarray] = {g.input_name: g.prepare_input(x).astype(np.float64)}
        if self._dirty and self.digital.name == "float16" and observe is None:
            self.load()
        for node in g.nodes:
            if node.name in self._skip:
                continue
            if node.name in self.plans:
                plan = self.plans[node.name]
                values[plan.output] = self._analog(plan, values[node.inputs[0]], observe)
            else:
                values[node.output] = self._digital_node(node, [values[t] for t in node.inputs])
        if keep:
            return values
        return {g.output_name: values[g.output_name]}

    def _analog(
        self,
        plan: LayerPlan,
        x: np.ndarray,
        observe: Callable[[LayerPlan, np.ndarray], None] | None,
    ) -> np.ndarray:
        node = plan.node
        host = self.digital.name != "float16" or observe is not None
        if isinstance(node, Lstm):
            return self._lstm(plan, x, host)
        obs = observe if plan.mapping.folded_batchnorm else None
        codes = quantise_int8(x, plan.in_lsb["weight"])
        n = x.shape[0]
        positions = 1
        flat = codes
        if isinstance(node, Conv):
            unrolled = node.unroll(codes.astype(np.float32))
            positions = unrolled.shape[1]
            flat = unrolled.reshape(n * positions, -1).astype(np.int16)
        result = self._layer_mvm(plan, "weight", flat, host=host, observe=obs)
        if plan.partial:
            if obs is not None:
                obs(plan, result + _bias(node, result.shape[1]))
            result = self._finish_partial(plan, result)
        y = result * plan.out_lsb
        if isinstance(node, Conv):
            out_shape = self.graph.shapes[node.output]
            y = np.moveaxis(y.reshape(n, positions, out_shape[0]), 2, 1).reshape(n, *out_shape)
        return y

    def _lstm(self, plan: LayerPlan, x: np.ndarray, host: bool) -> np.ndarray:
        node = plan.node
        assert isinstance(node, Lstm)
        n, steps, _ = x.shape
        cell = GdpuLstmCell(node.hidden_size, (plan.out_lsb,) * 4)
        codes = quantise_int8(x, plan.in_lsb["input"]).reshape(n * steps, -1)
        projected = self._layer_mvm(plan, "input", codes, host=host).reshape(n, steps, -1)
        state = cell.initial_state(n)
        h = np.zeros((n, node.hidden_size), np.int16)
        outs = []
        offset = self.digital.coefficient(plan.offset)  # mapped (interleaved) order
        for t in range(steps):
            hidden = self._layer_mvm(plan, "hidden", h, host=host)
            total = self.digital.value(projected[:, t] + hidden, plan.out_lsb)
            gates = self.digital.value(total + offset, plan.out_lsb)
            q = int8_round(gates / plan.out_lsb).clip(-127, 127).astype(np.int8)
            h8, state = cell.step(q, state)
            h = h8.astype(np.int16)
            outs.append(h.astype(np.float64) * cell.h_lsb)
        return np.stack(outs, axis=1) if node.return_sequences else outs[-1]

    def _digital_node(self, node: Node, inputs: list[np.ndarray]) -> np.ndarray:
        """A non-analog node on the host in the digital format."""
        y = run_node(node, [v.astype(np.float32) for v in inputs]).astype(np.float64)
        return self.digital.value(y, self.lsb(node.output))


def _bias(node: Dense | Conv | Lstm, rows: int) -> np.ndarray:
    bias = getattr(node, "bias", None)
    return np.zeros(rows) if bias is None else np.asarray(bias, np.float64)


__all__ = [
    "ChipExecutor",
    "LayerPlan",
    "TileState",
    "deinterleave_gates",
    "interleave_gates",
    "quantise_int8",
    "tensor_ranges",
]
