"""Shared base of the bench-instrument drivers: pyvisa resource handling, error queue, controls.

A driver is one class per instrument model whose settable quantities are *declared* with
:func:`control` (in the manner of PyMeasure's ``Instrument.control``): a query string, a command
string, a docstring with the unit, and a **strict** validator that refuses (never clips) a value
before anything is written::

    class MySource(SCPIInstrument):
        source_voltage_v = control(
            ":SOUR:VOLT?", ":SOUR:VOLT {:.6E}",
            "Control the source voltage in V (float strictly from -21 to 21).",
            validator=strict_range, values=(-21.0, 21.0), units="V",
        )

The VISA back end is chosen by the caller as a string, never by an ``if simulated`` branch:
``"@py"`` (pyvisa-py, e.g. ``TCPIP::127.0.0.1::PORT::SOCKET`` of the simulated station),
``"path/to/definitions.yaml@sim"`` (pyvisa-sim, for protocol tests) or ``""`` (the installed
IVI library, for real hardware).

After every write (and, optionally, every query) the instrument's error queue is read
(``SYST:ERR?`` for SCPI instruments; a subclass may override :meth:`SCPIInstrument.check_errors`,
as the Lake Shore 335 does with ``*ESR?``) and the first error is raised as a typed
:class:`InstrumentError`; SCPI-99 error classes map onto subclasses (command, execution,
device-specific, query errors), and -222 "data out of range" is also a ``ValueError``.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import pyvisa
import pyvisa.errors
from pyvisa.resources import MessageBasedResource

from drivers.errors import DriverError

log = logging.getLogger(__name__)

TRANSCRIPT_LENGTH = 1000
"""Commands (and replies) kept in :attr:`SCPIInstrument.transcript`, newest last."""

MAX_ERRORS_PER_CHECK = 32
"""Upper bound on error-queue reads in one check (the 2450 queue holds at most 1000 entries;
a larger backlog is reported as the first error anyway)."""


# -- errors -----------------------------------------------------------------------------------


class InstrumentError(DriverError):
    """The instrument reported an error (its code and message, and the command that caused it).

    Attributes:
        code: the instrument's error number (SCPI-99: negative standard codes, positive
            device-specific codes; 0 is "no error" and never raised).
        message: the instrument's error text, without quotes.
        command: the last command written before the error was read (may be ``None``).
        instrument: the instrument's resource name.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        command: str | None = None,
        instrument: str = "",
    ) -> None:
        where = f" after {command!r}" if command else ""
        super().__init__(f"{instrument}: error {code}, {message!r}{where}")
        self.code = code
        self.message = message
        self.command = command
        self.instrument = instrument


class CommandError(InstrumentError):
    """SCPI command error (-100 … -199): the instrument did not understand the command."""


class ExecutionError(InstrumentError):
    """SCPI execution error (-200 … -299): understood, but could not be carried out."""


class DataOutOfRangeError(ExecutionError, ValueError):
    """SCPI -222 "data out of range": the instrument refused a value."""


class DeviceSpecificError(InstrumentError):
    """SCPI device-specific error (-300 … -399, and positive device codes)."""


class QueryError(InstrumentError):
    """SCPI query error (-400 … -499): e.g. a reply was not read before the next command."""


class InstrumentConnectionError(DriverError, OSError):
    """The VISA resource could not be opened or the link failed."""


class InstrumentTimeout(InstrumentConnectionError, TimeoutError):
    """The instrument did not reply within the VISA timeout."""


class ReplyFormatError(DriverError, ValueError):
    """A reply could not be parsed as what the command defines."""


def instrument_error(
    code: int, message: str, *, command: str | None = None, instrument: str = ""
) -> InstrumentError:
    """The typed exception for an SCPI error ``code`` (the classes of SCPI-99 vol. 2 §21.8)."""
    cls: type[InstrumentError]
    if code == -222:
        cls = DataOutOfRangeError
    elif -199 <= code <= -100:
        cls = CommandError
    elif -299 <= code <= -200:
        cls = ExecutionError
    elif -499 <= code <= -400:
        cls = QueryError
    elif -399 <= code <= -300 or code > 0:
        cls = DeviceSpecificError
    else:
        cls = InstrumentError
    return cls(code, message, command=command, instrument=instrument)


_ERROR_REPLY = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def parse_error_reply(reply: str) -> tuple[int, str]:
    """``(code, message)`` from a ``SYST:ERR?`` reply such as ``-113,"Undefined header"``."""
    match = _ERROR_REPLY.match(reply)
    if match is None:
        raise ReplyFormatError(f"not an SCPI error-queue reply: {reply!r}")
    return int(match.group(1)), match.group(2)


# -- formatting and parsing helpers -----------------------------------------------------------


def parse_float(reply: str) -> float:
    """A number from a reply (``"+2.000000E-01"``); :class:`ReplyFormatError` otherwise."""
    try:
        return float(reply.strip().strip('"'))
    except ValueError:
        raise ReplyFormatError(f"expected a number, got {reply!r}") from None


def parse_floats(reply: str) -> list[float]:
    """Comma-separated numbers from a reply."""
    return [parse_float(part) for part in reply.split(",") if part.strip()]


def parse_bool(reply: str) -> bool:
    """``1``/``0`` (or ``ON``/``OFF``) as a bool."""
    text = reply.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ReplyFormatError(f"expected 1/0 or ON/OFF, got {reply!r}")


def format_bool(value: bool) -> str:
    """``1``/``0`` for SCPI boolean parameters (equivalent to ON/OFF, SCPI-99 vol. 1 §7.3)."""
    return "1" if value else "0"


# -- the base class -------------------------------------------------------------------------


InstrumentT = TypeVar("InstrumentT", bound="SCPIInstrument")


class SCPIInstrument:
    """A message-based instrument on a pyvisa resource.

    Args:
        resource: VISA resource name (``TCPIP::127.0.0.1::5025::SOCKET``,
            ``USB0::0x05E6::0x2450::04096331::INSTR``, ``GPIB0::12::INSTR``).
        backend: pyvisa back end: ``"@py"``, ``"defs.yaml@sim"`` or ``""`` (IVI).
        timeout_ms: VISA I/O timeout in ms.
        read_termination: reply terminator; defaults to the class's.
        write_termination: command terminator; defaults to the class's.
        check_errors: read the error queue after every write (raise typed errors).
        name: a label for messages (defaults to the class name).

    Raises:
        InstrumentConnectionError: the resource could not be opened.
    """

    READ_TERMINATION: ClassVar[str] = "\n"
    WRITE_TERMINATION: ClassVar[str] = "\n"
    ERROR_QUERY: ClassVar[str] = "SYST:ERR?"
    CLEAR_COMMAND: ClassVar[str] = "*CLS"

    def __init__(
        self,
        resource: str,
        *,
        backend: str = "@py",
        timeout_ms: int = 5000,
        read_termination: str | None = None,
        write_termination: str | None = None,
        check_errors: bool = True,
        name: str | None = None,
    ) -> None:
        self.resource_name = resource
        self.backend = backend
        self.name = name or type(self).__name__
        self.check_errors_after_write = check_errors
        self.transcript: deque[tuple[str, str | None]] = deque(maxlen=TRANSCRIPT_LENGTH)
        self._last_command: str | None = None
        self._closed = False
        try:
            self._manager = pyvisa.ResourceManager(backend)
            opened = self._manager.open_resource(resource)
        except (pyvisa.errors.Error, OSError, ValueError) as exc:
            raise InstrumentConnectionError(
                f"{self.name}: cannot open {resource!r} with backend {backend!r}: {exc}"
            ) from exc
        if not isinstance(opened, MessageBasedResource):
            opened.close()
            raise InstrumentConnectionError(f"{resource!r} is not a message-based resource")
        self.resource: MessageBasedResource = opened
        self.resource.timeout = timeout_ms
        self.resource.read_termination = (
            self.READ_TERMINATION if read_termination is None else read_termination
        )
        self.resource.write_termination = (
            self.WRITE_TERMINATION if write_termination is None else write_termination
        )

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self: InstrumentT) -> InstrumentT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.shutdown()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource_name!r}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self) -> None:
        """Bring the instrument to its safe state (subclasses: sources to 0, outputs off)."""

    def close(self) -> None:
        """Close the VISA session (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.resource.close()
        except (pyvisa.errors.Error, OSError) as exc:
            log.warning("%s: closing %s failed: %s", self.name, self.resource_name, exc)

    # -- I/O ------------------------------------------------------------------------------------

    def _io_error(self, exc: Exception, command: str) -> DriverError:
        if isinstance(exc, pyvisa.errors.VisaIOError) and (
            exc.error_code == pyvisa.constants.StatusCode.error_timeout
        ):
            return InstrumentTimeout(f"{self.name}: no reply to {command!r} within the timeout")
        return InstrumentConnectionError(f"{self.name}: I/O failed on {command!r}: {exc}")

    def write(self, command: str, *, check_errors: bool | None = None) -> None:
        """Send ``command``; then read the error queue unless told not to."""
        if self._closed:
            raise InstrumentConnectionError(f"{self.name}: used after close()")
        log.debug("%s <- %s", self.name, command)
        try:
            self.resource.write(command)
        except (pyvisa.errors.Error, OSError) as exc:
            raise self._io_error(exc, command) from exc
        self.transcript.append((command, None))
        self._last_command = command
        check = self.check_errors_after_write if check_errors is None else check_errors
        if check:
            self.check_errors()

    def query(self, command: str, *, check_errors: bool = False) -> str:
        """Send ``command`` and return the reply (stripped); optionally read the error queue."""
        if self._closed:
            raise InstrumentConnectionError(f"{self.name}: used after close()")
        try:
            reply = self.resource.query(command).strip()
        except (pyvisa.errors.Error, OSError) as exc:
            raise self._io_error(exc, command) from exc
        log.debug("%s <- %s -> %s", self.name, command, reply)
        self.transcript.append((command, reply))
        self._last_command = command
        if check_errors:
            self.check_errors()
        return reply

    def check_errors(self) -> None:
        """Read the error queue until it reports 0; raise the first error found (typed).

        All queued errors are drained (so the next check starts clean); the others are logged.
        """
        errors: list[tuple[int, str]] = []
        command = self._last_command
        for _ in range(MAX_ERRORS_PER_CHECK):
            reply = self.query(self.ERROR_QUERY)
            code, message = parse_error_reply(reply)
            if code == 0:
                break
            errors.append((code, message))
        self._last_command = command
        if not errors:
            return
        for code, message in errors[1:]:
            log.warning("%s: further error %d %r", self.name, code, message)
        code, message = errors[0]
        raise instrument_error(code, message, command=command, instrument=self.resource_name)

    def clear(self) -> None:
        """Clear the status registers and error queue (``*CLS``)."""
        self.write(self.CLEAR_COMMAND, check_errors=False)

    @property
    def identity(self) -> str:
        """Get the identification string (``*IDN?``): maker, model, serial, firmware."""
        return self.query("*IDN?")


# -- the property factory ---------------------------------------------------------------------


class Control(property):
    """A property made by :func:`control`; carries its ``units`` and allowed ``values``."""

    units: str = ""
    values: Any = None


def _format_value(set_cmd: str, value: Any) -> str:
    if isinstance(value, tuple):
        return set_cmd.format(*value)
    return set_cmd.format(value)


def control(
    get_cmd: str | None,
    set_cmd: str | None,
    doc: str,
    *,
    validator: Callable[[Any, Any], Any] | None = None,
    values: Any = None,
    units: str = "",
    map_values: Mapping[Any, str] | None = None,
    get_process: Callable[[str], Any] = parse_float,
    set_process: Callable[[Any], Any] | None = None,
    check_set_errors: bool = True,
) -> Any:
    """A validated instrument quantity as a property (PyMeasure's ``Instrument.control``).

    Args:
        get_cmd: query string (``None``: write-only); ``{ch}`` is replaced by the channel id
            when the owner has an ``id`` attribute (see :class:`Channel`).
        set_cmd: command format string taking the processed value (``None``: read-only).
        doc: "Control/Get/Set … in <unit> (<type> strictly from <low> to <high>)."
        validator: a strict validator ``(value, values) -> value`` from
            :mod:`drivers.validators`; it raises :class:`~drivers.errors.LimitError` before
            anything is written. ``values`` may also be a callable ``(owner) -> values`` for
            per-channel limits.
        units: the unit, also stored on the property as ``units`` for introspection.
        map_values: host value → instrument token (e.g. ``{"OFF": "0"}``); replies are mapped
            back. Replaces ``get_process`` for the reply.
        get_process: reply text → host value (default: a float).
        set_process: validated value → what ``set_cmd`` formats (e.g. ON/OFF).
        check_set_errors: read the error queue after a set (default: yes).
    """
    reverse = {token: key for key, token in map_values.items()} if map_values else None

    def _owner_io(owner: Any) -> tuple[SCPIInstrument, dict[str, Any]]:
        instrument = owner.instrument if isinstance(owner, Channel) else owner
        fields = {"ch": owner.id} if isinstance(owner, Channel) else {}
        return instrument, fields

    def fget(owner: Any) -> Any:
        if get_cmd is None:
            raise AttributeError(f"{doc.split('.')[0]}: write-only")
        instrument, fields = _owner_io(owner)
        reply = instrument.query(get_cmd.format(**fields))
        if reverse is not None:
            token = reply.strip().strip('"').upper()
            if token not in reverse:
                raise ReplyFormatError(f"unexpected reply {reply!r} to {get_cmd!r}")
            return reverse[token]
        return get_process(reply)

    def fset(owner: Any, value: Any) -> None:
        if set_cmd is None:
            raise AttributeError(f"{doc.split('.')[0]}: read-only")
        instrument, fields = _owner_io(owner)
        if validator is not None:
            allowed = values(owner) if callable(values) else values
            value = validator(value, allowed)
        if map_values is not None:
            value = map_values[value]
        if set_process is not None:
            value = set_process(value)
        command = _format_value(set_cmd.replace("{ch}", str(fields.get("ch", "{ch}"))), value)
        instrument.write(command, check_errors=None if check_set_errors else False)

    prop = Control(fget, fset if set_cmd is not None else None, doc=doc)
    prop.units = units
    prop.values = values
    return prop


def measurement(get_cmd: str, doc: str, *, units: str = "", get_process: Any = parse_float) -> Any:
    """A read-only quantity (PyMeasure's ``Instrument.measurement``)."""
    return control(get_cmd, None, doc, units=units, get_process=get_process)


class Channel:
    """One channel of a multi-channel instrument; its controls format ``{ch}`` with :attr:`id`.

    Args:
        instrument: the owning instrument (all I/O goes through it).
        channel_id: the channel number as the instrument names it.
    """

    def __init__(self, instrument: SCPIInstrument, channel_id: int) -> None:
        self.instrument = instrument
        self.id = channel_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} of {self.instrument!r}>"
