"""The simulated bench instruments.

- ``keithley2450.yaml``, ``keysight_e36312a.yaml``, ``lakeshore335.yaml``: pyvisa-sim definitions
  (fixed and stored replies, error replies) for the drivers' protocol tests, opened as
  ``pyvisa.ResourceManager(f"{path}@sim")``; :data:`DEFINITIONS` gives their paths.
- :mod:`drivers.sim.instruments.station_server`: the *simulated station*, the same instruments
  served as SCPI over TCP on 127.0.0.1 and backed by physics, one module each:
  :mod:`~drivers.sim.instruments.smu` (a PCM test device on the SMU, on the chip's device
  model), :mod:`~drivers.sim.instruments.supply` (resistive loads) and
  :mod:`~drivers.sim.instruments.temperature` (a chuck with a finite heating rate);
  :mod:`~drivers.sim.instruments.scpi` holds their shared SCPI plumbing.

Reached only by address (a VISA resource string); drivers never import this package.
"""

from __future__ import annotations

from pathlib import Path

DEFINITIONS_DIR = Path(__file__).resolve().parent
"""Folder holding the pyvisa-sim YAML definitions."""

DEFINITIONS: dict[str, Path] = {
    "keithley2450": DEFINITIONS_DIR / "keithley2450.yaml",
    "keysight_e36312a": DEFINITIONS_DIR / "keysight_e36312a.yaml",
    "lakeshore335": DEFINITIONS_DIR / "lakeshore335.yaml",
}
"""Instrument model → its pyvisa-sim definition file."""


def fresh_backend(model: str, directory: Path) -> str:
    """A pyvisa-sim back-end string for ``model`` whose instrument state starts from defaults.

    pyvisa keeps one simulated library (and so one set of device states) per definition path for
    the life of the process; a copy in ``directory`` (e.g. pytest's ``tmp_path``) gives each test
    its own instrument, as pyvisa-sim cannot reset one (pyvisa-sim issue #83).
    """
    source = DEFINITIONS[model]
    target = Path(directory) / source.name
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return f"{target}@sim"
