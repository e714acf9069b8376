"""The default plot of a run, as PNG (matplotlib, Agg; no display needed).

What is plotted is what the run file names in ``/entry/data`` (NXdata ``@signal`` and
``@axes``), which the writer fills from the procedure's ``default_plot``; a file without one
falls back to the registered procedure's ``default_plot``, then to the first scalar stream.
How, by the shape of one row of the signal:

* scalar rows: the signal against the axis stream (or the row number), one marker per row;
  one line per value of the procedure's ``plot_series`` stream when it declares one (the
  accuracy of ``infer`` per compensation);
* 1-D rows of up to :data:`MAX_LINES` values: one line per column (``signal[k]``), legend;
  longer rows: the mean over the row with a band from the minimum to the maximum;
* 2-D or larger rows: the last row as an image (further dimensions averaged), with a colour bar.

Axes are labelled with the streams' descriptions and units; an axis in seconds spanning more
than two decades (drift) is drawn on a log scale. Uses ``matplotlib.figure.Figure`` directly,
never pyplot, so it is safe in threads and leaves no global state behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.analysis import Quantity, RunData, read_run
from chipctl.runfile import RunFileError
from chipctl.runfile.paths import check_out, write_output

__all__ = ["MAX_LINES", "default_plot_streams", "figure_for", "plot_run"]

MAX_LINES = 16
"""Rows with up to this many values are drawn as one line per value."""


def default_plot_streams(run: RunData) -> tuple[str, str | None]:
    """(signal, axis or None) to plot for ``run``; see the module docstring for the order."""
    signal, axis = run.default_plot
    if signal not in run.streams:
        signal, axis = "", None
        try:
            from chipctl import catalog

            signal, axis = catalog.procedure_class(run.procedure).default_plot
        except catalog.CatalogError:
            pass
        if signal not in run.streams:
            scalars = [n for n, q in run.streams.items() if q.values.ndim == 1]
            signal = (scalars or list(run.streams) or [""])[0]
    if axis is not None and (axis not in run.streams or axis == signal):
        axis = None
    if axis is not None and run.streams[axis].values.ndim != 1:
        axis = None
    return signal, axis


def _x_values(run: RunData, signal: Quantity, axis: str | None) -> tuple[np.ndarray, str]:
    if axis is not None and len(run.streams[axis]) == len(signal):
        quantity = run.streams[axis]
        return np.asarray(quantity.values, dtype=float), quantity.label
    return np.arange(len(signal), dtype=float), "row"


def _series(run: RunData, rows: int) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The procedure's ``plot_series`` (one line per value of a stream), if it applies."""
    from chipctl import catalog

    try:
        declared = catalog.procedure_class(run.procedure).plot_series
    except catalog.CatalogError:
        declared = None
    if declared is None and "rail" in run.streams:
        declared = ("rail", ())  # power runs: one line per rail, named as the run recorded
    if declared is None or declared[0] not in run.streams:
        return None
    codes = np.asarray(run.streams[declared[0]].values)
    if codes.ndim != 1 or len(codes) != rows:
        return None
    codes = codes.astype(np.int64)
    if declared[0] == "rail":
        return codes, _rail_labels(run, codes)
    return codes, declared[1]


def _rail_labels(run: RunData, channels: np.ndarray) -> tuple[str, ...]:
    """Label per supply output 0…max: the rail names the power run recorded
    (``results["rail_names"]``), ``rail N`` for run files written before it did."""
    recorded = run.results.get("rail_names")
    names = recorded if isinstance(recorded, dict) else {}
    top = int(channels.max()) if channels.size else -1
    return tuple(str(names.get(str(n), f"rail {n}")) for n in range(top + 1))


def _log_axis(x: np.ndarray, label: str) -> bool:
    positive = x[np.isfinite(x) & (x > 0)]
    return (
        label.endswith("[s]")
        and positive.size == x.size
        and x.size > 2
        and positive.max() / positive.min() > 100.0
    )


def figure_for(run: RunData) -> Any:
    """The run's default plot as a ``matplotlib.figure.Figure`` (not yet saved).

    Raises:
        RunFileError: the run has no stream to plot.
    """
    from matplotlib.figure import Figure

    signal_name, axis = default_plot_streams(run)
    if not signal_name:
        raise RunFileError(f"{run.path}: no stream to plot")
    signal = run.streams[signal_name]
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.subplots()
    values = np.asarray(signal.values)
    if len(signal) == 0 or values.size == 0:
        empty = "no rows yet" if len(signal) == 0 else "rows without values"
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(signal.label)
    elif values.ndim == 1:
        x, xlabel = _x_values(run, signal, axis)
        series = _series(run, len(signal))
        if series is None:
            ax.plot(x, values.astype(float), marker="o", linestyle="-" if len(x) > 1 else "none")
        else:
            codes, labels = series
            for code in np.unique(codes):
                rows = codes == code
                label = labels[int(code)] if 0 <= code < len(labels) else str(code)
                ax.plot(x[rows], values[rows].astype(float), marker="o", label=label)
            ax.legend(fontsize="small")
        _finish_xy(ax, x, xlabel, signal.label)
    elif values.ndim == 2:
        x, xlabel = _x_values(run, signal, axis)
        rows = values.astype(float)
        if rows.shape[1] <= MAX_LINES:
            for k in range(rows.shape[1]):
                ax.plot(x, rows[:, k], marker="o", label=f"{signal_name}[{k}]")
        else:
            ax.plot(x, rows.mean(axis=1), marker="o", label="mean over the row")
            ax.fill_between(x, rows.min(axis=1), rows.max(axis=1), alpha=0.3, label="min–max")
        ax.legend(fontsize="small")
        _finish_xy(ax, x, xlabel, signal.label)
    else:
        image = values[-1].astype(float)
        while image.ndim > 2:
            image = image.mean(axis=-1)
        shown = ax.imshow(image, aspect="auto", interpolation="nearest", origin="upper")
        colorbar = figure.colorbar(shown, ax=ax)
        colorbar.set_label(signal.label)
        ax.set_xlabel(f"{signal_name} index 2")
        ax.set_ylabel(f"{signal_name} index 1")
        if values.ndim > 3:
            ax.set_title("last row, mean over the further dimensions", fontsize="small")
    chip = run.metadata.get("chip_id", "")
    figure.suptitle(f"{run.procedure}: {run.path.name} ({run.status}) {chip}".strip())
    return figure


def plot_run(
    run: RunData | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
    overwrite: bool = False,
) -> Path:
    """Draw the run's default plot into a PNG file.

    Args:
        run: a :class:`~chipctl.analysis.RunData` or the path of a run file.
        out: the PNG to write (default: the run file with suffix ``.png``).
        dpi: resolution in dots per inch.
        overwrite: replace an existing file at ``out`` (never the run file itself, another
            run file, or something that is not a regular file).

    Returns:
        The PNG written.

    Raises:
        RunFileExistsError: ``out`` exists (without ``overwrite``), or is the run file itself,
            another run file, or not a regular file (always); nothing written.
        RunFileError: the run file cannot be read (missing, damaged), has no stream to plot,
            its signal cannot be drawn, or the PNG cannot be written.
    """
    data = run if isinstance(run, RunData) else read_run(run)
    path = Path(out) if out is not None else data.path.with_suffix(".png")
    check_out(path, overwrite=overwrite, source=data.path, keep_runs=True, writing="a plot")
    try:
        figure = figure_for(data)
    except (ValueError, TypeError, IndexError) as exc:
        # Values a damaged file can hold but the reader cannot judge (a row shape of zero).
        signal, _ = default_plot_streams(data)
        raise RunFileError(f"{data.path}: cannot plot stream {signal}: {exc}") from exc
    try:
        write_output(
            path,
            lambda temp: figure.savefig(temp, dpi=dpi, format="png"),
            overwrite=overwrite,
            source=data.path,
            writing="a plot",
        )
    except OSError as exc:
        raise RunFileError(f"{path}: cannot write the plot: {exc}") from exc
    return path


def _finish_xy(ax: Any, x: np.ndarray, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if _log_axis(x, xlabel):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
