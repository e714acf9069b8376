"""``chipctl demo``: program random weights with ODP and TDP, characterise both, report.

Each step is a procedure run through the runner, so the demo leaves one HDF5 run file per step
(``chipctl runs DIR`` lists them, ``chipctl show FILE`` prints one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.runner import RunSummary, run_procedure
from drivers.board import Board, BoardIdentity
from procedures.characterize import Characterize
from procedures.program_verify import ProgramVerify

SPARSITY = 0.3
"""Fraction of zero weights, as in the published MVM characterisation [LG §IV]."""


@dataclass(frozen=True)
class ModeResult:
    """What one programming mode achieved on its core."""

    mode: str
    core: int
    program: RunSummary
    characterize: RunSummary

    @property
    def core_results(self) -> dict[str, Any]:
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
) -> DemoResult:
    """Program the same random weights with ODP on core 0 and TDP on core 1, characterise both.

    Args:
        url: board URL.
        out_dir: folder for the run files (default ``runs/demo-<time>``).
        n_inputs: random inputs per characterisation (2,048 published [LG §IV]).
        seed: seed of the weights and inputs.
    """
    started = time.monotonic()
    folder = Path(out_dir) if out_dir else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    weights = random_weights(seed)
    modes: list[ModeResult] = []
    with Board(url, timeout_s=timeout_s) as board:
        identity = board.identity
        for core, mode in enumerate(("odp", "tdp")):
            program = run_procedure(
                ProgramVerify(weights=weights, cores=[core], mode=mode, seed=seed),
                board,
                folder / f"program-{mode}.h5",
                progress=progress,
            )
            characterize = run_procedure(
                Characterize(weights=weights, cores=[core], n_inputs=n_inputs, seed=seed),
                board,
                folder / f"characterize-{mode}.h5",
                progress=progress,
            )
            modes.append(ModeResult(mode, core, program, characterize))
    return DemoResult(url, identity, folder, modes, time.monotonic() - started)


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
    console.print(table)
    console.print(f"Run files in [bold]{result.out_dir}[/] ({result.wall_s:.1f} s):")
    for mode in result.modes:
        for summary in (mode.program, mode.characterize):
            console.print(f"  {summary.path}")
