"""``chipctl program``'s Gmax rules compared by ``characterize`` (docs/programming.md).

Per chip seed: one 256×256 matrix (uniform in [−1, 1] or Gaussian, 30 % zeros) is programmed
(TDP) through the ``program`` procedure on core 0 with ``gmax = "worst-case"`` and on core 1
with ``gmax = "workload"`` for 1,024 inputs like ``characterize``'s (30 % zeros, another seed);
then ``characterize`` (2,048 inputs, 30 % zeros) measures ε on both. Prints a markdown table.

    CHIPCTL_CALIBRATION_DIR=/tmp/store PYTHONPATH=. .venv/bin/python scripts/gmax_program.py \
        [--weights uniform|normal] [--seeds 1,2,3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.characterize import Characterize, random_inputs
from procedures.program_verify import ProgramVerify


def weights_of(seed: int, kind: str) -> np.ndarray:
    """The seed's 256×256 test matrix with 30 % zeros."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (256, 256)) if kind == "uniform" else rng.normal(0, 1, (256, 256))
    w[rng.random(w.shape) < 0.3] = 0
    return w


def row(seed: int, kind: str, folder: Path) -> str:
    """One table row: per rule its Gmax and ε_total, and the workload core's saturation."""
    w = weights_of(seed, kind)
    x = random_inputs(np.random.default_rng(100 + seed), 1024, 0.3)
    with Board(f"mockchip://?seed={seed}&cores=2") as board:
        cores = {}
        for core, rule in ((0, "worst-case"), (1, "workload")):
            program = ProgramVerify(weights=w, cores=[core], gmax=rule, gmax_inputs=x)
            run_procedure(program, board, folder / f"p{seed}-{core}.h5", progress=False)
            cores[core] = program.results["cores"][str(core)]
        characterize = Characterize(weights=w, cores=[0, 1], sparsity=0.3)
        run_procedure(characterize, board, folder / f"c{seed}.h5", progress=False)
    with RunFile.open(folder / f"c{seed}.h5") as run:
        eps = dict(zip((int(c) for c in run.stream("core")), run.stream("eps_total"), strict=True))
    return (
        f"| {seed} | {cores[0]['g_max_counts']:.1f} | {100 * eps[0]:.1f} % "
        f"| {cores[1]['g_max_counts']:.1f} | {100 * eps[1]:.1f} % "
        f"| {100 * cores[1]['saturated_fraction']:.1f} % |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", choices=("uniform", "normal"), default="uniform")
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    print("| chip seed | worst-case Gmax | ε_total | workload Gmax | ε_total | saturated |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for seed in (int(s) for s in args.seeds.split(",")):
            print(row(seed, args.weights, Path(folder)), flush=True)


if __name__ == "__main__":
    main()
