"""The chipctl terminal UI (``chipctl tui``): Station, Chip map, Core detail, Procedures, Runs.

The app (:class:`~chipctl.tui.app.ChipctlApp`) is imported lazily so ``import chipctl.tui.data``
stays free of Textual.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChipctlApp"]


def __getattr__(name: str) -> Any:
    if name == "ChipctlApp":
        from chipctl.tui.app import ChipctlApp

        return ChipctlApp
    raise AttributeError(f"module 'chipctl.tui' has no attribute {name!r}")
