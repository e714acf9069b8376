"""What a station file names: the instrument models and roles, the rails, the simulation options.

Plain frozen dataclasses filled in by :func:`chipctl.station.file.parse_station`; the safety
limits built from them are :class:`chipctl.station.limits.Limits`, and the whole validated file
is :class:`chipctl.station.connect.Station`. A new instrument model is added to :data:`MODELS`
and :data:`ROLES` here.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.instruments import Keithley2450, KeysightE36312A, LakeShore335, SCPIInstrument

SIMULATED = "simulated"
"""Resource value that stands for the simulated station's instrument."""

MODELS: dict[str, type[SCPIInstrument]] = {
    "keithley2450": Keithley2450,
    "keysight_e36312a": KeysightE36312A,
    "lakeshore335": LakeShore335,
}
"""Instrument model names accepted in a station file → driver class."""

ROLES: dict[str, str] = {
    "smu": "keithley2450",
    "supply": "keysight_e36312a",
    "chuck": "lakeshore335",
}
"""Instrument roles of a station → the model each role needs."""


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: role (smu/supply/chuck), model, VISA resource and back end."""

    role: str
    model: str
    resource: str
    backend: str = "@py"
    timeout_ms: int = 5000

    @property
    def simulated(self) -> bool:
        """True if the instrument is the simulated one (resource ``"simulated"``)."""
        return self.resource == SIMULATED


@dataclass(frozen=True)
class RailConfig:
    """One chip rail on a supply output.

    Attributes:
        name: rail name (the TOML table name, e.g. ``vdd``).
        channel: supply output (1..3).
        voltage_v: operating voltage in V.
        current_limit_a: the supply's current limit for the rail in A.
        max_voltage_v: safety limit on the rail voltage in V.
        max_current_a: safety limit on the rail current in A.
        readback_tolerance_v: allowed |readback − setpoint| in V after a ramp.
    """

    name: str
    channel: int
    voltage_v: float
    current_limit_a: float
    max_voltage_v: float
    max_current_a: float
    readback_tolerance_v: float = 0.02


@dataclass(frozen=True)
class SimulationConfig:
    """Options of the simulated station: seed and virtual seconds per wall-clock second."""

    seed: int = 0
    time_scale: float = 1.0
