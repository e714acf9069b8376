"""Regenerate the simulated chip's factory calibration set (``calibration_data/``).

``python -m chipctl.factory_calibration [--board mockchip://?seed=1] [--cores 0-63]
[--dir calibration_data]`` programs TDP reference weights on every core of a fresh simulated
chip, runs :class:`~procedures.calibrate.Calibrate` (four-phase, published 2,048 inputs) and
stores the set; the run file goes to a temporary folder. The simulated ADCs of core c do not
depend on the number of cores (drivers/sim/adc.py), so the set of ``mockchip://?seed=1`` is
valid for ``mockchip://?seed=1&cores=N`` too. About a minute for 64 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from chipctl import DEFAULT_BOARD_URL
from chipctl.calibration import CalibrationRecorder, CalibrationStore
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.calibrate import Calibrate

FACTORY_SEED = 20240
"""Seed of the factory reference weights and inputs."""


def make_factory_set(
    board_url: str = DEFAULT_BOARD_URL,
    *,
    cores: str | list[int] | None = None,
    store_dir: str | Path | None = None,
    n_inputs: int = 2048,
    progress: bool = False,
) -> Path:
    """Calibrate ``cores`` (default all) on a fresh board and store the set; returns its path."""
    store = CalibrationStore(store_dir)
    recorder = CalibrationRecorder(store)
    with Board(board_url, timeout_s=30.0) as board:
        which = cores if cores is not None else list(range(board.identity.n_cores))
        procedure = Calibrate(
            cores=which, mode=4, program_reference=True, n_inputs=n_inputs, seed=FACTORY_SEED
        )
        with tempfile.TemporaryDirectory() as tmp:
            summary = run_procedure(
                procedure, board, Path(tmp) / "factory-calibrate.h5", progress=progress,
                subscribers=[recorder],
            )  # fmt: skip
    if summary.status != "success" or recorder.saved is None:
        raise RuntimeError(f"factory calibration failed: {summary.status} {summary.reason}")
    return recorder.saved


def main(argv: list[str] | None = None) -> int:
    """``python -m chipctl.factory_calibration``: measure and store a factory set; exit status."""
    parser = argparse.ArgumentParser(prog="python -m chipctl.factory_calibration")
    parser.add_argument("--board", default=DEFAULT_BOARD_URL)
    parser.add_argument("--cores", default=None, help="e.g. 0-63 (default: all)")
    parser.add_argument("--dir", default=None, help="store (default: calibration_data/)")
    args = parser.parse_args(argv)
    print(make_factory_set(args.board, cores=args.cores, store_dir=args.dir, progress=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
