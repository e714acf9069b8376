"""What a run file says about each core: per-core metrics for the chip map and the sections
of the core detail, one reader per kind of run.

The procedure catalog (:mod:`chipctl.catalog`) names, for each procedure, which readers
describe a core (:class:`CoreView`); front ends ask the catalog and never branch on a
procedure's name. Readers take an open :class:`~chipctl.runfile.RunFile` and return plain
numbers and arrays; they raise ``KeyError``/``ValueError``/``IndexError`` on a damaged file,
which callers skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipctl.runfile import RunFile

MetricReader = Callable[[RunFile], dict[str, dict[int, float]]]
"""Run file → {metric key: {core: value}}."""
DetailReader = Callable[[RunFile, int], dict[str, Any] | None]
"""(run file, core) → the fields of one core-detail section, or None if the run lacks the core."""

CALIBRATION_COEFFICIENTS = ("gain_pos", "gain_neg", "offset_pos", "offset_neg", "residual_rms")
"""Streams of a calibrate run that the core detail shows, one row per core."""
DRIFT_CURVES = (("scale_error", "uncompensated"), ("scale_error_gdc", "with GDC"))
"""Streams of a drift run plotted in the core detail (one column per core), with labels."""


@dataclass(frozen=True)
class CoreView:
    """How a procedure's run files describe a core.

    Attributes:
        metrics: the chip-map metrics the run contributes (keys of ``chipctl.tui.data.METRICS``).
        detail_section: which core-detail section the run fills ("program", "calibration",
            "drift"); the newest run with the core wins.
        detail: reads that section's fields for one core.
    """

    metrics: MetricReader | None = None
    detail_section: str = ""
    detail: DetailReader | None = None


# -- helpers ----------------------------------------------------------------------------------


def per_core(run: RunFile, stream: str, reduce: Callable[[np.ndarray], float]) -> dict[int, float]:
    """``reduce(row)`` per core for a stream with one row per entry of the ``core`` stream."""
    if "core" not in run.streams or stream not in run.streams:
        return {}
    cores = np.asarray(run.stream("core")).reshape(-1)
    rows = run.stream(stream)
    n = min(len(cores), len(rows))
    return {int(cores[k]): float(reduce(np.asarray(rows[k], np.float64))) for k in range(n)}


def core_list(run: RunFile) -> list[int]:
    """The run's ``cores`` parameter as a list."""
    cores = run.parameters.get("cores", [])
    return [int(c) for c in (cores if isinstance(cores, list) else [cores])]


def row_of(run: RunFile, core: int) -> int | None:
    """Index of the last row for ``core`` in a run's ``core`` stream."""
    if "core" not in run.streams:
        return None
    cores = np.asarray(run.stream("core")).reshape(-1)
    hits = np.flatnonzero(cores == core)
    return int(hits[-1]) if hits.size else None


def row(run: RunFile, stream: str, index: int) -> np.ndarray | None:
    """Row ``index`` of ``stream`` (None if the stream or the row is missing)."""
    if stream not in run.streams:
        return None
    rows = run.stream(stream)
    return np.asarray(rows[index]) if index < len(rows) else None


def _value(row: np.ndarray) -> float:
    return float(row)


# -- chip-map metrics -------------------------------------------------------------------------


def program_metrics(run: RunFile) -> dict[str, dict[int, float]]:
    """Programmed cores, their yield and rms weight error relative to Gmax."""
    g_max = per_core(run, "g_max", _value)
    rms = per_core(run, "cell_error", lambda r: float(np.sqrt(np.mean(r**2))))
    return {
        "programmed": dict.fromkeys(per_core(run, "core", _value), 1.0),
        "yield": per_core(run, "yield_map", lambda r: float(np.mean(r == 0))),
        "weight_error": {c: v / g_max[c] for c, v in rms.items() if g_max.get(c)},
    }


def characterize_metrics(run: RunFile) -> dict[str, dict[int, float]]:
    """MVM error ε_total and the weight error of the effective weights."""
    return {
        "mvm_error": per_core(run, "eps_total", _value),
        "weight_error": per_core(run, "weight_error", _value),
    }


def calibrate_metrics(run: RunFile) -> dict[str, dict[int, float]]:
    """Mean rms residual of the calibration fit."""
    return {"calibration_residual": per_core(run, "residual_rms", lambda r: float(np.mean(r)))}


def drift_metrics(run: RunFile) -> dict[str, dict[int, float]]:
    """The last drift-compensation factor α̂ of each followed core."""
    if "alpha" not in run.streams:
        return {}
    alpha = np.asarray(run.stream("alpha"), np.float64)
    if not alpha.shape[0]:
        return {}
    return {"drift_compensation": dict(zip(core_list(run), alpha[-1].tolist(), strict=False))}


def compensate_metrics(run: RunFile) -> dict[str, dict[int, float]]:
    """The last α̂ of each compensated core (mean over its output rows)."""
    if "alpha" not in run.streams:
        return {}
    alpha = np.asarray(run.stream("alpha"), np.float64)
    if not alpha.shape[0]:
        return {}
    means = alpha[-1].reshape(alpha.shape[1], -1).mean(axis=1)
    return {"drift_compensation": dict(zip(core_list(run), means.tolist(), strict=False))}


# -- core-detail sections ---------------------------------------------------------------------


def program_detail(run: RunFile, core: int) -> dict[str, Any] | None:
    """Conductances, cell errors, yield map and Gmax of ``core`` after programming."""
    index = row_of(run, core)
    if index is None:
        return None
    g_max = row(run, "g_max", index)
    return {
        "conductance": row(run, "conductance", index),
        "cell_error": row(run, "cell_error", index),
        "yield_map": row(run, "yield_map", index),
        "g_max": float(g_max) if g_max is not None else None,
    }


def calibrate_detail(run: RunFile, core: int) -> dict[str, Any] | None:
    """The calibration set id and the LDPU coefficients of ``core``."""
    index = row_of(run, core)
    if index is None:
        return None
    coefficients = {}
    for stream in CALIBRATION_COEFFICIENTS:
        values = row(run, stream, index)
        if values is not None:
            coefficients[stream] = values.astype(np.float64)
    return {
        "calibration_set": str(run.metadata.get("calibration_set_id", "")),
        "coefficients": coefficients,
    }


def drift_detail(run: RunFile, core: int) -> dict[str, Any] | None:
    """The output-scale error of ``core`` over time, uncompensated and with GDC:
    ``drift_time_s`` and ``drift_curves`` ({label: values})."""
    cores = core_list(run)
    if core not in cores or "time" not in run.streams:
        return None
    k = cores.index(core)
    time_s = np.asarray(run.stream("time"), np.float64)
    curves = {label: np.asarray(run.stream(s), np.float64) for s, label in DRIFT_CURVES}
    n = min(len(time_s), *(len(c) for c in curves.values()))
    if n == 0:
        return None
    return {
        "drift_time_s": time_s[:n],
        "drift_curves": {label: c[:n, k] for label, c in curves.items()},
    }
