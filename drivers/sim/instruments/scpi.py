"""SCPI plumbing shared by the simulated instruments: header parsing, errors, the command table.

Messages end in ``"\\n"`` (a ``"\\r"`` before it is ignored); several commands may share a line,
separated by ``;``. Headers are matched in their canonical short form (:func:`normalise_header`:
long forms shortened, numeric suffixes and optional nodes dropped). Every instrument here also
accepts the simulator-only ``SIM:CLOCk:ADVance <s>`` and ``SIM:CLOCk?`` (real instruments reject
them).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from drivers.errors import DriverError
from drivers.sim.clock import Clock

PLC_S = 0.02
"""Integration time of one reading: 1 power-line cycle at 50 Hz (2450 default NPLC = 1)."""

_LONG_FORMS = {
    "SOURCE": "SOUR",
    "FUNCTION": "FUNC",
    "VOLTAGE": "VOLT",
    "CURRENT": "CURR",
    "SENSE": "SENS",
    "RANGE": "RANG",
    "OUTPUT": "OUTP",
    "MEASURE": "MEAS",
    "SWEEP": "SWE",
    "LINEAR": "LIN",
    "INITIATE": "INIT",
    "TRACE": "TRAC",
    "CLEAR": "CLE",
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "PULSE": "PULS",
    "CLOCK": "CLOC",
    "ADVANCE": "ADV",
    "ILIMIT": "ILIM",
    "VLIMIT": "VLIM",
    "ACTUAL": "ACT",
}
_OPTIONAL_NODES = {"LEV", "LEVEL", "IMM", "IMMEDIATE", "AMPL", "AMPLITUDE", "STAT", "STATE"}
_OPTIONAL_NODES |= {"SCAL", "SCALAR", "DC", "NEXT"}
_HEADER = re.compile(r"^\s*(\*?[A-Za-z0-9:]+\??)\s*(.*)$")


def normalise_header(header: str) -> str:
    """Canonical short form of an SCPI header: ``:SOURce1:VOLTage:LEVel`` → ``SOUR:VOLT``."""
    query = header.endswith("?")
    nodes = []
    for node in header.rstrip("?").lstrip(":").upper().split(":"):
        node = re.sub(r"(?<=[A-Z])\d+$", "", node)
        node = _LONG_FORMS.get(node, node)
        if node and node not in _OPTIONAL_NODES:
            nodes.append(node)
    return ":".join(nodes) + ("?" if query else "")


class ScpiError(DriverError):
    """An SCPI error to queue: code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def number(text: str) -> float:
    """A finite number from an SCPI argument (-104 "Data type error" otherwise)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ScpiError(-104, "Data type error") from None
    if not math.isfinite(value):
        raise ScpiError(-104, "Data type error")
    return value


def boolean(text: str) -> bool:
    """``1``/``ON`` or ``0``/``OFF`` (-104 "Data type error" otherwise)."""
    token = text.strip().upper()
    if token in ("1", "ON"):
        return True
    if token in ("0", "OFF"):
        return False
    raise ScpiError(-104, "Data type error")


def in_range(value: float, low: float, high: float) -> float:
    """``value`` if low <= value <= high (-222 "Parameter, out of range" otherwise)."""
    if not low <= value <= high:
        raise ScpiError(-222, "Parameter, out of range")
    return value


def fmt(value: float) -> str:
    """An SCPI number reply: ``1.234560E-06``."""
    return f"{value:.6E}"


Handler = Callable[[str], str | None]


class ScpiInstrument:
    """Command table + SCPI error queue; subclasses register handlers by canonical header.

    Args:
        clock: the simulation clock (``SIM:CLOCk:ADVance``, ``SIM:CLOCk?``, reading times).
        lock: held while a command runs; instruments that share state (the clock's readers,
            one random generator) share one lock. Default: a lock of their own.
    """

    identity = "SIM,INSTRUMENT,0,0"

    def __init__(self, *, clock: Clock, lock: threading.RLock | None = None) -> None:
        self.clock = clock
        self.lock = lock if lock is not None else threading.RLock()
        self.errors: list[tuple[int, str]] = []
        self.handlers: dict[str, Handler] = {
            "*IDN?": lambda _: self.identity,
            "*CLS": self._clear,
            "*WAI": lambda _: None,
            "*OPC?": lambda _: "1",
            "*RST": lambda _: None,
            "SYST:ERR?": self._next_error,
            "SIM:CLOC:ADV": self._advance,
            "SIM:CLOC?": lambda _: fmt(self.clock.now_s),
        }

    def _clear(self, _: str) -> None:
        self.errors.clear()

    def _next_error(self, _: str) -> str:
        if not self.errors:
            return '0,"No error"'
        code, message = self.errors.pop(0)
        return f'{code},"{message}"'

    def _advance(self, args: str) -> None:
        seconds = number(args)
        in_range(seconds, 0.0, 1e10)
        self.clock.advance(seconds)

    def queue_error(self, code: int, message: str) -> None:
        """Add an entry to the SCPI error queue (read by ``SYST:ERR?``)."""
        self.errors.append((code, message))

    def handle_line(self, line: str) -> list[str]:
        """Execute one received line (``;``-separated commands); return the replies."""
        replies: list[str] = []
        for command in line.split(";"):
            if not command.strip():
                continue
            match = _HEADER.match(command)
            if match is None:
                self.queue_error(-102, "Syntax error")
                continue
            header, args = normalise_header(match.group(1)), match.group(2)
            handler = self.handlers.get(header)
            if handler is None:
                self.queue_error(-113, "Undefined header")
                continue
            try:
                with self.lock:
                    reply = handler(args)
            except ScpiError as exc:
                self.queue_error(exc.code, exc.message)
                continue
            if reply is not None:
                replies.append(reply)
        return replies
