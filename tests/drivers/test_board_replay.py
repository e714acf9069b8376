"""Byte-exact replay tests of every Board method, written by hand from docs/protocol.md.

The expected request and reply frames are built here with ``struct``, ``zlib.crc32``,
``binascii.crc_hqx`` and numpy only, never with ``drivers.link.protocol``'s encoders, so that an
encode/decode mistake that is symmetric in the codec still shows up as a mismatch.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from drivers import errors
from drivers.board import BoardIdentity, BoardStatus, MvmCounts
from drivers.errors import ProtocolError
from drivers.ldpu import LdpuCoefficients
from drivers.link.replay import ReplayMismatch, expected_frames
from tests.drivers.spec_frames import hand_frame

# -- command codes (docs §3) and flag bits (docs §1), spelled out by hand ----------------------

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

FLAG_REPLY = 0x01
FLAG_ERROR = 0x02

BOOT_ID = 0x2B1D


frame = hand_frame


def request(command: int, seq: int, payload: bytes = b"") -> bytes:
    return frame(command, seq, payload)


def reply(command: int, seq: int, payload: bytes = b"", *, boot_id: int = BOOT_ID) -> bytes:
    return frame(command, seq, payload, flags=FLAG_REPLY, boot_id=boot_id)


def error_reply(command: int, seq: int, code: int, message: str) -> bytes:
    return frame(
        command,
        seq,
        message.encode("utf-8"),
        flags=FLAG_REPLY | FLAG_ERROR,
        status=code,
        boot_id=BOOT_ID,
    )


def pstr(text: str) -> bytes:
    """``u8 len + UTF-8`` string of the IDENTIFY reply (docs §3.1)."""
    data = text.encode("utf-8")
    return bytes([len(data)]) + data


def identity_payload(*, version: int = 1, max_payload: int = 33_554_432) -> bytes:
    return (
        struct.pack(
            "<BBHHBBHHHI",
            version,  # protocol_version
            64,  # n_cores
            256,  # rows
            256,  # cols
            4,  # devices_per_weight
            0b11,  # capabilities: SIMULATED | CLOCK_CONTROL
            800,  # max_pulse_amplitude_uA
            10,  # min_pulse_width_ns
            5000,  # max_pulse_width_ns
            max_payload,
        )
        + pstr("sim-board-7")
        + pstr("fw 1.4.2")
        + pstr("PCM64-µ0001")
    )


IDENTIFY_PAIR = (request(IDENTIFY, 1), reply(IDENTIFY, 1, identity_payload()))


def pairs(*more: tuple[bytes, bytes | None]) -> list[tuple[bytes, bytes | None]]:
    return [IDENTIFY_PAIR, *more]


# -- frame layout -----------------------------------------------------------------------------


def test_identify_request_with_seq_1_is_the_docs_example_byte_for_byte() -> None:
    # docs §8, with the header CRC filled in: crc_hqx(bytes 0-13, 0xFFFF) = 0xb408.
    literal = bytes.fromhex("a5 5a 01 01 00 00 01 00 00 00 00 00 00 00 08 b4 00 00 00 00")
    assert request(IDENTIFY, 1) == literal
    with expected_frames([(literal, reply(IDENTIFY, 1, identity_payload()))]):
        pass


# -- housekeeping commands --------------------------------------------------------------------


def test_identify_decodes_every_field() -> None:
    with expected_frames(pairs()) as board:
        assert board.identity == BoardIdentity(
            protocol_version=1,
            n_cores=64,
            rows=256,
            cols=256,
            devices_per_weight=4,
            simulated=True,
            clock_control=True,
            max_pulse_amplitude_ua=800,
            min_pulse_width_ns=10,
            max_pulse_width_ns=5000,
            max_payload=33_554_432,
            board_id="sim-board-7",
            firmware_version="fw 1.4.2",
            chip_id="PCM64-µ0001",
        )
        assert board.link.boot_id == BOOT_ID


def test_identify_again_uses_the_next_seq_and_decodes_capability_bits() -> None:
    payload = (
        struct.pack("<BBHHBBHHHI", 1, 2, 128, 64, 4, 0b00, 500, 20, 1000, 4096)
        + pstr("hw-3")
        + pstr("")
        + pstr("X")
    )
    with expected_frames(pairs((request(IDENTIFY, 2), reply(IDENTIFY, 2, payload)))) as board:
        ident = board.identify()
    assert (ident.n_cores, ident.rows, ident.cols) == (2, 128, 64)
    assert (ident.simulated, ident.clock_control) == (False, False)
    assert (ident.max_pulse_amplitude_ua, ident.min_pulse_width_ns) == (500, 20)
    assert (ident.max_pulse_width_ns, ident.max_payload) == (1000, 4096)
    assert (ident.board_id, ident.firmware_version, ident.chip_id) == ("hw-3", "", "X")


def test_board_refuses_a_board_that_reports_another_protocol_version() -> None:
    with (
        pytest.raises(ProtocolError, match="version 2"),
        expected_frames([(request(IDENTIFY, 1), reply(IDENTIFY, 1, identity_payload(version=2)))]),
    ):
        pass


def test_identify_reply_with_trailing_bytes_is_a_protocol_error() -> None:
    bad = reply(IDENTIFY, 1, identity_payload() + b"\x00")
    with pytest.raises(ProtocolError), expected_frames([(request(IDENTIFY, 1), bad)]):
        pass


def test_reset_returns_the_new_boot_id_and_later_replies_carry_it() -> None:
    new_boot = 0x7E57
    status_payload = struct.pack("<IIIIHHd", 1, 0, 3, 0, 2, new_boot, 0.001)
    with expected_frames(
        pairs(
            (request(RESET, 2), reply(RESET, 2, struct.pack("<H", new_boot), boot_id=new_boot)),
            (request(STATUS, 3), reply(STATUS, 3, status_payload, boot_id=new_boot)),
        )
    ) as board:
        assert board.reset() == new_boot
        assert board.link.boot_id == new_boot
        assert board.status().boot_id == new_boot


def test_status_decodes_every_field() -> None:
    payload = struct.pack("<IIIIHHd", 0b111, 0b1001, 123_456, 7, 1, BOOT_ID, 12.5)
    assert len(payload) == 28
    with expected_frames(pairs((request(STATUS, 2), reply(STATUS, 2, payload)))) as board:
        status = board.status()
    assert status == BoardStatus(
        status_register=0b111,
        error_register=0b1001,
        frames_received=123_456,
        frames_rejected=7,
        last_seq=1,
        boot_id=BOOT_ID,
        uptime_s=12.5,
    )
    assert status.ready
    assert status.errors == ["RX_CRC", "ADC_SATURATION"]


def test_clear_errors_returns_the_previous_error_register() -> None:
    with expected_frames(
        pairs((request(CLEAR_ERRORS, 2), reply(CLEAR_ERRORS, 2, struct.pack("<I", 0b0110))))
    ) as board:
        assert board.clear_errors() == 0b0110


def test_read_register() -> None:
    with expected_frames(
        pairs(
            (
                request(READ_REGISTER, 2, struct.pack("<H", 0x0011)),
                reply(READ_REGISTER, 2, struct.pack("<HI", 0x0011, 0xCAFE_F00D)),
            )
        )
    ) as board:
        assert board.read_register(0x0011) == 0xCAFE_F00D


def test_write_register_returns_the_value_read_back() -> None:
    with expected_frames(
        pairs(
            (
                request(WRITE_REGISTER, 2, struct.pack("<HI", 0x0000, 0xDEAD_BEEF)),
                reply(WRITE_REGISTER, 2, struct.pack("<HI", 0x0000, 0xDEAD_BEEF)),
            )
        )
    ) as board:
        assert board.write_register(0x0000, 0xDEAD_BEEF) == 0xDEAD_BEEF


def test_register_reply_for_another_address_is_a_protocol_error() -> None:
    with (
        expected_frames(
            pairs(
                (
                    request(READ_REGISTER, 2, struct.pack("<H", 0x0001)),
                    reply(READ_REGISTER, 2, struct.pack("<HI", 0x0002, 200)),
                )
            )
        ) as board,
        pytest.raises(ProtocolError),
    ):
        board.read_register(0x0001)


def test_mvm_read_voltage_property_reads_and_writes_register_1() -> None:
    with expected_frames(
        pairs(
            (
                request(READ_REGISTER, 2, struct.pack("<H", 0x0001)),
                reply(READ_REGISTER, 2, struct.pack("<HI", 0x0001, 200)),
            ),
            (
                request(WRITE_REGISTER, 3, struct.pack("<HI", 0x0001, 250)),
                reply(WRITE_REGISTER, 3, struct.pack("<HI", 0x0001, 250)),
            ),
            (
                request(WRITE_REGISTER, 4, struct.pack("<HI", 0x0001, 100)),
                reply(WRITE_REGISTER, 4, struct.pack("<HI", 0x0001, 100)),
            ),
            (
                request(WRITE_REGISTER, 5, struct.pack("<HI", 0x0001, 400)),
                reply(WRITE_REGISTER, 5, struct.pack("<HI", 0x0001, 400)),
            ),
        )
    ) as board:
        assert board.mvm_read_voltage_mv == 200
        board.mvm_read_voltage_mv = 250
        board.mvm_read_voltage_mv = 100
        board.mvm_read_voltage_mv = 400


def test_scratch_property_reads_and_writes_register_0() -> None:
    with expected_frames(
        pairs(
            (
                request(WRITE_REGISTER, 2, struct.pack("<HI", 0x0000, 0xFFFF_FFFF)),
                reply(WRITE_REGISTER, 2, struct.pack("<HI", 0x0000, 0xFFFF_FFFF)),
            ),
            (
                request(READ_REGISTER, 3, struct.pack("<H", 0x0000)),
                reply(READ_REGISTER, 3, struct.pack("<HI", 0x0000, 0xFFFF_FFFF)),
            ),
        )
    ) as board:
        board.scratch = 0xFFFF_FFFF
        assert board.scratch == 0xFFFF_FFFF


def test_safe_state() -> None:
    with expected_frames(pairs((request(SAFE_STATE, 2), reply(SAFE_STATE, 2)))) as board:
        assert board.safe_state() is None


@pytest.mark.parametrize(("millidegrees", "celsius"), [(45_250, 45.25), (-12_345, -12.345)])
def test_temperature_is_signed_millidegrees(millidegrees: int, celsius: float) -> None:
    with expected_frames(
        pairs((request(TEMPERATURE, 2), reply(TEMPERATURE, 2, struct.pack("<i", millidegrees))))
    ) as board:
        assert board.temperature_c() == pytest.approx(celsius, abs=1e-12)


def test_advance_clock_sends_f64_seconds_and_returns_f64_time() -> None:
    with expected_frames(
        pairs(
            (
                request(CLOCK, 2, struct.pack("<d", 3600.25)),
                reply(CLOCK, 2, struct.pack("<d", 3601.75)),
            ),
            (
                request(CLOCK, 3, struct.pack("<d", 3.2e9)),
                reply(CLOCK, 3, struct.pack("<d", 3.2e9 + 3601.75)),
            ),
        )
    ) as board:
        assert board.advance_clock(3600.25) == 3601.75
        assert board.advance_clock(3.2e9) == 3.2e9 + 3601.75


def test_board_time_is_a_clock_advance_of_zero() -> None:
    with expected_frames(
        pairs((request(CLOCK, 2, struct.pack("<d", 0.0)), reply(CLOCK, 2, struct.pack("<d", 42.5))))
    ) as board:
        assert board.board_time_s() == 42.5


def test_sequence_numbers_increment_by_one_per_request() -> None:
    with expected_frames(
        pairs(
            (request(SAFE_STATE, 2), reply(SAFE_STATE, 2)),
            (request(SAFE_STATE, 3), reply(SAFE_STATE, 3)),
            (request(TEMPERATURE, 4), reply(TEMPERATURE, 4, struct.pack("<i", 0))),
        )
    ) as board:
        board.safe_state()
        board.safe_state()
        board.temperature_c()


# -- device access ----------------------------------------------------------------------------


def test_apply_pulses_arrays() -> None:
    payload = (
        struct.pack("<BBHI", 5, 0, 0, 3)
        + bytes([0, 255, 17])  # row
        + bytes([1, 2, 255])  # col
        + bytes([0, 3, 2])  # device
        + bytes([0, 1, 2])  # kind: RESET, SET, PARTIAL
        + struct.pack("<3H", 1, 800, 400)  # amplitude_uA
        + struct.pack("<3H", 10, 5000, 125)  # width_ns
    )
    with expected_frames(
        pairs((request(PULSES, 2, payload), reply(PULSES, 2, struct.pack("<I", 3))))
    ) as board:
        applied = board.apply_pulses(
            5,
            [0, 255, 17],
            [1, 2, 255],
            [0, 3, 2],
            ["reset", "SET", "partial"],
            [1, 800, 400],
            [10, 5000, 125],
        )
    assert applied == 3


def test_apply_pulses_scalars_broadcast_over_the_address_arrays() -> None:
    payload = (
        struct.pack("<BBHI", 63, 0, 0, 2)
        + bytes([7, 8])
        + bytes([9, 9])
        + bytes([1, 1])
        + bytes([2, 2])
        + struct.pack("<2H", 300, 300)
        + struct.pack("<2H", 125, 125)
    )
    single = (
        struct.pack("<BBHI", 0, 0, 0, 1)
        + bytes([3, 4, 1, 1])
        + struct.pack("<H", 100)
        + struct.pack("<H", 200)
    )
    with expected_frames(
        pairs(
            (request(PULSES, 2, payload), reply(PULSES, 2, struct.pack("<I", 2))),
            (request(PULSES, 3, single), reply(PULSES, 3, struct.pack("<I", 1))),
        )
    ) as board:
        assert board.apply_pulses(63, np.array([7, 8]), [9, 9], 1, "partial", 300.0, 125) == 2
        assert board.apply_pulses(0, 3, 4, 1, 1, np.uint16(100), np.int64(200)) == 1


def test_apply_pulses_reply_with_another_count_is_a_protocol_error() -> None:
    single = struct.pack("<BBHI", 0, 0, 0, 1) + bytes([3, 4, 1, 0]) + struct.pack("<HH", 5, 10)
    with (
        expected_frames(
            pairs((request(PULSES, 2, single), reply(PULSES, 2, struct.pack("<I", 0))))
        ) as board,
        pytest.raises(ProtocolError),
    ):
        board.apply_pulses(0, 3, 4, 1, "reset", 5, 10)


def test_verify_read_returns_uint16_counts() -> None:
    payload = struct.pack("<BBHI", 63, 0, 0, 4) + bytes([0, 1, 2, 255, 10, 11, 12, 0, 0, 1, 2, 3])
    counts = [0, 4095, 1234, 77]
    with expected_frames(
        pairs(
            (
                request(VERIFY_READ, 2, payload),
                reply(VERIFY_READ, 2, struct.pack("<I4H", 4, *counts)),
            )
        )
    ) as board:
        result = board.verify_read(63, [0, 1, 2, 255], [10, 11, 12, 0], [0, 1, 2, 3])
    assert result.dtype == np.uint16
    assert result.tolist() == counts


def _mvm_request(mode: int, output: int, cores: list[int], batch: int, inputs: np.ndarray) -> bytes:
    assert inputs.size == len(cores) * batch * 256
    return (
        struct.pack("<BBBBI", mode, output, len(cores), 0, batch)
        + bytes(cores)
        + inputs.astype(np.int8).tobytes()
    )


def _inputs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-127, 128, size=shape).astype(np.int8)


def _counts(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=n).astype(np.uint16)


@pytest.mark.parametrize(
    ("cores", "shape", "mode"),
    [
        (0, (256,), 4),  # one core, one vector
        (17, (3, 256), 1),  # one core, a batch
        ([3, 0, 63], (3, 256), 4),  # several cores, one vector each
        ([5, 2], (2, 4, 256), 1),  # several cores, a batch each
        ([9], (1, 2, 256), 4),  # a one-element core list
    ],
)
def test_mvm_raw(cores: int | list[int], shape: tuple[int, ...], mode: int) -> None:
    core_list = [cores] if isinstance(cores, int) else cores
    inputs = _inputs(shape, seed=len(shape) + mode)
    inputs.flat[0] = -127
    inputs.flat[-1] = 127
    n_out = inputs.size  # rows == cols == 256
    batch = n_out // (256 * len(core_list))
    positive, negative = _counts(n_out, 1), _counts(n_out, 2)
    payload = struct.pack("<BBHI", 0, len(core_list), 0, batch)
    payload += positive.astype("<u2").tobytes() + negative.astype("<u2").tobytes()
    with expected_frames(
        pairs(
            (
                request(MVM, 2, _mvm_request(mode, 0, core_list, batch, inputs)),
                reply(MVM, 2, payload),
            )
        )
    ) as board:
        result = board.mvm(cores, inputs, mode=mode)
    assert isinstance(result, MvmCounts)
    assert result.positive.shape == shape
    assert result.negative.shape == shape
    np.testing.assert_array_equal(result.positive, positive.reshape(shape))
    np.testing.assert_array_equal(result.negative, negative.reshape(shape))
    np.testing.assert_array_equal(
        result.difference, positive.astype(np.int32).reshape(shape) - negative.reshape(shape)
    )


@pytest.mark.parametrize(
    ("cores", "shape"),
    [(42, (256,)), (1, (5, 256)), ([7, 6, 5, 4], (4, 256)), ([0, 63], (2, 3, 256))],
)
def test_mvm_ldpu_output_is_int8(cores: int | list[int], shape: tuple[int, ...]) -> None:
    core_list = [cores] if isinstance(cores, int) else cores
    inputs = _inputs(shape, seed=11)
    batch = inputs.size // (256 * len(core_list))
    outputs = np.random.default_rng(3).integers(-128, 128, size=inputs.size).astype(np.int8)
    payload = struct.pack("<BBHI", 1, len(core_list), 0, batch) + outputs.tobytes()
    with expected_frames(
        pairs(
            (request(MVM, 2, _mvm_request(1, 1, core_list, batch, inputs)), reply(MVM, 2, payload))
        )
    ) as board:
        result = board.mvm(cores, inputs.tolist(), mode=1, output="ldpu")
    assert result.dtype == np.int8
    assert result.shape == shape
    np.testing.assert_array_equal(result, outputs.reshape(shape))


def test_mvm_reply_header_for_another_batch_is_a_protocol_error() -> None:
    inputs = np.zeros((2, 256), np.int8)
    payload = struct.pack("<BBHI", 1, 1, 0, 1) + bytes(512)  # right size, batch field says 1
    with (
        expected_frames(
            pairs((request(MVM, 2, _mvm_request(4, 1, [0], 2, inputs)), reply(MVM, 2, payload)))
        ) as board,
        pytest.raises(ProtocolError),
    ):
        board.mvm(0, inputs, output="ldpu")


# -- LDPU -------------------------------------------------------------------------------------


def _coefficients(relu: bool) -> tuple[LdpuCoefficients, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    arrays = [(rng.normal(size=256) * 10).astype(np.float16) for _ in range(6)]
    arrays[0][0] = np.float16(65504.0)
    arrays[1][1] = np.float16(-65504.0)
    arrays[2][2] = np.float16(6e-8)  # a float16 subnormal
    return LdpuCoefficients(*arrays, relu=relu), arrays


@pytest.mark.parametrize("relu", [False, True])
def test_load_ldpu(relu: bool) -> None:
    coefficients, arrays = _coefficients(relu)
    payload = struct.pack("<BBH", 12, 1 if relu else 0, 0) + b"".join(
        a.astype("<f2").tobytes() for a in arrays
    )
    assert len(payload) == 4 + 6 * 512
    with expected_frames(pairs((request(LDPU_LOAD, 2, payload), reply(LDPU_LOAD, 2)))) as board:
        assert board.load_ldpu(12, coefficients) is None


def test_load_ldpu_identity_coefficients() -> None:
    one, zero = struct.pack("<e", 1.0) * 256, struct.pack("<e", 0.0) * 256
    payload = struct.pack("<BBH", 0, 0, 0) + one + zero + one + zero + one + zero
    with expected_frames(pairs((request(LDPU_LOAD, 2, payload), reply(LDPU_LOAD, 2)))) as board:
        board.load_ldpu(0, LdpuCoefficients.identity())


@pytest.mark.parametrize("relu", [False, True])
def test_read_ldpu(relu: bool) -> None:
    coefficients, arrays = _coefficients(relu)
    payload = struct.pack("<BBH", 33, 1 if relu else 0, 0) + b"".join(
        a.astype("<f2").tobytes() for a in arrays
    )
    with expected_frames(
        pairs((request(LDPU_READ, 2, bytes([33])), reply(LDPU_READ, 2, payload)))
    ) as board:
        result = board.read_ldpu(33)
    assert result == coefficients
    assert result.relu is relu
    for got, want in zip(result.arrays(), arrays, strict=True):
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, want)


def test_read_ldpu_answered_for_another_core_is_a_protocol_error() -> None:
    payload = struct.pack("<BBH", 4, 0, 0) + bytes(6 * 512)
    with (
        expected_frames(
            pairs((request(LDPU_READ, 2, bytes([3])), reply(LDPU_READ, 2, payload)))
        ) as board,
        pytest.raises(ProtocolError),
    ):
        board.read_ldpu(3)


# -- life cycle -------------------------------------------------------------------------------


def test_shutdown_sends_safe_state_and_closes_the_link() -> None:
    with expected_frames(pairs((request(SAFE_STATE, 2), reply(SAFE_STATE, 2)))) as board:
        board.shutdown()
        assert board.link.closed
        board.shutdown()  # idempotent: nothing more is sent
    assert not board.link.port.is_open


def test_board_context_manager_exit_shuts_down() -> None:
    with expected_frames(pairs((request(SAFE_STATE, 2), reply(SAFE_STATE, 2)))) as board:
        with board:
            pass
        assert board.link.closed


def test_shutdown_closes_the_link_even_if_safe_state_fails() -> None:
    with expected_frames(
        pairs((request(SAFE_STATE, 2), error_reply(SAFE_STATE, 2, 8, "write heads stuck")))
    ) as board:
        board.shutdown()
        assert board.link.closed


def test_replay_harness_catches_a_request_that_differs_from_the_script() -> None:
    # Guard for the whole file: a wrong expected frame must fail, not pass silently.
    with (
        pytest.raises(ReplayMismatch),
        expected_frames(pairs((request(STATUS, 3), reply(STATUS, 3, bytes(28))))) as board,
    ):
        board.status()
    with pytest.raises(ReplayMismatch), expected_frames(pairs((request(STATUS, 2), None))):
        pass


# -- error replies (docs §4) ------------------------------------------------------------------

ERROR_CLASSES = [
    (1, errors.BoardCrcError),
    (2, errors.BoardFrameError),
    (3, errors.UnknownCommandError),
    (4, errors.BadPayloadError),
    (5, errors.BoardRangeError),
    (6, errors.BoardBusyError),
    (7, errors.NotSupportedError),
    (8, errors.HardwareFault),
    (9, errors.UnsupportedVersionError),
]


@pytest.mark.parametrize(("code", "cls"), ERROR_CLASSES)
def test_error_reply_raises_the_class_of_its_code(code: int, cls: type[errors.BoardError]) -> None:
    message = f"refusé: code {code} (température hors plage)"
    # CRC_ERROR is retried (docs §5); with no retries left the board's error is what remains.
    with (
        expected_frames(
            pairs(
                (
                    request(READ_REGISTER, 2, struct.pack("<H", 0x0012)),
                    error_reply(READ_REGISTER, 2, code, message),
                )
            ),
            retries=0,
        ) as board,
        pytest.raises(errors.BoardError) as info,
    ):
        board.read_register(0x0012)
    exc = info.value
    assert type(exc) is cls
    assert exc.code == code
    assert message in str(exc)
    assert isinstance(exc, errors.DriverError)
    assert isinstance(exc, ValueError) == (code in (4, 5))


@pytest.mark.parametrize(
    ("call", "command", "req_payload"),
    [
        (lambda b: b.advance_clock(1.0), CLOCK, struct.pack("<d", 1.0)),
        (lambda b: b.write_register(0x0010, 5), WRITE_REGISTER, struct.pack("<HI", 0x0010, 5)),
    ],
    ids=["clock-on-hardware", "write-read-only-register"],
)
def test_not_supported_replies(call, command: int, req_payload: bytes) -> None:
    with expected_frames(
        pairs((request(command, 2, req_payload), error_reply(command, 2, 7, "not on this board")))
    ) as board:
        with pytest.raises(errors.NotSupportedError, match="not on this board"):
            call(board)
        # The link is still usable after an error reply: the next request takes seq 3.
        board.link.port.pairs.append((request(SAFE_STATE, 3), reply(SAFE_STATE, 3)))
        board.safe_state()


def test_out_of_range_reply_to_pulses_is_a_value_error() -> None:
    single = struct.pack("<BBHI", 1, 0, 0, 1) + bytes([0, 0, 0, 1]) + struct.pack("<HH", 800, 5000)
    with (
        expected_frames(
            pairs((request(PULSES, 2, single), error_reply(PULSES, 2, 5, "amplitude too high")))
        ) as board,
        pytest.raises(ValueError, match="amplitude too high"),
    ):
        board.apply_pulses(1, 0, 0, 0, "set", 800, 5000)
