"""Typed driver for the PCM test board: one method per protocol command (docs/protocol.md).

Every argument is validated here, before anything is sent: core ids against the identified
board, device addresses, pulse amplitudes and widths against the board's own limits, dtypes and
shapes of MVM inputs. Nothing is ever clipped or rounded silently. The simulated chip is the
same class on another URL::

    with Board("mockchip://?seed=1") as board:        # or "/dev/ttyUSB0", "socket://host:port"
        print(board.identity.chip_id)
        counts = board.mvm(0, np.zeros((8, 256), np.int8))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import numpy as np

from drivers.errors import DriverError, LimitError, ProtocolError
from drivers.ldpu import LdpuCoefficients
from drivers.link.payloads import (
    OUTPUT_LDPU,
    OUTPUT_RAW,
    REPLIES,
    REQUESTS,
    BoardIdentity,
    BoardStatus,
    BootId,
    ChipGeometry,
    ClockAdvance,
    ClockTime,
    CoreId,
    DieTemperature,
    Empty,
    ErrorRegister,
    LdpuTable,
    MvmReply,
    MvmRequest,
    Payload,
    PayloadError,
    PulseBatch,
    PulsesApplied,
    ReadBatch,
    ReadCounts,
    RegisterAddress,
    RegisterValue,
    holds_int8_min,
)
from drivers.link.protocol import (
    MAX_CLOCK_ADVANCE_S,
    MAX_PAYLOAD,
    VERSION,
    Command,
    PulseKind,
    Register,
)
from drivers.link.transport import Link
from drivers.validators import strict_discrete_set, strict_int_range, strict_range

log = logging.getLogger(__name__)


MVM_MODES = (1, 4)
MVM_OUTPUTS = ("raw", "ldpu")
_MVM_OUTPUT_CODES = {"raw": OUTPUT_RAW, "ldpu": OUTPUT_LDPU}
_PULSE_KIND_NAMES = {"reset": PulseKind.RESET, "set": PulseKind.SET, "partial": PulseKind.PARTIAL}

_Reply = TypeVar("_Reply", bound=Payload)

# BoardIdentity, BoardStatus and ChipGeometry are defined with the payloads (drivers.link.payloads)
# and re-exported here, where users of the driver look for them.
__all__ = [
    "MVM_MODES",
    "MVM_OUTPUTS",
    "Board",
    "BoardIdentity",
    "BoardStatus",
    "ChipGeometry",
    "MvmCounts",
]


@dataclass(frozen=True, eq=False)
class MvmCounts:
    """Raw MVM result: the two 12-bit ADC counters per output (dimensionless counts)."""

    positive: np.ndarray
    negative: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        """``positive − negative`` as int32, what the LDPU subtracts before scaling."""
        return self.positive.astype(np.int32) - self.negative.astype(np.int32)


def _register_property(
    address: Register, doc: str, validator: Callable[[Any, Any], Any], values: Any
) -> Any:
    """A board register exposed as a validated property (in the manner of PyMeasure's control)."""

    def fget(self: Board) -> int:
        return self.read_register(address)

    def fset(self: Board, value: Any) -> None:
        self.write_register(address, int(validator(value, values)))

    return property(fget, fset, doc=doc)


class Board:
    """The FPGA test board carrying the 64-core PCM chip.

    Args:
        link: a board URL (``mockchip://?seed=1``, ``socket://127.0.0.1:5555``, ``/dev/ttyUSB0``)
            or an open :class:`~drivers.link.transport.Link`.
        timeout_s: reply timeout per attempt in seconds (only with a URL).
        retries: resends after a timeout or corrupted reply (only with a URL).
    """

    mvm_read_voltage_mv = _register_property(
        Register.MVM_READ_VOLTAGE_MV,
        "Control the MVM read voltage in mV (int strictly from 100 to 400) [LG EDT I].",
        strict_int_range,
        (100, 400),
    )
    scratch = _register_property(
        Register.SCRATCH,
        "Control the scratch register, for link checks (int strictly from 0 to 2**32-1).",
        strict_int_range,
        (0, 0xFFFFFFFF),
    )

    allow_unguarded_programming: bool = False
    """Set True to program a hardware board without a station interlock (at your own risk)."""
    pulse_guard: Callable[[int, np.ndarray], None] | None = None
    """Safety interlock called with (core, amplitudes in µA) before every PULSES frame, after
    validation; it raises to refuse (nothing is sent). A station sets it so that programming is
    refused while a rail is out of range or the chuck is outside its temperature window."""

    def __init__(self, link: str | Link, *, timeout_s: float = 2.0, retries: int = 3) -> None:
        self.link = (
            link
            if isinstance(link, Link)
            else Link.open(link, timeout_s=timeout_s, retries=retries)
        )
        try:
            self.identity = self.identify()
        except BaseException:
            self.link.close()
            raise
        if self.identity.protocol_version != VERSION:
            self.link.close()
            raise ProtocolError(
                f"board speaks protocol version {self.identity.protocol_version}, "
                f"this driver speaks {VERSION}"
            )
        self.geometry: ChipGeometry = self.identity.geometry
        """Cores, rows, columns and devices per weight, as the board reported them."""

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        ident = getattr(self, "identity", None)
        chip = ident.chip_id if ident else "?"
        return f"<Board {self.link.url!r} chip={chip}>"

    def shutdown(self) -> None:
        """Put the board in its safe state (write heads off) and close the link.

        Best effort: a failure to reach the board is logged, and the link is closed anyway.
        """
        if self.link.closed:
            return
        try:
            self.safe_state()
        except DriverError as exc:
            log.warning("could not put board %s in its safe state: %s", self.link.url, exc)
        finally:
            self.link.close()

    def close(self) -> None:
        """Close the link without talking to the board."""
        self.link.close()

    # -- housekeeping commands --------------------------------------------------------------

    def _call(self, command: Command, request: Payload, reply_type: type[_Reply]) -> _Reply:
        """Send ``request`` (the command's request payload), decode the reply as ``reply_type``.

        Every command goes through here, so requests are built and replies parsed only by the
        payload classes of ``drivers.link.payloads``; a malformed reply is a ``ProtocolError``.
        """
        assert isinstance(request, REQUESTS[command]) and reply_type is REPLIES[command]
        frame = self.link.request(command, request.chunks())
        try:
            return reply_type.decode(frame.payload)
        except PayloadError as exc:
            raise PayloadError(f"{command.name} reply: {exc}") from None

    def identify(self) -> BoardIdentity:
        """Ask the board who it is (IDENTIFY)."""
        return self._call(Command.IDENTIFY, Empty(), BoardIdentity)

    def reset(self) -> int:
        """Reset the board logic (not the devices); returns the new boot identifier."""
        return self._call(Command.RESET, Empty(), BootId).boot_id

    def status(self) -> BoardStatus:
        """Read the status and sticky error registers and the frame counters (STATUS)."""
        return self._call(Command.STATUS, Empty(), BoardStatus)

    def acknowledge_reset(self) -> None:
        """After a ``BoardResetError``: the caller re-initialised the board (LDPU coefficients,
        registers), so commands may flow again. Until then only monitoring commands do."""
        self.link.acknowledge_reset()

    def clear_errors(self) -> int:
        """Clear the sticky error register; returns its previous value."""
        return self._call(Command.CLEAR_ERRORS, Empty(), ErrorRegister).previous

    def read_register(self, address: int) -> int:
        """Read a 32-bit board register (docs/protocol.md §6)."""
        address = strict_int_range(address, (0, 0xFFFF))
        reply = self._call(Command.READ_REGISTER, RegisterAddress(address), RegisterValue)
        if reply.address != address:
            raise ProtocolError(f"READ_REGISTER 0x{address:04x} answered for 0x{reply.address:04x}")
        return int(reply.value)

    def write_register(self, address: int, value: int) -> int:
        """Write a 32-bit board register; returns the value read back."""
        address = strict_int_range(address, (0, 0xFFFF))
        value = strict_int_range(value, (0, 0xFFFFFFFF))
        reply = self._call(Command.WRITE_REGISTER, RegisterValue(address, value), RegisterValue)
        if reply.address != address:
            raise ProtocolError(
                f"WRITE_REGISTER 0x{address:04x} answered for 0x{reply.address:04x}"
            )
        return int(reply.value)

    def safe_state(self) -> None:
        """Disable the write heads and stop any operation in progress (SAFE_STATE)."""
        self._call(Command.SAFE_STATE, Empty(), Empty)

    def temperature_c(self) -> float:
        """Die temperature in °C."""
        return self._call(Command.TEMPERATURE, Empty(), DieTemperature).celsius

    def advance_clock(self, seconds: float) -> float:
        """Advance the simulated chip's virtual clock by ``seconds``; returns the new time in s.

        Real boards refuse with ``NotSupportedError``.
        """
        seconds = float(strict_range(seconds, (0.0, MAX_CLOCK_ADVANCE_S)))
        return float(self._call(Command.CLOCK, ClockAdvance(seconds), ClockTime).now_s)

    def board_time_s(self) -> float:
        """The simulated chip's virtual time in s (a CLOCK advance of 0)."""
        return self.advance_clock(0.0)

    # -- validation helpers -----------------------------------------------------------------

    def _core(self, core: Any) -> int:
        n_cores = self.geometry.n_cores
        try:
            return strict_int_range(core, (0, n_cores - 1))
        except LimitError as exc:
            raise LimitError(f"core id: {exc} (this board has {n_cores} cores)") from None

    def _check_fits(self, size: int, what: str) -> None:
        limit = min(MAX_PAYLOAD, self.identity.max_payload)
        if size > limit:
            raise LimitError(
                f"{what}: a payload of {size} bytes exceeds the frame limit of {limit} bytes; "
                "split the batch"
            )

    def _int_array(self, name: str, values: Any, low: int, high: int, n: int | None) -> np.ndarray:
        array = np.asarray(values)
        if array.dtype == np.bool_ or not (
            np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        ):
            raise LimitError(f"{name} must be integers, got dtype {array.dtype}")
        if array.ndim > 1:
            raise LimitError(f"{name} must be a scalar or a 1-D array, got shape {array.shape}")
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)):
                raise LimitError(f"{name} contains NaN or infinite values")
            if not np.all(array == np.round(array)):
                raise LimitError(
                    f"{name} must hold whole numbers, got {array[array != np.round(array)][:3]}"
                )
        if array.size and (array.min() < low or array.max() > high):
            bad = array[(array < low) | (array > high)]
            raise LimitError(f"{name} must be within [{low}, {high}], got {bad[:5].tolist()}")
        if n is not None and array.ndim == 1 and array.size != n:
            raise LimitError(f"{name} has {array.size} elements, expected {n}")
        return array

    def _addresses(self, row: Any, col: Any, device: Any) -> tuple[np.ndarray, ...]:
        sizes = {np.size(a) for a in (row, col, device) if np.ndim(a) == 1}
        if len(sizes) > 1:
            raise LimitError(f"row, col and device arrays differ in length: {sorted(sizes)}")
        n = sizes.pop() if sizes else 1
        if n == 0:
            raise LimitError("no device addresses given")
        geometry = self.geometry
        arrays = (
            self._int_array("row", row, 0, geometry.rows - 1, n),
            self._int_array("col", col, 0, geometry.cols - 1, n),
            self._int_array("device", device, 0, geometry.devices_per_weight - 1, n),
        )
        return tuple(np.broadcast_to(a, (n,)).astype(np.uint8) for a in arrays)

    # -- device access ----------------------------------------------------------------------

    def apply_pulses(
        self,
        core: int,
        row: Any,
        col: Any,
        device: Any,
        kind: Any,
        amplitude_ua: Any,
        width_ns: Any,
    ) -> int:
        """Apply programming pulses to devices of one core, in order (PULSES).

        Args:
            core: core id.
            row, col, device: device addresses (arrays of equal length, or scalars); device
                0 G1+, 1 G2+, 2 G1−, 3 G2−.
            kind: ``PulseKind`` or "reset"/"set"/"partial", per pulse or one for all.
            amplitude_ua: pulse amplitude in µA, whole numbers within the board's limit
                (800 µA on the chip's current DACs [LG Methods]).
            width_ns: pulse width in ns, whole numbers within the board's limits.

        Returns the number of pulses the board applied. Never resent blindly: see
        docs/protocol.md §5.
        """
        core = self._core(core)
        rows, cols, devices = self._addresses(row, col, device)
        n = rows.size
        ident = self.identity
        if isinstance(kind, str) or (np.ndim(kind) == 1 and np.asarray(kind).dtype.kind in "UO"):
            try:
                kind = np.vectorize(lambda k: int(_PULSE_KIND_NAMES[str(k).lower()]))(kind)
            except KeyError as exc:
                raise LimitError(
                    f"pulse kind must be one of {sorted(_PULSE_KIND_NAMES)}, got {exc}"
                ) from None
        kinds = self._int_array("kind", kind, 0, 2, n)
        amps = self._int_array("amplitude_ua", amplitude_ua, 1, ident.max_pulse_amplitude_ua, n)
        widths = self._int_array(
            "width_ns", width_ns, ident.min_pulse_width_ns, ident.max_pulse_width_ns, n
        )
        if self.pulse_guard is not None:
            self.pulse_guard(core, np.broadcast_to(amps, (n,)))
        elif not (ident.simulated or self.allow_unguarded_programming):
            raise LimitError(
                "programming a hardware board needs a station with safety limits "
                "(open it through chipctl.station, or --station FILE); refusing to send pulses"
            )
        self._check_fits(PulseBatch.payload_size(n), f"{n} pulses")
        request = PulseBatch(
            core=core,
            row=rows,
            col=cols,
            device=devices,
            kind=np.broadcast_to(kinds, (n,)).astype(np.uint8),
            amplitude_ua=np.broadcast_to(amps, (n,)).astype("<u2"),
            width_ns=np.broadcast_to(widths, (n,)).astype("<u2"),
        )
        applied = self._call(Command.PULSES, request, PulsesApplied).applied
        if applied != n:
            raise ProtocolError(f"PULSES: sent {n} pulses, the board applied {applied}")
        return applied

    def verify_read(self, core: int, row: Any, col: Any, device: Any) -> np.ndarray:
        """Single-device verify reads (0.2 V, 512 ns [LG Methods]); uint16 ADC counts."""
        core = self._core(core)
        rows, cols, devices = self._addresses(row, col, device)
        n = rows.size
        self._check_fits(ReadBatch.payload_size(n), f"{n} reads")
        request = ReadBatch(core=core, row=rows, col=cols, device=devices)
        counts = self._call(Command.VERIFY_READ, request, ReadCounts).counts
        if counts.size != n:
            raise ProtocolError(f"VERIFY_READ: asked {n} reads, got {counts.size}")
        return counts.astype(np.uint16)

    @overload
    def mvm(
        self,
        cores: int | Sequence[int],
        inputs: Any,
        *,
        mode: int = ...,
        output: Literal["raw"] = ...,
        rows: tuple[int, int] | None = ...,
    ) -> MvmCounts: ...

    @overload
    def mvm(
        self,
        cores: int | Sequence[int],
        inputs: Any,
        *,
        mode: int = ...,
        output: Literal["ldpu"],
        rows: tuple[int, int] | None = ...,
    ) -> np.ndarray: ...

    def mvm(
        self,
        cores: int | Sequence[int],
        inputs: Any,
        *,
        mode: int = 4,
        output: str = "raw",
        rows: tuple[int, int] | None = None,
    ) -> MvmCounts | np.ndarray:
        """Run batched matrix-vector multiplications (MVM) on one or several cores at once.

        Args:
            cores: one core id, or a sequence of distinct core ids run in parallel.
            inputs: PWM input values, integers in −127..127 (sign + 7-bit magnitude [LG EDT I]).
                For one core ``(cols,)`` or ``(batch, cols)``; for a sequence of C cores
                ``(C, cols)`` or ``(C, batch, cols)``; ``cols`` is ``geometry.cols`` (256).
            mode: 1 (one-phase) or 4 (four-phase, more accurate [LG p.3]).
            output: "raw" for both ADC counters (:class:`MvmCounts`), "ldpu" for int8 outputs
                after each core's LDPU chain.
            rows: the output rows ``(start, stop)`` to return, default all ``geometry.rows``;
                the board converts all rows and sends these (less to transfer; the simulator
                also skips the rest).

        Returns arrays shaped like ``inputs``, with ``stop − start`` (default
        ``geometry.rows``) outputs in the last axis.
        """
        # An int first: 4.0 would crash struct.pack and True would pass as mode 1.
        if type(mode) is not int or mode not in MVM_MODES:  # the checks only where they explain
            mode = strict_discrete_set(strict_int_range(mode, (0, 0xFF)), MVM_MODES)
        output = strict_discrete_set(output, MVM_OUTPUTS)
        # an int first: the ABC check costs half a microsecond
        single = isinstance(cores, int) or not isinstance(cores, Sequence | np.ndarray)
        core_list = [self._core(cores)] if single else [self._core(c) for c in cores]  # type: ignore[union-attr]
        if not core_list:
            raise LimitError("no cores given")
        if len(set(core_list)) != len(core_list):
            raise LimitError(f"core ids repeat: {core_list}")
        array = np.asarray(inputs)
        if array.dtype.kind not in "iu" and (  # the usual dtypes without numpy's type tree
            array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)
        ):
            raise LimitError(
                f"MVM inputs must be integers in -127..127, got dtype {array.dtype} "
                "(quantise floating-point activations first)"
            )
        cols = self.geometry.cols
        row_range = None
        if rows is None:
            n_rows = self.geometry.rows
        else:
            if not isinstance(rows, tuple | Sequence) or len(rows) != 2:
                raise LimitError(f"MVM rows must be a (start, stop) pair, got {rows!r}")
            try:
                start = strict_int_range(rows[0], (0, self.geometry.rows - 1))
                stop = strict_int_range(rows[1], (start + 1, self.geometry.rows))
            except LimitError as exc:
                raise LimitError(
                    f"MVM rows {tuple(rows)!r} must be a non-empty range (start, stop) within "
                    f"0..{self.geometry.rows}: {exc}"
                ) from None
            row_range = (start, stop)
            n_rows = stop - start
        ndim_single = array.ndim + (0 if single else -1)
        if (
            ndim_single not in (1, 2)
            or array.shape[-1] != cols
            or (not single and array.shape[0] != len(core_list))
        ):
            expected = (
                f"({cols},) or (batch, {cols})"
                if single
                else f"({len(core_list)}, {cols}) or ({len(core_list)}, batch, {cols})"
            )
            raise LimitError(f"MVM inputs must have shape {expected}, got {array.shape}")
        # int8 cannot exceed 127: only −128 to look for on the usual input
        if array.dtype == np.int8:
            out_of_range = holds_int8_min(array)
        else:
            out_of_range = bool(array.size) and (array.min() < -127 or array.max() > 127)
        if out_of_range:
            raise LimitError(
                f"MVM inputs must be within -127..127 (−128 is not representable), "
                f"got min {array.min()}, max {array.max()}"
            )
        shape = array.shape
        stacked = array.reshape(len(core_list), -1, cols)
        batch = stacked.shape[1]
        if batch == 0:
            raise LimitError("MVM batch is empty")
        code = _MVM_OUTPUT_CODES[output]
        n_cores = len(core_list)
        size = max(
            MvmReply.payload_size(code, n_cores, batch, n_rows),
            MvmRequest.payload_size(n_cores, batch, cols, rows=row_range is not None),
        )
        self._check_fits(size, f"an MVM of {n_cores} cores × batch {batch}")
        request = MvmRequest(
            mode=mode,
            output=code,
            cores=np.asarray(core_list, np.uint8),
            inputs=np.ascontiguousarray(stacked, dtype=np.int8),
            rows=row_range,
        )
        reply = self._call(Command.MVM, request, MvmReply)
        if (reply.output, reply.shape) != (code, (n_cores, batch, n_rows)):
            raise ProtocolError(
                f"MVM reply (output {reply.output}, shape {reply.shape}) does not match the "
                f"request (output {code}, shape {(n_cores, batch, n_rows)})"
            )
        out_shape = shape[:-1] + (n_rows,)
        if reply.outputs is not None:
            return reply.outputs.reshape(out_shape)
        assert reply.positive is not None and reply.negative is not None
        return MvmCounts(
            positive=reply.positive.reshape(out_shape),
            negative=reply.negative.reshape(out_shape),
        )

    # -- LDPU -------------------------------------------------------------------------------

    def load_ldpu(self, core: int, coefficients: LdpuCoefficients) -> None:
        """Load a core's LDPU coefficients (LDPU_LOAD)."""
        core = self._core(core)
        if not isinstance(coefficients, LdpuCoefficients):
            raise LimitError(f"expected LdpuCoefficients, got {type(coefficients).__name__}")
        if coefficients.rows != self.geometry.rows:
            raise LimitError(
                f"LDPU coefficients for {coefficients.rows} rows; this chip's cores have "
                f"{self.geometry.rows}"
            )
        self._call(Command.LDPU_LOAD, LdpuTable.of(core, coefficients), Empty)

    def read_ldpu(self, core: int) -> LdpuCoefficients:
        """Read back a core's LDPU coefficients (LDPU_READ)."""
        core = self._core(core)
        reply = self._call(Command.LDPU_READ, CoreId(core), LdpuTable)
        if reply.core != core:
            raise ProtocolError(f"LDPU_READ of core {core} answered for core {reply.core}")
        if reply.rows != self.geometry.rows:
            raise ProtocolError(
                f"LDPU_READ returned {reply.rows} rows; this chip's cores have {self.geometry.rows}"
            )
        try:
            return reply.coefficients()
        except LimitError as exc:
            raise ProtocolError(f"LDPU_READ of core {core}: {exc}") from None
