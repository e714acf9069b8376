"""Bench-instrument drivers (pyvisa): one file and one class per instrument model.

- :class:`~drivers.instruments.keithley2450.Keithley2450`: source-measure unit (test device).
- :class:`~drivers.instruments.keysight_e36312a.KeysightE36312A`: triple DC supply (chip rails).
- :class:`~drivers.instruments.lakeshore335.LakeShore335`: temperature controller (chuck).

All share :mod:`drivers.instruments._scpi` (VISA resource handling, error queue → typed
:class:`~drivers.instruments._scpi.InstrumentError`, the ``control`` property factory). Each
driver is a context manager whose exit calls ``shutdown()`` (safe state) and closes the session.
"""

from drivers.instruments._scpi import (
    CommandError,
    DataOutOfRangeError,
    DeviceSpecificError,
    ExecutionError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentTimeout,
    QueryError,
    ReplyFormatError,
    SCPIInstrument,
)
from drivers.instruments.keithley2450 import Keithley2450
from drivers.instruments.keysight_e36312a import KeysightE36312A
from drivers.instruments.lakeshore335 import LakeShore335

__all__ = [
    "CommandError",
    "DataOutOfRangeError",
    "DeviceSpecificError",
    "ExecutionError",
    "InstrumentConnectionError",
    "InstrumentError",
    "InstrumentTimeout",
    "Keithley2450",
    "KeysightE36312A",
    "LakeShore335",
    "QueryError",
    "ReplyFormatError",
    "SCPIInstrument",
]
