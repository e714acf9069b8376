"""Neural-network inference on the chip, with accuracy over drift time [LG §V; JO; chip.md §2c-e].

Steps (see :mod:`procedures.inference.executor` for the data path):

1. Validate: map the network onto the given cores (a clear error when it does not fit, before
   anything reaches the board), take int8 activation ranges from the float32 model on
   calibration samples, and score the float32 and the int8-digital software models on the test
   samples.
2. Program every tile by program-and-verify (ODP or TDP; optional GDP refinement), in lockstep
   groups of cores.
3. Calibrate every tile against its target weights (per-row gains, GDC reference outputs).
4. For each drift time (time since the end of programming, e.g. 25 s, 1 h, 1 d; the virtual
   clock of a simulated board is advanced, a real board is waited for) and each compensation
   (``none``; ``gdc`` global drift compensation per core; ``gdc-column`` per output row;
   ``adabs`` GDC plus each layer's per-channel affine re-estimated through the chip on
   calibration mini-batches; ``recal`` every tile's LDPU rows re-fitted on its calibration
   inputs: :mod:`procedures.inference.compensation`, :mod:`procedures.inference.recalibration`),
   stream the test samples through the cores and score them.

Gmax per core (``gmax``): from the layer's own inputs on the calibration samples (``workload``,
the ``gmax_quantile`` of them under the bit-line limit) or for full-scale inputs
(``worst-case``); the saturation the chosen Gmax gives is measured on the chip after
programming (:mod:`procedures.programming.gmax`).

Records: the core allocation (one row per core: Gmax, the worst-case rule's Gmax, measured
saturation), programming convergence, one accuracy row per
(drift time, compensation) (the mean of ``repeats`` passes over the test samples, each with its
own read noise; every pass in the results), per-layer output error against the float32 model
on the first batch, and in the results the accuracies, the estimated on-chip time and energy
per inference ([LG Tab I] via :meth:`~procedures.inference.mapping.Mapping.estimate`) and
the measured throughput through the board link.

The network and the data come in as objects: :class:`Infer` takes a
:class:`~procedures.inference.graph.Graph` and :class:`InferenceData`; ``chipctl.inference``
subclasses it to load an ONNX file and a named data set from the ``model``/``dataset``
parameters (procedures never read files).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError, LimitError
from procedures.base import (
    Checkpoint,
    Data,
    Parameter,
    Procedure,
    Progress,
    StreamSpec,
    parse_duration,
)
from procedures.base import declare as _p
from procedures.inference.calibration import GDC_INPUTS, tensor_ranges
from procedures.inference.compensation import COMPENSATIONS, ChannelStatistics
from procedures.inference.data import (
    InferenceData,
    apply_input_layout,
    check_model_against_data,
)
from procedures.inference.digital import number_format
from procedures.inference.executor import ChipExecutor
from procedures.inference.graph import Graph, Gru, Lstm
from procedures.inference.mapping import CostEstimate, map_graph
from procedures.inference.reference import forward, forward_quantised, forward_tensors
from procedures.programming.gdp import GdpSettings
from procedures.programming.gmax import G_MAX_RULES
from procedures.programming.iterative import ProgramSettings

FINGERPRINT_CELLS = 128
"""Devices per core read to recognise a programmed chip on resume."""
ROWS = 256
PROGRESS_BATCH = 250
"""Test samples per progress step."""


def parse_durations(text: str) -> list[tuple[str, float]]:
    """``"25s,1h,1d"`` → [("25s", 25.0), ("1h", 3600.0), ("1d", 86400.0)], sorted by time;
    units s, m/min, h, d, w (bare numbers are seconds). Durations must be > 0 and distinct."""
    items = []
    for part in str(text).split(","):
        label = part.strip()
        try:
            seconds = parse_duration(label)
        except ValueError:
            raise LimitError(f"drift time {label!r} is not a duration like 25s, 1h, 1d") from None
        if not seconds > 0:
            raise LimitError(f"drift time {label!r} must be > 0")
        items.append((label, seconds))
    seconds_seen = [s for _, s in items]
    if len(set(seconds_seen)) != len(seconds_seen):
        raise LimitError(f"drift times repeat: {text!r}")
    return sorted(items, key=lambda item: item[1])


def parse_compensations(text: str) -> list[str]:
    """``"none,gdc,adabs"`` → the list, each one of :data:`COMPENSATIONS`, no repeats."""
    names = [p.strip() for p in str(text).split(",")]
    bad = [n for n in names if n not in COMPENSATIONS]
    if bad or not names:
        raise LimitError(f"compensation {bad} unknown; choose from {', '.join(COMPENSATIONS)}")
    if len(set(names)) != len(names):
        raise LimitError(f"compensations repeat: {text!r}")
    return names


class Infer(Procedure):
    """Inference of a network on the chip: software vs chip accuracy over drift time."""

    name: ClassVar[str] = "infer"
    title: ClassVar[str] = "Neural-network inference"
    resumable: ClassVar[bool] = True
    resume_streams: ClassVar[tuple[str, ...]] = (
        "cal_core",
        "cal_fit",
        "gdc_inputs",
        "gdc_outputs",
        "core",
        "replicas",
        "g_max",
        "g_max_worst_case",
        "saturated_fraction",
    )
    """Streams a resumed run gets back: the per-tile calibration (too large for a checkpoint)
    and the allocation rows (a tile's copies decide its input vectors)."""
    parameters: ClassVar[tuple[Parameter, ...]] = (
        _p("model", "mnist1d_cnn", str, "", "model: a shipped model name or an ONNX file"),
        _p(
            "dataset",
            "mnist1d",
            str,
            "",
            "data set: digits (test 359 of 1,797, 80/20 permutation seed 0; NOT the usual "
            "split), digits-stratified (test 540, train_test_split test_size=0.3 stratify=y "
            "random_state=0), mnist1d (the package's 4,000 train / 1,000 test), or FILE.npz "
            "with arrays x, y and optional x_cal (without x_cal, calibration-samples rows of x "
            "calibrate and are not scored; docs/inference.md)",
        ),
        _p(
            "input_layout",
            "",
            str,
            "",
            "axis order of the data's samples where it differs from the model's input: "
            "SRC->DST letters (HWC->CHW, NLC->NCL) or channels-last; empty: as given",
        ),
        _p("drift", "25s,1h,1d", str, "", "times after programming to evaluate at (s/m/h/d/w)"),
        _p(
            "compensation",
            "none,gdc,adabs",
            str,
            "",
            "drift compensations to compare, of: none, gdc (per core), gdc-column (per output "
            "row), adabs (per-channel affine through the chip), recal (re-fit the LDPU rows)",
        ),
        _p(
            "mode",
            "tdp",
            str,
            "",
            "programming: one or two devices per polarity",
            choices=("odp", "tdp"),
        ),
        _p("gdp", False, bool, "", "refine programming by gradient-descent programming"),
        _p(
            "gmax",
            "workload",
            str,
            "",
            "Gmax per core: the calibration inputs' line currents or full-scale inputs",
            choices=G_MAX_RULES,
        ),
        _p(
            "gmax_quantile",
            99.9,
            float,
            "%",
            "calibration inputs kept under the line limit (gmax workload)",
            minimum=50.0,
            maximum=100.0,
        ),
        _p("mvm_mode", 4, int, "", "MVM mode: 1- or 4-phase", choices=(1, 4)),
        _p("digital", "float16", str, "", "digital post-processing", choices=("float16", "fixed")),
        _p("cores", list(range(64)), "cores", "", "cores the tiles may use", minimum=0, maximum=63),
        _p("samples", 0, int, "", "test samples to score (0 = all)", minimum=0),
        _p(
            "repeats",
            1,
            int,
            "",
            "passes over the test samples per point (mean)",
            minimum=1,
            maximum=100,
        ),
        _p(
            "calibration_samples",
            500,
            int,
            "",
            "calibration samples for ranges (training split, x_cal, or rows of x not scored)",
            minimum=16,
        ),
        _p(
            "calibration_inputs",
            512,
            int,
            "",
            "random inputs per tile calibration",
            minimum=16,
            maximum=65536,
        ),
        _p(
            "adabs_batches",
            8,
            int,
            "",
            "AdaBS mini-batches n [JO Methods F]",
            minimum=1,
            maximum=1000,
        ),
        _p("adabs_batch_size", 50, int, "", "AdaBS mini-batch size m", minimum=1, maximum=10000),
        _p(
            "range_percentile",
            100.0,
            float,
            "%",
            "int8 range percentile of |x|",
            minimum=50.0,
            maximum=100.0,
        ),
        _p(
            "max_replicas",
            64,
            int,
            "",
            "most copies of a narrow tile on its core",
            minimum=1,
            maximum=256,
        ),
        _p("group_size", 8, int, "", "cores programmed in lockstep", minimum=1, maximum=64),
        _p("seed", 0, int, "", "seed of calibration inputs and AdaBS batches", minimum=0),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("accuracy", "drift_time")
    plot_series: ClassVar[tuple[str, tuple[str, ...]] | None] = ("compensation", COMPENSATIONS)

    def __init__(
        self, *, network: Graph | None = None, data: InferenceData | None = None, **values: Any
    ) -> None:
        super().__init__(**values)
        p = self.params
        self.drift_points = parse_durations(p["drift"])
        self.compensations = parse_compensations(p["compensation"])
        given = network if network is not None and data is not None else None
        if network is None or data is None:
            network, data = self.load_inputs()
        if isinstance(data, InferenceData):
            data = apply_input_layout(data, p["input_layout"])
        if not isinstance(network, Graph) or not isinstance(data, InferenceData):
            raise LimitError("infer needs a Graph and InferenceData")
        model = p["model"] if given is None or "model" in values else "(the given network)"
        check_model_against_data(network, data, model)
        self.network, self.data = network, data
        self._rates: list[float] = []  # inferences/s of each evaluation, for the median
        self.mapping = map_graph(network, cores=p["cores"])
        n = p["samples"] or data.x_test.shape[0]
        if n > data.x_test.shape[0]:
            raise LimitError(f"samples {n} > {data.x_test.shape[0]} test samples in {data.name}")
        self.x_test, self.y_test = data.x_test[:n], data.y_test[:n]
        self.x_cal = data.x_calibration[: p["calibration_samples"]]
        needed = p["adabs_batches"] * p["adabs_batch_size"]
        if "adabs" in self.compensations and needed > data.x_calibration.shape[0]:
            raise LimitError(
                f"AdaBS needs {needed} calibration samples, {data.name} has "
                f"{data.x_calibration.shape[0]}"
            )
        recurrent = (Lstm.op, Gru.op)
        if "adabs" in self.compensations and all(lm.op in recurrent for lm in self.mapping.layers):
            raise LimitError(
                "adabs: the network has no analog layer with a per-channel affine (LSTM gates "
                "go to the GDPU, GRU gates to the host); choose gdc, gdc-column or recal"
            )
        self._adabs_reference: dict[str, ChannelStatistics] = {}
        # Shapes are checked now, not after programming.
        network.prepare_input(self.x_test[:1])

    @property
    def cores_written(self) -> tuple[int, ...]:
        """The cores the network's tiles are programmed onto (of the ``cores`` it may use)."""
        return tuple(int(c) for c in self.mapping.cores_used)

    def load_inputs(self) -> tuple[Graph, InferenceData]:
        """The network and data when not given as objects (``chipctl.inference`` loads files)."""
        raise LimitError("infer: pass network= and data=, or use chipctl.inference.InferModel")

    # ---- declarations -----------------------------------------------------------------------

    def streams(self) -> tuple[StreamSpec, ...]:
        return (
            StreamSpec("core", (), "i2", "1", "core of the allocation row"),
            StreamSpec("layer_index", (), "i2", "1", "index of the core's layer"),
            StreamSpec("tile", (4,), "i4", "1", "row tile, column tile, rows, columns"),
            StreamSpec("replicas", (), "i2", "1", "copies of the tile on the core"),
            StreamSpec("g_max", (), "f4", "counts", "Gmax of the core"),
            StreamSpec("g_max_worst_case", (), "f4", "counts",
                       "Gmax the worst-case rule (full-scale inputs) would give"),
            StreamSpec("saturated_fraction", (), "f4", "1",
                       "calibration inputs that saturate a conversion, measured"),
            StreamSpec("converged_fraction", (), "f4", "1", "cells converged"),
            StreamSpec("drift_time", (), "f8", "s", "time since programming of the accuracy row"),
            StreamSpec("compensation", (), "u1", "1",
                       "0 none, 1 gdc, 2 adabs, 3 gdc-column, 4 recal"),
            StreamSpec("accuracy", (), "f4", "1", "fraction correct, mean of the passes"),
            StreamSpec("inferences_per_s", (), "f4", "1/s", "throughput of the row"),
            StreamSpec("layer_error", (len(self.mapping.layers),), "f4", "1",
                       "‖y_chip − y_fp32‖/‖y_fp32‖ per analog layer, first batch"),
            StreamSpec("cal_core", (), "i2", "1", "core of the calibration rows"),
            StreamSpec("cal_fit", (4, ROWS), "f8", "1",
                       "per-row fit u₊, u₋, offset (W·x units per count) and k in [3, 0]"),
            StreamSpec("gdc_inputs", (GDC_INPUTS, ROWS), "i1", "1", "GDC reference inputs"),
            StreamSpec("gdc_outputs", (GDC_INPUTS, ROWS), "f8", "1",
                       "their calibrated outputs at calibration time (W·x units × LSB)"),
        )  # fmt: skip

    def total(self) -> int:
        n_batches = self.params["repeats"] * math.ceil(len(self.x_test) / PROGRESS_BATCH)
        return 2 + len(self.drift_points) * len(self.compensations) * n_batches

    # ---- run ---------------------------------------------------------------------------------

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        p = self.params
        graph = self.network
        ranges = tensor_ranges(graph, self.x_cal, p["range_percentile"])
        software = float(np.mean(self._predict(forward(graph, self.x_test)) == self.y_test))
        quantised_out = forward_quantised(graph, self.x_test, ranges)
        quantised = float(np.mean(self._predict(quantised_out) == self.y_test))
        estimate = self.mapping.estimate(p["mvm_mode"])
        self.results.update(
            model=p["model"],
            dataset=self.data.name,
            data_note=self.data.note,
            samples=len(self.x_test),
            software_accuracy=software,
            quantised_accuracy=quantised,
            cores_used=list(self.mapping.cores_used),
            allocation={
                lm.node: [t.core for mm in lm.matrices for t in mm.tiles]
                for lm in self.mapping.layers
            },
            estimate=_estimate_dict(estimate),
            accuracy={c: {} for c in self.compensations},
        )
        executor = ChipExecutor(
            board,
            graph,
            self.mapping,
            ranges,
            number_format(p["digital"]),
            mvm_mode=p["mvm_mode"],
            max_replicas=p["max_replicas"],
            g_max_rule=p["gmax"],
            g_max_quantile=p["gmax_quantile"],
        )
        executor.use_calibration_data(self.x_cal, p["range_percentile"])
        start_s = board.board_time_s()
        state = resume_from or {}
        if state.get("results"):
            then = state["results"].get("data_note")
            if then is not None and then != self.data.note:  # e.g. the .npz file was rewritten
                raise LimitError(f"resume: the data changed since the run began: {then}; now: "
                                 f"{self.data.note}; start a new run")  # fmt: skip
            self.results.update(state["results"])
        if state and self._board_kept_its_state(board, executor, state):
            self._restore_calibration(executor, state["streams"])
            self._adabs_reference = {
                name: ChannelStatistics.from_json(stats)
                for name, stats in state.get("adabs_reference", {}).items()
            }
            done = 2
        else:
            if state:  # a fresh (simulated) chip: deploy again exactly as the first time did
                start_s = float(state["start_s"])
            yield from self._program(board, executor)
            self.results["saturation_check_core_mvms"] = executor.measure_saturation()
            self.results["gmax"] = {
                "rule": p["gmax"],
                "quantile": p["gmax_quantile"],
                "per_core": {
                    str(core): {
                        "g_max": t.g_max,
                        "worst_case": t.g_max_worst_case,
                        "saturated_fraction": t.saturated_fraction,
                    }
                    for core, t in executor.tiles.items()
                },
            }
            yield Progress(1, self.total(), "programmed")
            for _ in executor.calibrate(p["calibration_inputs"], p["seed"]):
                self.check_stop()
            if "adabs" in self.compensations:
                self._adabs_reference = executor.record_channel_statistics(self._adabs_batches())
            done = 2
            if not state:
                yield from self._allocation_records(executor)
                yield from self._calibration_records(executor)
            yield Progress(2, self.total(), "calibrated")
        programmed_at = float(self.results["programmed_at_s"])
        finished: list[str] = list(state.get("finished", []))
        fingerprint = state.get("fingerprint") or self._fingerprint(board, executor)
        if not state:
            yield self._checkpoint(start_s, finished, fingerprint)
        per_point = self.params["repeats"] * math.ceil(len(self.x_test) / PROGRESS_BATCH)
        for label, seconds in self.drift_points:
            if label in finished:
                done += len(self.compensations) * per_point
                continue
            self._wait_until(board, programmed_at + seconds)
            # To the board clock's 1 ns resolution: the float difference otherwise depends on
            # the path the clock took (one jump on a resumed chip, several uninterrupted).
            elapsed = round(board.board_time_s() - programmed_at, 9)
            for compensation in self.compensations:
                accuracies, rate, errors, done = yield from self._evaluate(
                    executor, compensation, label, done
                )
                accuracy = float(np.mean(accuracies))
                self.results["accuracy"][compensation][label] = accuracy
                self.results.setdefault("accuracy_passes", {}).setdefault(compensation, {})[
                    label
                ] = accuracies
                yield Data("drift_time", np.float64(elapsed))
                yield Data("compensation", np.uint8(COMPENSATIONS.index(compensation)))
                yield Data("accuracy", np.float32(accuracy))
                yield Data("inferences_per_s", np.float32(rate))
                yield Data("layer_error", np.asarray(errors, np.float32))
                self.results.setdefault("layer_error", {}).setdefault(compensation, {})[label] = {
                    lm.node: e for lm, e in zip(self.mapping.layers, errors, strict=True)
                }
            # The GDC readout once per time, whatever compensations were asked for.
            for core, alpha in executor.drift_factors().items():
                self.results.setdefault("drift_factor", {}).setdefault(str(core), {})[label] = alpha
            finished.append(label)
            yield self._checkpoint(start_s, finished, fingerprint)
        rates = self._rates
        self.results["inferences_per_s"] = float(np.median(rates)) if rates else 0.0

    def _program(self, board: Board, executor: ChipExecutor) -> Iterator[Progress | Data]:
        p = self.params
        gdp = GdpSettings() if p["gdp"] else None
        iterations = 0
        for group, stats in executor.program(
            p["mode"], ProgramSettings(), group_size=p["group_size"], gdp=gdp, seed=p["seed"]
        ):
            self.check_stop()
            iterations += 1
            yield Progress(
                0,
                self.total(),
                f"programming cores {group[0]}-{group[-1]}: iteration {stats.iteration}, "
                f"{stats.fraction_converged:.1%} converged",
            )
        self.results["programmed_at_s"] = board.board_time_s()
        self.results["programming_iterations"] = iterations

    def _checkpoint(self, start_s: float, finished: list[str], fingerprint: Any) -> Checkpoint:
        """A resume point. ``restore_board_time_s`` is the clock when the run started: the
        runner winds a fresh simulated chip to it (not to the checkpoint's time), and the run
        deploys again identically (per-core random streams, MVM noise keyed to the clock); a
        board that kept its state is already later and is left alone."""
        results = dict(self.results)
        return Checkpoint(
            {
                "restore_board_time_s": start_s,
                "start_s": start_s,
                "finished": list(finished),
                "fingerprint": fingerprint,
                "results": results,
                "adabs_reference": {
                    name: stats.to_json() for name, stats in self._adabs_reference.items()
                },
            }
        )

    @staticmethod
    def _fingerprint_addresses(executor: ChipExecutor, core: int) -> tuple[np.ndarray, ...]:
        rows, cols = executor.tiles[core].tile.shape
        r = np.arange(FINGERPRINT_CELLS) % rows
        c = (np.arange(FINGERPRINT_CELLS) * 7) % cols
        devices = np.arange(FINGERPRINT_CELLS) % 4
        return r, c, devices

    def _fingerprint(self, board: Board, executor: ChipExecutor) -> dict[str, list[int]]:
        """Verify reads of a few devices per core, to recognise the programmed chip later."""
        prints = {}
        for core in executor.tiles:
            reads = board.verify_read(core, *self._fingerprint_addresses(executor, core))
            prints[str(core)] = [int(v) for v in reads]
        return prints

    def _board_kept_its_state(
        self, board: Board, executor: ChipExecutor, state: dict[str, Any]
    ) -> bool:
        """Whether the chip still holds what this run programmed.

        A board whose clock is before the end of programming is a fresh simulated chip wound
        back to the start by the runner: it is deployed again, and touched by nothing before,
        so that it repeats the first deployment exactly. Otherwise (hardware; a simulator
        server that outlived the host) the fingerprint reads must correlate (> 0.9 on every
        core; drift only scales them), or the chip was reprogrammed or swapped: an error.
        """
        if board.board_time_s() < float(state["results"]["programmed_at_s"]):
            return False
        stored = state.get("fingerprint") or {}
        for core in executor.tiles:
            now = board.verify_read(core, *self._fingerprint_addresses(executor, core))
            then = np.asarray(stored.get(str(core), []), np.float64)
            if (
                then.shape != now.shape
                or np.std(then) == 0
                or np.std(now) == 0
                or np.corrcoef(then, now.astype(np.float64))[0, 1] < 0.9
            ):
                raise LimitError(
                    f"resume: core {core} no longer holds the weights this run programmed "
                    "(reprogrammed, or another chip); start a new run"
                )
        return True

    def _calibration_records(self, executor: ChipExecutor) -> Iterator[Data]:
        for core, state in executor.tiles.items():
            fit = np.zeros((4, np.size(state.u_pos)))
            fit[0], fit[1], fit[2] = state.u_pos, state.u_neg, state.offset
            fit[3, 0] = state.k
            yield Data("cal_core", np.int16(core))
            yield Data("cal_fit", fit)
            yield Data("gdc_inputs", state.reference_inputs.astype(np.int8))
            yield Data("gdc_outputs", state.reference_outputs)

    def _restore_calibration(self, executor: ChipExecutor, streams: dict[str, Any]) -> None:
        """The per-tile calibration of the interrupted run, from its run file."""
        cores = [int(c) for c in np.asarray(streams["cal_core"])]
        if sorted(cores) != sorted(executor.tiles):
            raise LimitError("resume: the run file's calibration does not cover the cores used")
        for k, core in enumerate(cores):
            state = executor.tiles[core]
            fit = np.asarray(streams["cal_fit"][k], np.float64)
            state.u_pos[:], state.u_neg[:], state.offset[:] = fit[0], fit[1], fit[2]
            state.k = float(fit[3, 0])
            state.reference_inputs = np.asarray(streams["gdc_inputs"][k], np.int8)
            state.reference_outputs = np.asarray(streams["gdc_outputs"][k], np.float64)
            state.alpha = 1.0
        # The programmed layout: without its copies a replicated tile would get its input once.
        allocated = [int(c) for c in np.asarray(streams["core"])]
        for k, core in enumerate(allocated):
            state = executor.tiles[core]
            state.replicas = int(streams["replicas"][k])
            state.g_max = float(streams["g_max"][k])
            state.g_max_worst_case = float(streams["g_max_worst_case"][k])
            state.saturated_fraction = float(streams["saturated_fraction"][k])
        executor.mark_calibrated()

    def _allocation_records(self, executor: ChipExecutor) -> Iterator[Data]:
        index = {lm.node: i for i, lm in enumerate(self.mapping.layers)}
        for core, state in executor.tiles.items():
            t = state.tile
            yield Data("core", np.int16(core))
            yield Data("layer_index", np.int16(index[state.layer]))
            yield Data("tile", np.array([t.row_tile, t.col_tile, *t.shape], np.int32))
            yield Data("replicas", np.int16(state.replicas))
            yield Data("g_max", np.float32(state.g_max))
            yield Data("g_max_worst_case", np.float32(state.g_max_worst_case))
            yield Data("saturated_fraction", np.float32(state.saturated_fraction))
            yield Data("converged_fraction", np.float32(state.converged_fraction))

    def _wait_until(self, board: Board, target_s: float) -> None:
        """Advance a simulated board's clock to ``target_s``; wait in real time otherwise."""
        now = board.board_time_s()
        if target_s <= now:
            return
        try:
            board.advance_clock(target_s - now)
            return
        except DriverError:
            pass  # a real board: its clock is the wall clock
        while (remaining := target_s - board.board_time_s()) > 0:
            self.check_stop()
            time.sleep(min(remaining, 1.0))

    def _evaluate(
        self, executor: ChipExecutor, compensation: str, label: str, done: int
    ) -> Generator[Progress, None, tuple[list[float], float, list[float], int]]:
        p = self.params
        executor.reset_batchnorm()
        if compensation == "recal":
            spent = executor.recalibrate(p["calibration_inputs"], p["seed"])
            self.results["recal_core_mvms"] = spent
        else:
            executor.compensate("gdc" if compensation == "adabs" else compensation)
        if compensation == "adabs":
            adapted = executor.adapt(self._adabs_batches(), self._adabs_reference)
            self.results.setdefault("adabs", {})[label] = adapted
        errors: list[float] = []
        accuracies = []
        started = time.perf_counter()
        for repeat in range(p["repeats"]):
            correct = 0
            for start in range(0, len(self.x_test), PROGRESS_BATCH):
                self.check_stop()
                x = self.x_test[start : start + PROGRESS_BATCH]
                values = executor.forward(x, keep=not errors)
                if not errors:
                    errors = self._layer_errors(executor, x, values)
                out = values[self.network.output_name]
                correct += int(np.sum(self._predict(out) == self.y_test[start : start + len(x)]))
                done += 1
                yield Progress(
                    done,
                    self.total(),
                    f"{label} {compensation} pass {repeat + 1}: {correct}/{start + len(x)} correct",
                )
            accuracies.append(correct / len(self.x_test))
        rate = p["repeats"] * len(self.x_test) / (time.perf_counter() - started)
        self._rates.append(rate)
        return accuracies, rate, errors, done

    def _adabs_batches(self) -> list[np.ndarray]:
        """The AdaBS calibration mini-batches (the same at deployment and every drift time)."""
        p = self.params
        rng = np.random.default_rng([p["seed"], 0xADAB5])
        m, n = p["adabs_batch_size"], p["adabs_batches"]
        order = rng.permutation(self.data.x_calibration.shape[0])[: m * n]
        return [self.data.x_calibration[order[i * m : (i + 1) * m]] for i in range(n)]

    def _layer_errors(
        self, executor: ChipExecutor, x: np.ndarray, values: dict[str, np.ndarray]
    ) -> list[float]:
        reference = forward_tensors(self.network, x)
        errors = []
        for lm in self.mapping.layers:
            name = executor.plans[lm.node].output
            ref = reference[name].astype(np.float64)
            norm = float(np.linalg.norm(ref))
            diff = float(np.linalg.norm(values[name].reshape(ref.shape) - ref))
            errors.append(diff / norm if norm > 0 else diff)
        return errors

    @staticmethod
    def _predict(out: np.ndarray) -> np.ndarray:
        return np.asarray(out).reshape(out.shape[0], -1).argmax(axis=1)


def _estimate_dict(estimate: CostEstimate) -> dict[str, Any]:
    return {
        "mvm_mode": estimate.mode,
        "core_mvms": estimate.core_mvms,
        "time_s": estimate.time_s,
        "energy_j": estimate.energy_j,
        "energy_mvm_j": estimate.energy_mvm_j,
        "per_layer": estimate.per_layer,
    }
