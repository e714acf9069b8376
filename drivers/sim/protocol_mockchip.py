"""pyserial URL handler ``mockchip://``: the simulated board inside this process.

``serial.serial_for_url("mockchip://?seed=1&cores=4")`` returns this port once this package is
in ``serial.protocol_handler_packages``: ``drivers.link.transport`` registers the packages the
installed project declares in the entry-point group ``chipctl.url_handlers``. Writes go to a
:class:`~drivers.sim.board_model.SimulatedBoard`; its replies wait in the receive buffer. Reads
follow pyserial's rules: they return when ``size`` bytes are there or the timeout expires, so a
dropped reply costs the host its real timeout, as on hardware.

Options (all optional): seed, cores, clock=virtual|real, reset_after, corrupt, drop,
delay_rate, delay_s, fault_seed; see ``BoardOptions`` and ``FaultSettings``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from drivers.sim.board_model import BoardOptions, SimulatedBoard
from drivers.sim.faults import FaultInjector, as_received


class Serial(SerialBase):
    """A serial port wired to a simulated board."""

    is_open: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.board: SimulatedBoard | None = None
        self.faults: FaultInjector | None = None
        self._rx: deque[tuple[float, bytes]] = deque()
        self._rx_offset = 0
        self._rx_lock = threading.Condition()
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        """pyserial API: build the simulated board from the URL's options and open the port."""
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        options = self.from_url(str(self._port))
        self.board = SimulatedBoard.from_options(options)
        self.faults = FaultInjector(options.faults) if options.faults.active else None
        self.is_open = True

    @staticmethod
    def from_url(url: str) -> BoardOptions:
        """The :class:`BoardOptions` of a ``mockchip://?...`` URL (``SerialException`` if bad)."""
        parts = urlsplit(url)
        if parts.scheme != "mockchip":
            raise SerialException(f"expected a URL like 'mockchip://?seed=1&cores=4', got {url!r}")
        if parts.netloc or parts.path.strip("/"):
            raise SerialException(f"mockchip URL takes only options after '?': {url!r}")
        try:
            return BoardOptions.from_query(parts.query)
        except ValueError as exc:
            raise SerialException(f"bad mockchip URL {url!r}: {exc}") from None

    def close(self) -> None:
        self.is_open = False
        with self._rx_lock:
            self._rx.clear()
            self._rx_offset = 0
            self._rx_lock.notify_all()
        self.board = None

    def _reconfigure_port(self) -> None:
        """Baud rate and the like mean nothing to an in-process board."""

    @property
    def in_waiting(self) -> int:
        """pyserial API: reply bytes ready to read now."""
        if not self.is_open:
            raise PortNotOpenError()
        now = time.monotonic()
        with self._rx_lock:
            return sum(len(data) for ready, data in self._rx if ready <= now) - self._rx_offset

    def write(self, data: Any) -> int:
        """pyserial API: hand request bytes to the simulated board (through fault injection)."""
        if not self.is_open or self.board is None:
            raise PortNotOpenError()
        raw = bytes(data)
        if self.faults is not None:
            raw = self.faults.incoming(raw)
        replies = self.board.receive(raw)
        now = time.monotonic()
        with self._rx_lock:
            for reply, delay in as_received(self.faults, replies):
                self._rx.append((now + delay, reply))
            self._rx_lock.notify_all()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        """pyserial API: up to ``size`` reply bytes, waiting at most the port's timeout."""
        if not self.is_open:
            raise PortNotOpenError()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        pieces: list[bytes] = []
        wanted = size
        with self._rx_lock:
            while wanted > 0:
                now = time.monotonic()
                if self._rx and self._rx[0][0] <= now:
                    ready, chunk = self._rx[0]
                    start = self._rx_offset
                    take = min(wanted, len(chunk) - start)
                    if start == 0 and take == len(chunk):
                        pieces.append(chunk)
                    else:
                        pieces.append(chunk[start : start + take])
                    wanted -= take
                    if start + take == len(chunk):
                        self._rx.popleft()
                        self._rx_offset = 0
                    else:
                        self._rx_offset = start + take
                    continue
                if deadline is not None and now >= deadline:
                    break
                wait_until = deadline
                if self._rx:
                    wait_until = (
                        self._rx[0][0] if deadline is None else min(deadline, self._rx[0][0])
                    )
                self._rx_lock.wait(None if wait_until is None else max(0.0, wait_until - now))
                if not self.is_open:
                    break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def reset_input_buffer(self) -> None:
        """pyserial API: drop every reply byte not yet read."""
        if not self.is_open:
            raise PortNotOpenError()
        with self._rx_lock:
            self._rx.clear()
            self._rx_offset = 0

    def reset_output_buffer(self) -> None:
        """pyserial API: nothing to drop (writes go to the board at once)."""
        if not self.is_open:
            raise PortNotOpenError()

    @property
    def out_waiting(self) -> int:
        """pyserial API: always 0 (writes are never buffered)."""
        return 0
