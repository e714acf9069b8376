"""Mapping a :class:`~procedures.inference.graph.Graph` onto the chip's 64 cores of 256×256.

[LG Methods p.9; chip.md §2d]:

* Every analog layer's crossbar matrix (rows = outputs on the bit lines / ADCs, columns =
  inputs on the PWM source lines) is split into the **fewest equal-size tiles** with both sides
  ≤ 256: n_r = ⌈rows/256⌉ row tiles of ⌈rows/n_r⌉ rows and n_c = ⌈cols/256⌉ column tiles of
  ⌈cols/n_c⌉ columns, the last tile of each axis zero-padded (chip.md's example: 2016×224 →
  8 tiles of 252×224). Each tile sits in the top-left corner of its core; the rest of the core is
  zero (0 weight = both polarities RESET).
  Dense: W (out, in). Conv: unrolled (c_out, c_in·Πk), one MVM per output position.
  LSTM: the input matrix (4H, I) and the hidden matrix (4H, H) are mapped separately (their
  MVMs are summed vertically through the LDPUs, chip.md §2d) with the gate rows **interleaved**
  I, A, F, O across groups of 4 neighbouring bit lines (row 4j + g = gate g of unit j,
  chip.md §1.6); their row tiles hold whole groups of 4 (≤ 64 hidden units per core, one GDPU
  slice).
  GRU: the input matrix (3H, I) and the hidden matrix (3H, H), rows gate-major Z, R, N as in the
  graph, mapped separately like the LSTM's. Both emit partial sums that stay apart: the reset
  gate multiplies the recurrent product R_n·h + b_Rn before the tanh (``linear_before_reset``,
  PyTorch's form), which the GDPU's fixed LSTM cell cannot compute (chip.md §1.6), so the gates
  and element-wise products run on the host (:func:`procedures.inference.streaming.forward`).
* Tiles go to cores in this order: layers in graph order; within a layer its matrices (Dense /
  Conv: ``weight``; LSTM, GRU: ``input`` then ``hidden``); within a matrix row tile by row tile, and
  within a row tile column tile by column tile; cores in increasing id from the given list
  (default 0..63). A model that needs more cores than given is a :class:`MappingError` saying
  how many more.
* The per-output-row affine of the LDPU (chip.md §1.5) carries the bias and, where the layer's
  only consumer is a BatchNorm, that batch norm folded in: y = a·(W·x) + b with
  a = γ/√(σ² + ε) and b = a·(bias − μ) + β. (The weights are *not* rescaled, so AdaBS can
  recompute μ, σ² later and reload only the affine, chip.md §2c.)
* Partial sums of the column tiles of one row tile are added in the aggregating LDPU (float16);
  that is the executor's business, recorded here only as the tile layout.

:meth:`Mapping.estimate` gives on-chip time and energy per inference from the published figures
(chip.md §1.8, [LG Tab I]); see :class:`CostEstimate` for the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from procedures.inference.gdpu import N_GATES, SLICE_UNITS, interleave_gates
from procedures.inference.graph import BatchNorm, Conv, Dense, Graph, GraphError, Gru, Lstm

AnalogNode = Dense | Conv | Lstm | Gru
"""The node types whose matrices go onto the cores."""

CORES = 64
"""Cores on the chip [LG EDT I]."""
CORE_ROWS = CORE_COLS = 256
"""Crossbar size of one core [LG EDT I]."""

MVM_LATENCY_S = {1: 133e-9, 4: 520e-9}
"""One MVM on a core, 1-phase / 4-phase [LG Tab I; chip.md §1.8]."""
MVM_ENERGY_J = {1: 0.86e-6 / CORES, 4: 3.38e-6 / CORES}
"""MVM-only energy per core-MVM, derived from the full-chip MVM energy (≈ 13.4 / 53 nJ)
[LG Tab I; chip.md §1.8]."""
LAYER_STEP_LATENCY_S = {1: 1131e-9, 4: 1518e-9}
"""One layer step (MVM + LDPU + links), ResNet-9 deep layer on 8 cores [LG Tab I]."""
LAYER_STEP_ENERGY_PER_CORE_J = {1: 0.97e-6 / 8, 4: 1.51e-6 / 8}
"""Energy of one layer step per core incl. LDPU and links (ResNet-9 layer, 8 cores) [LG Tab I]."""
LSTM_STEP_LATENCY_S = {1: 1043e-9, 4: 1430e-9}
"""One LSTM time step incl. GDPU (32 cores) [LG Tab I]."""
LSTM_STEP_ENERGY_PER_CORE_J = {1: 3.46e-6 / 32, 4: 5.24e-6 / 32}
"""Energy of one LSTM time step per core incl. GDPU (32 cores) [LG Tab I]."""


class MappingError(GraphError):
    """A network that cannot be mapped (too many cores, bad tile request)."""


@dataclass(frozen=True)
class TileSplit:
    """The fewest equal-size tiles of a (rows, cols) matrix with both sides within the limits."""

    rows: int
    cols: int
    n_row_tiles: int
    n_col_tiles: int
    tile_rows: int
    tile_cols: int

    @property
    def n_tiles(self) -> int:
        """Number of tiles (= cores)."""
        return self.n_row_tiles * self.n_col_tiles

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(rows, cols) of the matrix after zero-padding to whole tiles."""
        return self.n_row_tiles * self.tile_rows, self.n_col_tiles * self.tile_cols


def split_matrix(
    rows: int,
    cols: int,
    *,
    max_rows: int = CORE_ROWS,
    max_cols: int = CORE_COLS,
    row_multiple: int = 1,
) -> TileSplit:
    """Fewest equal-size tiles (chip.md §2d): n = ⌈size/max⌉ per axis, tile = ⌈size/n⌉.

    ``row_multiple`` makes tile rows a multiple of it (4 for LSTM gate groups); ``max_rows`` must
    then be a multiple too.
    """
    for name, value in (("rows", rows), ("cols", cols), ("max_rows", max_rows)):
        if int(value) != value or value < 1:
            raise MappingError(f"{name} must be a positive integer, got {value}")
    if max_cols < 1 or row_multiple < 1 or max_rows % row_multiple or rows % row_multiple:
        raise MappingError(
            f"bad split request: rows {rows}, max_rows {max_rows}, max_cols {max_cols}, "
            f"row_multiple {row_multiple}"
        )
    groups, max_groups = rows // row_multiple, max_rows // row_multiple
    n_r = math.ceil(groups / max_groups)
    n_c = math.ceil(cols / max_cols)
    return TileSplit(
        rows=rows,
        cols=cols,
        n_row_tiles=n_r,
        n_col_tiles=n_c,
        tile_rows=math.ceil(groups / n_r) * row_multiple,
        tile_cols=math.ceil(cols / n_c),
    )


@dataclass(frozen=True)
class Tile:
    """One tile on one core: rows [row_start, row_stop) and columns [col_start, col_stop) of
    the mapped matrix, placed at rows/columns 0.. of the core (the rest zero-padded)."""

    core: int
    row_tile: int
    col_tile: int
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    @property
    def shape(self) -> tuple[int, int]:
        """Used (unpadded) rows and columns."""
        return self.row_stop - self.row_start, self.col_stop - self.col_start


def place_tiles(split: TileSplit, cores: Iterator[int]) -> tuple[Tile, ...]:
    """The tiles of ``split`` in allocation order (row tiles outer), each on the next core."""
    return tuple(
        Tile(
            core=next(cores),
            row_tile=r,
            col_tile=c,
            row_start=r * split.tile_rows,
            row_stop=min((r + 1) * split.tile_rows, split.rows),
            col_start=c * split.tile_cols,
            col_stop=min((c + 1) * split.tile_cols, split.cols),
        )
        for r in range(split.n_row_tiles)
        for c in range(split.n_col_tiles)
    )


@dataclass(frozen=True, eq=False)
class MatrixMapping:
    """One crossbar matrix of a layer as mapped: ``matrix`` (rows, cols) float32 in mapped row
    order (LSTM rows interleaved), its split, and its tiles in allocation order."""

    layer: str
    part: str
    matrix: np.ndarray
    split: TileSplit
    tiles: tuple[Tile, ...]

    @property
    def cores(self) -> tuple[int, ...]:
        """Cores of the tiles, in allocation order."""
        return tuple(t.core for t in self.tiles)

    def core_weights(self, tile: Tile) -> np.ndarray:
        """The (256, 256) float32 weights to program for ``tile`` (zero-padded)."""
        out = np.zeros((CORE_ROWS, CORE_COLS), np.float32)
        block = self.matrix[tile.row_start : tile.row_stop, tile.col_start : tile.col_stop]
        out[: block.shape[0], : block.shape[1]] = block
        return out

    def assemble(self, per_tile: Sequence[np.ndarray]) -> np.ndarray:
        """Rebuild the (rows, cols) matrix from per-tile (256, 256) arrays (e.g. read-back
        effective weights), inverse of :meth:`core_weights`."""
        if len(per_tile) != len(self.tiles):
            raise MappingError(f"{self.layer}/{self.part}: expected {len(self.tiles)} tiles")
        out = np.zeros(self.matrix.shape, np.float64)
        for tile, array in zip(self.tiles, per_tile, strict=True):
            r, c = tile.shape
            out[tile.row_start : tile.row_stop, tile.col_start : tile.col_stop] = array[:r, :c]
        return out


@dataclass(frozen=True, eq=False)
class LayerMapping:
    """How one analog layer sits on the chip.

    ``affine_scale``/``affine_offset`` (rows of the first matrix, mapped order) are the LDPU
    per-channel affine: bias and folded batch norm (``folded_batchnorm`` names it; ``output`` is
    then the batch norm's output tensor, else the layer's). ``steps`` is the number of MVM steps
    per inference: 1 (Dense), output positions (Conv), time steps (LSTM). ``row_order`` maps
    mapped row r to the layer's own row ``row_order[r]`` (identity except LSTM: interleaved).
    """

    node: str
    op: str
    matrices: tuple[MatrixMapping, ...]
    affine_scale: np.ndarray
    affine_offset: np.ndarray
    folded_batchnorm: str | None
    output: str
    steps: int
    row_order: np.ndarray

    @property
    def cores(self) -> tuple[int, ...]:
        """Cores of all the layer's tiles, in allocation order."""
        return tuple(c for m in self.matrices for c in m.cores)

    @property
    def n_tiles(self) -> int:
        """Number of tiles (= cores) of the layer."""
        return sum(len(m.tiles) for m in self.matrices)

    def matrix(self, part: str) -> MatrixMapping:
        """The mapped matrix ``part`` ("weight"; LSTM, GRU: "input", "hidden")."""
        for m in self.matrices:
            if m.part == part:
                return m
        raise MappingError(f"layer {self.node!r} has no matrix {part!r}")


@dataclass(frozen=True)
class CostEstimate:
    """On-chip time and energy per inference from [LG Tab I] (chip.md §1.8).

    With L_s the steps of layer s (1 for Dense, output positions for Conv, time steps for LSTM)
    and n_s its tiles (cores):

    * core_mvms = Σ_s n_s·L_s;
    * energy_mvm_j = core_mvms · E_mvm (E_mvm = 0.86 µJ/64 ≈ 13.4 nJ 1-phase, 3.38 µJ/64 ≈ 53 nJ
      4-phase): the MVM-only figure the chip's TOPS/W counts;
    * energy_j = Σ_s n_s·L_s·E_step/core, with E_step/core = 0.97/8 µJ (1-phase), 1.51/8 µJ
      (4-phase) for Dense/Conv (ResNet-9 layer incl. LDPU and links) and 3.46/32 µJ, 5.24/32 µJ
      for LSTM steps (incl. GDPU); a GRU step counts as a layer step (no GDPU; its gates on the
      host are not counted);
    * time_s = Σ_s L_s·t_step, t_step = 1131 / 1518 ns (layer incl. LDPU + links) or 1043 /
      1430 ns (LSTM step): tiles of a layer run in parallel, layers and positions one after the
      other, no pipelining, and the off-chip activation traffic through the FPGA is excluded.
    """

    mode: int
    core_mvms: int
    time_s: float
    energy_mvm_j: float
    energy_j: float
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Mapping:
    """The whole network on the chip: ``layers`` in graph order."""

    layers: tuple[LayerMapping, ...]
    available_cores: tuple[int, ...]

    @property
    def cores_used(self) -> tuple[int, ...]:
        """Every core holding a tile, in allocation order."""
        return tuple(c for layer in self.layers for c in layer.cores)

    def layer(self, node: str) -> LayerMapping:
        """The mapping of the analog layer called ``node``."""
        for layer in self.layers:
            if layer.node == node:
                return layer
        raise MappingError(f"no mapped layer {node!r}")

    def core_table(self) -> dict[int, tuple[str, str, Tile]]:
        """core → (layer, matrix part, tile)."""
        return {
            t.core: (m.layer, m.part, t) for lm in self.layers for m in lm.matrices for t in m.tiles
        }

    def estimate(self, mode: int = 4) -> CostEstimate:
        """Time and energy per inference (see :class:`CostEstimate`)."""
        if mode not in MVM_LATENCY_S:
            raise MappingError(f"MVM mode must be 1 or 4, got {mode}")
        total_mvms, time_s, e_mvm, e_all = 0, 0.0, 0.0, 0.0
        per_layer: dict[str, dict[str, float]] = {}
        for layer in self.layers:
            lstm = layer.op == Lstm.op
            mvms = layer.n_tiles * layer.steps
            t = layer.steps * (LSTM_STEP_LATENCY_S if lstm else LAYER_STEP_LATENCY_S)[mode]
            e_step = (LSTM_STEP_ENERGY_PER_CORE_J if lstm else LAYER_STEP_ENERGY_PER_CORE_J)[mode]
            per_layer[layer.node] = {
                "core_mvms": float(mvms),
                "time_s": t,
                "energy_mvm_j": mvms * MVM_ENERGY_J[mode],
                "energy_j": mvms * e_step,
            }
            total_mvms += mvms
            time_s += t
            e_mvm += mvms * MVM_ENERGY_J[mode]
            e_all += mvms * e_step
        return CostEstimate(mode, total_mvms, time_s, e_mvm, e_all, per_layer)


def fold_batchnorm(
    graph: Graph, node: Dense | Conv
) -> tuple[np.ndarray, np.ndarray, BatchNorm | None]:
    """Per-output-row affine (scale, offset) float32 of a Dense/Conv layer, with the following
    BatchNorm folded in when it is the layer's only consumer and the layer output is not the
    graph output; also returns that BatchNorm (or None)."""
    rows = int(node.weight.shape[0])
    bias = np.zeros(rows) if node.bias is None else node.bias.astype(np.float64)
    consumers = graph.consumers(node.output)
    if (
        len(consumers) == 1
        and isinstance(consumers[0], BatchNorm)
        and node.output != graph.output_name
    ):
        bn = consumers[0]
        a, b = bn.affine()
        return a.astype(np.float32), (a * bias + b).astype(np.float32), bn
    return np.ones(rows, np.float32), bias.astype(np.float32), None


def map_graph(graph: Graph, *, cores: Sequence[int] | None = None) -> Mapping:
    """Tile every analog layer and allocate the tiles to ``cores`` (default 0..63) in the
    documented order; MappingError when they do not fit."""
    available = tuple(range(CORES)) if cores is None else tuple(int(c) for c in cores)
    if len(set(available)) != len(available) or any(not 0 <= c < CORES for c in available):
        raise MappingError(f"cores must be distinct ids in 0..{CORES - 1}, got {list(available)}")
    plans: list[tuple[AnalogNode, list[tuple[str, np.ndarray, TileSplit]]]] = []
    for node in analog_layers(graph):
        if isinstance(node, Lstm):
            # Gate rows interleaved, whole groups of 4 per tile (one GDPU slice per 64 units).
            mats = [
                (part, interleave_gates(m.T).T)
                for part, m in (("input", node.w_input), ("hidden", node.w_hidden))
            ]
            lstm_split = {"max_rows": SLICE_UNITS * N_GATES, "row_multiple": N_GATES}
            plans.append((node, [(p, m, split_matrix(*m.shape, **lstm_split)) for p, m in mats]))
        elif isinstance(node, Gru):
            if not node.linear_before_reset:
                raise MappingError(
                    f"node {node.name!r} (GRU): linear_before_reset = 0 puts the reset gate "
                    "before the recurrent product (R_n·(r ⊙ h)), a second hidden MVM per step "
                    "that the executor does not map; export with linear_before_reset = 1 "
                    "(PyTorch's nn.GRU does)"
                )
            mats = [("input", node.w_input), ("hidden", node.w_hidden)]
            plans.append((node, [(p, m, split_matrix(*m.shape)) for p, m in mats]))
        else:
            m = node.weight if isinstance(node, Dense) else node.matrix
            plans.append((node, [("weight", m, split_matrix(*m.shape))]))
    needed = sum(s.n_tiles for _, parts in plans for _, _, s in parts)
    if needed > len(available):
        detail = ", ".join(
            f"{node.name}: {sum(s.n_tiles for _, _, s in parts)}" for node, parts in plans
        )
        raise MappingError(
            f"the model needs {needed} cores but only {len(available)} are available "
            f"({needed - len(available)} short; tiles per layer: {detail})"
        )
    next_core = iter(available)
    layers = []
    for node, parts in plans:
        matrices = []
        for part, matrix, split in parts:
            tiles = place_tiles(split, next_core)
            frozen = np.array(matrix, np.float32)
            frozen.setflags(write=False)
            matrices.append(MatrixMapping(node.name, part, frozen, split, tiles))
        layers.append(_layer(graph, node, tuple(matrices)))
    return Mapping(tuple(layers), available)


def analog_layers(graph: Graph) -> list[AnalogNode]:
    """The layers whose matrices go onto the cores (Dense, Conv, LSTM, GRU), in graph order."""
    return [n for n in graph.nodes if isinstance(n, Dense | Conv | Lstm | Gru)]


def _layer(graph: Graph, node: AnalogNode, matrices: tuple[MatrixMapping, ...]) -> LayerMapping:
    if isinstance(node, Gru):
        rows = 3 * node.hidden_size
        assert node.bias_input is not None and node.bias_hidden is not None
        input_side = node.bias_input.astype(np.float64).copy()
        input_side[: 2 * node.hidden_size] += node.bias_hidden[: 2 * node.hidden_size]
        return LayerMapping(
            node=node.name,
            op=node.op,
            matrices=matrices,
            affine_scale=np.ones(rows, np.float32),
            affine_offset=input_side.astype(np.float32),
            folded_batchnorm=None,
            output=node.output,
            steps=graph.shapes[node.inputs[0]][0],
            row_order=np.arange(rows),
        )
    if isinstance(node, Lstm):
        rows = N_GATES * node.hidden_size
        order = interleave_gates(np.arange(rows))
        assert node.bias is not None
        return LayerMapping(
            node=node.name,
            op=node.op,
            matrices=matrices,
            affine_scale=np.ones(rows, np.float32),
            affine_offset=node.bias[order].astype(np.float32),
            folded_batchnorm=None,
            output=node.output,
            steps=graph.shapes[node.inputs[0]][0],
            row_order=order,
        )
    scale, offset, bn = fold_batchnorm(graph, node)
    steps = math.prod(graph.shapes[node.output][1:]) if isinstance(node, Conv) else 1
    return LayerMapping(
        node=node.name,
        op=node.op,
        matrices=matrices,
        affine_scale=scale,
        affine_offset=offset,
        folded_batchnorm=None if bn is None else bn.name,
        output=node.output if bn is None else bn.output,
        steps=steps,
        row_order=np.arange(node.weight.shape[0]),
    )
