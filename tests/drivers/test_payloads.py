"""The payload classes (drivers/link/payloads.py): one per request and reply of every command.

- every ``Command`` has a request and a reply class, and every class is in that table;
- every class round-trips (hypothesis): ``decode(encode(x)) == x``, ``chunks`` join to ``encode``;
- spec examples, packed here by hand with ``struct`` from docs/protocol.md §3, decode and encode
  back byte for byte (the simulated board's replies are these encoders);
- malformed payloads raise ``PayloadError`` (a ``CodecError`` and a ``ProtocolError``), nothing
  else, and a payload that decodes re-encodes to the same bytes.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from drivers.errors import DriverError, ProtocolError
from drivers.ldpu import LdpuCoefficients
from drivers.link import payloads
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
)
from drivers.link.protocol import CodecError, Command

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF_FFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
f64 = st.floats(allow_nan=False)
label = st.text(max_size=40)  # at most 160 UTF-8 bytes, within the u8 length prefix


def _array(dtype: str, shape: Any, **kwargs: Any) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.dtype(dtype), shape, **kwargs)


@st.composite
def pulse_batches(draw: st.DrawFn) -> PulseBatch:
    n = draw(st.integers(1, 12))
    return PulseBatch(
        core=draw(u8),
        row=draw(_array("u1", n)),
        col=draw(_array("u1", n)),
        device=draw(_array("u1", n)),
        kind=draw(_array("u1", n)),
        amplitude_ua=draw(_array("<u2", n)),
        width_ns=draw(_array("<u2", n)),
    )


@st.composite
def read_batches(draw: st.DrawFn) -> ReadBatch:
    n = draw(st.integers(1, 12))
    return ReadBatch(
        core=draw(u8),
        row=draw(_array("u1", n)),
        col=draw(_array("u1", n)),
        device=draw(_array("u1", n)),
    )


@st.composite
def mvm_requests(draw: st.DrawFn) -> MvmRequest:
    c, b, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9))
    return MvmRequest(
        mode=draw(u8),
        output=draw(u8),
        cores=draw(_array("u1", c)),
        inputs=draw(_array("i1", (c, b, cols))),
    )


@st.composite
def mvm_replies(draw: st.DrawFn) -> MvmReply:
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)))
    if draw(st.booleans()):
        return MvmReply.raw(draw(_array("<u2", shape)), draw(_array("<u2", shape)))
    return MvmReply.ldpu(draw(_array("i1", shape)))


@st.composite
def ldpu_tables(draw: st.DrawFn) -> LdpuTable:
    rows = draw(st.integers(1, 9))
    table = draw(_array("<f2", (6, rows), elements=st.floats(width=16, allow_nan=False)))
    return LdpuTable(core=draw(u8), relu=draw(st.booleans()), table=table)


STRATEGIES: dict[type[Payload], st.SearchStrategy[Any]] = {
    Empty: st.just(Empty()),
    BoardIdentity: st.builds(
        BoardIdentity,
        protocol_version=u8,
        n_cores=u8,
        rows=u16,
        cols=u16,
        devices_per_weight=u8,
        simulated=st.booleans(),
        clock_control=st.booleans(),
        max_pulse_amplitude_ua=u16,
        min_pulse_width_ns=u16,
        max_pulse_width_ns=u16,
        max_payload=u32,
        board_id=label,
        firmware_version=label,
        chip_id=label,
    ),
    BoardStatus: st.builds(BoardStatus, u32, u32, u32, u32, u16, u16, f64),
    BootId: st.builds(BootId, u16),
    RegisterAddress: st.builds(RegisterAddress, u16),
    RegisterValue: st.builds(RegisterValue, u16, u32),
    ErrorRegister: st.builds(ErrorRegister, u32),
    PulsesApplied: st.builds(PulsesApplied, u32),
    CoreId: st.builds(CoreId, u8),
    DieTemperature: st.builds(DieTemperature, i32),
    ClockAdvance: st.builds(ClockAdvance, f64),
    ClockTime: st.builds(ClockTime, f64),
    PulseBatch: pulse_batches(),
    ReadBatch: read_batches(),
    ReadCounts: st.builds(ReadCounts, _array("<u2", st.integers(0, 12))),
    MvmRequest: mvm_requests(),
    MvmReply: mvm_replies(),
    LdpuTable: ldpu_tables(),
}

PAYLOAD_CLASSES = sorted(set(REQUESTS.values()) | set(REPLIES.values()), key=lambda c: c.__name__)


# -- the command table ------------------------------------------------------------------------


def test_every_command_has_a_request_and_a_reply_class() -> None:
    assert set(REQUESTS) == set(Command)
    assert set(REPLIES) == set(Command)
    for table in (REQUESTS, REPLIES):
        assert all(issubclass(cls, Payload) for cls in table.values())


def test_every_payload_class_of_the_module_is_in_the_command_table() -> None:
    defined = {
        obj
        for obj in vars(payloads).values()
        if inspect.isclass(obj) and issubclass(obj, Payload) and obj is not Payload
    }
    assert defined == set(PAYLOAD_CLASSES)
    assert set(STRATEGIES) == defined, "give every payload class a round-trip strategy"


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PAYLOAD_CLASSES, ids=lambda c: c.__name__)
def test_every_payload_class_round_trips(cls: type[Payload]) -> None:
    @SETTINGS
    @given(STRATEGIES[cls])
    def round_trip(value: Payload) -> None:
        encoded = value.encode()
        assert b"".join(bytes(c) for c in value.chunks()) == encoded
        decoded = cls.decode(encoded)
        assert type(decoded) is cls
        assert decoded == value
        assert decoded.encode() == encoded
        # Every input the receivers get: bytes, bytearray, memoryview.
        assert cls.decode(memoryview(encoded)) == value
        assert cls.decode(bytearray(encoded)) == value

    round_trip()


@pytest.mark.parametrize("cls", PAYLOAD_CLASSES, ids=lambda c: c.__name__)
def test_decoding_arbitrary_bytes_raises_only_payload_errors(cls: type[Payload]) -> None:
    """Random bytes either decode to a payload that encodes back to exactly those bytes, or
    raise PayloadError; never another exception. (IDENTIFY is left out of the re-encoding
    check: unknown capability bits and invalid UTF-8 are dropped on purpose.)"""

    @SETTINGS
    @given(st.binary(max_size=80))
    def decode(data: bytes) -> None:
        try:
            value = cls.decode(data)
        except PayloadError:
            return
        if cls is not BoardIdentity:
            assert value.encode() == data

    decode()


def test_payload_error_is_a_codec_error_and_a_protocol_error() -> None:
    with pytest.raises(PayloadError) as info:
        BootId.decode(b"\x01")
    assert isinstance(info.value, CodecError)
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DriverError)


# -- spec examples, packed by hand from docs/protocol.md §3 ------------------------------------

_ROWS = np.arange(4, dtype=np.uint8)
_IN = np.arange(-3, 5, dtype=np.int8).reshape(2, 1, 4)  # 2 cores, batch 1, 4 columns
_POS = np.arange(8, dtype="<u2").reshape(2, 1, 4) + 4000
_NEG = np.arange(8, dtype="<u2").reshape(2, 1, 4)
_F16 = np.linspace(-2, 2, 6 * 3).astype("<f2").reshape(6, 3)

SPEC_EXAMPLES: list[tuple[str, type[Payload], bytes, Payload]] = [
    ("empty", Empty, b"", Empty()),
    (
        "identify",
        BoardIdentity,
        struct.pack("<BBHHBBHHHI", 1, 64, 256, 256, 4, 0b11, 800, 10, 5000, 1 << 25)
        + b"\x02B7\x00\x04C-01",
        BoardIdentity(1, 64, 256, 256, 4, True, True, 800, 10, 5000, 1 << 25, "B7", "", "C-01"),
    ),
    (
        "status",
        BoardStatus,
        struct.pack("<IIIIHHd", 5, 8, 100, 2, 9, 0x2B1D, 1.5),
        BoardStatus(5, 8, 100, 2, 9, 0x2B1D, 1.5),
    ),
    ("reset", BootId, struct.pack("<H", 0x7E57), BootId(0x7E57)),
    ("read-register", RegisterAddress, struct.pack("<H", 0x11), RegisterAddress(0x11)),
    ("register", RegisterValue, struct.pack("<HI", 1, 250), RegisterValue(1, 250)),
    ("clear-errors", ErrorRegister, struct.pack("<I", 6), ErrorRegister(6)),
    ("pulses-applied", PulsesApplied, struct.pack("<I", 4), PulsesApplied(4)),
    ("ldpu-read", CoreId, b"\x21", CoreId(33)),
    ("temperature", DieTemperature, struct.pack("<i", -1250), DieTemperature(-1250)),
    ("clock", ClockAdvance, struct.pack("<d", 25.0), ClockAdvance(25.0)),
    ("clock-reply", ClockTime, struct.pack("<d", 3.5), ClockTime(3.5)),
    (
        "pulses",
        PulseBatch,
        struct.pack("<BBHI", 63, 0, 0, 4)
        + bytes([0, 1, 2, 3])  # row
        + bytes([4, 5, 6, 7])  # col
        + bytes([0, 1, 2, 3])  # device
        + bytes([0, 1, 2, 2])  # kind
        + struct.pack("<4H", 700, 125, 300, 300)
        + struct.pack("<4H", 125, 250, 125, 125),
        PulseBatch(
            63,
            _ROWS,
            _ROWS + 4,
            _ROWS,
            np.array([0, 1, 2, 2], np.uint8),
            np.array([700, 125, 300, 300], "<u2"),
            np.array([125, 250, 125, 125], "<u2"),
        ),
    ),
    (
        "verify-read",
        ReadBatch,
        struct.pack("<BBHI", 2, 0, 0, 4) + bytes([0, 1, 2, 3, 9, 9, 9, 9, 3, 2, 1, 0]),
        ReadBatch(2, _ROWS, np.full(4, 9, np.uint8), _ROWS[::-1]),
    ),
    (
        "verify-read-reply",
        ReadCounts,
        struct.pack("<I3H", 3, 0, 4095, 77),
        ReadCounts(np.array([0, 4095, 77], "<u2")),
    ),
    (
        "mvm",
        MvmRequest,
        struct.pack("<BBBBI", 4, 0, 2, 0, 1) + bytes([5, 2]) + _IN.tobytes(),
        MvmRequest(4, OUTPUT_RAW, np.array([5, 2], np.uint8), _IN),
    ),
    (
        "mvm-raw",
        MvmReply,
        struct.pack("<BBHI", 0, 2, 0, 1) + _POS.tobytes() + _NEG.tobytes(),
        MvmReply.raw(_POS, _NEG),
    ),
    (
        "mvm-ldpu",
        MvmReply,
        struct.pack("<BBHI", 1, 2, 0, 1) + _IN.tobytes(),
        MvmReply.ldpu(_IN),
    ),
    (
        "ldpu",
        LdpuTable,
        struct.pack("<BBH", 12, 1, 0) + _F16.tobytes(),
        LdpuTable(12, True, _F16),
    ),
]


@pytest.mark.parametrize(
    ("cls", "data", "value"),
    [(cls, data, value) for _, cls, data, value in SPEC_EXAMPLES],
    ids=[name for name, *_ in SPEC_EXAMPLES],
)
def test_spec_example_decodes_and_encodes_byte_for_byte(
    cls: type[Payload], data: bytes, value: Payload
) -> None:
    assert cls.decode(data) == value
    assert value.encode() == data


def test_spec_examples_cover_every_class() -> None:
    assert {cls for _, cls, *_ in SPEC_EXAMPLES} == set(PAYLOAD_CLASSES)


# -- layout checks ----------------------------------------------------------------------------

MALFORMED: list[tuple[str, Callable[[], object]]] = [
    ("empty-with-bytes", lambda: Empty.decode(b"\x00")),
    ("status-short", lambda: BoardStatus.decode(bytes(27))),
    ("identify-trailing", lambda: BoardIdentity.decode(SPEC_EXAMPLES[1][2] + b"\x00")),
    ("identify-cut-string", lambda: BoardIdentity.decode(SPEC_EXAMPLES[1][2][:-1])),
    ("pulses-reserved", lambda: PulseBatch.decode(struct.pack("<BBHI", 0, 1, 0, 1) + bytes(8))),
    ("pulses-empty", lambda: PulseBatch.decode(struct.pack("<BBHI", 0, 0, 0, 0))),
    ("pulses-count", lambda: PulseBatch.decode(struct.pack("<BBHI", 0, 0, 0, 2) + bytes(8))),
    ("reads-count", lambda: ReadBatch.decode(struct.pack("<BBHI", 0, 0, 0, 1) + bytes(4))),
    ("counts-count", lambda: ReadCounts.decode(struct.pack("<IH", 2, 5))),
    ("mvm-reserved", lambda: MvmRequest.decode(struct.pack("<BBBBI", 4, 0, 1, 1, 1) + bytes(5))),
    ("mvm-no-batch", lambda: MvmRequest.decode(struct.pack("<BBBBI", 4, 0, 1, 0, 0) + bytes(5))),
    ("mvm-ragged", lambda: MvmRequest.decode(struct.pack("<BBBBI", 4, 0, 1, 0, 2) + bytes(4))),
    ("mvm-reply-code", lambda: MvmReply.decode(struct.pack("<BBHI", 2, 1, 0, 1) + bytes(4))),
    ("mvm-reply-ragged", lambda: MvmReply.decode(struct.pack("<BBHI", 0, 1, 0, 1) + bytes(6))),
    ("ldpu-flags", lambda: LdpuTable.decode(struct.pack("<BBH", 0, 2, 0) + bytes(12))),
    ("ldpu-ragged", lambda: LdpuTable.decode(struct.pack("<BBH", 0, 0, 0) + bytes(14))),
    ("batch-dtype", lambda: ReadBatch(0, _ROWS.astype(np.int64), _ROWS, _ROWS)),
    ("batch-lengths", lambda: ReadBatch(0, _ROWS, _ROWS[:3], _ROWS)),
    ("mvm-cores", lambda: MvmRequest(4, 0, np.array([1], np.uint8), _IN)),
    ("mvm-reply-mixed", lambda: MvmReply(OUTPUT_LDPU, positive=_POS, outputs=_IN)),
    ("u16-overflow", lambda: BootId(0x10000).encode()),
    ("core-overflow", lambda: CoreId(256).encode()),
]


@pytest.mark.parametrize("build", [b for _, b in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_payloads_raise_payload_error(build: Callable[[], object]) -> None:
    with pytest.raises(PayloadError):
        build()


def test_an_identity_string_longer_than_255_bytes_is_refused() -> None:
    identity = SPEC_EXAMPLES[1][3]
    assert isinstance(identity, BoardIdentity)
    too_long = BoardIdentity(**{**_fields(identity), "chip_id": "µ" * 128})
    with pytest.raises(PayloadError, match="255"):
        too_long.encode()


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


# -- helpers used by Board and the simulated board --------------------------------------------


def test_geometry_comes_from_the_identity() -> None:
    identity = SPEC_EXAMPLES[1][3]
    assert isinstance(identity, BoardIdentity)
    assert identity.geometry == ChipGeometry(n_cores=64, rows=256, cols=256, devices_per_weight=4)
    assert identity.geometry.device_shape == (256, 256, 4)
    assert identity.geometry.devices_per_core == 256 * 256 * 4


def test_ldpu_table_carries_coefficients_of_any_row_count() -> None:
    coefficients = LdpuCoefficients.identity(rows=3)
    table = LdpuTable.of(7, coefficients)
    assert table.rows == 3
    assert LdpuTable.decode(table.encode()).coefficients() == coefficients


def test_payload_sizes_match_the_encodings() -> None:
    for _, _cls, data, value in SPEC_EXAMPLES:
        if isinstance(value, PulseBatch | ReadBatch):
            assert type(value).payload_size(value.n) == len(data)
        elif isinstance(value, ReadCounts):
            assert ReadCounts.payload_size(value.counts.size) == len(data)
        elif isinstance(value, MvmRequest):
            assert MvmRequest.payload_size(2, value.batch, value.cols) == len(data)
        elif isinstance(value, MvmReply):
            assert MvmReply.payload_size(value.output, *value.shape) == len(data)
        elif isinstance(value, LdpuTable):
            assert LdpuTable.payload_size(value.rows) == len(data)


def test_decoded_arrays_are_views_of_the_payload() -> None:
    """No copy on the MVM path: the reply arrays point into the received bytes."""
    data = SPEC_EXAMPLES[[n for n, *_ in SPEC_EXAMPLES].index("mvm-raw")][2]
    reply = MvmReply.decode(data)
    assert reply.positive is not None
    assert np.shares_memory(reply.positive, np.frombuffer(data, np.uint8))
    request = MvmRequest(4, 0, np.array([0], np.uint8), np.zeros((1, 2, 256), np.int8))
    assert np.shares_memory(np.frombuffer(request.chunks()[2], np.int8), request.inputs)


def test_mvm_payload_arrays_and_row_range_are_taken_as_given_or_converted() -> None:
    cores, inputs = np.array([0], np.uint8), np.zeros((1, 2, 256), np.int8)
    request = MvmRequest(4, OUTPUT_LDPU, cores, inputs, rows=(np.int64(3), np.uint16(9)))
    assert request.cores is cores and request.inputs is inputs  # no copies on the hot path
    assert request.rows == (3, 9) and all(type(v) is int for v in request.rows)
    with pytest.raises(ValueError):
        MvmRequest(4, OUTPUT_LDPU, cores, inputs, rows=(1, 2, 3))  # type: ignore[arg-type]
    outputs = np.zeros((1, 2, 5), np.int8)
    assert MvmReply.ldpu(outputs).outputs is outputs


@pytest.mark.parametrize("size", [0, 1, 255, 16_384, 16_385, 100_000])
def test_holds_int8_min_finds_minus_128_anywhere(size: int) -> None:
    values = np.full(size, -127, np.int8)
    assert not payloads.holds_int8_min(values)
    for where in {0, size // 2, size - 1} if size else set():
        values[where] = -128
        assert payloads.holds_int8_min(values)
        assert payloads.holds_int8_min(values.reshape(1, -1)[:, ::-1])
        values[where] = 127
