"""All procedures by name, for the CLI, recipes, the TUI and resume."""

from __future__ import annotations

from procedures.base import Procedure
from procedures.snapshot import ConductanceSnapshot

PROCEDURES: dict[str, type[Procedure]] = {cls.name: cls for cls in (ConductanceSnapshot,)}


def get(name: str) -> type[Procedure]:
    """The procedure class called ``name``; a clear error listing the known ones."""
    try:
        return PROCEDURES[name]
    except KeyError:
        raise KeyError(f"unknown procedure {name!r}; known: {sorted(PROCEDURES)}") from None
