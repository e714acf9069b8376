"""``chipctl demo``: program random weights with ODP and TDP, characterise both, calibrate,
characterise again calibrated, follow a short drift with global drift compensation, then run
neural-network inference (the MNIST-1D CNN on 11 further cores: float32 software vs chip
accuracy 25 s after programming and after a simulated day without compensation, with global
drift compensation and with AdaBS); report.

A board with fewer than 13 cores runs the digits MLP (2 cores) instead, on all its cores.

Calibration: the chip's newest stored four-phase calibration set (the shipped factory set for
the simulated chip ``SIM-HERMES-0001``) is loaded onto the LDPUs; without one (another chip),
the demo runs ``calibrate`` on the programmed weights and stores nothing. "Uncalibrated" is the
raw P − N with the best single least-squares scale per core (generous to it); "calibrated" the
int8 LDPU outputs mapped back by the set's affine and k̄, nothing fitted.

Each step is a procedure run through the runner, so the demo leaves one HDF5 run file per step
(``chipctl runs DIR`` lists them, ``chipctl show FILE`` prints one).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipctl import catalog
from chipctl.calibration import CalibrationError, CalibrationStore, apply_set
from chipctl.inference import accuracy_table
from chipctl.runfile import RunFileExistsError, check_out, new_run_path
from chipctl.runner import RunSummary, run_procedure
from chipctl.station import default_station, load_station
from drivers.board import Board, BoardIdentity
from procedures.base import Procedure

SPARSITY = 0.3
"""Fraction of zero weights, as in the published MVM characterisation [LG §IV]."""

RUN_FILES = (
    "power_up",
    "program-odp",
    "characterize-odp",
    "program-tdp",
    "characterize-tdp",
    "calibrate",
    "characterize-odp-calibrated",
    "characterize-tdp-calibrated",
    "drift",
    "infer",
    "power_down",
)
"""The run files (``<name>.h5``) the demo may write into its folder."""


@dataclass(frozen=True)
class ModeResult:
    """What one programming mode achieved on its core."""

    mode: str
    core: int
    program: RunSummary
    characterize: RunSummary
    calibrated: RunSummary | None = None

    @property
    def core_results(self) -> dict[str, Any]:
        """The program run's per-core results of this mode's core."""
        cores: dict[str, Any] = self.program.results.get("cores", {})
        return dict(cores.get(str(self.core), {}))


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured."""

    url: str
    identity: BoardIdentity
    out_dir: Path
    modes: list[ModeResult] = field(default_factory=list)
    wall_s: float = 0.0
    calibration: str = ""
    calibration_results: dict[str, Any] = field(default_factory=dict)
    drift: RunSummary | None = None
    inference: RunSummary | None = None


def random_weights(seed: int) -> np.ndarray:
    """Uniform weights in [−1, 1] with 30 % zeros [LG §IV]."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1.0, 1.0, size=(256, 256))
    weights[rng.random(weights.shape) < SPARSITY] = 0.0
    return weights


def run_demo(
    url: str,
    *,
    out_dir: str | Path | None = None,
    n_inputs: int = 2048,
    seed: int = 0,
    timeout_s: float = 5.0,
    progress: bool = True,
    calibration_dir: str | Path | None = None,
    drift_until_s: float = 86400.0,
    station_file: str | Path | None = None,
    infer_samples: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Program the same random weights with ODP on core 0 and TDP on core 1, characterise both.

    Args:
        url: board URL.
        out_dir: folder for the run files (default ``runs/demo-<time>``).
        n_inputs: random inputs per characterisation (2,048 published [LG §IV]).
        seed: seed of the weights and inputs.
        calibration_dir: calibration store (default: chipctl.calibration.default_store_dir()).
        drift_until_s: end of the drift run (8 points from 25 s, virtual clock).
        station_file: station file (TOML) of a real bench; default: the fully simulated
            station around ``url``. The rails are powered up first (the station's interlock
            refuses programming otherwise) and down at the end.
        infer_samples: test samples of the inference step (0 = the whole test set; -1 skips
            the step).
        overwrite: replace run files already in ``out_dir``; without it an existing one is
            refused (:class:`~chipctl.runfile.RunFileExistsError`) before the board is opened.
    """
    started = time.monotonic()
    folder = Path(out_dir) if out_dir else new_run_path("runs", "demo", suffix="")
    _check_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    weights = random_weights(seed)
    modes: list[ModeResult] = []
    station = (
        load_station(station_file)
        if station_file
        else default_station(board_url=url, time_scale=0.0)
    )
    with station.open(board_timeout_s=timeout_s) as opened:
        board = opened.board
        identity = board.identity
        power_up = run_procedure(
            catalog.build("power_up", station=opened),
            board,
            folder / "power_up.h5",
            progress=progress,
            overwrite=overwrite,
        )
        if power_up.status != "success":
            raise RuntimeError(f"power up failed ({power_up.reason}); see {power_up.path}")
        for core, mode in enumerate(("odp", "tdp")):
            program = run_procedure(
                catalog.build(
                    "program", {"weights": weights, "cores": [core], "mode": mode, "seed": seed}
                ),
                board,
                folder / f"program-{mode}.h5",
                progress=progress,
                overwrite=overwrite,
            )
            characterize = run_procedure(
                catalog.build(
                    "characterize",
                    {"weights": weights, "cores": [core], "n_inputs": n_inputs, "seed": seed},
                ),
                board,
                folder / f"characterize-{mode}.h5",
                progress=progress,
                overwrite=overwrite,
            )
            modes.append(ModeResult(mode, core, program, characterize))
        cores = [m.core for m in modes]
        label, cal_results, k_bar = _calibrate(
            board, cores, folder, seed, calibration_dir, progress, overwrite
        )
        for k, m in enumerate(modes):
            g_max = float(m.core_results.get("g_max_counts", 0.0))
            calibrated = run_procedure(
                catalog.build("characterize", {
                    "weights": weights, "cores": [m.core], "n_inputs": n_inputs, "seed": seed,
                    "output": "ldpu", "counts_per_unit": k_bar, "g_max_counts": g_max,
                }),
                board,
                folder / f"characterize-{m.mode}-calibrated.h5",
                progress=progress,
                overwrite=overwrite,
            )  # fmt: skip
            modes[k] = ModeResult(m.mode, m.core, m.program, m.characterize, calibrated)
        drift = run_procedure(
            catalog.build(
                "drift",
                {
                    "cores": cores,
                    "until": drift_until_s,
                    "points": 8,
                    "sample": 256,
                    "verify_reads": 4,
                },
            ),
            board,
            folder / "drift.h5",
            progress=progress,
            overwrite=overwrite,
        )
        inference = None
        if infer_samples >= 0:
            inference = run_procedure(
                _inference(identity.n_cores, infer_samples),
                board,
                folder / "infer.h5",
                progress=progress,
                overwrite=overwrite,
            )
        run_procedure(
            catalog.build("power_down", station=opened),
            board,
            folder / "power_down.h5",
            progress=progress,
            overwrite=overwrite,
        )
    return DemoResult(
        url,
        identity,
        folder,
        modes,
        time.monotonic() - started,
        label,
        cal_results,
        drift,
        inference,
    )


def _check_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a folder that is not one, or holds a run file the demo would replace, before
    anything runs (``overwrite`` allows replacing run files and other regular files)."""
    if os.path.lexists(folder) and not folder.is_dir():
        raise RunFileExistsError(f"{folder} exists and is not a directory")
    for name in RUN_FILES:
        check_out(folder / f"{name}.h5", overwrite=overwrite)


def _inference(n_cores: int, samples: int) -> Procedure:
    """The demo's inference step: the CNN beside the demo's cores, or the MLP on a small board."""
    common = {"drift": "25s,1d", "compensation": "none,gdc,adabs", "samples": samples}
    if n_cores >= 13:
        network = {"model": "mnist1d_cnn", "dataset": "mnist1d", "cores": f"2-{n_cores - 1}"}
    else:
        network = {"model": "digits_mlp", "dataset": "digits", "cores": f"0-{n_cores - 1}"}
    return catalog.build("infer", {**network, **common})


def _calibrate(
    board: Board,
    cores: list[int],
    folder: Path,
    seed: int,
    calibration_dir: str | Path | None,
    progress: bool,
    overwrite: bool,
) -> tuple[str, dict[str, Any], float]:
    """Load the chip's stored set, else calibrate on the programmed weights."""
    store = CalibrationStore(calibration_dir)
    try:
        stored = store.latest(board.identity.chip_id, mode=4)
        if stored is not None and all(c in stored.cores for c in cores):
            apply_set(board, stored, cores)
            return f"stored set {stored.id}", stored.metadata["results"], stored.counts_per_unit
    except CalibrationError:
        pass
    summary = run_procedure(
        catalog.build("calibrate", {"cores": cores, "program_reference": False, "seed": seed}),
        board,
        folder / "calibrate.h5",
        progress=progress,
        overwrite=overwrite,
    )
    if summary.status != "success":
        raise CalibrationError(f"calibration failed: {summary.reason}")
    results = summary.results
    return "calibrate run (not stored)", results, float(results["counts_per_unit"])


def print_demo(result: DemoResult) -> None:
    """Print the demo's figures as a table, and where the run files are."""
    from rich.console import Console
    from rich.table import Table

    ident = result.identity
    console = Console()
    console.print(
        f"[bold]Board[/] {ident.board_id} (firmware {ident.firmware_version}), "
        f"chip {ident.chip_id}, {ident.n_cores} cores, "
        f"{'simulated' if ident.simulated else 'hardware'}, on {result.url}"
    )
    table = Table(title="Random 30 %-sparse weights: program-and-verify, then MVM error [LG §IV]")
    table.add_column("quantity")
    for mode in result.modes:
        table.add_column(f"{mode.mode.upper()} (core {mode.core})", justify="right")

    def row(label: str, values: list[str]) -> None:
        table.add_row(label, *values)

    core = [m.core_results for m in result.modes]
    row("run status", [f"{m.program.status} / {m.characterize.status}" for m in result.modes])
    row(
        "cells converged",
        [f"{100 * c.get('converged_fraction', float('nan')):.2f} %" for c in core],
    )
    row(
        "usable cells (yield)",
        [f"{100 * c.get('yield_fraction', float('nan')):.2f} %" for c in core],
    )
    row("iterations (max 30)", [str(c.get("iterations", "?")) for c in core])
    row("pulses", [f"{c.get('pulses', 0):,}" for c in core])
    row("Gmax (counts)", [f"{c.get('g_max_counts', float('nan')):.0f}" for c in core])
    for name, label in (
        ("total", "ε_total  ‖y−Wx‖/‖Wx‖"),
        ("linear", "ε_linear (programming)"),
        ("residual", "ε_residual (noise, ADC)"),
    ):
        row(
            label,
            [
                f"{100 * m.characterize.results.get(f'eps_{name}_mean', float('nan')):.2f} %"
                for m in result.modes
            ],
        )
    cal = result.calibration_results
    row(
        "ε_total calibrated (LDPU int8)",
        [
            f"{100 * m.calibrated.results.get('eps_total_mean', float('nan')):.2f} %"
            if m.calibrated
            else "-"
            for m in result.modes
        ],
    )
    row(
        "ε_linear calibrated",
        [
            f"{100 * m.calibrated.results.get('eps_linear_mean', float('nan')):.2f} %"
            if m.calibrated
            else "-"
            for m in result.modes
        ],
    )
    console.print(table)
    console.print(
        f"Calibration: {result.calibration}; per-ADC gain spread "
        f"{100 * cal.get('gain_spread_before', float('nan')):.2f} % → "
        f"{100 * cal.get('gain_spread_after', float('nan')):.2f} %"
    )
    if result.drift is not None:
        d = result.drift.results
        drift_table = Table(title=f"Drift to {d.get('time_s', 0) / 3600:.3g} h (virtual clock)")
        drift_table.add_column("quantity")
        for mode in result.modes:
            drift_table.add_column(f"core {mode.core}", justify="right")
        for key, label in (
            ("scale_error", "output scale error, no compensation"),
            ("scale_error_gdc", "with global drift compensation"),
            ("scale_error_column", "with per-column compensation"),
            ("nu_core", "ν of the core (fit)"),
        ):
            values = d.get(key, [])
            fmt = "{:.4f}" if key == "nu_core" else "{:.2%}"
            drift_table.add_row(label, *[fmt.format(v) for v in values])
        console.print(drift_table)
    if result.inference is not None:
        if result.inference.status == "success":
            console.print(accuracy_table(result.inference.results), highlight=False, soft_wrap=True)
        else:
            console.print(f"Inference {result.inference.status}: {result.inference.reason}")
    console.print(f"Run files in [bold]{result.out_dir}[/] ({result.wall_s:.1f} s):")
    for mode in result.modes:
        for summary in (mode.program, mode.characterize, mode.calibrated):
            if summary is not None:
                console.print(f"  {summary.path}")
    for extra in (result.drift, result.inference):
        if extra is not None:
            console.print(f"  {extra.path}")
