"""Drawing helpers for textual-plotext plots: clear, replot, refresh (never ``show()``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from textual_plotext import PlotextPlot

from chipctl.tui.data import Series, histogram_counts


def draw_message(plot: PlotextPlot, title: str, message: str) -> None:
    """An empty plot with ``title`` and a centred ``message`` (no data yet)."""
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    plt.text(message, 0.5, 0.5, alignment="center")
    plt.xlim(0, 1)
    plt.ylim(0, 1)
    plt.xticks([])
    plt.yticks([])
    plot.refresh()


def draw_series(plot: PlotextPlot, series: Series | None, title: str) -> None:
    """Line plot of ``series`` (one curve per y array) on ``plot``."""
    if series is None or series.x.size == 0:
        draw_message(plot, title, "no data yet")
        return
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    for y, label in zip(series.ys, series.labels, strict=True):
        n = min(len(series.x), len(y))
        finite = np.isfinite(y[:n])
        x, y_finite = series.x[:n][finite], y[:n][finite]
        if not x.size:
            continue
        label_or_none = label if len(series.ys) > 1 else None
        if series.points_only:
            plt.scatter(x.tolist(), y_finite.tolist(), label=label_or_none)
        else:
            plt.plot(x.tolist(), y_finite.tolist(), label=label_or_none)
    plt.xlabel(series.x_label)
    plt.ylabel(series.y_label)
    plot.refresh()


def draw_points(
    plot: PlotextPlot,
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    title: str,
    x_label: str,
) -> None:
    """The live curves (label, x, y) of the running procedure, with a legend when several."""
    if not any(x for _, x, _ in curves):
        draw_message(plot, title, "waiting for data")
        return
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    for label, x, y in curves:
        if x:
            plt.plot(list(x), list(y), marker="braille", label=label if len(curves) > 1 else None)
    plt.xlabel(x_label)
    plot.refresh()


def draw_histogram(
    plot: PlotextPlot,
    values: np.ndarray | None,
    title: str,
    x_label: str,
    bins: int = 30,
    *,
    apart_below: float | None = None,
    apart_name: str = "",
) -> None:
    """Histogram of ``values`` (finite values only) on a log count axis, so a few hundred
    outliers show next to tens of thousands. ``apart_below``: values with ``|v|`` under it
    (the RESET population of a conductance map) are counted in the title, not binned, so
    they do not squash the programmed ones into one bar."""
    if values is None:
        draw_message(plot, title, "no run has this core")
        return
    array = np.asarray(values, np.float64).reshape(-1)
    array = array[np.isfinite(array)]
    if apart_below is not None:
        apart = int(np.count_nonzero(np.abs(array) < apart_below))
        array = array[np.abs(array) >= apart_below]
        title = f"{title}; {apart_name} |v|<{apart_below:g}: {apart} apart"
    centres, counts = histogram_counts(array, bins)
    if not centres:
        draw_message(plot, title, "no finite values")
        return
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    # plotext's log scale fails on its own bar bottoms (0): the bars are log10(1 + n), ticked
    # with the device counts they stand for.
    heights = np.log10(1.0 + np.asarray(counts, np.float64))
    plt.bar([f"{c:.3g}" for c in centres], heights.tolist(), width=0.8)
    decades = range(int(np.ceil(heights.max())) + 1) if heights.size else range(1)
    plt.yticks([float(np.log10(1 + 10.0**k)) for k in decades], [f"{10**k:g}" for k in decades])
    step = max(1, len(centres) // 4)
    plt.xticks(list(range(1, len(centres) + 1, step)), [f"{c:.3g}" for c in centres[::step]])
    plt.xlabel(x_label)
    plot.refresh()
