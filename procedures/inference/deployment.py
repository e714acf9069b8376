"""A network placed on the chip: the per-tile and per-layer state the executor's parts share.

:class:`Deployment` holds the board, the graph, its tile mapping, the int8 ranges and the digital
number format, one :class:`TileState` per programmed core (programming scale, calibration, drift
factor) and one :class:`LayerPlan` per analog layer (where its outputs go, its affine, its int8
grids). The operations on it live in their own modules (programming, calibration, streaming,
compensation); :class:`~procedures.inference.executor.ChipExecutor` puts them together.
[LG Methods p.9; chip.md §1.5, §2d; DESIGN.md "Inference executor"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from drivers.ldpu import ROWS
from procedures.inference.digital import NumberFormat
from procedures.inference.graph import Conv, Dense, Graph, GraphError, Gru, Lstm, Relu
from procedures.inference.mapping import (
    CORE_COLS,
    AnalogNode,
    LayerMapping,
    Mapping,
    MatrixMapping,
    Tile,
    analog_layers,
)
from procedures.inference.reference import check_ranges
from procedures.programming.gmax import G_MAX_RULES


@dataclass
class TileState:
    """One programmed core: its tile, programming scale, calibration and drift factor.

    ``u_pos``, ``u_neg``, ``offset``, ``k`` are the fit in use; ``fit_at_calibration`` keeps the
    one made right after programming (compensations that re-fit or rescale the rows start from
    it, and GDC measures against it)."""

    layer: str
    part: str
    tile: Tile
    g_max: float = 0.0
    g_max_worst_case: float = 0.0
    saturated_fraction: float = float("nan")
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
    fit_at_calibration: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None

    @property
    def core(self) -> int:
        """The core the tile sits on."""
        return self.tile.core

    def calibrated(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """u₊·P − u₋·N (without the offset), float64: W·x estimate in weight units × LSB."""
        return self.u_pos * positive.astype(np.float64) - self.u_neg * negative.astype(np.float64)

    def calibrated_at_calibration(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """:meth:`calibrated` with the fit made right after programming."""
        fit = self.fit_at_calibration
        if fit is None:
            return self.calibrated(positive, negative)
        return fit[0] * positive.astype(np.float64) - fit[1] * negative.astype(np.float64)

    def keep_fit(self) -> None:
        """Remember the fit in use as the one made at calibration."""
        self.fit_at_calibration = (
            self.u_pos.copy(), self.u_neg.copy(), self.offset.copy(), float(self.k)
        )  # fmt: skip

    def restore_fit(self) -> None:
        """Back to the fit made at calibration, drift factor 1."""
        if self.fit_at_calibration is not None:
            u_pos, u_neg, offset, k = self.fit_at_calibration
            self.u_pos[:], self.u_neg[:], self.offset[:] = u_pos, u_neg, offset
            self.k = k
        self.alpha = 1.0


def hidden_range(node: Lstm | Gru) -> float:
    """Range of a recurrent layer's hidden state h (its int8 grid is this/127): 1 for an LSTM
    (h = o·tanh(c), the GDPU's output grid); for a GRU h_t = (1 − z)·n + z·h_{t−1} with
    |n| < 1 stays within max(1, max|h_0|)."""
    if isinstance(node, Gru) and node.initial_h is not None and node.initial_h.size:
        return max(1.0, float(np.max(np.abs(node.initial_h))))
    return 1.0


@dataclass
class LayerPlan:
    """How one analog layer's outputs are produced and where they go."""

    mapping: LayerMapping
    node: AnalogNode
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
        return self.recurrent or any(mm.split.n_col_tiles > 1 for mm in m.matrices)

    @property
    def recurrent(self) -> bool:
        """An LSTM or GRU: input and hidden products summed per time step off-core."""
        return isinstance(self.node, Lstm | Gru)


class Deployment:
    """A :class:`Graph` placed on a board's cores: the state, checked before the board is used.

    Args:
        board: the board (any URL: simulator or hardware).
        graph: the network.
        mapping: its tile mapping (``map_graph``).
        ranges: int8 ranges of every tensor
            (:func:`~procedures.inference.calibration.tensor_ranges`).
        digital: the number format of the digital post-processing.
        mvm_mode: 1 or 4 (four-phase is the more accurate [LG p.3]).
        batch: inputs per MVM frame and core (the frame limit may lower it). 8192 rather than
            2048 cuts the MNIST-1D CNN's MVM calls from 91 to 25 per 1000 inferences at the
            same simulated speed (fewer round trips is what a real link's latency needs).
        max_replicas: most copies of a narrow tile across the core's unused columns (1 = no
            replication; see :mod:`procedures.inference.tile_programming`).
        min_g_max_fraction: fewer copies when more would push the line-limited Gmax below this
            fraction of the mode's Gmax.
        g_max_rule: ``"workload"`` (Gmax from the layer's inputs on calibration data) or
            ``"worst-case"`` (full-scale inputs on every column); see
            :mod:`procedures.inference.tile_programming`.
        g_max_quantile: percentile of the calibration inputs whose bit-line currents the
            workload rule keeps under the limit.

    Attributes:
        tiles: the state of every programmed core, by core.
        plans: the plan of every analog layer, by node name.
        fused: nodes done inside an analog layer's LDPU (folded batch norms, fused ReLUs).
        stale: the board's LDPU coefficients are out of date (reloaded before the next forward
            pass on the board's LDPU).
        learned: the calibration data has been seen (partial-sum grids, typical inputs).
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
        batch: int = 8192,
        max_replicas: int = 64,
        min_g_max_fraction: float = 0.5,
        g_max_rule: str = "workload",
        g_max_quantile: float = 99.9,
    ) -> None:
        if mvm_mode not in (1, 4):
            raise LimitError(f"MVM mode must be 1 or 4, got {mvm_mode}")
        if g_max_rule not in G_MAX_RULES:
            raise LimitError(
                f"Gmax rule must be one of {', '.join(G_MAX_RULES)}, got {g_max_rule!r}"
            )
        if not 0 < g_max_quantile <= 100:
            raise LimitError(f"Gmax quantile must be in (0, 100] %, got {g_max_quantile}")
        n_cores = board.identity.n_cores
        outside = [c for c in mapping.cores_used if c >= n_cores]
        if outside:
            raise LimitError(f"the mapping uses cores {outside}, the board has {n_cores}")
        check_ranges(graph, ranges, list(graph.shapes))
        missing = [
            f"{n.name}.gates"
            for n in analog_layers(graph)
            if isinstance(n, Gru) and f"{n.name}.gates" not in ranges
        ]
        if missing:
            raise GraphError(f"activation ranges missing for {missing} (tensor_ranges adds them)")
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
        self.g_max_rule = g_max_rule
        self.g_max_quantile = float(g_max_quantile)
        self.tiles: dict[int, TileState] = {}
        for lm in mapping.layers:
            for mm in lm.matrices:
                for tile in mm.tiles:
                    self.tiles[tile.core] = TileState(lm.node, mm.part, tile)
        self.plans = {lm.node: self._plan(lm) for lm in mapping.layers}
        self.fused = self._fused_nodes()
        self.stale = True
        self.learned = False

    def lsb(self, tensor: str) -> float:
        """int8 step of ``tensor``."""
        return self.ranges[tensor] / 127.0

    def _plan(self, lm: LayerMapping) -> LayerPlan:
        node = self.graph.node(lm.node)
        assert isinstance(node, Dense | Conv | Lstm | Gru)
        output, relu = lm.output, False
        consumers = self.graph.consumers(output)
        if (
            not isinstance(node, Lstm | Gru)
            and len(consumers) == 1
            and isinstance(consumers[0], Relu)
            and output != self.graph.output_name
        ):
            output, relu = consumers[0].output, True
        if isinstance(node, Lstm | Gru):
            in_lsb = {"input": self.lsb(node.inputs[0]), "hidden": hidden_range(node) / 127.0}
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

    def core_weights(self, core: int) -> np.ndarray:
        """The (256, 256) float32 weights programmed on ``core``: the tile, its columns repeated
        ``replicas`` times side by side, zero-padded."""
        state = self.tiles[core]
        w = self.matrix(state).core_weights(state.tile)
        rows, cols = state.tile.shape
        for j in range(1, state.replicas):
            w[:rows, j * cols : (j + 1) * cols] = w[:rows, :cols]
        return w

    def matrix(self, state: TileState) -> MatrixMapping:
        """The mapped matrix (layer and part) that ``state``'s tile is cut from."""
        return self.mapping.layer(state.layer).matrix(state.part)
