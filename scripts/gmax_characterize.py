"""MVM error of a TDP core with the workload Gmax against the worst-case rule (issue 15.6).

For each chip seed and weight distribution (uniform in [−1, 1], Gaussian): one 256×256 matrix
is programmed (TDP) twice on fresh simulated chips, once at the worst-case Gmax (``chipctl
program``'s automatic rule: full-scale inputs on every column) and once at the workload Gmax
for the characterisation's own inputs (30 %-sparse uniform int8,
:func:`procedures.programming.gmax.workload_g_max`, 99.9 % quantile); then ``characterize``
(2,048 inputs, 30 % zeros) measures ε_total, and the saturation of those inputs is measured
on the chip. Prints a markdown table.

    PYTHONPATH=. .venv/bin/python scripts/gmax_characterize.py [--seeds 1,2,3]
"""

from __future__ import annotations

import argparse

import numpy as np

from drivers.board import Board
from procedures.characterize import Characterize, random_inputs
from procedures.program_verify import ProgramVerify
from procedures.programming.gmax import saturated_fraction, workload_g_max
from procedures.programming.targets import G_MAX_TDP_COUNTS, line_limited_g_max

LINE_LIMIT_UA = 100.0
QUANTILE = 99.9


def measure(
    seed: int, g_max: float, weights: np.ndarray, inputs: np.ndarray
) -> tuple[float, float]:
    """(ε_total, saturated fraction) of one core programmed at ``g_max`` on a fresh chip."""
    with Board(f"mockchip://?seed={seed}&cores=1") as board:
        list(ProgramVerify(weights=weights, cores=[0], mode="tdp", g_max_counts=g_max).run(board))
        characterize = Characterize(weights=weights, cores=[0], sparsity=0.3)
        list(characterize.run(board))
        fraction, _ = saturated_fraction(board, [0], inputs[None], 4)
    return float(characterize.results["eps_total_mean"]), float(fraction[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    print(
        "| weights | seed | worst-case Gmax | ε_total | saturated "
        "| workload Gmax | ε_total | saturated |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("uniform", "normal"):
        for seed in (int(s) for s in args.seeds.split(",")):
            row(kind, seed)


def row(kind: str, seed: int) -> None:
    """One table row: the matrix of ``kind`` on chip ``seed`` under both rules."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        weights = rng.uniform(-1, 1, (256, 256)).astype(np.float32)
    else:
        weights = rng.normal(0, 1, (256, 256)).astype(np.float32)
    inputs = random_inputs(rng, 2048, 0.3)
    with Board(f"mockchip://?seed={seed}&cores=1") as board:
        read_mv = float(board.mvm_read_voltage_mv)
    worst = line_limited_g_max(
        weights,
        g_max_counts=G_MAX_TDP_COUNTS,
        mvm_mode=4,
        line_current_limit_ua=LINE_LIMIT_UA,
        read_voltage_mv=read_mv,
    )
    workload = workload_g_max(
        weights,
        inputs,
        g_max_counts=G_MAX_TDP_COUNTS,
        mvm_mode=4,
        quantile=QUANTILE,
        line_current_limit_ua=LINE_LIMIT_UA,
        read_voltage_mv=read_mv,
    )
    cells: list[object] = [kind, seed]
    for g_max in (worst, workload):
        eps, saturated = measure(seed, g_max, weights, inputs)
        cells += [f"{g_max:.1f}", f"{100 * eps:.1f} %", f"{100 * saturated:.2f} %"]
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
