"""The task of one sweep point: build a simulated chip, run the procedures, return its rows.

Runs on a Dask worker (or in-process), so it takes and returns plain picklable values and
touches no files. Each point builds its own board from its URL (``mockchip://?seed=S&cores=K``)
and drives the procedures through their Python API (``proc.run(board)``); a procedure that does
not succeed raises :class:`PointFailed` with its reason, which the executor records as the
point's error.

**mvm**: the same random weights (``weight_seed``, one matrix per core) are programmed onto every
core with ProgramVerify (``mode``, ``gdp``). Right after programming, the GDC reference is
measured (Compensate with an empty reference) and ``inputs`` random inputs (``input_seed``) go
through the raw MVM: the least-squares scale s₀ per core maps counts to weight units, as a
calibration after programming would, and ε at that moment is ``eps_programmed``. Then, for each
drift time t (ascending, from the end of programming), the virtual clock is advanced to t, the
same inputs are measured again and the error decomposition of
:func:`procedures.characterize.mvm_errors` is evaluated with the scale *fixed*:
``none``: s₀ (the outputs shrink as the conductances drift); ``gdc``: s₀/α̂ with α̂ measured by
Compensate against the reference (the global drift compensation, evaluated on the raw counts on
the host as procedures/drift.py does). Figures are means over the point's cores
(``eps_total_max``: the worst core).

**inference**: the ``infer`` procedure (catalog name; procedures/infer.py) with the point's
model, data set, mode, gdp, drift times and compensations on the board's ``cores``; its
``accuracy`` results ({compensation: {drift label: accuracy}}) become the rows.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from chipctl.errors import ChipctlError
from chipctl.sweep.spec import Point

MVM_FIGURES = (
    "eps_total",
    "eps_linear",
    "eps_residual",
    "eps_total_max",
    "alpha",
    "eps_programmed",
    "converged_fraction",
    "yield_fraction",
    "iterations",
    "pulses",
)
"""Figures of an mvm row (relative errors ‖ε‖/‖Wx‖, α̂ of GDC, programming statistics)."""
INFERENCE_FIGURES = ("accuracy", "software_accuracy")
"""Figures of an inference row."""
FIGURE_OF_MERIT = {"mvm": "eps_total", "inference": "accuracy"}


class PointFailed(ChipctlError, RuntimeError):
    """A procedure of a point did not succeed; the message is its reason."""


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS/OpenMP thread per task, so N workers on N cores do not oversubscribe.

    Local-cluster workers already start with OMP/OPENBLAS/MKL_NUM_THREADS=1 (Dask's
    ``distributed.nanny.pre-spawn-environ``); this covers workers started elsewhere.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1):
        yield


def run_point(point: Point) -> list[dict[str, Any]]:
    """Run one point and return its rows (one per drift time and compensation).

    Args:
        point: the point (see :class:`~chipctl.sweep.spec.Point`).

    Returns:
        Flat dicts: the figures of :data:`MVM_FIGURES` or :data:`INFERENCE_FIGURES` plus
        ``drift``, ``drift_s``, ``compensation``, ``worker`` and ``wall_s``.

    Raises:
        PointFailed: a procedure did not succeed (the board's error is in the message).
    """
    started = time.perf_counter()
    with _single_threaded_blas():
        rows = _run_mvm(point) if point.kind == "mvm" else _run_inference(point)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    wall_s = time.perf_counter() - started
    for row in rows:
        row.update(worker=worker, wall_s=wall_s)
    return rows


def point_task(point: Point) -> tuple[list[dict[str, Any]], str, str]:
    """The Dask task of a point: :func:`run_point` with its failure returned, not raised.

    The procedures' own log records (a failed procedure logs its traceback) are captured
    instead of printed on the worker, and returned with the error.

    Args:
        point: the point.

    Returns:
        A tuple ``(rows, error, details)``: the rows and "" "" on success; no rows, the error
        line ("PointFailed: program: BoardResetError: ...") and the captured tracebacks on
        failure.
    """
    with _capture_procedure_logs() as captured:
        try:
            return run_point(point), "", ""
        except Exception as exc:  # recorded in the result file; the study goes on
            details = "\n".join(captured) or traceback.format_exc()
            return [], f"{type(exc).__name__}: {exc}", details


class _ThreadCapture(logging.Handler):
    """On the "procedures" logger while points run: records of a thread that is running a
    point go to that point's list (warnings and above); records of other threads are passed
    on to the root logger's handlers, as propagation would have done. Thread-aware, because a
    Dask worker may run several points at once in threads."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: dict[int | None, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        lines = self.lines.get(record.thread)
        if lines is None:
            for handler in logging.getLogger().handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        elif record.levelno >= logging.WARNING:
            lines.append(self.format(record))
            attached = getattr(record, "traceback_text", "")
            if attached and not record.exc_info:
                lines.append(str(attached).rstrip())


_CAPTURE = _ThreadCapture()
_CAPTURE_LOCK = threading.Lock()
_CAPTURE_USERS = [0, True]  # running points, the logger's propagate flag before the first


@contextmanager
def _capture_procedure_logs() -> Iterator[list[str]]:
    logger = logging.getLogger("procedures")
    lines: list[str] = []
    with _CAPTURE_LOCK:
        if _CAPTURE_USERS[0] == 0:
            _CAPTURE_USERS[1] = logger.propagate
            logger.addHandler(_CAPTURE)
            logger.propagate = False
        _CAPTURE_USERS[0] += 1
        _CAPTURE.lines[threading.get_ident()] = lines
    try:
        yield lines
    finally:
        with _CAPTURE_LOCK:
            _CAPTURE.lines.pop(threading.get_ident(), None)
            _CAPTURE_USERS[0] -= 1
            if _CAPTURE_USERS[0] == 0:
                logger.removeHandler(_CAPTURE)
                logger.propagate = bool(_CAPTURE_USERS[1])


def _run(procedure: Any, board: Any) -> dict[str, Any]:
    """Run a procedure to its end; its results, or :class:`PointFailed` with the reason."""
    from procedures.base import Stop

    stop = None
    for record in procedure.run(board):
        if isinstance(record, Stop):
            stop = record
    if stop is None or stop.status != "success":
        reason = stop.reason if stop is not None else "no Stop record"
        raise PointFailed(f"{procedure.name}: {reason}")
    return dict(stop.results)


def point_weights(point: Point) -> np.ndarray:
    """The (cores, 256, 256) weights of an mvm point: uniform in [−1, 1], some set to 0."""
    settings = point.settings
    weights = np.empty((settings["cores"], 256, 256))
    for core in range(settings["cores"]):
        rng = np.random.default_rng([settings["weight_seed"], core])
        w = rng.uniform(-1.0, 1.0, (256, 256))
        w[rng.random(w.shape) < settings["weight_sparsity"]] = 0.0
        weights[core] = w
    return weights


def _measure(board: Any, cores: list[int], inputs: np.ndarray) -> np.ndarray:
    """Raw P − N counts (cores, n, 256) of the inputs on every core, in frames of 256."""
    out = np.empty((len(cores), inputs.shape[0], 256))
    for start in range(0, inputs.shape[0], 256):
        batch = inputs[start : start + 256]
        counts = board.mvm(cores, np.broadcast_to(batch, (len(cores), *batch.shape)))
        out[:, start : start + batch.shape[0]] = counts.difference
    return out


def _run_mvm(point: Point) -> list[dict[str, Any]]:
    from drivers.board import Board
    from procedures.characterize import mvm_errors, random_inputs
    from procedures.gdc import Compensate
    from procedures.program_verify import ProgramVerify

    settings = point.settings
    cores = list(range(settings["cores"]))
    weights = point_weights(point)
    rng = np.random.default_rng(settings["input_seed"])
    inputs = random_inputs(rng, settings["inputs"], settings["input_sparsity"])
    ideal = inputs.astype(np.float64) @ weights.transpose(0, 2, 1)
    with Board(point.board_url) as board:
        program = _run(
            ProgramVerify(weights=weights, cores=cores, mode=point.mode, gdp=point.gdp), board
        )
        t_programmed = board.board_time_s()
        per_core = program.get("cores", {})
        stats = {
            name: float(np.mean([per_core[str(c)][name] for c in cores]))
            for name in ("converged_fraction", "yield_fraction", "iterations", "pulses")
        }
        reference = None
        if "gdc" in point.compensation:
            reference = np.asarray(_run(Compensate(cores=cores), board)["reference"])
        measured = _measure(board, cores, inputs)
        scale0 = (measured * ideal).sum(axis=(1, 2)) / (measured * measured).sum(axis=(1, 2))
        programmed = [
            mvm_errors(weights[j], inputs, measured[j])["relative"][0] for j in range(len(cores))
        ]
        stats["eps_programmed"] = float(np.mean(programmed))
        rows = []
        for label, t in zip(point.drift, point.drift_s, strict=True):
            now = board.board_time_s() - t_programmed
            if t > now:
                board.advance_clock(t - now)
            measured = _measure(board, cores, inputs)
            alpha = np.ones(len(cores))
            if reference is not None:
                result = _run(Compensate(cores=cores, reference=reference), board)
                alpha = np.asarray(result["alpha_mean"], np.float64)
            for compensation in point.compensation:
                scale = scale0 / alpha if compensation == "gdc" else scale0
                eps = np.array(
                    [
                        mvm_errors(weights[j], inputs, measured[j], scale=float(scale[j]))[
                            "relative"
                        ]
                        for j in range(len(cores))
                    ]
                )
                rows.append(
                    {
                        "drift": label,
                        "drift_s": t,
                        "compensation": compensation,
                        "eps_total": float(eps[:, 0].mean()),
                        "eps_linear": float(eps[:, 1].mean()),
                        "eps_residual": float(eps[:, 2].mean()),
                        "eps_total_max": float(eps[:, 0].max()),
                        "alpha": float(alpha.mean()) if compensation == "gdc" else float("nan"),
                        **stats,
                    }
                )
    return rows


def _run_inference(point: Point) -> list[dict[str, Any]]:
    from chipctl import catalog
    from drivers.board import Board

    if "infer" not in catalog.available():
        raise PointFailed("the 'infer' procedure is not available in this installation")
    procedure = catalog.build(
        "infer",
        {
            "model": point.model_path,
            "dataset": point.dataset,
            "drift": ",".join(point.drift),
            "compensation": ",".join(point.compensation),
            "mode": point.mode,
            "gdp": point.gdp,
            "samples": point.settings["samples"],
            "seed": point.settings["input_seed"],
            "cores": list(range(point.settings["cores"])),
        },
    )
    with Board(point.board_url) as board:
        results = _run(procedure, board)
    accuracy = results.get("accuracy", {})
    rows = []
    for label, t in zip(point.drift, point.drift_s, strict=True):
        for compensation in point.compensation:
            try:
                value = float(accuracy[compensation][label])
            except (KeyError, TypeError, ValueError):
                raise PointFailed(
                    f"infer: no accuracy for compensation {compensation!r} at {label!r}"
                ) from None
            rows.append(
                {
                    "drift": label,
                    "drift_s": t,
                    "compensation": compensation,
                    "accuracy": value,
                    "software_accuracy": float(results.get("software_accuracy", float("nan"))),
                }
            )
    return rows
