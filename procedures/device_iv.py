"""Single-device characterisation on the SMU: an I–V sweep and resistance versus pulse amplitude.

The procedure drives the SMU of a *station* given to the constructor
(``DeviceIV(station=open_station, points=21)``); what it needs is declared by :class:`IVStation`.
Every value passes the station's limits before it is sent: the sweep's end points and the
compliance (``check_smu``), and every programming pulse (``check_programming``: amplitude, rails
in range, chuck temperature inside its window).

1. **I–V sweep** at the present state: a linear voltage sweep ``v_start_v`` → ``v_stop_v`` with
   ``points`` points and current compliance ``compliance_a``; the conductance is the
   least-squares slope dI/dV (µS), the intercept shows offsets.
2. **Resistance versus pulse** (if ``pulse_count`` > 0): optionally a RESET pulse first
   (``reset_ua``, 125 ns square), then ``pulse_count`` square pulses of width ``pulse_width_ns``
   with amplitudes from ``pulse_start_ua`` to ``pulse_stop_ua``; after each, ``reads`` readings
   at ``read_voltage_v`` give R = V/I (Ω) and G = I/V (µS). With the melt-quench pulse response
   of PCM (amplitude sets the amorphous fraction, [LG Methods]) G falls with the amplitude.

The SMU is left at 0 V with its output off (cleanup), whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec

log = logging.getLogger(__name__)


class SourceMeter(Protocol):
    """The SMU operations used (drivers.instruments.Keithley2450)."""

    source_function: Any
    source_voltage_v: Any
    current_limit_a: Any
    measure_function: Any
    current_autorange_enabled: Any
    output_enabled: Any

    def sweep_voltage_linear(
        self, start_v: float, stop_v: float, points: int, delay_s: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def measure_current_a(self) -> float: ...
    def pulse_current(self, amplitude_a: float, width_s: float, fall_s: float = 0.0) -> None: ...
    def shutdown(self) -> None: ...


class DeviceLimits(Protocol):
    """The station's limit checks used here (chipctl.station.Limits)."""

    def check_smu(self, volts: float, amps: float) -> None: ...
    def check_programming(
        self, amplitude_ua: float, rails_ok: bool, temperature_c: float
    ) -> None: ...


class IVStation(Protocol):
    """What DeviceIV needs: the SMU, the limits, the rail state and the chuck temperature."""

    @property
    def smu(self) -> SourceMeter: ...
    @property
    def limits(self) -> DeviceLimits: ...
    def rails_ok(self) -> bool: ...
    def temperature_c(self) -> float: ...


def fit_conductance(volts: np.ndarray, amps: np.ndarray) -> tuple[float, float]:
    """Least-squares line I = G·V + I0 through the sweep: (G in µS, I0 in A)."""
    v = np.asarray(volts, dtype=np.float64)
    i = np.asarray(amps, dtype=np.float64)
    design = np.column_stack([v, np.ones_like(v)])
    (slope, intercept), *_ = np.linalg.lstsq(design, i, rcond=None)
    return float(slope * 1e6), float(intercept)


class DeviceIV(Procedure):
    """I–V sweep and resistance-versus-pulse characterisation of the single test device."""

    name: ClassVar[str] = "device_iv"
    title: ClassVar[str] = "Single-device I–V and R–pulse"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("v_start_v", -0.2, float, "V", "sweep start", -210.0, 210.0),
        Parameter("v_stop_v", 0.2, float, "V", "sweep stop", -210.0, 210.0),
        Parameter("points", 21, int, "", "sweep points", 2, 2500),
        Parameter("compliance_a", 1e-4, float, "A", "current limit of the sweep", 1e-9, 1.05),
        Parameter("delay_s", 0.0, float, "s", "source-to-measure delay per point", 0.0, 10.0),
        Parameter("pulse_count", 0, int, "", "pulses of the R-pulse part (0: none)", 0, 1000),
        Parameter("reset_first", True, bool, "", "apply a RESET pulse before the series"),
        Parameter("reset_ua", 700.0, float, "uA", "RESET amplitude [LG Methods]", 0.0, 1050.0),
        Parameter("pulse_start_ua", 300.0, float, "uA", "first pulse amplitude", 0.0, 1050.0),
        Parameter("pulse_stop_ua", 600.0, float, "uA", "last pulse amplitude", 0.0, 1050.0),
        Parameter("pulse_width_ns", 125.0, float, "ns", "pulse width [LG Methods]", 10.0, 1e6),
        Parameter("read_voltage_v", 0.2, float, "V", "read voltage [LG Methods]", -10.0, 10.0),
        Parameter("reads", 5, int, "", "readings averaged per pulse", 1, 1000),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("iv_current", "iv_voltage")

    def __init__(self, *, station: IVStation, **values: Any) -> None:
        super().__init__(**values)
        self.station = station

    def streams(self) -> tuple[StreamSpec, ...]:
        n = self.params["points"]
        return (
            StreamSpec("iv_voltage", (n,), "f8", "V", "sweep source voltages"),
            StreamSpec("iv_current", (n,), "f8", "A", "sweep current readings"),
            StreamSpec("iv_conductance", (), "f8", "uS", "least-squares slope dI/dV"),
            StreamSpec("pulse_amplitude", (), "f8", "uA", "amplitude of the pulse before the read"),
            StreamSpec("resistance", (), "f8", "ohm", "V/I after the pulse"),
            StreamSpec("conductance", (), "f8", "uS", "I/V after the pulse"),
        )

    def total(self) -> int:
        return 1 + int(self.params["pulse_count"])

    def amplitudes_ua(self) -> list[float]:
        """Pulse amplitudes of the series in µA."""
        p = self.params
        if p["pulse_count"] == 0:
            return []
        return [
            float(a) for a in np.linspace(p["pulse_start_ua"], p["pulse_stop_ua"], p["pulse_count"])
        ]

    def _check_plan(self) -> None:
        """All limit checks that do not depend on the run, before anything is set."""
        p = self.params
        limits = self.station.limits
        for volts in (p["v_start_v"], p["v_stop_v"], p["read_voltage_v"]):
            limits.check_smu(volts, p["compliance_a"])
        if p["read_voltage_v"] == 0.0:
            raise ValueError("read_voltage_v must not be 0 V (R = V/I)")

    def _pulse(self, amplitude_ua: float, width_ns: float) -> None:
        self.station.limits.check_programming(
            amplitude_ua, self.station.rails_ok(), self.station.temperature_c()
        )
        self.station.smu.pulse_current(amplitude_ua * 1e-6, width_ns * 1e-9, 0.0)

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        p = self.params
        self._check_plan()
        smu = self.station.smu
        smu.source_function = "VOLT"
        smu.source_voltage_v = 0.0
        smu.current_limit_a = p["compliance_a"]
        smu.measure_function = "CURR"
        smu.current_autorange_enabled = True
        smu.output_enabled = True

        volts, amps = smu.sweep_voltage_linear(
            p["v_start_v"], p["v_stop_v"], p["points"], p["delay_s"]
        )
        conductance_us, offset_a = fit_conductance(volts, amps)
        in_compliance = int(np.sum(np.abs(amps) >= 0.999 * p["compliance_a"]))
        yield Data("iv_voltage", volts)
        yield Data("iv_current", amps)
        yield Data("iv_conductance", np.float64(conductance_us))
        self.results.update(
            conductance_us=conductance_us, offset_a=offset_a, points_in_compliance=in_compliance
        )
        yield Progress(1, self.total(), f"I–V: G = {conductance_us:.3f} µS")

        amplitudes = self.amplitudes_ua()
        if not amplitudes:
            return
        if p["reset_first"]:
            self.check_stop()
            self._pulse(p["reset_ua"], 125.0)
        smu.source_voltage_v = 0.0
        for index, amplitude in enumerate(amplitudes):
            self.check_stop()
            self._pulse(amplitude, p["pulse_width_ns"])
            smu.source_voltage_v = p["read_voltage_v"]
            current = float(np.mean([smu.measure_current_a() for _ in range(p["reads"])]))
            smu.source_voltage_v = 0.0
            resistance = p["read_voltage_v"] / current if current != 0 else float("inf")
            yield Data("pulse_amplitude", np.float64(amplitude))
            yield Data("resistance", np.float64(resistance))
            yield Data("conductance", np.float64(current / p["read_voltage_v"] * 1e6))
            yield Progress(
                index + 2, self.total(), f"pulse {amplitude:.0f} µA: R = {resistance:.4g} Ω"
            )

    def cleanup(self, board: Board) -> None:
        """SMU to 0 V and output off; then the board's safe state."""
        try:
            self.station.smu.shutdown()
        except DriverError as exc:
            log.warning("device_iv: SMU shutdown failed: %s", exc)
        finally:
            super().cleanup(board)
