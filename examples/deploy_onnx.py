"""Deploy an ONNX model on the chip and track its accuracy over a week of drift, plotted.

Runs the ``infer`` procedure (``chipctl.inference.InferModel``): the model is split into
≤ 256 × 256 tiles on the cores, programmed by program-and-verify, calibrated, and the test set
is streamed through the chip 25 s, 1 h, 1 day and 1 week after programming, without drift
compensation, with global drift compensation (GDC) and with AdaBS (batch-norm statistics
re-estimated through the chip) [LG §V; JO §II-E; chip.md §2c-e]. The simulated board's virtual
clock makes the week take seconds.

The plot shows the chip's accuracy against time per compensation, with the float32 software
accuracy as a line. Any ONNX file the importer takes works (``--model path/to/model.onnx``);
the shipped ones are ``mnist1d_cnn`` (default), ``mnist1d_lstm`` and ``digits_mlp``::

    python examples/deploy_onnx.py [--board URL] [--model NAME|FILE] [--dataset mnist1d]
                                   [--samples N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from chipctl import DEFAULT_BOARD_URL
from chipctl.analysis import read_run
from chipctl.inference import InferModel, accuracy_table
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.infer import COMPENSATIONS

DRIFT = "25s,1h,1d,1w"


def plot(run_h5: Path, png: Path) -> None:
    """Accuracy (%) against time since programming, one line per compensation."""
    run = read_run(run_h5)
    t = run["drift_time"].values
    accuracy = 100 * run["accuracy"].values
    codes = run["compensation"].values
    software = 100 * run.results["software_accuracy"]
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.subplots()
    for code, name in enumerate(COMPENSATIONS):
        rows = codes == code
        if rows.any():
            ax.semilogx(t[rows], accuracy[rows], "o-", label=name)
    ax.axhline(software, color="k", linestyle="--", label=f"float32 software {software:.2f} %")
    ax.set_xlabel("time since programming [s]")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(f"{run.results['model']} on the chip ({run.metadata.get('chip_id', '')})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    figure.savefig(png, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default=DEFAULT_BOARD_URL, help="board URL (simulated chip)")
    parser.add_argument("--model", default="mnist1d_cnn", help="shipped model name or ONNX file")
    parser.add_argument("--dataset", default="mnist1d", choices=("mnist1d", "digits"))
    parser.add_argument("--samples", type=int, default=0, help="test samples (0 = all)")
    parser.add_argument("--drift", default=DRIFT, help=f"times after programming ({DRIFT})")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for run file + PNG")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or Path("runs") / time.strftime("deploy-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    procedure = InferModel(
        model=args.model, dataset=args.dataset, samples=args.samples, drift=args.drift
    )
    with Board(args.board) as board:
        summary = run_procedure(procedure, board, out_dir / "infer.h5")
    if summary.status != "success":
        print(f"infer {summary.status}: {summary.reason} ({summary.path})")
        return 1
    print(accuracy_table(summary.results))
    png = out_dir / "accuracy_over_time.png"
    plot(summary.path, png)
    print(f"run file {summary.path}, plot {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
