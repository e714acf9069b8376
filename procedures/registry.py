"""All procedures by name, for the CLI, recipes, the TUI and resume.

Entries name their class as "module:Class" and are imported on first use, so a broken or slow
procedure module never stops the others from loading.
"""

from __future__ import annotations

import importlib

from procedures.base import Procedure

PROCEDURES: dict[str, str] = {
    "snapshot": "procedures.snapshot:ConductanceSnapshot",
    "program": "procedures.program_verify:ProgramVerify",
    "characterize": "procedures.characterize:Characterize",
    "calibrate": "procedures.calibrate:Calibrate",
    "drift": "procedures.drift:DriftMonitor",
    "compensate": "procedures.drift:Compensate",
    # The network and data are files, which procedures never read: the chipctl subclass loads
    # them from the model/dataset parameters (procedures.infer.Infer takes objects).
    "infer": "chipctl.inference:InferModel",
}


def get(name: str) -> type[Procedure]:
    """The procedure class called ``name``; a clear error listing the known ones."""
    try:
        target = PROCEDURES[name]
    except KeyError:
        raise KeyError(f"unknown procedure {name!r}; known: {sorted(PROCEDURES)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Procedure)) or cls.name != name:
        raise TypeError(f"registry entry {name!r} -> {target} is not the procedure {name!r}")
    return cls


def available() -> list[str]:
    """Names of all registered procedures."""
    return sorted(PROCEDURES)
