"""Pure codec for the board link (docs/protocol.md): frames, CRCs, command and error codes.

No I/O here. ``encode_frame`` builds a frame; ``FrameDecoder`` turns any byte stream, however it
is cut into pieces and whatever garbage it carries, into frames, resynchronising on the sync
word and checking the header CRC before it trusts (or allocates for) the length field.
CRCs come from C: the header's from ``binascii``, the payload's CRC-32 (zlib's polynomial) from
zlib-ng, which folds with carry-less multiplies: 6 µs for 256 kB where zlib takes 80–120 µs, and a
frame's payload is checked five times on its way through the simulator and back.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import NamedTuple

from zlib_ng.zlib_ng import crc32

from drivers.errors import DriverError

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER_SIZE = 16
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
MAX_PAYLOAD = 32 * 1024 * 1024
"""Largest payload in bytes (32 MiB): a full-chip raw MVM reply of batch 256 is 16 MiB."""
MAX_ERROR_MESSAGE = 256

_HEADER = struct.Struct("<2sBBBBHIH")  # without the trailing header CRC
_HEADER_CRC = struct.Struct("<2sBBBBHIHH")  # with the header CRC
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


# Fixed parts of the payload layouts (docs/protocol.md §3), used by drivers.link.payloads, which
# defines every request and reply payload for the host driver and the simulated board alike.
IDENT_FIXED = struct.Struct("<BBHHBBHHHI")
"""IDENTIFY reply before its three strings (§3.1)."""
STATUS_LAYOUT = struct.Struct("<IIIIHHd")
"""STATUS reply (§3.2)."""
ADDR_HEADER = struct.Struct("<BBHI")
"""PULSES / VERIFY_READ request header: core, reserved, reserved, n (§3.3, §3.4)."""
MVM_HEADER = struct.Struct("<BBBBI")
"""MVM request header: mode, output, n_cores, reserved, batch (§3.5)."""
MVM_REPLY_HEADER = struct.Struct("<BBHI")
"""MVM reply header: output, n_cores, reserved, batch (§3.5)."""
LDPU_HEADER = struct.Struct("<BBH")
"""LDPU coefficients header: core, flags, reserved (§3.6)."""
REGISTER_PAIR = struct.Struct("<HI")
"""READ/WRITE_REGISTER: address, value (§3, §6)."""
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
I32 = struct.Struct("<i")
F64 = struct.Struct("<d")
MAX_CLOCK_ADVANCE_S = 3.2e9
"""Largest single CLOCK advance, about a century (§3)."""


class Command(IntEnum):
    """Command codes (docs/protocol.md §3)."""

    IDENTIFY = 0x01
    RESET = 0x02
    STATUS = 0x03
    READ_REGISTER = 0x04
    WRITE_REGISTER = 0x05
    SAFE_STATE = 0x06
    CLEAR_ERRORS = 0x07
    PULSES = 0x10
    VERIFY_READ = 0x11
    MVM = 0x12
    LDPU_LOAD = 0x13
    LDPU_READ = 0x14
    TEMPERATURE = 0x20
    CLOCK = 0x30


NON_IDEMPOTENT = frozenset({Command.PULSES, Command.CLOCK})
"""Commands never resent blindly (docs/protocol.md §5)."""


class Flags(IntFlag):
    """Header flag bits."""

    NONE = 0
    REPLY = 0x01
    ERROR = 0x02


# The flags as plain ints: enum operations cost microseconds, and every frame asks. int():
# ``~`` on an IntFlag complements only the defined bits, which would hide bits 2-7.
_REPLY, _ERROR = int(Flags.REPLY), int(Flags.ERROR)
_RESERVED_FLAGS = ~(_REPLY | _ERROR) & 0xFF


class ErrorCode(IntEnum):
    """Board error codes (docs/protocol.md §4)."""

    OK = 0
    CRC_ERROR = 1
    FRAME_ERROR = 2
    UNKNOWN_COMMAND = 3
    BAD_PAYLOAD = 4
    OUT_OF_RANGE = 5
    BUSY = 6
    NOT_SUPPORTED = 7
    HARDWARE_FAULT = 8
    UNSUPPORTED_VERSION = 9


class Register(IntEnum):
    """Board registers (docs/protocol.md §6)."""

    SCRATCH = 0x0000
    MVM_READ_VOLTAGE_MV = 0x0001
    ADC_SATURATION_COUNT = 0x0002
    BOOT_ID = 0x0010
    FRAMES_RECEIVED = 0x0011
    FRAMES_REJECTED = 0x0012


class PulseKind(IntEnum):
    """Programming pulse kinds (docs/protocol.md §3.3)."""

    RESET = 0
    SET = 1
    PARTIAL = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``payload`` may be a memoryview into the decoder's input."""

    command: int
    seq: int
    payload: bytes | memoryview = b""
    flags: int = 0
    status: int = 0
    boot_id: int = 0
    version: int = VERSION

    @property
    def is_reply(self) -> bool:
        """True for a board reply (REPLY flag)."""
        return bool(self.flags & _REPLY)

    @property
    def is_error(self) -> bool:
        """True for an error reply (ERROR flag); the payload carries the error code."""
        return bool(self.flags & _ERROR)


@dataclass(frozen=True, slots=True)
class CorruptFrame:
    """A frame whose header was valid but whose payload failed its CRC.

    The header fields are trustworthy (they passed the header CRC); the board answers such a
    request with ``CRC_ERROR`` and the same ``seq``.
    """

    command: int
    seq: int
    flags: int
    boot_id: int
    version: int


@dataclass(frozen=True, slots=True)
class BadHeader:
    """A header that passed its CRC but cannot be accepted (version or length).

    ``length`` is the declared payload length; a receiver skips no payload for it (it cannot
    trust the declared size), so the frame's bytes are then discarded as garbage.
    """

    command: int
    seq: int
    flags: int
    version: int
    length: int
    reason: str


class CodecError(DriverError, ValueError):
    """A frame or payload could not be built or parsed (field out of range, wrong length).

    Under the package's root error, :class:`~drivers.errors.DriverError`, and a ``ValueError``.
    """


def header_crc(header14: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT of the first 14 header bytes, initial value 0xFFFF."""
    return binascii.crc_hqx(header14, 0xFFFF)


def payload_crc(payload: bytes | bytearray | memoryview) -> int:
    """CRC-32 (zlib) of the payload."""
    return crc32(payload)


def encode_header(
    command: int,
    seq: int,
    length: int,
    *,
    flags: int = 0,
    status: int = 0,
    boot_id: int = 0,
    version: int = VERSION,
) -> bytes:
    """The 16-byte header of a frame with a payload of ``length`` bytes."""
    if not 0 <= length <= MAX_PAYLOAD:
        raise CodecError(f"payload of {length} bytes exceeds the maximum of {MAX_PAYLOAD}")
    # every frame passes here: one test for the usual case, the field-by-field one to explain
    if not (
        0 <= command <= 0xFF
        and 0 <= flags <= 0xFF
        and 0 <= status <= 0xFF
        and 0 <= version <= 0xFF
        and 0 <= seq <= 0xFFFF
        and 0 <= boot_id <= 0xFFFF
    ):
        for name, value, top in (
            ("command", command, 0xFF),
            ("flags", flags, 0xFF),
            ("status", status, 0xFF),
            ("version", version, 0xFF),
            ("seq", seq, 0xFFFF),
            ("boot_id", boot_id, 0xFFFF),
        ):
            if not 0 <= value <= top:
                raise CodecError(f"{name} {value} outside 0..{top}")
    head = _HEADER.pack(SYNC, version, command, flags, status, seq, length, boot_id)
    return head + _U16.pack(header_crc(head))


def encode_frame(
    command: int,
    seq: int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    flags: int = 0,
    status: int = 0,
    boot_id: int = 0,
    version: int = VERSION,
) -> bytes:
    """A complete frame: header, payload and payload CRC."""
    header = encode_header(
        command,
        seq,
        len(payload),
        flags=flags,
        status=status,
        boot_id=boot_id,
        version=version,
    )
    return b"".join((header, payload, _U32.pack(payload_crc(payload))))


Chunk = bytes | bytearray | memoryview


def encode_chunks(
    command: int,
    seq: int,
    chunks: Sequence[Chunk],
    *,
    flags: int = 0,
    status: int = 0,
    boot_id: int = 0,
) -> bytes:
    """Like :func:`encode_frame` with the payload given as pieces, joined with one copy."""
    length = crc = 0
    for chunk in chunks:  # one pass for the length and the CRC
        length += len(chunk) if type(chunk) is bytes else memoryview(chunk).nbytes
        crc = crc32(chunk, crc)
    header = encode_header(command, seq, length, flags=flags, status=status, boot_id=boot_id)
    return b"".join([header, *chunks, _U32.pack(crc)])


def encode_error(command: int, seq: int, code: int, message: str, *, boot_id: int) -> bytes:
    """An error reply carrying ``code`` and a UTF-8 message of at most 256 bytes."""
    text = message.encode("utf-8")[:MAX_ERROR_MESSAGE]
    return encode_frame(
        command,
        seq,
        text,
        flags=Flags.REPLY | Flags.ERROR,
        status=code,
        boot_id=boot_id,
    )


class Header(NamedTuple):
    """A header that passed its CRC (a tuple: every frame makes one)."""

    version: int
    command: int
    flags: int
    status: int
    seq: int
    length: int
    boot_id: int


def parse_header(data: bytes | bytearray | memoryview) -> Header | None:
    """Parse 16 header bytes; ``None`` if the sync word or the header CRC is wrong."""
    if len(data) < HEADER_SIZE:
        raise CodecError(f"a header is {HEADER_SIZE} bytes, got {len(data)}")
    return _header_at(data, 0)


def _header_at(data: bytes | bytearray | memoryview, offset: int) -> Header | None:
    """:func:`parse_header` of the 16 bytes at ``offset`` (no memoryview of a bytearray, which
    would have to be released before the bytearray may change size)."""
    sync, version, command, flags, status, seq, length, boot_id, crc = _HEADER_CRC.unpack_from(
        data, offset
    )
    if sync != SYNC or crc != header_crc(data[offset : offset + 14]):
        return None
    return Header(version, command, flags, status, seq, length, boot_id)


def header_problem(header: Header) -> str | None:
    """Why a CRC-valid header must still be refused, or ``None``."""
    if header.version != VERSION:
        return f"unsupported protocol version {header.version}"
    if header.length > MAX_PAYLOAD:
        return f"declared payload of {header.length} bytes exceeds {MAX_PAYLOAD}"
    if header.flags & _RESERVED_FLAGS:
        return f"reserved flag bits set: 0x{header.flags:02x}"
    return None


DecodedItem = Frame | CorruptFrame | BadHeader


class FrameDecoder:
    """Incremental frame decoder for a byte stream (pure, no I/O).

    ``feed(data)`` appends bytes and returns the items completed by them, in order: a
    :class:`Frame`, a :class:`CorruptFrame` (payload CRC failed) or a :class:`BadHeader`.
    Bytes that belong to no frame are counted in ``garbage_bytes``. The buffer never holds more
    than one maximal frame plus the bytes of the current ``feed`` call, since a length is only
    trusted after the header CRC and the limit check.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        # the header of the incomplete frame at the start of the buffer, once parsed: a reader
        # asks wanted() and feeds the rest, and neither needs to check its CRC again
        self._head: Header | None = None
        self.garbage_bytes = 0
        self.frames = 0
        self.corrupt_frames = 0
        self.bad_headers = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial frame (e.g. after the peer disconnected)."""
        self._buffer.clear()
        self._head = None

    def wanted(self) -> int:
        """How many more bytes would complete the frame being assembled (at least 1).

        A reader that asks for exactly this many bytes reads a frame in two calls (header,
        then the rest) without over-reading into the next frame.
        """
        buf = self._buffer
        if self._head is not None:
            return max(1, HEADER_SIZE + self._head.length + TRAILER_SIZE - len(buf))
        if len(buf) < HEADER_SIZE or buf[:2] != SYNC:
            return max(1, HEADER_SIZE - len(buf))
        header = _header_at(buf, 0)
        if header is None or header_problem(header) or header.length > self.max_payload:
            return 1
        return max(1, HEADER_SIZE + header.length + TRAILER_SIZE - len(buf))

    def feed(self, data: bytes | bytearray | memoryview) -> list[DecodedItem]:
        """Add received bytes; return every frame (or corrupt frame, bad header) now complete."""
        if data:
            self._buffer += data
        items: list[DecodedItem] = []
        buf = self._buffer
        start = 0
        kept = self._head  # a header kept from the last feed: its frame starts at 0
        if kept is not None:
            end = HEADER_SIZE + kept.length + TRAILER_SIZE
            if len(buf) < end:
                return items
            self._head = None
            items.append(self._frame(buf, 0, end, kept))
            start = end
        while True:
            sync_at = buf.find(SYNC, start)
            if sync_at < 0:
                # Keep a trailing first sync byte: its partner may arrive in the next feed.
                # (Only an unconsumed byte: the last byte of a frame just decoded is not kept.)
                keep = 1 if start < len(buf) and buf[-1] == SYNC[0] else 0
                self.garbage_bytes += len(buf) - start - keep
                start = len(buf) - keep
                break
            self.garbage_bytes += sync_at - start
            start = sync_at
            if len(buf) - start < HEADER_SIZE:
                break
            header = _header_at(buf, start)
            if header is None:
                self.garbage_bytes += 1
                start += 1
                continue
            problem = header_problem(header)
            if problem is None and header.length > self.max_payload:
                problem = f"declared payload of {header.length} bytes exceeds {self.max_payload}"
            if problem is not None:
                self.bad_headers += 1
                self.garbage_bytes += HEADER_SIZE
                items.append(
                    BadHeader(
                        header.command,
                        header.seq,
                        header.flags,
                        header.version,
                        header.length,
                        problem,
                    )
                )
                start += HEADER_SIZE
                continue
            end = start + HEADER_SIZE + header.length + TRAILER_SIZE
            if len(buf) < end:
                self._head = header  # at 0 once the bytes before it are dropped below
                break
            items.append(self._frame(buf, start, end, header))
            start = end
        if start:
            del buf[:start]
        return items

    def _frame(self, buf: bytearray, start: int, end: int, header: Header) -> DecodedItem:
        """The frame in ``buf[start:end]`` (its header parsed): a Frame or a CorruptFrame."""
        with memoryview(buf) as view:
            payload = view[start + HEADER_SIZE : end - TRAILER_SIZE].tobytes()
        (crc,) = _U32.unpack_from(buf, end - TRAILER_SIZE)
        if crc != crc32(payload):
            self.corrupt_frames += 1
            return CorruptFrame(
                header.command, header.seq, header.flags, header.boot_id, header.version
            )
        self.frames += 1
        return _frame_of(header, payload)


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one complete frame from ``data`` (no extra bytes), else ``CodecError``."""
    view = memoryview(data)
    if len(view) < OVERHEAD:
        raise CodecError(f"a frame is at least {OVERHEAD} bytes, got {len(view)}")
    header = parse_header(view)
    if header is None:
        raise CodecError("bad sync word or header CRC")
    problem = header_problem(header)
    if problem:
        raise CodecError(problem)
    if len(view) != OVERHEAD + header.length:
        raise CodecError(
            f"frame declares {header.length} payload bytes, has {len(view) - OVERHEAD}"
        )
    payload = view[HEADER_SIZE : HEADER_SIZE + header.length]
    (crc,) = _U32.unpack_from(view, HEADER_SIZE + header.length)
    if crc != crc32(payload):
        raise CodecError("payload CRC mismatch")
    return _frame_of(header, payload)


def _frame_of(header: Header, payload: bytes | memoryview) -> Frame:
    """The frame of a checked header and its payload."""
    return Frame(
        command=header.command,
        seq=header.seq,
        payload=payload,
        flags=header.flags,
        status=header.status,
        boot_id=header.boot_id,
        version=header.version,
    )
