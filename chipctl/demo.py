"""``chipctl demo``: program a random weight matrix onto a core, run MVMs, report the error."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from drivers.board import Board, BoardIdentity
from procedures.program_verify import ProgramResult, program_core, weight_targets

SPARSITY = 0.3
"""Fraction of zero weights and inputs, as in the published MVM characterisation [LG §IV]."""


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured."""

    url: str
    identity: BoardIdentity
    core: int
    mode: int
    batch: int
    program: ProgramResult
    program_wall_s: float
    board_time_s: float
    mvm_error_global: float
    mvm_error_per_row: float
    mvm_wall_s: float


def _relative_error(measured: np.ndarray, ideal: np.ndarray) -> float:
    return float(np.linalg.norm(measured - ideal) / np.linalg.norm(ideal))


def run_demo(
    url: str,
    *,
    core: int = 0,
    batch: int = 256,
    mode: int = 4,
    seed: int = 0,
    timeout_s: float = 5.0,
) -> DemoResult:
    """Program random 30 %-sparse weights on ``core`` with ODP and measure the MVM error.

    The raw ADC counts have an unknown scale until the chip is calibrated, so the error is given
    after a least-squares fit of one global scale (what a single Wmax/Gmax factor does) and of
    a per-row scale and offset (what the LDPU's per-ADC calibration will do).
    """
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1.0, 1.0, size=(256, 256))
    weights[rng.random(weights.shape) < SPARSITY] = 0.0
    inputs = rng.integers(-127, 128, size=(batch, 256))
    inputs[rng.random(inputs.shape) < SPARSITY] = 0
    inputs = inputs.astype(np.int8)

    with Board(url, timeout_s=timeout_s) as board:
        start = time.perf_counter()
        result = program_core(board, core, weight_targets(weights))
        program_wall_s = time.perf_counter() - start
        start = time.perf_counter()
        counts = board.mvm(core, inputs, mode=mode)
        mvm_wall_s = time.perf_counter() - start
        identity = board.identity
        board_time_s = board.status().uptime_s

    measured = counts.difference.astype(np.float64)  # (batch, 256)
    ideal = inputs.astype(np.float64) @ weights.T
    scale = float(np.sum(measured * ideal) / np.sum(measured * measured))
    per_row = np.empty_like(measured)
    design = np.stack([measured, np.ones_like(measured)], axis=-1)  # (batch, rows, 2)
    for row in range(measured.shape[1]):
        coef, *_ = np.linalg.lstsq(design[:, row, :], ideal[:, row], rcond=None)
        per_row[:, row] = design[:, row, :] @ coef
    return DemoResult(
        url=url,
        identity=identity,
        core=core,
        mode=mode,
        batch=batch,
        program=result,
        program_wall_s=program_wall_s,
        board_time_s=board_time_s,
        mvm_error_global=_relative_error(scale * measured, ideal),
        mvm_error_per_row=_relative_error(per_row, ideal),
        mvm_wall_s=mvm_wall_s,
    )


def print_demo(result: DemoResult) -> None:
    """Print the demo's figures as a table."""
    from rich.console import Console
    from rich.table import Table

    ident = result.identity
    console = Console()
    console.print(
        f"[bold]Board[/] {ident.board_id} (firmware {ident.firmware_version}), "
        f"chip {ident.chip_id}, "
        f"{ident.n_cores} cores, {'simulated' if ident.simulated else 'hardware'}, on {result.url}"
    )
    program = result.program
    table = Table(title=f"Core {result.core}: program-and-verify (ODP) and {result.batch} MVMs")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("cells within 10 counts of target", f"{100 * program.converged_fraction:.2f} %")
    table.add_row("iterations used (max 30)", str(program.iterations))
    table.add_row("pulses sent", f"{program.pulses:,}")
    table.add_row("programming wall time", f"{result.program_wall_s:.2f} s")
    table.add_row("chip time (board clock)", f"{result.board_time_s:.4g} s")
    table.add_row("MVM mode", f"{result.mode}-phase")
    table.add_row(
        "MVM error ‖y−Wx‖/‖Wx‖, one global scale", f"{100 * result.mvm_error_global:.2f} %"
    )
    table.add_row("MVM error, per-row scale and offset", f"{100 * result.mvm_error_per_row:.2f} %")
    table.add_row("MVM batch wall time", f"{1e3 * result.mvm_wall_s:.1f} ms")
    console.print(table)
