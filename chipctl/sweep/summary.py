"""Summary statistics over chip instances, the printed table and the PNG plot of a study.

A *configuration* is everything but the seed: (mode, gdp, model, compensation, drift). Per
configuration, over the seeds (chip instances) whose point succeeded: n, mean, std (ddof 1),
and the 5th, 50th and 95th percentiles of the figure of merit (``eps_total`` for mvm studies,
``accuracy`` for inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CONFIGURATION = ("mode", "gdp", "model", "compensation", "drift")
STATISTICS = ("n", "mean", "std", "p5", "p50", "p95")


def summarize(rows: Mapping[str, np.ndarray], figure: str) -> dict[str, np.ndarray]:
    """Per-configuration statistics of ``figure`` over the ok rows.

    Args:
        rows: result columns (:func:`chipctl.sweep.store.read_rows`).
        figure: the column to summarise.

    Returns:
        Columns: the configuration (:data:`CONFIGURATION`), ``drift_s`` and
        :data:`STATISTICS`; sorted by configuration, then drift time.
    """
    ok = np.asarray(rows["status"]) == "ok"
    groups: dict[tuple[Any, ...], list[float]] = {}
    drift_s: dict[tuple[Any, ...], float] = {}
    for i in np.flatnonzero(ok):
        key = tuple(_plain(rows[name][i]) for name in CONFIGURATION)
        groups.setdefault(key, []).append(float(rows[figure][i]))
        drift_s[key] = float(rows["drift_s"][i])
    ordered = sorted(groups, key=lambda k: (*(str(v) for v in k[:-1]), drift_s[k]))
    table: dict[str, list[Any]] = {name: [] for name in (*CONFIGURATION, "drift_s", *STATISTICS)}
    for key in ordered:
        values = np.array(groups[key])
        finite = values[np.isfinite(values)]
        for name, value in zip(CONFIGURATION, key, strict=True):
            table[name].append(value)
        table["drift_s"].append(drift_s[key])
        table["n"].append(finite.size)
        table["mean"].append(float(finite.mean()) if finite.size else float("nan"))
        table["std"].append(float(finite.std(ddof=1)) if finite.size > 1 else float("nan"))
        p5, p50, p95 = np.percentile(finite, [5, 50, 95]) if finite.size else (float("nan"),) * 3
        table["p5"].append(float(p5))
        table["p50"].append(float(p50))
        table["p95"].append(float(p95))
    return {
        name: np.array(values, dtype=bool if name == "gdp" else None)
        if values
        else np.array(
            [], dtype=str if name in ("mode", "model", "compensation", "drift") else float
        )
        for name, values in table.items()
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def label(summary: Mapping[str, np.ndarray], i: int) -> str:
    """A configuration's label without the drift time, e.g. "tdp+gdp / gdc"."""
    parts = [str(summary["mode"][i]) + ("+gdp" if summary["gdp"][i] else "")]
    if summary["model"][i]:
        parts.insert(0, Path(str(summary["model"][i])).stem)
    return f"{' '.join(parts)} / {summary['compensation'][i]}"


def print_summary(
    summary: Mapping[str, np.ndarray], figure: str, title: str, console: Any = None
) -> None:
    """Print the summary as a rich table (percent for errors and accuracies)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    for name in ("configuration", "drift", *STATISTICS):
        text = name in ("configuration", "drift")
        table.add_column(name, justify="left" if text else "right", no_wrap=text)
    for i in range(len(summary["n"])):
        table.add_row(
            label(summary, i),
            str(summary["drift"][i]),
            str(summary["n"][i]),
            *(f"{100 * summary[s][i]:.2f} %" for s in STATISTICS[1:]),
        )
    console.print(table)
    console.print(f"figure: {figure} over chip instances (seeds); std with ddof 1")


def plot_summary(
    summary: Mapping[str, np.ndarray], figure: str, title: str, path: str | Path
) -> Path:
    """PNG of the figure of merit vs drift time: median line, p5–p95 band per configuration.

    Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no GUI backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [label(summary, i) for i in range(len(summary["n"]))]
    programming = [lab.rsplit(" / ", 1)[0] for lab in labels]
    colors = {name: f"C{k}" for k, name in enumerate(dict.fromkeys(programming))}
    styles = {"none": "--", "gdc": "-", "adabs": "-."}
    for name in dict.fromkeys(labels):
        sel = np.array([lab == name for lab in labels])
        first = int(np.flatnonzero(sel)[0])
        color = colors[programming[first]]
        t = summary["drift_s"][sel]
        ax.plot(
            t,
            100 * summary["p50"][sel],
            marker="o",
            color=color,
            linestyle=styles.get(str(summary["compensation"][first]), ":"),
            label=name,
        )
        ax.fill_between(
            t,
            100 * summary["p5"][sel],
            100 * summary["p95"][sel],
            color=color,
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xscale("log")
    ticks = dict(zip(summary["drift_s"].tolist(), summary["drift"].tolist(), strict=True))
    ax.set_xticks(list(ticks), labels=list(ticks.values()))
    ax.minorticks_off()
    ax.set_xlabel("time after programming")
    ax.set_ylabel(f"{figure} (%)")
    ax.set_title(f"{title}: median and p5–p95 over chips")
    ax.grid(True, which="both", alpha=0.3)
    if labels:
        ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
