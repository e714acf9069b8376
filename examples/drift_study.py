"""A week of conductance drift on the simulated clock, with global drift compensation, plotted.

Programs random weights onto two cores (ODP on the first, TDP on the second), then follows them
with the ``drift`` procedure on a log-spaced schedule from 25 s to 7 days after programming. The
simulated board advances its virtual clock, so the week takes seconds; a real board refuses the
clock command (use ``--real-time`` there, and be patient). PCM conductance drifts as
G(t) = G(t_p)·((t − t_p)/t0)^−ν with a per-device ν [LG §IV; JO; chip.md §2c].

The plot shows (left) the median sampled conductance per core against time, log-log, where the
slope is −ν, and (right) the error of the MVM output scale: uncompensated |s − 1|, with global
drift compensation (GDC, one α̂ per core, [JO Methods E]) |s/α̂ − 1|, and per-column GDC::

    python examples/drift_study.py [--board URL] [--out-dir DIR] [--days 7] [--points 24]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from chipctl import DEFAULT_BOARD_URL
from chipctl.analysis import read_run
from chipctl.runner import RunSummary, run_procedure
from drivers.board import Board
from procedures.drift import DriftMonitor
from procedures.program_verify import ProgramVerify

DAY_S = 86400.0


def random_weights(seed: int, sparsity: float = 0.3) -> np.ndarray:
    """Uniform weights in [−1, 1], a fraction ``sparsity`` of them zero [LG §IV]."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1.0, 1.0, size=(256, 256))
    weights[rng.random(weights.shape) < sparsity] = 0.0
    return weights


def _check(summary: RunSummary) -> RunSummary:
    if summary.status != "success":
        raise SystemExit(f"{summary.path.name}: {summary.status}: {summary.reason}")
    return summary


def plot(drift_h5: Path, labels: Sequence[str], png: Path) -> None:
    """Median conductance and output-scale errors against time, one colour per core."""
    run = read_run(drift_h5)
    t = run["time"]
    g = run["conductance"].values  # (points, cores, sample), counts
    figure = Figure(figsize=(11.0, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    for k, label in enumerate(labels):
        colour = f"C{k}"
        nu = float(run["nu_core"].values[0, k])
        left.loglog(
            t.values, np.median(g[:, k], axis=1), "o-", color=colour, label=f"{label}: ν {nu:.3f}"
        )
        right.loglog(
            t.values, run["scale_error"].values[:, k], "o-", color=colour, label=f"{label}: none"
        )
        right.loglog(
            t.values,
            run["scale_error_gdc"].values[:, k],
            "s--",
            color=colour,
            label=f"{label}: GDC",
        )
        right.loglog(
            t.values,
            run["scale_error_column"].values[:, k],
            "^:",
            color=colour,
            label=f"{label}: per-column GDC",
        )
    for ax in (left, right):
        ax.set_xlabel(t.label)
        ax.axvline(DAY_S, color="grey", linewidth=0.8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    left.set_ylabel(f"median sampled conductance [{run['conductance'].units}]")
    left.set_title("conductance drift (slope −ν)")
    right.set_ylabel(f"output scale error [{run['scale_error'].units}]")
    right.set_title("MVM output scale: compensation")
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Program, follow the drift for ``--days``, plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", default=DEFAULT_BOARD_URL, help="board URL (simulated chip)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the outputs")
    parser.add_argument("--days", type=float, default=7.0, help="length of the study in days")
    parser.add_argument("--points", type=int, default=24, help="log-spaced points")
    parser.add_argument("--sample", type=int, default=1024, help="devices sampled per core")
    parser.add_argument("--real-time", action="store_true", help="wait in real time if needed")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    args = parser.parse_args(argv)
    out: Path = args.out_dir or Path("runs") / time.strftime("drift-%Y%m%d-%H%M%S")
    weights = random_weights(args.seed)
    modes = {0: "odp", 1: "tdp"}

    with Board(args.board) as board:
        for core, mode in modes.items():
            _check(
                run_procedure(
                    ProgramVerify(weights=weights, cores=[core], mode=mode),
                    board,
                    out / f"program-{mode}.h5",
                )
            )
        drift = _check(
            run_procedure(
                DriftMonitor(
                    cores=list(modes),
                    until=args.days * DAY_S,
                    points=args.points,
                    sample=args.sample,
                    real_time=args.real_time,
                    seed=args.seed,
                ),
                board,
                out / "drift.h5",
            )
        )
    labels = [f"core {core} ({mode.upper()})" for core, mode in modes.items()]
    plot(drift.path, labels, out / "drift.png")
    run = read_run(drift.path, streams=["time", "scale_error", "scale_error_gdc"])
    print(f"run file {drift.path}; plot {out / 'drift.png'}")
    last_s = float(run["time"].values[-1])
    print(f"after {last_s / DAY_S:.1f} days ({last_s:.0f} {run['time'].units}):")
    for k, label in enumerate(labels):
        print(
            f"  {label}: output scale error {run['scale_error'].values[-1, k]:.2%} uncompensated, "
            f"{run['scale_error_gdc'].values[-1, k]:.2%} with GDC"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
