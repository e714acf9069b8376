"""chipctl: control stack for a 64-core PCM analog in-memory-computing test chip.

What people run and import: the CLI (``chipctl``), the demo, the runner and run files, the
calibration store and (later) the TUI. The only layer that touches files and screens.

Scripts run procedures the way the CLI does::

    from chipctl import Board, ProgramVerify, run_procedure

    with Board("mockchip://?seed=1") as board:
        summary = run_procedure(ProgramVerify(weights=w, cores=[0, 1]), board, "program.h5")
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("chipctl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

DEFAULT_BOARD_URL = "mockchip://?seed=1"
"""The built-in simulated chip."""

_EXPORTS = {
    "Board": "drivers.board",
    "run_procedure": "chipctl.runner",
    "resume_run": "chipctl.resume",
    "RunSummary": "chipctl.runner",
    "ProgramVerify": "procedures.program_verify",
    "Characterize": "procedures.characterize",
    "ConductanceSnapshot": "procedures.snapshot",
}

__all__ = ["DEFAULT_BOARD_URL", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so ``import chipctl`` stays light."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chipctl' has no attribute {name!r}")
    return getattr(import_module(module), name)
