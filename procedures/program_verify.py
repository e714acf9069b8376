"""The ``program`` procedure: program weight matrices onto cores and report how it went.

What it does per group of cores (``cores_per_group`` in lockstep): weights to conductance
targets (:mod:`procedures.programming.targets`), iterative program-and-verify
(:mod:`procedures.programming.iterative`), optionally GDP refinement
(:mod:`procedures.programming.gdp`); then per-core records (reads, cell errors, yield map,
Gmax) and a checkpoint, so a killed run resumes at the next group. The published method
[LG Methods p.7-8; chip.md §2a] and GDP [GDP] are described, with their sources, in those
modules.

The ``weights`` parameter (:func:`weight_layout`): a (256, 256) matrix goes onto every core of
``cores``; an (n_cores, 256, 256) stack gives each core its own; a matrix of any other shape
(e.g. 784×300, larger than one core) is split over the cores exactly as the inference executor
splits a layer (:func:`procedures.inference.mapping.split_matrix`, chip.md §2d): the fewest
equal tiles of at most 256×256, each zero-padded in the top-left corner of its core, row tile
by row tile, column tile by column tile, onto the cores in the order given. Too few cores is an
error naming how many the matrix needs; cores beyond the tiles are left untouched. Each core
gets its own Gmax and Wmax (max|W| of its tile) as in the executor; the tiling is in the run
file (stream ``tile`` and the results' ``tiling``).

Gmax (:meth:`ProgramVerify.g_max_for`): ``g_max_counts`` if given, else the mode's nominal Gmax
(80 ODP / 160 TDP [LG §IV]) lowered by one of two rules (:mod:`procedures.programming.gmax`):
``worst-case`` keeps every bit-line current under the ADC limit for full-scale inputs on every
column; ``workload`` keeps the ``gmax_quantile`` of the line currents that the given
``gmax_inputs`` drive under it (never below the worst case). ``auto`` (the default) is
``workload`` when ``gmax_inputs`` are given, else ``worst-case`` (the behaviour before the
workload rule). ``gmax_inputs`` are (n, columns of the matrix) int8 codes, checked before the
board; each core gets its tile's columns, zero-padded to 256. With inputs, the saturation they
cause is measured on each core after its group is programmed, and the chosen Gmax, the
worst-case Gmax and the saturated fraction are kept per core (streams ``g_max_worst_case`` and
``saturated_fraction``; results ``cores``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec
from procedures.base import declare as _p
from procedures.inference.mapping import MatrixMapping, Tile, TileSplit, place_tiles, split_matrix
from procedures.programming.gdp import GdpSettings, GdpState, gdp_refine, open_loop_program
from procedures.programming.gmax import G_MAX_RULES, saturated_fraction, workload_g_max
from procedures.programming.iterative import (
    YIELD_OK,
    CoreProgram,
    ProgramSettings,
    program_group,
)
from procedures.programming.targets import (
    CELL_SHAPE,
    COLS,
    DEVICE_SHAPE,
    G_MAX_ODP_COUNTS,
    G_MAX_TDP_COUNTS,
    US_PER_COUNT,
    line_limited_g_max,
)


@dataclass(frozen=True, eq=False)
class WeightLayout:
    """What each core gets of the ``weights`` parameter (:func:`weight_layout`).

    ``cores`` are the cores written, ``matrices`` their (256, 256) weights in that order;
    ``tiling`` is the split of a matrix spread over the cores (None: one matrix per core, as
    given), with its tiles in the order of ``cores``."""

    cores: tuple[int, ...]
    matrices: np.ndarray
    tiling: MatrixMapping | None = None
    unused: tuple[int, ...] = ()
    """Given cores a tiled matrix does not need (left untouched)."""

    def tile_of(self, core: int) -> Tile | None:
        """The tile ``core`` holds (None when the weights are not tiled)."""
        if self.tiling is None:
            return None
        return self.tiling.tiles[self.cores.index(core)]

    def describe(self) -> dict[str, Any]:
        """The tiling as the results keep it (JSON-able); {} when not tiled."""
        if self.tiling is None:
            return {}
        split = self.tiling.split
        return {
            "matrix_shape": [split.rows, split.cols],
            "tiles": [split.n_row_tiles, split.n_col_tiles],
            "tile_shape": [split.tile_rows, split.tile_cols],
            "cores": {
                str(t.core): {
                    "tile": [t.row_tile, t.col_tile],
                    "rows": [t.row_start, t.row_stop],
                    "cols": [t.col_start, t.col_stop],
                }
                for t in self.tiling.tiles
            },
            "cores_not_used": list(self.unused),
        }


def weight_layout(weights: np.ndarray, cores: Sequence[int]) -> WeightLayout:
    """Which (256, 256) weights each core of ``cores`` gets (see the module docstring).

    Raises LimitError for a shape that fits none of the three forms, or a matrix that needs
    more cores than given (naming how many)."""
    cores = tuple(int(c) for c in cores)
    w = np.asarray(weights)
    if w.shape == CELL_SHAPE:
        return WeightLayout(cores, np.broadcast_to(w, (len(cores), *CELL_SHAPE)))
    if w.ndim == 3 and w.shape == (len(cores), *CELL_SHAPE):
        return WeightLayout(cores, w)
    if w.ndim != 2 or 0 in w.shape:
        raise LimitError(
            f"parameter weights: shape {w.shape} is neither a matrix (rows, columns), tiled over "
            f"the cores if it is not (256, 256), nor ({len(cores)}, 256, 256) for "
            f"{len(cores)} core(s)"
        )
    split: TileSplit = split_matrix(*w.shape)
    if split.n_tiles > len(cores):
        raise LimitError(
            f"parameter weights: a {w.shape[0]}×{w.shape[1]} matrix is tiled into "
            f"{split.n_tiles} tiles of {split.tile_rows}×{split.tile_cols} "
            f"({split.n_row_tiles}×{split.n_col_tiles}) and needs {split.n_tiles} cores; "
            f"{len(cores)} given (--cores): give {split.n_tiles}, e.g. --cores "
            f"0-{split.n_tiles - 1}"
        )
    tiles = place_tiles(split, iter(cores))
    tiling = MatrixMapping("weights", "weight", w.astype(np.float32), split, tiles)
    matrices = np.stack([tiling.core_weights(t) for t in tiles])
    return WeightLayout(cores[: len(tiles)], matrices, tiling, cores[len(tiles) :])


INPUT_CODE_LIMIT = 127
"""Largest |input code| of an MVM: int8 without −128 [chip.md §1.4]."""
G_MAX_CHOICES = ("auto", *G_MAX_RULES)


def core_inputs(inputs: np.ndarray, layout: WeightLayout) -> np.ndarray:
    """Each core's slice of the ``gmax_inputs``, (n_cores, n, 256) int8 in the order of
    ``layout.cores``: a tiled matrix's core gets its tile's columns at the left of the core
    (where its weights are), zero elsewhere (zero inputs drive no current); an untiled core
    gets all 256 columns.

    Raises LimitError (naming ``gmax_inputs``, the shape expected and what to do) for an empty
    set, a shape that does not match the weights' columns, NaNs, non-integer values or codes
    outside −127..127; nothing is clipped."""
    x = np.asarray(inputs)
    if layout.tiling is None:
        n_cols, weights = COLS, "(256, 256) per core"
    else:
        n_cols = layout.tiling.split.cols
        weights = f"a {layout.tiling.split.rows}×{n_cols} matrix"
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != n_cols:
        what = "empty" if x.size == 0 else f"shape {x.shape}"
        raise LimitError(
            f"parameter gmax_inputs: {what}; expected (n, {n_cols}), one input vector per row "
            f"and one column per column of the weights ({weights})"
        )
    if not np.all(np.isfinite(x)):
        raise LimitError("parameter gmax_inputs: contains NaN or infinite values; give int8 codes")
    if not np.array_equal(x, np.rint(x)):
        example = float(x.ravel()[np.flatnonzero(x.ravel() != np.rint(x.ravel()))[0]])
        raise LimitError(
            f"parameter gmax_inputs: holds non-integer values (e.g. {example:g}); expected "
            f"int8 input codes, integers in -{INPUT_CODE_LIMIT}..{INPUT_CODE_LIMIT} (save them "
            "with dtype int8): quantize the inputs as the layer would, x·127/max|x|"
        )
    if np.abs(x).max() > INPUT_CODE_LIMIT:
        raise LimitError(
            f"parameter gmax_inputs: codes from {x.min():g} to {x.max():g}; expected int8 input "
            f"codes in -{INPUT_CODE_LIMIT}..{INPUT_CODE_LIMIT} (nothing is clipped: rescale them)"
        )
    codes = x.astype(np.int8)
    out = np.zeros((len(layout.cores), x.shape[0], COLS), np.int8)
    for k, core in enumerate(layout.cores):
        tile = layout.tile_of(core)
        if tile is None:
            out[k] = codes
        else:
            out[k, :, : tile.col_stop - tile.col_start] = codes[:, tile.col_start : tile.col_stop]
    return out


class ProgramVerify(Procedure):
    """Program weight matrices onto cores by program-and-verify (ODP/TDP), optionally GDP.

    Per core: Gmax (counts) = g_max_counts, or automatically 80 (ODP) / 160 (TDP) [LG §IV]
    lowered so no bit-line current exceeds ``line_current_limit_ua`` at full-scale inputs
    [LG Methods; chip.md §2d]; Wmax = max|W| of the core's matrix; G = W·Gmax/Wmax [LG Eq 1].
    """

    name: ClassVar[str] = "program"
    title: ClassVar[str] = "Program and verify"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        _p(
            "weights",
            None,
            "array",
            "1",
            "(256, 256) for every core, (n_cores, 256, 256), or any other (rows, columns): "
            "tiled over the cores like the inference executor (tiles of at most 256×256)",
        ),
        _p("cores", [0], "cores", "", "cores to program", minimum=0, maximum=63),
        _p("mode", "tdp", str, "", "one- or two-device programming [LG]", choices=("odp", "tdp")),
        _p("gdp", False, bool, "", "GDP refinement after iterative programming [GDP]"),
        _p("gdp_only", False, bool, "", "GDP instead of iterative programming [GDP]"),
        _p("tolerance_counts", 5.0, float, "counts", "verify tolerance [LG]", minimum=1e-3),
        _p(
            "max_iterations", 30, int, "1", "partial-pulse iterations [LG]", minimum=1, maximum=1000
        ),
        _p("g_max_counts", 0.0, float, "counts", "Gmax; 0 = automatic", minimum=0, maximum=4095),
        _p(
            "gmax",
            "auto",
            str,
            "",
            "automatic Gmax per core: for the gmax_inputs' line currents (workload) or for "
            "full-scale inputs (worst-case); auto = workload if gmax_inputs are given",
            choices=G_MAX_CHOICES,
        ),
        _p(
            "gmax_inputs",
            np.zeros((0, 0)),
            "array",
            "1",
            "(n, columns of the weights) int8 input codes the cores will see (-127..127); "
            "for the workload Gmax and the measured saturation",
        ),
        _p(
            "gmax_quantile",
            99.9,
            float,
            "%",
            "gmax_inputs kept under the line limit (gmax workload)",
            minimum=50.0,
            maximum=100.0,
        ),
        _p("line_current_limit_ua", 100.0, float, "uA", "bit-line limit [KA]", minimum=1.0),
        _p("mvm_mode", 4, int, "1", "MVM mode for the line-current limit", choices=(1, 4)),
        _p("us_per_count", US_PER_COUNT, float, "uS", "µS per count (UNCONFIRMED)", minimum=1e-4),
        _p("cores_per_group", 8, int, "1", "cores in lockstep", minimum=1, maximum=64),
        _p("seed", 0, int, "1", "seed of GDP's random inputs", minimum=0),
        _p("gdp_iterations", 4, int, "1", "GDP steps", minimum=1, maximum=100),
        _p("gdp_batch", 1024, int, "1", "GDP inputs per step", minimum=256, maximum=4096),
        _p("gdp_learning_rate", 0.7, float, "1", "GDP step fraction", minimum=0.01, maximum=1.5),
        _p("gdp_dead_band_counts", 1.0, float, "counts", "GDP dead band", minimum=0.0),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("fraction_converged", "iteration")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.layout = weight_layout(self.params["weights"], self.params["cores"])
        self.weights = self.layout.matrices
        given = np.asarray(self.params["gmax_inputs"])
        # The default (0, 0) means "no inputs"; any other array is checked as inputs.
        self.inputs = None if given.shape == (0, 0) else core_inputs(given, self.layout)
        self.g_max_rule = self._g_max_rule()
        cores = list(self.layout.cores)
        self.groups = [
            cores[i : i + self.params["cores_per_group"]]
            for i in range(0, len(cores), self.params["cores_per_group"])
        ]

    def _g_max_rule(self) -> str:
        """The Gmax rule in use: ``fixed`` (g_max_counts given), ``workload`` or ``worst-case``
        (``auto`` resolved by whether inputs are given); LimitError for a combination that
        cannot be honoured."""
        rule, has_inputs = self.params["gmax"], self.inputs is not None
        if self.params["g_max_counts"] > 0:
            if rule != "auto":
                raise LimitError(
                    f"parameter gmax {rule!r} chooses Gmax automatically, but g_max_counts "
                    f"{self.params['g_max_counts']:g} fixes it: give one of the two"
                )
            return "fixed"
        if rule == "workload" and not has_inputs:
            raise LimitError(
                "parameter gmax 'workload' needs the inputs the cores will see: give "
                "gmax_inputs (--gmax-inputs FILE.npy, (n, columns) int8 codes), or use "
                "--gmax worst-case"
            )
        if rule == "auto":
            return "workload" if has_inputs else "worst-case"
        return str(rule)

    @property
    def cores_written(self) -> tuple[int, ...]:
        """The cores that get weights: all given, or those a tiled matrix's tiles need."""
        return self.layout.cores

    @staticmethod
    def summary_text(results: Mapping[str, Any]) -> str:
        """How a tiled matrix was spread over the cores and, with ``gmax_inputs``, each core's
        Gmax against the worst case and the saturation measured ("" for neither)."""
        parts = [_tiling_text(results.get("tiling")), _gmax_text(results)]
        return "\n".join(part for part in parts if part)

    @property
    def uses_gdp(self) -> bool:
        """True if the run refines by GDP (``gdp`` or ``gdp_only``)."""
        return bool(self.params["gdp"] or self.params["gdp_only"])

    def settings(self) -> ProgramSettings:
        """The iterative programming settings from the parameters."""
        return ProgramSettings(
            tolerance_counts=self.params["tolerance_counts"],
            max_iterations=self.params["max_iterations"],
        )

    def gdp_settings(self) -> GdpSettings:
        """The GDP settings from the parameters."""
        return GdpSettings(
            iterations=self.params["gdp_iterations"],
            batch=self.params["gdp_batch"],
            learning_rate=self.params["gdp_learning_rate"],
            dead_band_counts=self.params["gdp_dead_band_counts"],
        )

    def streams(self) -> tuple[StreamSpec, ...]:
        per_core = (
            StreamSpec("core", (), "i2", "1", "core id of the per-core rows"),
            StreamSpec("conductance", DEVICE_SHAPE, "u2", "counts", "last read of every device"),
            StreamSpec("cell_error", CELL_SHAPE, "f4", "counts", "cell read − cell target"),
            StreamSpec(
                "yield_map", CELL_SHAPE, "u1", "1", "0 ok 1 stuck-high 2 weak 3 unconv 4 nofit"
            ),
            StreamSpec("g_max", (), "f4", "counts", "Gmax of the core"),
            StreamSpec("w_max", (), "f8", "1", "weight mapped to Gmax"),
            StreamSpec("converged_fraction", (), "f4", "1", "cells converged"),
            StreamSpec("iterations", (), "i4", "1", "iterations used"),
            StreamSpec("pulses", (), "i8", "1", "pulses sent to the core"),
        )
        live = (
            StreamSpec("group", (), "i4", "1", "group of the convergence row"),
            StreamSpec("iteration", (), "i4", "1", "iteration of the convergence row"),
            StreamSpec("fraction_converged", (), "f4", "1", "cells converged in the group"),
            StreamSpec("error_percentiles", (3,), "f4", "counts", "p50/p90/p99 of |cell error|"),
        )
        gdp = (
            StreamSpec("gdp_core", (), "i2", "1", "core of the GDP row"),
            StreamSpec("gdp_step", (), "i4", "1", "GDP step (0 = before GDP)"),
            StreamSpec("gdp_mvm_error", (), "f4", "1", "held-out ‖Y − Ŷ‖/‖Ŷ‖"),
        )
        tiling = (
            StreamSpec("tile", (6,), "i4", "1",
                       "row tile, column tile, rows start/stop, columns start/stop of the matrix"),
        )  # fmt: skip
        workload = (
            StreamSpec("g_max_worst_case", (), "f4", "counts", "Gmax of full-scale inputs"),
            StreamSpec("saturated_fraction", (), "f4", "1",
                       "gmax_inputs that saturate a conversion on the core (measured)"),
        )  # fmt: skip
        tiled = tiling if self.layout.tiling is not None else ()
        measured = workload if self.inputs is not None else ()
        return live + per_core + measured + tiled + (gdp if self.uses_gdp else ())

    def _units_per_group(self) -> int:
        iterative = 0 if self.params["gdp_only"] else self.params["max_iterations"] + 1
        return iterative + (self.params["gdp_iterations"] + 1 if self.uses_gdp else 0)

    def total(self) -> int:
        return len(self.groups) * self._units_per_group()

    def g_max_for(
        self, weights: np.ndarray, read_voltage_mv: float, inputs: np.ndarray | None = None
    ) -> tuple[float, float]:
        """Gmax of one core in counts by the run's rule (:meth:`_g_max_rule`), and the
        worst-case rule's Gmax for comparison; ``inputs`` are the core's (n, 256) codes."""
        base = G_MAX_ODP_COUNTS if self.params["mode"] == "odp" else G_MAX_TDP_COUNTS
        limits = {
            "g_max_counts": base,
            "mvm_mode": self.params["mvm_mode"],
            "line_current_limit_ua": self.params["line_current_limit_ua"],
            "read_voltage_mv": read_voltage_mv,
            "us_per_count": self.params["us_per_count"],
        }
        worst = line_limited_g_max(weights, **limits)
        if self.g_max_rule == "fixed":
            return float(self.params["g_max_counts"]), worst
        if self.g_max_rule == "workload":
            if inputs is None:
                raise LimitError("the workload Gmax rule needs the core's inputs")
            chosen = workload_g_max(
                weights, inputs, quantile=self.params["gmax_quantile"], **limits
            )
            return chosen, worst
        return worst, worst

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        done = int(resume_from["groups_done"]) if resume_from else 0
        self.results = dict(resume_from.get("results", {})) if resume_from else {}
        self.results.setdefault("cores", {})
        if self.layout.tiling is not None:
            self.results["tiling"] = self.layout.describe()
        self.results["gmax"] = {
            "rule": self.g_max_rule,
            "quantile": self.params["gmax_quantile"],
            "inputs": 0 if self.inputs is None else int(self.inputs.shape[1]),
        }
        start_time = board.status().uptime_s
        read_voltage_mv = float(board.mvm_read_voltage_mv)
        index = {core: k for k, core in enumerate(self.layout.cores)}
        per_group = self._units_per_group()
        for g in range(done, len(self.groups)):
            jobs = []
            for core in self.groups[g]:
                w = self.weights[index[core]]
                x = None if self.inputs is None else self.inputs[index[core]]
                g_max, g_max_worst_case = self.g_max_for(w, read_voltage_mv, x)
                w_max = float(np.abs(w).max()) or 1.0
                targets = (w * (g_max / w_max)).astype(np.float32)
                job = CoreProgram(core, targets, self.params["mode"], self.settings())
                job.g_max, job.w_max = g_max, w_max
                self.results["cores"].setdefault(str(core), {}).update(
                    g_max_rule=self.g_max_rule, g_max_worst_case_counts=g_max_worst_case
                )
                jobs.append(job)
            yield from self._program(board, g, jobs, g * per_group)
            if self.inputs is not None:
                self._measure_saturation(board, self.groups[g], index)
            yield from self._core_records(jobs)
            chip_time = board.status().uptime_s - start_time
            self.results["chip_time_s"] = chip_time + float(self.results.get("chip_time_s", 0.0))
            yield Checkpoint(
                {
                    "groups_done": g + 1,
                    "board_time_s": board.status().uptime_s,
                    "results": self.results,
                }
            )
            start_time = board.status().uptime_s
            yield Progress((g + 1) * per_group, self.total(), f"group {g + 1}/{len(self.groups)}")

    def _program(
        self, board: Board, group: int, jobs: list[CoreProgram], progress0: int
    ) -> Iterator[Progress | Data]:
        done = progress0
        if not self.params["gdp_only"]:
            for stats in program_group(board, jobs):
                self.check_stop()
                yield Data("group", np.int32(group))
                yield Data("iteration", np.int32(stats.iteration))
                yield Data("fraction_converged", np.float32(stats.fraction_converged))
                yield Data("error_percentiles", np.asarray(stats.error_percentiles, np.float32))
                done += 1
                p50, p90, p99 = stats.error_percentiles
                yield Progress(
                    done,
                    self.total(),
                    f"group {group + 1} it {stats.iteration}: {stats.fraction_converged:.1%} "
                    f"converged, |err| p50/p90/p99 {p50:.1f}/{p90:.1f}/{p99:.1f} counts",
                )
        if self.uses_gdp:
            yield from self._gdp(board, jobs, done)

    def _gdp(self, board: Board, jobs: list[CoreProgram], done: int) -> Iterator[Progress | Data]:
        settings = self.gdp_settings()
        if self.params["gdp_only"]:
            for job in jobs:
                open_loop_program(board, job, settings)
        states = [GdpState(job, settings, self.params["seed"]) for job in jobs]
        for step in gdp_refine(board, states):
            self.check_stop()
            for st in states:
                yield Data("gdp_core", np.int16(st.job.core))
                yield Data("gdp_step", np.int32(step))
                yield Data("gdp_mvm_error", np.float32(st.errors[-1]))
            yield Progress(done + step + 1, self.total(), f"GDP step {step}")
        for st in states:
            st.job.reads[:] = st.g_est
            self.results["cores"].setdefault(str(st.job.core), {})["gdp_mvm_error"] = st.errors

    def _measure_saturation(self, board: Board, cores: list[int], index: dict[int, int]) -> None:
        """Run each just-programmed core's inputs through it and keep the fraction that
        saturates a conversion (:func:`~procedures.programming.gmax.saturated_fraction`)."""
        assert self.inputs is not None
        x = self.inputs[[index[core] for core in cores]]
        fractions, spent = saturated_fraction(board, cores, x, self.params["mvm_mode"])
        for core, fraction in zip(cores, fractions, strict=True):
            self.results["cores"][str(core)]["saturated_fraction"] = float(fraction)
        self.results["saturation_core_mvms"] = spent + int(
            self.results.get("saturation_core_mvms", 0)
        )

    def _core_records(self, jobs: list[CoreProgram]) -> Iterator[Data]:
        for job in jobs:
            result = job.result()
            g_max, w_max = job.g_max, job.w_max
            yield Data("core", np.int16(job.core))
            yield Data("conductance", np.clip(np.rint(result.reads), 0, 65535).astype(np.uint16))
            yield Data("cell_error", job.cell_error().astype(np.float32))
            yield Data("yield_map", result.yield_map)
            yield Data("g_max", np.float32(g_max))
            yield Data("w_max", np.float64(w_max))
            yield Data("converged_fraction", np.float32(result.converged_fraction))
            yield Data("iterations", np.int32(result.iterations))
            yield Data("pulses", np.int64(result.pulses))
            summary = self.results["cores"].setdefault(str(job.core), {})
            if self.inputs is not None:
                yield Data("g_max_worst_case", np.float32(summary["g_max_worst_case_counts"]))
                yield Data("saturated_fraction", np.float32(summary["saturated_fraction"]))
            tile = self.layout.tile_of(job.core)
            if tile is not None:
                yield Data(
                    "tile",
                    np.array(
                        [tile.row_tile, tile.col_tile, tile.row_start, tile.row_stop,
                         tile.col_start, tile.col_stop],
                        np.int32,
                    ),
                )  # fmt: skip
            summary.update(
                converged_fraction=result.converged_fraction,
                iterations=result.iterations,
                pulses=result.pulses,
                g_max_counts=g_max,
                w_max=w_max,
                yield_fraction=float(np.mean(result.yield_map == YIELD_OK)),
            )


def _tiling_text(tiling: Mapping[str, Any] | None) -> str:
    """The summary lines of a tiled matrix ("" when not tiled)."""
    if not tiling:
        return ""
    rows, cols = tiling["matrix_shape"]
    n_r, n_c = tiling["tiles"]
    t_r, t_c = tiling["tile_shape"]
    lines = [
        f"a {rows}×{cols} matrix in {n_r * n_c} tiles of at most {t_r}×{t_c} "
        f"({n_r} row × {n_c} column tiles):"
    ]
    for core, tile in tiling["cores"].items():
        (r0, r1), (c0, c1) = tile["rows"], tile["cols"]
        lines.append(f"  core {core}: rows {r0}:{r1}, columns {c0}:{c1}")
    if tiling.get("cores_not_used"):
        unused = ", ".join(str(c) for c in tiling["cores_not_used"])
        lines.append(f"  not needed, left untouched: core(s) {unused}")
    return "\n".join(lines)


def _gmax_text(results: Mapping[str, Any]) -> str:
    """Per core: Gmax, the worst-case Gmax and the measured saturation ("" without inputs)."""
    gmax = results.get("gmax")
    if not gmax or not gmax.get("inputs"):
        return ""
    rule = gmax["rule"]
    how = f"{gmax['quantile']:g} % of" if rule == "workload" else "checked on"
    lines = [f"Gmax ({rule} rule, {how} {gmax['inputs']} input vectors):"]
    for core, summary in results.get("cores", {}).items():
        if "saturated_fraction" in summary:
            lines.append(
                f"  core {core}: {summary['g_max_counts']:.1f} counts (worst case "
                f"{summary['g_max_worst_case_counts']:.1f}), "
                f"{summary['saturated_fraction']:.1%} of the inputs saturate"
            )
    return "\n".join(lines)
