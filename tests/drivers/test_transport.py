"""Retry, duplicate-safety and boot-id rules of the link (docs/protocol.md §2 and §5).

Scripted with :class:`drivers.link.replay.ReplayPort`: a pair whose reply is ``None`` is a lost
reply (the read times out). Frames are built by hand from the spec, as in test_board_replay.
"""

from __future__ import annotations

import struct

import pytest

from drivers.errors import (
    BoardCrcError,
    BoardRangeError,
    BoardResetError,
    DriverError,
    FrameError,
    LimitError,
    LinkClosedError,
    LinkError,
    LinkTimeout,
)
from drivers.link.protocol import Command
from drivers.link.replay import ReplayPort, expected_frames
from drivers.link.transport import BadUrlError, Link, check_url, known_schemes
from tests.drivers.spec_frames import hand_frame

BOOT_ID = 0x0B07
NEW_BOOT_ID = 0x0B08

IDENTIFY, RESET, STATUS, READ_REGISTER, SAFE_STATE = 0x01, 0x02, 0x03, 0x04, 0x06
PULSES, VERIFY_READ, MVM, CLOCK = 0x10, 0x11, 0x12, 0x30


frame = hand_frame


def request(command: int, seq: int, payload: bytes = b"") -> bytes:
    return frame(command, seq, payload)


def reply(command: int, seq: int, payload: bytes = b"", *, boot_id: int = BOOT_ID) -> bytes:
    return frame(command, seq, payload, flags=0x01, boot_id=boot_id)


def error_reply(
    command: int, seq: int, code: int, message: str = "", *, boot_id: int = BOOT_ID
) -> bytes:
    return frame(command, seq, message.encode(), flags=0x03, status=code, boot_id=boot_id)


def corrupt_payload(data: bytes) -> bytes:
    """Flip a bit in the first payload byte (the header stays valid, pcrc fails)."""
    assert len(data) > 20
    return data[:16] + bytes([data[16] ^ 0x01]) + data[17:]


def corrupt_header(data: bytes) -> bytes:
    """Flip a bit in the seq field (hcrc fails: the frame is not recognised at all)."""
    return data[:6] + bytes([data[6] ^ 0x80]) + data[7:]


IDENTITY = (
    struct.pack("<BBHHBBHHHI", 1, 64, 256, 256, 4, 3, 800, 10, 5000, 33_554_432)
    + b"\x01b\x01f\x01c"
)
IDENTIFY_PAIR = (request(IDENTIFY, 1), reply(IDENTIFY, 1, IDENTITY))


def status_payload(last_seq: int, boot_id: int = BOOT_ID) -> bytes:
    return struct.pack("<IIIIHHd", 1, 0, last_seq, 0, last_seq, boot_id, 1.0)


def temp(seq: int, millidegrees: int = 25_000, *, boot_id: int = BOOT_ID) -> bytes:
    return reply(0x20, seq, struct.pack("<i", millidegrees), boot_id=boot_id)


# One programming pulse: core 0, row 1, col 2, device 3, SET, 100 uA, 200 ns.
PULSE_PAYLOAD = (
    struct.pack("<BBHI", 0, 0, 0, 1) + bytes([1, 2, 3, 1]) + struct.pack("<HH", 100, 200)
)
APPLIED_1 = struct.pack("<I", 1)


def apply_one_pulse(board) -> int:
    return board.apply_pulses(0, 1, 2, 3, "set", 100, 200)


# -- idempotent commands: resent as the identical frame ---------------------------------------


def test_idempotent_command_is_resent_identically_after_a_lost_reply() -> None:
    with expected_frames(
        [IDENTIFY_PAIR, (request(0x20, 2), None), (request(0x20, 2), temp(2, 21_500))]
    ) as board:
        assert board.temperature_c() == 21.5
        written = board.link.port.written
        assert written[1] == written[2]  # same bytes, same seq
        assert board.link.stats.retries == 1
        assert board.link.stats.timeouts == 1


@pytest.mark.parametrize("corrupt", [corrupt_payload, corrupt_header], ids=["payload", "header"])
def test_idempotent_command_is_resent_identically_after_a_corrupted_reply(corrupt) -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(0x20, 2), corrupt(temp(2, 99_000))),
            (request(0x20, 2), temp(2, 30_000)),
        ]
    ) as board:
        assert board.temperature_c() == 30.0
        assert board.link.stats.retries == 1


def test_corrupted_payload_reply_is_counted() -> None:
    with expected_frames(
        [IDENTIFY_PAIR, (request(0x20, 2), corrupt_payload(temp(2))), (request(0x20, 2), temp(2))]
    ) as board:
        board.temperature_c()
        assert board.link.stats.corrupt_replies == 1


@pytest.mark.parametrize("command", [0x20, PULSES])
def test_crc_error_reply_means_not_executed_and_the_identical_frame_is_resent(command: int) -> None:
    # Even PULSES is resent directly after CRC_ERROR: the board said it did not execute it.
    payload, result = (
        (b"", struct.pack("<i", 1000)) if command == 0x20 else (PULSE_PAYLOAD, APPLIED_1)
    )
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(command, 2, payload), error_reply(command, 2, 1, "request CRC failed")),
            (request(command, 2, payload), reply(command, 2, result)),
        ]
    ) as board:
        if command == PULSES:
            assert apply_one_pulse(board) == 1
        else:
            assert board.temperature_c() == 1.0
        assert board.link.stats.crc_naks == 1
        assert board.link.stats.retries == 1


# -- non-idempotent commands: STATUS first ----------------------------------------------------


@pytest.mark.parametrize("lost", ["timeout", "corrupted"])
def test_pulses_after_a_lost_reply_asks_status_then_resends_the_identical_frame(lost: str) -> None:
    first_reply = None if lost == "timeout" else corrupt_payload(reply(PULSES, 2, APPLIED_1))
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(PULSES, 2, PULSE_PAYLOAD), first_reply),
            (request(STATUS, 3), reply(STATUS, 3, status_payload(2))),
            (request(PULSES, 2, PULSE_PAYLOAD), reply(PULSES, 2, APPLIED_1)),
            # The next new request continues after the STATUS seq.
            (request(SAFE_STATE, 4), reply(SAFE_STATE, 4)),
        ]
    ) as board:
        assert apply_one_pulse(board) == 1
        board.safe_state()


def test_clock_after_a_lost_reply_asks_status_then_resends_the_identical_frame() -> None:
    advance = struct.pack("<d", 10.0)
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(CLOCK, 2, advance), None),
            (request(STATUS, 3), reply(STATUS, 3, status_payload(2))),
            (request(CLOCK, 2, advance), reply(CLOCK, 2, struct.pack("<d", 11.0))),
        ]
    ) as board:
        assert board.advance_clock(10.0) == 11.0


def test_pulses_not_resent_when_status_shows_the_board_reset() -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(PULSES, 2, PULSE_PAYLOAD), None),
            (
                request(STATUS, 3),
                reply(STATUS, 3, status_payload(0, NEW_BOOT_ID), boot_id=NEW_BOOT_ID),
            ),
            # no second PULSES: the replay port would raise ReplayMismatch on an extra request
        ]
    ) as board:
        with pytest.raises(BoardResetError) as info:
            apply_one_pulse(board)
        assert (info.value.old_boot_id, info.value.new_boot_id) == (BOOT_ID, NEW_BOOT_ID)
        assert board.link.port.written[-1] == request(STATUS, 3)


def test_pulses_retries_exhausted_interleave_status_checks_then_link_timeout() -> None:
    script = [IDENTIFY_PAIR, (request(PULSES, 2, PULSE_PAYLOAD), None)]
    for status_seq in (3, 4):
        script += [
            (request(STATUS, status_seq), reply(STATUS, status_seq, status_payload(2))),
            (request(PULSES, 2, PULSE_PAYLOAD), None),
        ]
    with expected_frames(script, retries=2) as board, pytest.raises(LinkTimeout):
        apply_one_pulse(board)


# -- boot identifier --------------------------------------------------------------------------


def test_reply_with_another_boot_id_raises_board_reset_and_is_not_resent() -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(0x20, 2), temp(2, boot_id=NEW_BOOT_ID)),
            # The host now knows the new boot id: later replies carrying it are accepted.
            (request(0x20, 3), temp(3, 20_000, boot_id=NEW_BOOT_ID)),
        ]
    ) as board:
        with pytest.raises(BoardResetError) as info:
            board.temperature_c()
        assert info.value.old_boot_id == BOOT_ID
        assert info.value.new_boot_id == NEW_BOOT_ID
        assert len(board.link.port.written) == 2
        assert board.temperature_c() == 20.0


def test_error_reply_with_another_boot_id_raises_board_reset_not_the_board_error() -> None:
    with (
        expected_frames(
            [
                IDENTIFY_PAIR,
                (request(0x20, 2), error_reply(0x20, 2, 5, "out of range", boot_id=NEW_BOOT_ID)),
            ]
        ) as board,
        pytest.raises(BoardResetError),
    ):
        board.temperature_c()


def test_crc_error_reply_with_another_boot_id_raises_board_reset_and_pulses_not_resent() -> None:
    # docs §2: the host checks *every* reply and never resends a non-idempotent command across
    # a reset; a CRC_ERROR from a board that has since reset is no exception.
    with (
        expected_frames(
            [
                IDENTIFY_PAIR,
                (
                    request(PULSES, 2, PULSE_PAYLOAD),
                    error_reply(PULSES, 2, 1, "crc", boot_id=NEW_BOOT_ID),
                ),
            ]
        ) as board,
        pytest.raises(BoardResetError),
    ):
        apply_one_pulse(board)


def test_reset_reply_adopts_the_new_boot_id() -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (
                request(RESET, 2),
                reply(RESET, 2, struct.pack("<H", NEW_BOOT_ID), boot_id=NEW_BOOT_ID),
            ),
            (request(0x20, 3), temp(3, boot_id=NEW_BOOT_ID)),
            (request(0x20, 4), temp(4, boot_id=BOOT_ID)),  # the old id is now a reset
        ]
    ) as board:
        assert board.reset() == NEW_BOOT_ID
        assert board.link.boot_id == NEW_BOOT_ID
        board.temperature_c()
        with pytest.raises(BoardResetError):
            board.temperature_c()


def test_reset_is_resent_after_a_lost_reply_and_adopts_the_id_of_its_reply() -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(RESET, 2), None),
            (
                request(RESET, 2),
                reply(RESET, 2, struct.pack("<H", NEW_BOOT_ID), boot_id=NEW_BOOT_ID),
            ),
        ]
    ) as board:
        assert board.reset() == NEW_BOOT_ID
        assert board.link.boot_id == NEW_BOOT_ID


# -- retries exhausted ------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_lost_replies_after_all_retries_raise_link_timeout(retries: int) -> None:
    script = [IDENTIFY_PAIR] + [(request(0x20, 2), None)] * (retries + 1)
    with expected_frames(script, retries=retries) as board:
        with pytest.raises(LinkTimeout) as info:
            board.temperature_c()
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, LinkError)
        assert len(board.link.port.written) == retries + 2
        assert board.link.stats.retries == retries


@pytest.mark.parametrize("retries", [0, 2])
def test_corrupted_replies_after_all_retries_raise_frame_error(retries: int) -> None:
    script = [IDENTIFY_PAIR] + [(request(0x20, 2), corrupt_payload(temp(2)))] * (retries + 1)
    with expected_frames(script, retries=retries) as board, pytest.raises(FrameError):
        board.temperature_c()


def test_crc_error_replies_after_all_retries_raise_board_crc_error() -> None:
    # docs §4: CRC_ERROR maps to BoardCrcError "(retried)"; it is what remains when retries end.
    script = [IDENTIFY_PAIR] + [(request(0x20, 2), error_reply(0x20, 2, 1, "bad pcrc"))] * 3
    with expected_frames(script, retries=2) as board:
        with pytest.raises(BoardCrcError, match="bad pcrc"):
            board.temperature_c()
        assert board.link.stats.crc_naks == 3


def test_a_board_error_other_than_crc_error_is_not_retried() -> None:
    with (
        expected_frames(
            [IDENTIFY_PAIR, (request(0x20, 2), error_reply(0x20, 2, 5, "nope"))]
        ) as board,
        pytest.raises(BoardRangeError),
    ):
        board.temperature_c()


# -- stale replies and garbage ----------------------------------------------------------------


def test_reply_with_another_seq_is_ignored() -> None:
    with expected_frames(
        [IDENTIFY_PAIR, (request(0x20, 2), temp(1, 99_000) + temp(7, 98_000) + temp(2, 22_000))]
    ) as board:
        assert board.temperature_c() == 22.0
        assert board.link.stats.stale_replies == 2


def test_late_duplicate_reply_to_a_resent_request_is_ignored_by_the_next_request() -> None:
    # Attempt 1's reply was only late: both it and attempt 2's reply arrive; the second copy is
    # still buffered when the next request runs and must not be taken for its reply.
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(0x20, 2), None),
            (request(0x20, 2), temp(2, 23_000) + temp(2, 23_000)),
            (request(0x20, 3), temp(3, 24_000)),
        ]
    ) as board:
        assert board.temperature_c() == 23.0
        assert board.temperature_c() == 24.0
        assert board.link.stats.stale_replies == 1


def test_request_echo_and_reply_to_another_command_are_ignored() -> None:
    echo = request(0x20, 2)  # no REPLY flag
    other = reply(STATUS, 2, status_payload(1))  # right seq, wrong command
    with expected_frames(
        [IDENTIFY_PAIR, (request(0x20, 2), echo + other + temp(2, 5_000))]
    ) as board:
        assert board.temperature_c() == 5.0


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00",
        b"\xff" * 40,
        b"noise on the line \x13\x37",
        b"\xa5",  # a lone first sync byte
        b"\xa5\x5a\x01\x20\x01\x00",  # a sync word and the start of a header
        b"\x5a\xa5\xa5\x5a" + bytes(30),  # a false header that fails its CRC
    ],
)
def test_garbage_before_a_reply_is_skipped_and_counted(garbage: bytes) -> None:
    with expected_frames([IDENTIFY_PAIR, (request(0x20, 2), garbage + temp(2, 7_000))]) as board:
        assert board.temperature_c() == 7.0
        assert board.link.stats.garbage_bytes == len(garbage)


def test_no_garbage_is_counted_on_a_clean_link() -> None:
    with expected_frames(
        [IDENTIFY_PAIR] + [(request(0x20, s), temp(s, 1000 * s)) for s in range(2, 40)]
    ) as board:
        for s in range(2, 40):
            assert board.temperature_c() == s
        assert board.link.stats.garbage_bytes == 0
        assert board.link.stats.replies == 39


def test_garbage_between_a_corrupted_reply_and_the_resend() -> None:
    with expected_frames(
        [
            IDENTIFY_PAIR,
            (request(0x20, 2), corrupt_header(temp(2)) + b"\x00\x01"),
            (request(0x20, 2), temp(2, 8_000)),
        ]
    ) as board:
        assert board.temperature_c() == 8.0


# -- closed link ------------------------------------------------------------------------------


def test_request_on_a_closed_link_raises_link_closed_error() -> None:
    port = ReplayPort([IDENTIFY_PAIR])
    link = Link(port, timeout_s=0.01, retries=0, url="replay", first_seq=0)
    assert link.request(Command.IDENTIFY).payload == IDENTITY
    link.close()
    link.close()  # idempotent
    assert link.closed
    assert not port.is_open
    with pytest.raises(LinkClosedError):
        link.request(Command.STATUS)
    assert port.written == [request(IDENTIFY, 1)]


def test_board_close_then_command_raises_link_closed_error() -> None:
    with expected_frames([IDENTIFY_PAIR]) as board:
        board.close()
        with pytest.raises(LinkClosedError):
            board.status()
        assert isinstance(LinkClosedError("x"), LinkError)
        assert board.link.port.written == [request(IDENTIFY, 1)]


# -- board URLs are checked before pyserial is asked (issue 18, item 4) -------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socket://127.0.0.1:99999", "port 99999 is out of range (1-65535)"),
        ("socket://127.0.0.1:0", "port 0 is out of range"),
        ("socket://127.0.0.1:-1", "port -1 is out of range"),
        ("socket://host", "has no port (expected socket://HOST:PORT)"),
        ("socket://host:", "has no port"),
        ("socket://[::1]", "has no port"),
        ("socket://:5555", "has no host"),
        ("socket://host:abc", "port 'abc' is not a number"),
        ("socket://host:1:2", "is not of the form socket://HOST:PORT"),
        ("socket://host:5555/path", "not a path after the port"),
        ("socket://host:5555?logging=loud", "logging='loud' is not one of"),
        ("socket://host:5555?speed=9", "unknown option(s) ['speed']"),
        ("socket://[::1", "is not of the form socket://HOST:PORT: Invalid IPv6 URL"),
        ("socket://[::1:5555", "is not of the form socket://HOST:PORT"),
        ("rfc2217://[board:2217", "is not of the form rfc2217://HOST:PORT"),
        ("mockchip://?seed=abc", "option seed='abc' is not an integer"),
        ("mockchip://?seed=1&seed=2", "option 'seed' given 2 times"),
        ("mockchip://?cores=999", "option cores=999 outside [1, 64]"),
        ("mockchip://?colour=red", "unknown simulator option(s) ['colour']"),
        ("mockchip://host?seed=1", "takes only options after '?'"),
        ("rfc2217://host:70000", "port 70000 is out of range"),
        ("rfc2217://host", "has no port (expected rfc2217://HOST:PORT)"),
        ("foo://x", "unknown scheme foo://"),
        ("http://host:80", "unknown scheme http://"),
        ("://x", "'' is not a URL scheme"),
        ("", "board URL is empty"),
        ("   ", "board URL is empty"),
        (" mockchip://", "leading or trailing spaces"),
    ],
)
def test_bad_url_is_refused_before_pyserial_is_asked(
    url: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serial

    def not_asked(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyserial was asked to open a URL the host should have refused")

    monkeypatch.setattr(serial, "serial_for_url", not_asked)
    with pytest.raises(BadUrlError) as info:
        Link.open(url, timeout_s=0.2)
    assert message in str(info.value)
    if url.strip():
        assert repr(url) in str(info.value)  # names the URL
    # bad input (LimitError, a ValueError) and a link that cannot open (LinkError, an OSError)
    assert isinstance(info.value, LimitError) and isinstance(info.value, LinkError)
    assert isinstance(info.value, DriverError)


@pytest.mark.parametrize(
    "url",
    [
        "socket://127.0.0.1:5555",
        "socket://board.lab:1?logging=debug",
        "socket://[::1]:80",
        "rfc2217://board:2217?poll_modem",
        "mockchip://?seed=1&cores=2",
        "MOCKCHIP://",
        "loop://",
        "/dev/ttyUSB0",
        "COM3",
    ],
)
def test_good_urls_pass_the_check(url: str) -> None:
    check_url(url)


def test_known_schemes_include_pyserials_and_the_simulator() -> None:
    schemes = known_schemes()
    assert {"socket", "rfc2217", "loop", "mockchip"} <= set(schemes)
