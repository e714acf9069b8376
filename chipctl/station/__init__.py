"""The station: board, bench instruments and the safety limits, from one TOML file.

A station file names the board URL, the chip id, each instrument's VISA resource and back end,
the rails (in power-up order) and the **safety limits**::

    [station]
    chip_id = "SIM-HERMES-0001"
    board_url = "mockchip://?seed=1"

    [instruments.smu]                 # model: keithley2450
    model = "keithley2450"
    resource = "simulated"            # or "USB0::0x05E6::0x2450::04096331::INSTR"
    backend = "@py"                   # "@py", "path.yaml@sim" or "" (IVI)

    [instruments.supply]
    model = "keysight_e36312a"
    resource = "simulated"

    [instruments.chuck]
    model = "lakeshore335"
    resource = "simulated"

    [simulation]                      # only used when a resource is "simulated"
    seed = 0
    time_scale = 1.0                  # virtual s per wall-clock s

    [limits]
    ramp_rate_v_per_s = 2.0
    ramp_step_v = 0.05
    temperature_window_c = [15.0, 60.0]
    max_programming_ua = 700.0
    smu_max_voltage_v = 1.0
    smu_max_current_a = 1e-3

    [rails.vdd]                       # rails power up in file order, down in reverse
    channel = 1
    voltage_v = 0.8
    current_limit_a = 0.5
    max_voltage_v = 0.9
    max_current_a = 1.0
    readback_tolerance_v = 0.02

Every key is checked by :func:`~chipctl.station.file.load_station`
(:mod:`chipctl.station.file`); an error names the key and its line. A resource ``"simulated"``
makes :meth:`Station.open <chipctl.station.connect.Station.open>` start the simulated station
(:mod:`drivers.sim.instruments.station_server`) in-process and connect to it over TCP through
pyvisa-py, exactly as it would to a remote instrument (:mod:`chipctl.station.connect`);
:func:`~chipctl.station.file.default_station` is fully simulated.

Limits are enforced in ONE place, :class:`~chipctl.station.limits.Limits`
(:mod:`chipctl.station.limits`): rail settings, every intermediate ramp step, the SMU's
voltage/current, the chuck temperature window and programming pulses. A violation raises
:class:`~chipctl.station.limits.SafetyLimitError` (a :class:`~drivers.errors.LimitError`) naming
the limit; values are never clipped. The limits themselves are checked against the instruments'
declared ratings (driver class attributes) and physical ranges by
:func:`~chipctl.station.limits.limit_problems`. The parts of the file are the dataclasses of
:mod:`chipctl.station.config`.
"""

from chipctl.station.config import (
    MODELS,
    ROLES,
    SIMULATED,
    InstrumentConfig,
    RailConfig,
    SimulationConfig,
)
from chipctl.station.connect import OpenStation, Station, station_check
from chipctl.station.file import (
    DEFAULT_STATION_TOML,
    StationFileError,
    default_station,
    load_station,
    parse_station,
)
from chipctl.station.limits import LimitProblem, Limits, SafetyLimitError, limit_problems

__all__ = [
    "DEFAULT_STATION_TOML",
    "MODELS",
    "ROLES",
    "SIMULATED",
    "InstrumentConfig",
    "LimitProblem",
    "Limits",
    "OpenStation",
    "RailConfig",
    "SafetyLimitError",
    "SimulationConfig",
    "Station",
    "StationFileError",
    "default_station",
    "limit_problems",
    "load_station",
    "parse_station",
    "station_check",
]
