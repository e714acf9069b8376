"""The payload of every board command, request and reply, defined once (docs/protocol.md §3).

One frozen dataclass per layout, used by the host driver (:class:`drivers.board.Board`) and by
the simulated board alike, so the two cannot drift apart. Each class has

- ``chunks()``: the payload as a list of byte pieces (array fields as zero-copy views, so a
  large MVM frame is joined only once, by the frame encoder);
- ``encode()``: the same as one ``bytes`` object;
- ``decode(payload)``: the typed payload, after checking its length, counts and reserved
  fields; anything malformed raises :class:`PayloadError`.

The classes check *layout* only: lengths, counts, reserved fields, element types. Whether a
value makes sense for a given board (a core id, a pulse amplitude, an MVM mode, the chip's
geometry) is the business of the sender's validation and of the receiving board. Layouts whose
size depends on the chip's geometry (MVM vectors, LDPU tables) infer it from the payload length,
and the receiver compares it with the geometry it knows (for the host, from IDENTIFY).

Arrays are held with their wire element type (``uint8``, ``<u2``, ``int8``, ``<f2``); arrays
from ``decode`` are read-only views into the received payload. :data:`REQUESTS` and
:data:`REPLIES` map every :class:`~drivers.link.protocol.Command` to its classes.

The module is long because it is the protocol's whole payload table in one place, on purpose:
split by command, a layout shared by several commands would again live in several files.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np

from drivers.errors import ProtocolError
from drivers.ldpu import COEFFICIENT_FIELDS, LdpuCoefficients
from drivers.link.protocol import (
    ADDR_HEADER,
    F64,
    I32,
    IDENT_FIXED,
    LDPU_HEADER,
    MVM_HEADER,
    MVM_REPLY_HEADER,
    REGISTER_PAIR,
    STATUS_LAYOUT,
    U16,
    U32,
    Chunk,
    CodecError,
    Command,
)

Buffer = bytes | bytearray | memoryview

OUTPUT_RAW = 0
"""MVM output code: both 12-bit ADC counters per output (docs/protocol.md §3.5)."""
OUTPUT_LDPU = 1
"""MVM output code: int8 after the LDPU chain."""

CAP_SIMULATED = 0x01
CAP_CLOCK_CONTROL = 0x02
LDPU_FLAG_RELU = 0x01
MVM_FLAG_ROW_RANGE = 0x01
"""MVM request flag: a row range (:data:`MVM_ROW_RANGE`) follows the header (§3.5)."""
MVM_ROW_RANGE = struct.Struct("<HH")
"""MVM request row range: first row, one past the last row the host reads (§3.5)."""

_U8: np.dtype[Any] = np.dtype(np.uint8)
_I8: np.dtype[Any] = np.dtype(np.int8)
_U16: np.dtype[Any] = np.dtype("<u2")
_F16: np.dtype[Any] = np.dtype("<f2")


class PayloadError(CodecError, ProtocolError):
    """A payload does not match its command's layout (length, counts, reserved fields, types).

    A :class:`~drivers.link.protocol.CodecError` (the codec's error, also a ``ValueError``) and a
    :class:`~drivers.errors.ProtocolError` (what the host raises for a reply that does not match
    its command); the simulated board answers it with ``BAD_PAYLOAD``.
    """


# -- helpers ----------------------------------------------------------------------------------


def _size(payload: Buffer) -> int:
    return memoryview(payload).nbytes


def _expect_size(payload: Buffer, size: int, what: str) -> None:
    if _size(payload) != size:
        raise PayloadError(f"{what}: expected {size} payload bytes, got {_size(payload)}")


def _unpack(layout: struct.Struct, payload: Buffer, what: str) -> tuple[Any, ...]:
    """The fields of a fixed-size payload, which must be exactly ``layout.size`` bytes."""
    _expect_size(payload, layout.size, what)
    return layout.unpack(payload)


def _pack(layout: struct.Struct, what: str, *values: Any) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise PayloadError(f"{what}: a field does not fit its wire type: {exc}") from None


def _wire_array(what: str, name: str, value: Any, dtype: np.dtype, ndim: int) -> np.ndarray:
    """``value`` as an array already of the wire element type (either byte order), ``ndim``-D.

    No conversion and no range scan: callers validate values and convert first, so a value
    can never wrap around silently on the way to the wire.
    """
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype.kind != dtype.kind or array.dtype.itemsize != dtype.itemsize:
        raise PayloadError(f"{what}: {name} must have dtype {dtype.name}, got {array.dtype}")
    if array.ndim != ndim:
        raise PayloadError(f"{what}: {name} must be {ndim}-D, got shape {array.shape}")
    return array


def _wire_bytes(array: np.ndarray, dtype: np.dtype) -> memoryview:
    """A C-contiguous little-endian byte view of ``array`` (no copy when it already is one)."""
    return np.ascontiguousarray(array, dtype=dtype).data.cast("B")


def _view(payload: Buffer, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
    return np.frombuffer(payload, dtype, count, offset)


_SMALL_SEARCH = 16384
"""Bytes up to which a byte search beats numpy's min (whose set-up costs a microsecond)."""


def holds_int8_min(values: np.ndarray) -> bool:
    """Whether int8 ``values`` hold −128, which MVM inputs cannot carry (sign + 7 bits)."""
    if values.size <= _SMALL_SEARCH:
        return b"\x80" in values.tobytes()
    return bool(values.min() == -128)


def _pstring(text: str, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 255:
        raise PayloadError(f"{what}: string of {len(data)} UTF-8 bytes exceeds 255")
    return bytes([len(data)]) + data


def _read_pstring(payload: bytes, offset: int, what: str) -> tuple[str, int]:
    if offset >= len(payload):
        raise PayloadError(f"{what}: truncated in its strings")
    end = offset + 1 + payload[offset]
    if end > len(payload):
        raise PayloadError(f"{what}: truncated in its strings")
    return payload[offset + 1 : end].decode("utf-8", errors="replace"), end


def _address_header(payload: Buffer, per_item: int, what: str) -> tuple[int, int]:
    """Core and count of a PULSES / VERIFY_READ request, its length checked (§3.3, §3.4)."""
    if _size(payload) < ADDR_HEADER.size:
        raise PayloadError(f"{what}: payload of {_size(payload)} bytes is too short")
    core, reserved, reserved16, n = ADDR_HEADER.unpack_from(payload)
    if reserved or reserved16:
        raise PayloadError(f"{what}: reserved bytes must be zero")
    if n == 0:
        raise PayloadError(f"{what}: empty batch")
    _expect_size(payload, ADDR_HEADER.size + per_item * n, what)
    return core, n


def _same_length(what: str, arrays: dict[str, np.ndarray]) -> int:
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise PayloadError(f"{what}: arrays differ in length: {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise PayloadError(f"{what}: empty batch")
    return n


# -- base -------------------------------------------------------------------------------------


class Payload:
    """Base of every payload class: ``chunks``/``encode`` and the classmethod ``decode``."""

    __slots__ = ()

    def chunks(self) -> list[Chunk]:
        """The payload as byte pieces, in wire order."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """The payload as one ``bytes`` object."""
        return b"".join(self.chunks())

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        """Parse a payload; :class:`PayloadError` if it does not match the layout."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        # Used by the array-holding classes (dataclass eq would compare arrays ambiguously).
        if type(other) is not type(self):
            return NotImplemented
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (
                    isinstance(a, np.ndarray)
                    and isinstance(b, np.ndarray)
                    and a.dtype == b.dtype
                    and np.array_equal(a, b)
                ):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# -- geometry, identity, status ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChipGeometry:
    """The shape of the chip, as the board reports it in IDENTIFY (docs/protocol.md §3.1).

    Attributes:
        n_cores: number of cores (64 on the full HERMES chip).
        rows: outputs per core, one ADC per row (256).
        cols: inputs per core, one PWM driver per column (256).
        devices_per_weight: PCM devices per weight (4: G1+, G2+, G1−, G2−).
    """

    n_cores: int
    rows: int
    cols: int
    devices_per_weight: int

    @property
    def weights_per_core(self) -> int:
        """rows × cols."""
        return self.rows * self.cols

    @property
    def devices_per_core(self) -> int:
        """rows × cols × devices_per_weight."""
        return self.rows * self.cols * self.devices_per_weight

    @property
    def weight_shape(self) -> tuple[int, int]:
        """The shape of one core's weight matrix, ``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def device_shape(self) -> tuple[int, int, int]:
        """The shape of one core's devices, ``(rows, cols, devices_per_weight)``."""
        return (self.rows, self.cols, self.devices_per_weight)


@dataclass(frozen=True, slots=True)
class Empty(Payload):
    """An empty payload (requests without arguments, replies without data)."""

    def chunks(self) -> list[Chunk]:
        return []

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        _expect_size(payload, 0, "empty payload")
        return cls()


@dataclass(frozen=True, slots=True)
class BoardIdentity(Payload):
    """IDENTIFY reply (docs/protocol.md §3.1). Unknown capability bits are ignored."""

    protocol_version: int
    n_cores: int
    rows: int
    cols: int
    devices_per_weight: int
    simulated: bool
    clock_control: bool
    max_pulse_amplitude_ua: int
    min_pulse_width_ns: int
    max_pulse_width_ns: int
    max_payload: int
    board_id: str
    firmware_version: str
    chip_id: str

    @property
    def geometry(self) -> ChipGeometry:
        """Cores, rows, columns and devices per weight of the chip on this board."""
        return ChipGeometry(self.n_cores, self.rows, self.cols, self.devices_per_weight)

    def chunks(self) -> list[Chunk]:
        what = "IDENTIFY reply"
        caps = (CAP_SIMULATED if self.simulated else 0) | (
            CAP_CLOCK_CONTROL if self.clock_control else 0
        )
        fixed = _pack(
            IDENT_FIXED,
            what,
            self.protocol_version,
            self.n_cores,
            self.rows,
            self.cols,
            self.devices_per_weight,
            caps,
            self.max_pulse_amplitude_ua,
            self.min_pulse_width_ns,
            self.max_pulse_width_ns,
            self.max_payload,
        )
        strings = (self.board_id, self.firmware_version, self.chip_id)
        return [fixed, b"".join(_pstring(s, what) for s in strings)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        what = "IDENTIFY reply"
        data = bytes(payload)
        if len(data) < IDENT_FIXED.size:
            raise PayloadError(f"{what} of {len(data)} bytes is too short")
        (version, n_cores, rows, cols, devices, caps, max_amp, min_w, max_w, max_payload) = (
            IDENT_FIXED.unpack_from(data)
        )
        offset = IDENT_FIXED.size
        board_id, offset = _read_pstring(data, offset, what)
        firmware, offset = _read_pstring(data, offset, what)
        chip_id, offset = _read_pstring(data, offset, what)
        if offset != len(data):
            raise PayloadError(f"{what} has {len(data) - offset} unexpected bytes")
        return cls(
            protocol_version=version,
            n_cores=n_cores,
            rows=rows,
            cols=cols,
            devices_per_weight=devices,
            simulated=bool(caps & CAP_SIMULATED),
            clock_control=bool(caps & CAP_CLOCK_CONTROL),
            max_pulse_amplitude_ua=max_amp,
            min_pulse_width_ns=min_w,
            max_pulse_width_ns=max_w,
            max_payload=max_payload,
            board_id=board_id,
            firmware_version=firmware,
            chip_id=chip_id,
        )


@dataclass(frozen=True, slots=True)
class BoardStatus(Payload):
    """STATUS reply (docs/protocol.md §3.2); ``uptime_s`` in s."""

    status_register: int
    error_register: int
    frames_received: int
    frames_rejected: int
    last_seq: int
    boot_id: int
    uptime_s: float

    READY: ClassVar[int] = 0x1
    WRITE_HEADS_ENABLED: ClassVar[int] = 0x2
    SIMULATED: ClassVar[int] = 0x4
    ERROR_NAMES: ClassVar[tuple[str, ...]] = ("RX_CRC", "RX_FRAME", "COMMAND", "ADC_SATURATION")

    @property
    def ready(self) -> bool:
        """Bit 0 of the status register: the board is ready for commands."""
        return bool(self.status_register & self.READY)

    @property
    def errors(self) -> list[str]:
        """Names of the sticky error bits that are set."""
        return [
            name for bit, name in enumerate(self.ERROR_NAMES) if self.error_register & (1 << bit)
        ]

    def chunks(self) -> list[Chunk]:
        return [
            _pack(
                STATUS_LAYOUT,
                "STATUS reply",
                self.status_register,
                self.error_register,
                self.frames_received,
                self.frames_rejected,
                self.last_seq,
                self.boot_id,
                self.uptime_s,
            )
        ]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(STATUS_LAYOUT, payload, "STATUS reply"))


# -- small fixed layouts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootId(Payload):
    """RESET reply: the board's new boot identifier (u16, never 0)."""

    boot_id: int

    def chunks(self) -> list[Chunk]:
        return [_pack(U16, "RESET reply", self.boot_id)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(U16, payload, "RESET reply"))


@dataclass(frozen=True, slots=True)
class RegisterAddress(Payload):
    """READ_REGISTER request: ``u16 address`` (docs/protocol.md §6)."""

    address: int

    def chunks(self) -> list[Chunk]:
        return [_pack(U16, "READ_REGISTER request", self.address)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(U16, payload, "READ_REGISTER request"))


@dataclass(frozen=True, slots=True)
class RegisterValue(Payload):
    """``u16 address, u32 value``: READ_REGISTER reply, WRITE_REGISTER request and reply."""

    address: int
    value: int

    def chunks(self) -> list[Chunk]:
        return [_pack(REGISTER_PAIR, "register payload", self.address, self.value)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(REGISTER_PAIR, payload, "register payload"))


@dataclass(frozen=True, slots=True)
class ErrorRegister(Payload):
    """CLEAR_ERRORS reply: the error register before it was cleared (u32)."""

    previous: int

    def chunks(self) -> list[Chunk]:
        return [_pack(U32, "CLEAR_ERRORS reply", self.previous)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(U32, payload, "CLEAR_ERRORS reply"))


@dataclass(frozen=True, slots=True)
class PulsesApplied(Payload):
    """PULSES reply: how many pulses the board applied (u32)."""

    applied: int

    def chunks(self) -> list[Chunk]:
        return [_pack(U32, "PULSES reply", self.applied)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(U32, payload, "PULSES reply"))


@dataclass(frozen=True, slots=True)
class CoreId(Payload):
    """LDPU_READ request: ``u8 core``."""

    core: int

    def chunks(self) -> list[Chunk]:
        if not 0 <= self.core <= 0xFF:
            raise PayloadError(f"LDPU_READ request: core {self.core} does not fit a u8")
        return [bytes([self.core])]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        _expect_size(payload, 1, "LDPU_READ request")
        return cls(memoryview(payload)[0])


@dataclass(frozen=True, slots=True)
class DieTemperature(Payload):
    """TEMPERATURE reply: die temperature in milli-degrees Celsius (i32)."""

    millidegrees_c: int

    @property
    def celsius(self) -> float:
        """The temperature in °C."""
        return self.millidegrees_c / 1000.0

    def chunks(self) -> list[Chunk]:
        return [_pack(I32, "TEMPERATURE reply", self.millidegrees_c)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(I32, payload, "TEMPERATURE reply"))


@dataclass(frozen=True, slots=True)
class ClockAdvance(Payload):
    """CLOCK request: advance the virtual clock by ``advance_s`` seconds (f64)."""

    advance_s: float

    def chunks(self) -> list[Chunk]:
        return [_pack(F64, "CLOCK request", self.advance_s)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(F64, payload, "CLOCK request"))


@dataclass(frozen=True, slots=True)
class ClockTime(Payload):
    """CLOCK reply: the virtual time since power-on in s (f64)."""

    now_s: float

    def chunks(self) -> list[Chunk]:
        return [_pack(F64, "CLOCK reply", self.now_s)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        return cls(*_unpack(F64, payload, "CLOCK reply"))


# -- device access ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PulseBatch(Payload):
    """PULSES request (docs/protocol.md §3.3): pulses on one core, applied in order.

    Arrays of equal length n >= 1: ``row``, ``col``, ``device``, ``kind`` as uint8,
    ``amplitude_ua`` (µA) and ``width_ns`` (ns) as uint16.
    """

    core: int
    row: np.ndarray
    col: np.ndarray
    device: np.ndarray
    kind: np.ndarray
    amplitude_ua: np.ndarray
    width_ns: np.ndarray

    WHAT: ClassVar[str] = "PULSES request"
    BYTES_PER_PULSE: ClassVar[int] = 8

    def __post_init__(self) -> None:
        types = {"row": _U8, "col": _U8, "device": _U8, "kind": _U8}
        types |= {"amplitude_ua": _U16, "width_ns": _U16}
        arrays = {
            name: _wire_array(self.WHAT, name, getattr(self, name), dtype, 1)
            for name, dtype in types.items()
        }
        _same_length(self.WHAT, arrays)
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @property
    def n(self) -> int:
        """Number of pulses."""
        return int(self.row.size)

    @classmethod
    def payload_size(cls, n: int) -> int:
        """Bytes of a batch of ``n`` pulses."""
        return ADDR_HEADER.size + cls.BYTES_PER_PULSE * n

    def chunks(self) -> list[Chunk]:
        return [
            _pack(ADDR_HEADER, self.WHAT, self.core, 0, 0, self.n),
            _wire_bytes(self.row, _U8),
            _wire_bytes(self.col, _U8),
            _wire_bytes(self.device, _U8),
            _wire_bytes(self.kind, _U8),
            _wire_bytes(self.amplitude_ua, _U16),
            _wire_bytes(self.width_ns, _U16),
        ]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        core, n = _address_header(payload, cls.BYTES_PER_PULSE, cls.WHAT)
        base = ADDR_HEADER.size
        return cls(
            core=core,
            row=_view(payload, _U8, n, base),
            col=_view(payload, _U8, n, base + n),
            device=_view(payload, _U8, n, base + 2 * n),
            kind=_view(payload, _U8, n, base + 3 * n),
            amplitude_ua=_view(payload, _U16, n, base + 4 * n),
            width_ns=_view(payload, _U16, n, base + 6 * n),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ReadBatch(Payload):
    """VERIFY_READ request (docs/protocol.md §3.4): single-device reads on one core.

    ``row``, ``col``, ``device``: uint8 arrays of equal length n >= 1.
    """

    core: int
    row: np.ndarray
    col: np.ndarray
    device: np.ndarray

    WHAT: ClassVar[str] = "VERIFY_READ request"
    BYTES_PER_READ: ClassVar[int] = 3

    def __post_init__(self) -> None:
        arrays = {
            name: _wire_array(self.WHAT, name, getattr(self, name), _U8, 1)
            for name in ("row", "col", "device")
        }
        _same_length(self.WHAT, arrays)
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @property
    def n(self) -> int:
        """Number of reads."""
        return int(self.row.size)

    @classmethod
    def payload_size(cls, n: int) -> int:
        """Bytes of a batch of ``n`` reads."""
        return ADDR_HEADER.size + cls.BYTES_PER_READ * n

    def chunks(self) -> list[Chunk]:
        return [
            _pack(ADDR_HEADER, self.WHAT, self.core, 0, 0, self.n),
            _wire_bytes(self.row, _U8),
            _wire_bytes(self.col, _U8),
            _wire_bytes(self.device, _U8),
        ]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        core, n = _address_header(payload, cls.BYTES_PER_READ, cls.WHAT)
        base = ADDR_HEADER.size
        return cls(
            core=core,
            row=_view(payload, _U8, n, base),
            col=_view(payload, _U8, n, base + n),
            device=_view(payload, _U8, n, base + 2 * n),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ReadCounts(Payload):
    """VERIFY_READ reply: ``u32 n, u16 counts[n]``, the positive counter of each read."""

    counts: np.ndarray

    WHAT: ClassVar[str] = "VERIFY_READ reply"

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _wire_array(self.WHAT, "counts", self.counts, _U16, 1))

    @classmethod
    def payload_size(cls, n: int) -> int:
        """Bytes of the reply to ``n`` reads."""
        return U32.size + 2 * n

    def chunks(self) -> list[Chunk]:
        return [_pack(U32, self.WHAT, self.counts.size), _wire_bytes(self.counts, _U16)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        if _size(payload) < U32.size:
            raise PayloadError(f"{cls.WHAT}: payload of {_size(payload)} bytes is too short")
        (n,) = U32.unpack_from(payload)
        _expect_size(payload, cls.payload_size(n), cls.WHAT)
        return cls(_view(payload, _U16, n, U32.size))


@dataclass(frozen=True, slots=True, eq=False)
class MvmRequest(Payload):
    """MVM request (docs/protocol.md §3.5).

    Attributes:
        mode: 1 one-phase, 4 four-phase (not checked here: the board refuses others).
        output: :data:`OUTPUT_RAW` or :data:`OUTPUT_LDPU` (likewise).
        cores: uint8 core ids, C of them.
        inputs: int8 PWM inputs, shape (C, batch, cols).
        rows: the output rows [start, stop) the host reads, or None for all of them (then the
            request is byte for byte the one of before the row range existed: flags 0).
    """

    mode: int
    output: int
    cores: np.ndarray
    inputs: np.ndarray
    rows: tuple[int, int] | None = None

    WHAT: ClassVar[str] = "MVM request"

    def __post_init__(self) -> None:
        cores = _wire_array(self.WHAT, "cores", self.cores, _U8, 1)
        inputs = _wire_array(self.WHAT, "inputs", self.inputs, _I8, 3)
        if cores.size == 0 or inputs.shape[0] != cores.size:
            raise PayloadError(
                f"{self.WHAT}: inputs of shape {inputs.shape} for {cores.size} cores"
            )
        if inputs.shape[1] == 0 or inputs.shape[2] == 0:
            raise PayloadError(f"{self.WHAT}: empty batch or vectors, shape {inputs.shape}")
        if self.rows is not None:
            start, stop = self.rows
            start, stop = int(start), int(stop)
            if not 0 <= start < stop <= 0xFFFF:
                raise PayloadError(f"{self.WHAT}: row range [{start}, {stop}) is empty or too big")
            object.__setattr__(self, "rows", (start, stop))
        # a frozen dataclass's fields are set through object.__setattr__: only where it changes
        if cores is not self.cores:
            object.__setattr__(self, "cores", cores)
        if inputs is not self.inputs:
            object.__setattr__(self, "inputs", inputs)

    @property
    def batch(self) -> int:
        """Input vectors per core."""
        return int(self.inputs.shape[1])

    @property
    def cols(self) -> int:
        """Length of one input vector (the chip's columns)."""
        return int(self.inputs.shape[2])

    @classmethod
    def payload_size(cls, n_cores: int, batch: int, cols: int, *, rows: bool = False) -> int:
        """Bytes of a request for ``n_cores`` cores of ``batch`` vectors of ``cols`` inputs
        (``rows``: with a row range)."""
        extra = MVM_ROW_RANGE.size if rows else 0
        return MVM_HEADER.size + extra + n_cores + n_cores * batch * cols

    def chunks(self) -> list[Chunk]:
        flags = 0 if self.rows is None else MVM_FLAG_ROW_RANGE
        header = _pack(
            MVM_HEADER, self.WHAT, self.mode, self.output, self.cores.size, flags, self.batch
        )
        chunks: list[Chunk] = [header]
        if self.rows is not None:
            chunks.append(_pack(MVM_ROW_RANGE, self.WHAT, *self.rows))
        return [*chunks, _wire_bytes(self.cores, _U8), _wire_bytes(self.inputs, _I8)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        size = _size(payload)
        if size < MVM_HEADER.size:
            raise PayloadError(f"{cls.WHAT}: payload of {size} bytes is too short")
        mode, output, n_cores, flags, batch = MVM_HEADER.unpack_from(payload)
        if flags & ~MVM_FLAG_ROW_RANGE:
            raise PayloadError(f"{cls.WHAT}: unknown flag bits {flags:#04x}")
        if n_cores == 0 or batch == 0:
            raise PayloadError(f"{cls.WHAT}: no cores or empty batch")
        base = MVM_HEADER.size
        rows: tuple[int, int] | None = None
        if flags & MVM_FLAG_ROW_RANGE:
            if size < base + MVM_ROW_RANGE.size:
                raise PayloadError(f"{cls.WHAT}: payload of {size} bytes lacks the row range")
            start, stop = MVM_ROW_RANGE.unpack_from(payload, base)
            rows = (start, stop)
            base += MVM_ROW_RANGE.size
        n_in = size - base - n_cores
        if n_in <= 0 or n_in % (n_cores * batch):
            raise PayloadError(
                f"{cls.WHAT}: {max(n_in, 0)} input bytes do not make {n_cores} cores × "
                f"batch {batch} vectors"
            )
        cols = n_in // (n_cores * batch)
        return cls(
            mode=mode,
            output=output,
            cores=_view(payload, _U8, n_cores, base),
            inputs=_view(payload, _I8, n_in, base + n_cores).reshape(n_cores, batch, cols),
            rows=rows,
        )


@dataclass(frozen=True, slots=True, eq=False)
class MvmReply(Payload):
    """MVM reply (docs/protocol.md §3.5): raw counters or LDPU outputs, shape (C, batch, rows).

    RAW: ``positive`` and ``negative`` (uint16 12-bit counts), ``outputs`` None.
    LDPU: ``outputs`` (int8), ``positive`` and ``negative`` None.
    """

    output: int
    positive: np.ndarray | None = None
    negative: np.ndarray | None = None
    outputs: np.ndarray | None = None

    WHAT: ClassVar[str] = "MVM reply"

    def __post_init__(self) -> None:
        if self.output == OUTPUT_RAW:
            if self.outputs is not None or self.positive is None or self.negative is None:
                raise PayloadError(f"{self.WHAT}: RAW carries positive and negative only")
            positive = _wire_array(self.WHAT, "positive", self.positive, _U16, 3)
            negative = _wire_array(self.WHAT, "negative", self.negative, _U16, 3)
            if positive.shape != negative.shape:
                raise PayloadError(
                    f"{self.WHAT}: positive {positive.shape} and negative {negative.shape} differ"
                )
            if positive is not self.positive or negative is not self.negative:
                object.__setattr__(self, "positive", positive)
                object.__setattr__(self, "negative", negative)
        elif self.output == OUTPUT_LDPU:
            if self.outputs is None or self.positive is not None or self.negative is not None:
                raise PayloadError(f"{self.WHAT}: LDPU carries outputs only")
            outputs = _wire_array(self.WHAT, "outputs", self.outputs, _I8, 3)
            if outputs is not self.outputs:
                object.__setattr__(self, "outputs", outputs)
        else:
            raise PayloadError(f"{self.WHAT}: output code {self.output} is neither 0 nor 1")
        if 0 in self.shape:
            raise PayloadError(f"{self.WHAT}: empty result of shape {self.shape}")

    @classmethod
    def raw(cls, positive: np.ndarray, negative: np.ndarray) -> MvmReply:
        """A RAW reply from the two counters, each (C, batch, rows) uint16."""
        return cls(OUTPUT_RAW, positive=positive, negative=negative)

    @classmethod
    def ldpu(cls, outputs: np.ndarray) -> MvmReply:
        """An LDPU reply from int8 outputs (C, batch, rows)."""
        return cls(OUTPUT_LDPU, outputs=outputs)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, batch, rows)."""
        array = self.outputs if self.positive is None else self.positive
        assert array is not None
        n_cores, batch, rows = array.shape
        return (n_cores, batch, rows)

    @classmethod
    def payload_size(cls, output: int, n_cores: int, batch: int, rows: int) -> int:
        """Bytes of the reply of an MVM on ``n_cores`` cores of ``batch`` vectors."""
        per_output = 4 if output == OUTPUT_RAW else 1
        return MVM_REPLY_HEADER.size + per_output * n_cores * batch * rows

    def chunks(self) -> list[Chunk]:
        n_cores, batch, _ = self.shape
        header = _pack(MVM_REPLY_HEADER, self.WHAT, self.output, n_cores, 0, batch)
        if self.positive is not None and self.negative is not None:
            return [header, _wire_bytes(self.positive, _U16), _wire_bytes(self.negative, _U16)]
        assert self.outputs is not None
        return [header, _wire_bytes(self.outputs, _I8)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        size = _size(payload)
        if size < MVM_REPLY_HEADER.size:
            raise PayloadError(f"{cls.WHAT}: payload of {size} bytes is too short")
        output, n_cores, reserved, batch = MVM_REPLY_HEADER.unpack_from(payload)
        if reserved:
            raise PayloadError(f"{cls.WHAT}: reserved bytes must be zero")
        if output not in (OUTPUT_RAW, OUTPUT_LDPU):
            raise PayloadError(f"{cls.WHAT}: output code {output} is neither 0 nor 1")
        if n_cores == 0 or batch == 0:
            raise PayloadError(f"{cls.WHAT}: no cores or empty batch")
        per_vector = n_cores * batch * (4 if output == OUTPUT_RAW else 1)
        body = size - MVM_REPLY_HEADER.size
        if body == 0 or body % per_vector:
            raise PayloadError(
                f"{cls.WHAT}: {body} data bytes do not make {n_cores} cores × batch {batch}"
            )
        rows = body // per_vector
        shape = (n_cores, batch, rows)
        n_out = n_cores * batch * rows
        base = MVM_REPLY_HEADER.size
        if output == OUTPUT_LDPU:
            return cls(output, outputs=_view(payload, _I8, n_out, base).reshape(shape))
        counts = _view(payload, _U16, 2 * n_out, base)
        return cls(
            output,
            positive=counts[:n_out].reshape(shape),
            negative=counts[n_out:].reshape(shape),
        )


# -- LDPU -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class LdpuTable(Payload):
    """LDPU coefficients of one core (docs/protocol.md §3.6): LDPU_LOAD request, LDPU_READ reply.

    ``table`` is float16, shape (6, rows), in the wire order of
    :data:`drivers.ldpu.COEFFICIENT_FIELDS`. Values are not checked here (the board refuses
    non-finite ones); :meth:`coefficients` builds the validated :class:`LdpuCoefficients`.
    """

    core: int
    relu: bool
    table: np.ndarray

    WHAT: ClassVar[str] = "LDPU coefficients"

    def __post_init__(self) -> None:
        table = _wire_array(self.WHAT, "table", self.table, _F16, 2)
        if table.shape[0] != len(COEFFICIENT_FIELDS) or table.shape[1] == 0:
            raise PayloadError(f"{self.WHAT}: table must be (6, rows), got {table.shape}")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "relu", bool(self.relu))

    @classmethod
    def of(cls, core: int, coefficients: LdpuCoefficients) -> LdpuTable:
        """The payload carrying ``coefficients`` for ``core``."""
        return cls(core, coefficients.relu, np.stack(coefficients.arrays()))

    def coefficients(self) -> LdpuCoefficients:
        """The coefficients (``LimitError`` if a value is not finite)."""
        return LdpuCoefficients.from_stacked(self.table, relu=self.relu)

    @property
    def rows(self) -> int:
        """Coefficients per array (the chip's rows)."""
        return int(self.table.shape[1])

    @classmethod
    def payload_size(cls, rows: int) -> int:
        """Bytes of the coefficients of a core with ``rows`` rows."""
        return LDPU_HEADER.size + 2 * len(COEFFICIENT_FIELDS) * rows

    def chunks(self) -> list[Chunk]:
        flags = LDPU_FLAG_RELU if self.relu else 0
        return [_pack(LDPU_HEADER, self.WHAT, self.core, flags, 0), _wire_bytes(self.table, _F16)]

    @classmethod
    def decode(cls, payload: Buffer) -> Self:
        size = _size(payload)
        if size < LDPU_HEADER.size:
            raise PayloadError(f"{cls.WHAT}: payload of {size} bytes is too short")
        core, flags, reserved = LDPU_HEADER.unpack_from(payload)
        if reserved or flags & ~LDPU_FLAG_RELU:
            raise PayloadError(f"{cls.WHAT}: reserved bits must be zero")
        per_row = 2 * len(COEFFICIENT_FIELDS)
        body = size - LDPU_HEADER.size
        if body == 0 or body % per_row:
            raise PayloadError(f"{cls.WHAT}: {body} bytes are not six float16 arrays")
        rows = body // per_row
        table = _view(payload, _F16, len(COEFFICIENT_FIELDS) * rows, LDPU_HEADER.size)
        return cls(core, bool(flags & LDPU_FLAG_RELU), table.reshape(-1, rows))


# -- the command table ------------------------------------------------------------------------

REQUESTS: Mapping[Command, type[Payload]] = MappingProxyType(
    {
        Command.IDENTIFY: Empty,
        Command.RESET: Empty,
        Command.STATUS: Empty,
        Command.READ_REGISTER: RegisterAddress,
        Command.WRITE_REGISTER: RegisterValue,
        Command.SAFE_STATE: Empty,
        Command.CLEAR_ERRORS: Empty,
        Command.PULSES: PulseBatch,
        Command.VERIFY_READ: ReadBatch,
        Command.MVM: MvmRequest,
        Command.LDPU_LOAD: LdpuTable,
        Command.LDPU_READ: CoreId,
        Command.TEMPERATURE: Empty,
        Command.CLOCK: ClockAdvance,
    }
)
"""The request payload class of every command (docs/protocol.md §3)."""

REPLIES: Mapping[Command, type[Payload]] = MappingProxyType(
    {
        Command.IDENTIFY: BoardIdentity,
        Command.RESET: BootId,
        Command.STATUS: BoardStatus,
        Command.READ_REGISTER: RegisterValue,
        Command.WRITE_REGISTER: RegisterValue,
        Command.SAFE_STATE: Empty,
        Command.CLEAR_ERRORS: ErrorRegister,
        Command.PULSES: PulsesApplied,
        Command.VERIFY_READ: ReadCounts,
        Command.MVM: MvmReply,
        Command.LDPU_LOAD: Empty,
        Command.LDPU_READ: LdpuTable,
        Command.TEMPERATURE: DieTemperature,
        Command.CLOCK: ClockTime,
    }
)
"""The reply payload class of every command (docs/protocol.md §3)."""
