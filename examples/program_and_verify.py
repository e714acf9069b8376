"""Program a weight matrix by iterative program-and-verify and plot the programming error.

Programs a (256, 256) weight matrix onto one core (ODP or TDP), writes the run file, reads it
back with ``chipctl.analysis`` and plots the histogram of the cell error (cell read − target, in
ADC counts) as a PNG, split into zero and non-zero weights. Prints the convergence and the weight
error std(W − Ŵ)/Wmax, the quantity of [LG Fig 2c]::

    python examples/program_and_verify.py                       # the simulated chip
    python examples/program_and_verify.py --mode odp --weights W.npy --board socket://HOST:PORT

By default the weights are uniform in [−1, 1] with 30 % zeros, as in the published MVM
characterisation [LG §IV].
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
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.program_verify import ProgramVerify


def random_weights(seed: int, sparsity: float = 0.3) -> np.ndarray:
    """Uniform weights in [−1, 1], a fraction ``sparsity`` of them zero [LG §IV]."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1.0, 1.0, size=(256, 256))
    weights[rng.random(weights.shape) < sparsity] = 0.0
    return weights


def plot_error_histogram(run_path: Path, png: Path) -> dict[str, float]:
    """Histogram of the cell error of a program run (first core) as PNG; returns statistics."""
    run = read_run(run_path, streams=["cell_error", "g_max"])
    error = run["cell_error"].values[0].astype(np.float64)  # (256, 256), counts
    g_max = float(run["g_max"].values[0])
    weights = np.broadcast_to(run.parameters["weights"], (1, 256, 256))[0]
    zero = weights == 0
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.subplots()
    edges = np.arange(-20.5, 21.5, 1.0)
    for mask, label in ((~zero, "non-zero weights"), (zero, "zero weights")):
        ax.hist(np.clip(error[mask], -20, 20), bins=edges, alpha=0.6, label=label)
    ax.axvline(-5, color="k", linestyle=":", label="verify tolerance ±5 counts [LG]")
    ax.axvline(5, color="k", linestyle=":")
    ax.set_xlabel(f"cell read − target [{run['cell_error'].units}] (clipped to ±20)")
    ax.set_ylabel("cells [1]")
    ax.set_title(f"{run.parameters['mode'].upper()} programming, Gmax {g_max:.1f} counts")
    ax.legend(fontsize="small")
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)
    return {
        "g_max_counts": g_max,
        "weight_error": float(error[~zero].std() / g_max),
        "within_tolerance": float(np.mean(np.abs(error) < 5.0)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Program, verify and plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", default=DEFAULT_BOARD_URL, help="board URL (simulated chip)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the outputs")
    parser.add_argument("--weights", type=Path, default=None, help="(256, 256) .npy weights")
    parser.add_argument("--mode", choices=("odp", "tdp"), default="tdp", help="devices per sign")
    parser.add_argument("--core", type=int, default=0, help="core to program")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    out = args.out_dir or Path("runs") / time.strftime("program-%Y%m%d-%H%M%S")
    weights = np.load(args.weights) if args.weights else random_weights(args.seed)

    with Board(args.board) as board:
        summary = run_procedure(
            ProgramVerify(weights=weights, cores=[args.core], mode=args.mode),
            board,
            out / "program.h5",
        )
    if summary.status != "success":
        print(f"programming {summary.status}: {summary.reason}")
        return 1
    core = summary.results["cores"][str(args.core)]
    stats = plot_error_histogram(summary.path, out / "program_error.png")
    print(f"run file   {summary.path}")
    print(f"histogram  {out / 'program_error.png'}")
    print(
        f"converged {core['converged_fraction']:.2%} in {core['iterations']} iterations; "
        f"std(W − Ŵ)/Wmax {stats['weight_error']:.2%}; "
        f"|error| < 5 counts: {stats['within_tolerance']:.2%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
