"""The simulated station: the bench instruments served as SCPI over TCP, backed by physics.

pyvisa-sim can only give fixed or stored replies, so an I–V sweep on it would measure nothing.
This module serves the same command subsets as the drivers in ``drivers/instruments`` on one TCP
port per instrument, bound to 127.0.0.1 (the protocols have no authentication), reached through
pyvisa-py as ``TCPIP::127.0.0.1::PORT::SOCKET``. Messages end in ``"\\n"`` (a ``"\\r"`` before it
is ignored); replies end in ``"\\n"``. Several commands may share a line, separated by ``;``.

One module per simulated instrument, each given the clock and its own model (never the station):

- :mod:`drivers.sim.instruments.smu`: Keithley 2450 → one PCM test device, whose physics is a
  :class:`~drivers.sim.devices.DeviceModel` (the simulated chip's model and equations) and the
  chip's :class:`~drivers.sim.pulses.PulseModel`; pulses by ``:SOUR:PULS:CURR``;
- :mod:`drivers.sim.instruments.supply`: Keysight E36312A → three resistive rails;
- :mod:`drivers.sim.instruments.temperature`: Lake Shore 335 → a chuck with a finite heating
  rate;
- :mod:`drivers.sim.instruments.scpi`: the SCPI plumbing they share.

**Clock.** One :class:`~drivers.sim.clock.VirtualClock`, the simulator's clock: virtual time
advances by modelled operation times and by ``SIM:CLOCk:ADVance <s>`` (a simulator-only command
every instrument here accepts; real instruments reject it), plus ``time_scale`` × wall-clock
time (0 = purely virtual, the test default; 1 = real time).

Run it as ``python -m drivers.sim.instruments.station_server``: it prints one JSON line with the
VISA resources (``{"smu": "TCPIP::127.0.0.1::PORT::SOCKET", ...}``) and serves until stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np

from drivers.sim.child import announced_child
from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DEFAULT_DEVICE_MODEL, DEVICE_MODELS, DeviceModel, device_model
from drivers.sim.instruments.scpi import ScpiInstrument
from drivers.sim.instruments.scpi import normalise_header as normalise_header
from drivers.sim.instruments.smu import SimulatedSmu, SimulatedTestDevice
from drivers.sim.instruments.supply import DEFAULT_RAIL_LOADS_OHM as DEFAULT_RAIL_LOADS_OHM
from drivers.sim.instruments.supply import (
    RAIL_RATINGS,
    SimulatedRail,
    SimulatedSupply,
)
from drivers.sim.instruments.temperature import HEATER_RATES_K_PER_MIN as HEATER_RATES_K_PER_MIN
from drivers.sim.instruments.temperature import (
    KELVIN_OFFSET,
    SimulatedChuck,
    SimulatedTemperatureController,
)

log = logging.getLogger(__name__)

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

INSTRUMENT_NAMES = ("smu", "supply", "chuck")
"""Instruments of the station, in the order their ports are opened."""


class SimulatedStation:
    """SMU, supply and temperature controller served on 127.0.0.1, one TCP port each.

    Args:
        seed: seed of all randomness (device sampling, read noise, readback noise).
        time_scale: virtual seconds per wall-clock second on top of explicit advances
            (0: purely virtual, deterministic; 1: real time).
        host: address to bind; 127.0.0.1 (no authentication: never expose it).
        ports: instrument name → TCP port (0 or missing: a free port).
        rail_loads_ohm: load resistors on supply outputs 1, 2, 3 in Ω.
        ambient_c: ambient temperature in °C.
        devices: the test device's device model (:mod:`drivers.sim.devices`), or its name in
            :data:`~drivers.sim.devices.DEVICE_MODELS`; default "hermes".
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float = 0.0,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        rail_loads_ohm: tuple[float, float, float] = DEFAULT_RAIL_LOADS_OHM,
        ambient_c: float = 22.0,
        devices: DeviceModel | str = DEFAULT_DEVICE_MODEL,
    ) -> None:
        self.host = host
        self.lock = threading.RLock()
        self.rng = np.random.default_rng(seed)
        self.clock = VirtualClock(time_scale=time_scale)
        model = device_model(devices) if isinstance(devices, str) else devices
        self.device = SimulatedTestDevice(np.random.default_rng([seed, 1]), self.clock, model=model)
        self.rails = [
            SimulatedRail(load, volts, amps)
            for load, (volts, amps) in zip(rail_loads_ohm, RAIL_RATINGS, strict=True)
        ]
        self.chuck = SimulatedChuck(self.clock, ambient_k=ambient_c + KELVIN_OFFSET)
        # One lock for all: the instruments share the clock and the readback generator.
        clock, lock = self.clock, self.lock
        self.instruments: dict[str, ScpiInstrument] = {
            "smu": SimulatedSmu(self.device, clock=clock, lock=lock),
            "supply": SimulatedSupply(self.rails, clock=clock, rng=self.rng, lock=lock),
            "chuck": SimulatedTemperatureController(
                self.chuck, clock=clock, rng=self.rng, lock=lock
            ),
        }
        self._ports = dict(ports or {})
        self._listeners: dict[str, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> SimulatedStation:
        """Open the listening ports and serve in background threads; returns self."""
        if self._listeners:
            return self
        try:
            for name in INSTRUMENT_NAMES:
                listener = socket.create_server((self.host, self._ports.get(name, 0)))
                listener.settimeout(0.2)
                self._listeners[name] = listener
        except OSError:
            self.stop()
            raise
        for name, listener in self._listeners.items():
            thread = threading.Thread(
                target=self._accept_loop, args=(name, listener), name=f"station-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close the ports and connections and wait for the threads."""
        self._stop.set()
        for listener in self._listeners.values():
            listener.close()
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> SimulatedStation:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ports(self) -> dict[str, int]:
        """Instrument name → bound TCP port (after :meth:`start`)."""
        return {name: listener.getsockname()[1] for name, listener in self._listeners.items()}

    @property
    def resources(self) -> dict[str, str]:
        """Instrument name → VISA resource string for pyvisa-py (``@py``)."""
        return {name: f"TCPIP::{self.host}::{port}::SOCKET" for name, port in self.ports.items()}

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self, name: str, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            thread = threading.Thread(
                target=self._serve, args=(name, connection), name=f"station-{name}-client"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _serve(self, name: str, connection: socket.socket) -> None:
        instrument = self.instruments[name]
        with self.lock:
            self._connections.add(connection)
        buffer = b""
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if _QUICKACK is not None:
                    # Acknowledge at once: pyvisa-py leaves Nagle on, so a command that gets
                    # no reply would otherwise hold the next one for the delayed-ACK time.
                    connection.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode("ascii", errors="replace").rstrip("\r")
                    replies = instrument.handle_line(line)
                    if replies:
                        connection.sendall((";".join(replies) + "\n").encode("ascii"))
                if len(buffer) > 1 << 20:
                    log.warning("%s: dropping a client that sent 1 MiB without a newline", name)
                    break
        except OSError as exc:
            log.info("%s client dropped: %s", name, exc)
        finally:
            with self.lock:
                self._connections.discard(connection)
            connection.close()


@contextmanager
def spawned(
    *,
    seed: int = 0,
    time_scale: float = 0.0,
    host: str = "127.0.0.1",
    devices: str = DEFAULT_DEVICE_MODEL,
) -> Iterator[dict[str, str]]:
    """A simulated station in a child process for the ``with`` block; yields its resources."""
    command = [sys.executable, "-m", "drivers.sim.instruments.station_server"]
    command += ["--seed", str(seed), "--time-scale", str(time_scale), "--host", host]
    command += ["--devices", devices]
    with announced_child(command) as (line, errors):
        try:
            resources = json.loads(line)
        except json.JSONDecodeError:
            raise RuntimeError(f"simulated station did not start: {line}{errors}") from None
        yield {str(key): str(value) for key, value in resources.items()}


def main(argv: list[str] | None = None) -> int:
    """Serve the simulated instruments until interrupted (``python -m`` this module)."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.sim.instruments.station_server",
        description="Serve the simulated bench instruments (SCPI over TCP on 127.0.0.1).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--devices",
        default=DEFAULT_DEVICE_MODEL,
        choices=sorted(DEVICE_MODELS),
        help="device model of the SMU's test device",
    )
    for name in INSTRUMENT_NAMES:
        parser.add_argument(f"--{name}-port", type=int, default=0, help=f"TCP port of the {name}")
    args = parser.parse_args(argv)
    ports = {name: getattr(args, f"{name}_port") for name in INSTRUMENT_NAMES}
    station = SimulatedStation(
        seed=args.seed,
        time_scale=args.time_scale,
        host=args.host,
        ports=ports,
        devices=args.devices,
    )
    station.start()
    print(json.dumps(station.resources), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        station.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
