"""Calibrate a programmed core and characterise its MVM error before and after.

1. program random 30 %-sparse weights onto a core (TDP program-and-verify);
2. characterise the raw MVM (P − N ADC counts with one least-squares scale) by the published
   method: random inputs, least-squares effective weights, ε_total / ε_linear / ε_residual
   [LG §IV];
3. calibrate the core on the weights now programmed: per-ADC gain/offset and the per-channel
   affine, loaded onto the LDPU [KA §III-D; chip.md §2b]; the set is stored in a calibration
   store under the output folder (``chipctl calibration list --calibration-dir OUT/calibration``);
4. characterise again through the calibrated LDPU (int8 outputs, nothing fitted);
5. plot the per-ADC gain spread before/after and the int8 error histograms (PNG).

::

    python examples/calibrate_and_characterise.py [--board URL] [--out-dir DIR] [--inputs N]
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
from chipctl.calibration import CalibrationRecorder, CalibrationStore
from chipctl.runner import RunSummary, run_procedure
from drivers.board import Board
from procedures.calibrate import Calibrate
from procedures.characterize import HISTOGRAM_HALF_WIDTH, Characterize
from procedures.program_verify import ProgramVerify


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


def plot(calibrate_h5: Path, raw_h5: Path, calibrated_h5: Path, png: Path) -> None:
    """Per-ADC gains before/after calibration and the ε_total histograms, side by side."""
    cal = read_run(calibrate_h5, streams=["adc_gain", "validated_gain"])
    figure = Figure(figsize=(11.0, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    before = cal["adc_gain"].values[0].reshape(-1)
    after = cal["validated_gain"].values[0].reshape(-1)
    bins = np.linspace(min(before.min(), after.min()), max(before.max(), after.max()), 60)
    left.hist(
        before, bins=bins, alpha=0.6, label=f"before: spread {before.std() / before.mean():.1%}"
    )
    left.hist(after, bins=bins, alpha=0.6, label=f"after: spread {after.std() / after.mean():.2%}")
    left.set_xlabel(f"per-ADC gain, positive and negative counters [{cal['adc_gain'].units}]")
    left.set_ylabel("ADC counters [1]")
    left.set_title("ADC gain calibration")
    left.legend(fontsize="small")
    edges = np.arange(-HISTOGRAM_HALF_WIDTH - 1, HISTOGRAM_HALF_WIDTH + 2)
    for path, label in ((raw_h5, "raw counts, LS scale"), (calibrated_h5, "calibrated LDPU")):
        run = read_run(path, streams=["histograms", "eps_total"])
        counts = run["histograms"].values[0, 0]  # ε_total; first and last bins: under/overflow
        share = counts / counts.sum()
        eps = float(run["eps_total"].values[0])
        right.step(edges, share, where="mid", label=f"{label}: ε_total {eps:.2%}")
    right.set_xlabel("MVM error ε_total [int8 output units] (ends: under/overflow)")
    right.set_ylabel("fraction of outputs [1]")
    right.set_yscale("log")
    right.set_title("MVM error [LG §IV, Fig 2b]")
    right.legend(fontsize="small")
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Program, characterise, calibrate, characterise; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", default=DEFAULT_BOARD_URL, help="board URL (simulated chip)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the outputs")
    parser.add_argument("--core", type=int, default=0, help="core to use")
    parser.add_argument("--inputs", type=int, default=2048, help="inputs per characterisation")
    parser.add_argument("--cal-inputs", type=int, default=2048, help="inputs of the fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    args = parser.parse_args(argv)
    out: Path = args.out_dir or Path("runs") / time.strftime("calibrate-%Y%m%d-%H%M%S")
    weights = random_weights(args.seed)
    cores = [args.core]
    store = CalibrationStore(out / "calibration")
    recorder = CalibrationRecorder(store)

    with Board(args.board) as board:
        program = _check(
            run_procedure(ProgramVerify(weights=weights, cores=cores), board, out / "program.h5")
        )
        g_max = float(program.results["cores"][str(args.core)]["g_max_counts"])
        common = {"weights": weights, "cores": cores, "n_inputs": args.inputs, "seed": args.seed}
        raw = _check(run_procedure(Characterize(**common), board, out / "characterize-raw.h5"))
        calibrate = Calibrate(
            cores=cores,
            program_reference=False,  # calibrate on the weights already programmed
            n_inputs=args.cal_inputs,
            n_validation=max(64, args.cal_inputs // 2),
            seed=args.seed,
        )
        cal = _check(run_procedure(calibrate, board, out / "calibrate.h5", subscribers=[recorder]))
        k_bar = float(cal.results["counts_per_unit"])
        calibrated = _check(
            run_procedure(
                Characterize(**common, output="ldpu", counts_per_unit=k_bar, g_max_counts=g_max),
                board,
                out / "characterize-calibrated.h5",
            )
        )
    plot(cal.path, raw.path, calibrated.path, out / "calibration.png")
    print(f"calibration set {cal.results['calibration_set_id']} stored as {recorder.saved}")
    print(
        f"per-ADC gain spread {cal.results['gain_spread_before']:.2%} → "
        f"{cal.results['gain_spread_after']:.2%}"
    )
    for name, summary in (("raw", raw), ("calibrated", calibrated)):
        r = summary.results
        print(
            f"{name:>10}: ε_total {r['eps_total_mean']:.2%}  ε_linear {r['eps_linear_mean']:.2%}"
            f"  ε_residual {r['eps_residual_mean']:.2%}"
        )
    print(f"plot       {out / 'calibration.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
