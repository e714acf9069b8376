"""Property tests of the frame codec (docs/protocol.md §1): round trips, corruption detection,
resynchronisation and bounded buffering on arbitrary byte streams."""

from __future__ import annotations

import binascii
import random
import time
import zlib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drivers.link.protocol import (
    MAX_PAYLOAD,
    OVERHEAD,
    BadHeader,
    CodecError,
    CorruptFrame,
    Frame,
    FrameDecoder,
    decode_frame,
    encode_chunks,
    encode_frame,
    header_crc,
    payload_crc,
)
from tests.drivers.spec_frames import hand_frame

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SMALL_MAX = 512
"""A decoder limit small enough that hypothesis can build frames around it."""

TIME_LIMIT_S = 2.0


@st.composite
def frames(draw: st.DrawFn, max_payload: int = 300) -> Frame:
    return Frame(
        command=draw(st.integers(0, 255)),
        seq=draw(st.integers(0, 0xFFFF)),
        payload=draw(st.binary(max_size=max_payload)),
        flags=draw(st.sampled_from([0, 1, 2, 3])),
        status=draw(st.integers(0, 255)),
        boot_id=draw(st.integers(0, 0xFFFF)),
    )


def encode(f: Frame) -> bytes:
    return encode_frame(
        f.command, f.seq, f.payload, flags=f.flags, status=f.status, boot_id=f.boot_id
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def feed_checked(
    decoder: FrameDecoder, chunks: list[bytes]
) -> list[Frame | CorruptFrame | BadHeader]:
    """Feed chunk by chunk, checking the buffer bound and the time after every call."""
    items: list[Frame | CorruptFrame | BadHeader] = []
    limit = decoder.max_payload + OVERHEAD
    start = time.monotonic()
    for chunk in chunks:
        items += decoder.feed(chunk)
        assert decoder.buffered <= limit + len(chunk)
        # A complete frame is always consumed, so less than one maximal frame remains.
        assert decoder.buffered < limit
        assert decoder.garbage_bytes >= 0
        assert decoder.wanted() >= 1
    assert time.monotonic() - start < TIME_LIMIT_S
    return items


def only_frames(items: list) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


# -- CRCs -------------------------------------------------------------------------------------


def test_crc_check_values() -> None:
    # Standard check values: CRC-16/CCITT-FALSE and CRC-32 of "123456789".
    assert header_crc(b"123456789") == 0x29B1
    assert payload_crc(b"123456789") == 0xCBF43926
    assert payload_crc(b"") == 0


@SETTINGS
@given(st.binary(max_size=2000))
def test_crcs_match_zlib_and_binascii(data: bytes) -> None:
    assert header_crc(data) == binascii.crc_hqx(data, 0xFFFF)
    assert payload_crc(data) == zlib.crc32(data)
    assert header_crc(bytearray(data)) == header_crc(memoryview(data)) == header_crc(data)


@pytest.mark.parametrize("sizes", [(0, 5), (1 << 18, 3, 1 << 16), (7, 1 << 20)])
def test_a_payload_in_pieces_is_one_frame_with_zlibs_crc(sizes: tuple[int, ...]) -> None:
    """MVM frames of hundreds of kB are encoded from pieces, their CRC-32 carried from piece
    to piece (zlib-ng, not zlib): the frame equals the one of the joined payload, and its
    trailer is zlib's CRC of the whole payload."""
    rng = random.Random(sum(sizes))
    pieces = [rng.randbytes(n) for n in sizes]
    whole = b"".join(pieces)
    kinds = (bytes, bytearray, memoryview)
    frame = encode_chunks(0x10, 9, [kinds[i % 3](p) for i, p in enumerate(pieces)])
    assert frame == encode_frame(0x10, 9, whole)
    assert int.from_bytes(frame[-4:], "little") == zlib.crc32(whole)
    assert decode_frame(frame).payload == whole


# -- encoding and round trips -----------------------------------------------------------------


@SETTINGS
@given(frames())
def test_encode_frame_matches_the_layout_of_the_spec(f: Frame) -> None:
    data = encode(f)
    assert data == hand_frame(
        f.command, f.seq, f.payload, flags=f.flags, status=f.status, boot_id=f.boot_id
    )
    assert len(data) == OVERHEAD + len(f.payload)


@SETTINGS
@given(frames())
def test_decode_frame_round_trip(f: Frame) -> None:
    decoded = decode_frame(encode(f))
    assert decoded == f
    assert bytes(decoded.payload) == f.payload
    assert decoded.is_reply == bool(f.flags & 1)
    assert decoded.is_error == bool(f.flags & 2)


@SETTINGS
@given(frames())
def test_decoder_round_trip_whole_frame(f: Frame) -> None:
    decoder = FrameDecoder()
    items = decoder.feed(encode(f))
    assert items == [f]
    assert decoder.buffered == 0
    assert decoder.garbage_bytes == 0
    assert decoder.frames == 1


@SETTINGS
@given(st.lists(frames(max_payload=120), min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
def test_decoder_round_trip_split_at_arbitrary_points(fs: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in fs)
    decoder = FrameDecoder()
    items = feed_checked(decoder, split(stream, cuts))
    assert items == fs
    assert decoder.buffered == 0
    assert decoder.garbage_bytes == 0


@FEW
@given(frames(max_payload=60))
def test_decoder_round_trip_byte_by_byte(f: Frame) -> None:
    data = encode(f)
    decoder = FrameDecoder()
    items = feed_checked(decoder, [data[i : i + 1] for i in range(len(data))])
    assert items == [f]
    assert decoder.buffered == 0


@FEW
@given(st.lists(frames(max_payload=80), min_size=1, max_size=4))
def test_reading_exactly_wanted_bytes_reads_one_frame_at_a_time(fs: list[Frame]) -> None:
    stream = b"".join(encode(f) for f in fs)
    decoder = FrameDecoder()
    got: list = []
    pos = 0
    while pos < len(stream):
        n = decoder.wanted()
        items = decoder.feed(stream[pos : pos + n])
        pos += n
        assert len(items) <= 1
        got += items
    assert got == fs


def test_frame_ending_in_the_first_sync_byte_leaves_nothing_buffered() -> None:
    # Regression: a frame whose pcrc's last byte is 0xA5 left that byte in the buffer (and the
    # garbage count at -1) as if it might start the next sync word.
    payload = next(p for i in range(100_000) if zlib.crc32(p := b"%d" % i) >> 24 == 0xA5)
    data = hand_frame(0x03, 9, payload, flags=1, boot_id=3)
    assert data[-1] == 0xA5
    decoder = FrameDecoder()
    assert only_frames(decoder.feed(data)) == [Frame(0x03, 9, payload, flags=1, boot_id=3)]
    assert decoder.buffered == 0
    assert decoder.garbage_bytes == 0
    follow = hand_frame(0x03, 10, b"next", flags=1, boot_id=3)
    assert decoder.feed(follow) == [Frame(0x03, 10, b"next", flags=1, boot_id=3)]
    assert decoder.garbage_bytes == 0


# -- corruption -------------------------------------------------------------------------------


@SETTINGS
@given(frames(max_payload=200), st.integers(0, 10**6), st.integers(1, 255))
def test_any_single_corrupted_byte_is_detected(f: Frame, where: int, mask: int) -> None:
    good = encode(f)
    i = where % len(good)
    bad = bytearray(good)
    bad[i] ^= mask
    bad = bytes(bad)
    items = FrameDecoder().feed(bad)
    # Never a frame with other content; never the original's content from altered bytes.
    assert only_frames(items) == []
    if i >= 16:  # payload or trailer: the header is trusted, the payload CRC fails
        assert items == [CorruptFrame(f.command, f.seq, f.flags, f.boot_id, 1)]
    else:  # sync word or header: the frame is not recognised at all
        assert not any(isinstance(item, CorruptFrame | BadHeader) for item in items)
    with pytest.raises(CodecError):
        decode_frame(bad)


@SETTINGS
@given(frames(max_payload=100), st.integers(0, 10**6), st.integers(1, 255), frames(max_payload=50))
def test_corrupted_frame_costs_only_itself(
    f: Frame, where: int, mask: int, following: Frame
) -> None:
    bad = bytearray(encode(f))
    bad[where % len(bad)] ^= mask
    items = FrameDecoder().feed(bytes(bad) + encode(following))
    assert only_frames(items) == [following]


# -- hostile streams --------------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_crash_or_hang_and_stay_bounded(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_payload=SMALL_MAX)
    feed_checked(decoder, chunks)
    default = FrameDecoder()
    feed_checked(default, chunks)


@SETTINGS
@given(st.binary(max_size=400))
def test_decode_frame_on_random_bytes_returns_a_frame_or_codec_error(data: bytes) -> None:
    try:
        decoded = decode_frame(data)
    except CodecError:
        return
    assert encode(decoded) == data


@SETTINGS
@given(st.binary(max_size=400), frames(max_payload=100), st.lists(st.integers(0, 10**6)))
def test_valid_frame_after_garbage_is_found(garbage: bytes, f: Frame, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_payload=SMALL_MAX)
    items = feed_checked(decoder, split(garbage + encode(f), cuts))
    assert only_frames(items)[-1:] == [f]
    assert decoder.buffered == 0
    assert decoder.garbage_bytes == len(garbage)  # every garbage byte counted once


@FEW
@given(st.integers(0, 2000), st.binary(max_size=40))
def test_valid_frame_after_sync_heavy_garbage_is_found(n: int, noise: bytes) -> None:
    garbage = (b"\xa5\x5a\xa5" * (n // 3 + 1))[:n] + noise + b"\xa5"
    f = Frame(0x12, 77, b"mvm", flags=1, boot_id=5)
    items = feed_checked(FrameDecoder(), split(garbage + encode(f), [5, 17, n]))
    assert only_frames(items) == [f]


@SETTINGS
@given(
    frames(max_payload=200),
    st.integers(0, 10**6),
    st.binary(min_size=0, max_size=50),
    frames(max_payload=60),
)
def test_truncated_frame_then_valid_frame(
    truncated: Frame, cut: int, extra: bytes, f: Frame
) -> None:
    assume(truncated != f)
    data = encode(truncated)
    head = data[: 1 + cut % (len(data) - 1)]  # at least one byte kept, at least one missing
    missing = len(data) - len(head)
    # Enough filler to complete the truncated frame's declared length, so it is given up as
    # corrupted; the following valid frame must then be found.
    filler = bytes(b ^ 0x5A for b in data[len(head) :]) + extra
    assume(len(filler) >= missing)
    items = feed_checked(FrameDecoder(max_payload=SMALL_MAX), [head, filler, encode(f)])
    assert only_frames(items)[-1:] == [f]
    assert truncated not in only_frames(items)


@SETTINGS
@given(st.integers(MAX_PAYLOAD + 1, 0xFFFF_FFFF), frames(max_payload=60))
def test_header_declaring_more_than_max_payload_is_refused_at_once(length: int, f: Frame) -> None:
    header = hand_frame(0x12, 3, flags=1, boot_id=2, length=length)[:16]
    decoder = FrameDecoder()
    items = decoder.feed(header)
    assert items == [BadHeader(0x12, 3, 1, 1, length, items[0].reason)]
    assert decoder.buffered == 0  # nothing waited for, nothing allocated
    assert decoder.wanted() < 20
    assert decoder.feed(encode(f)) == [f]  # and the link goes on


@FEW
@given(st.integers(SMALL_MAX + 1, 0xFFFF_FFFF))
def test_decoder_limit_below_max_payload_is_honoured(length: int) -> None:
    header = hand_frame(0x12, 3, flags=1, length=length)[:16]
    decoder = FrameDecoder(max_payload=SMALL_MAX)
    assert isinstance(decoder.feed(header)[0], BadHeader)
    assert decoder.buffered == 0


def test_header_declaring_exactly_max_payload_is_accepted_and_waited_for() -> None:
    header = hand_frame(0x12, 3, flags=1, length=MAX_PAYLOAD)[:16]
    decoder = FrameDecoder()
    assert decoder.feed(header) == []
    assert decoder.buffered == 16
    assert decoder.wanted() == MAX_PAYLOAD + 4


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"version": 2}, "version"), ({"version": 0}, "version"), ({"flags": 0x04}, "flag")],
)
def test_header_with_bad_version_or_reserved_flags_is_refused(fields: dict, reason: str) -> None:
    bad = hand_frame(0x01, 5, b"payload", **fields)
    good = hand_frame(0x01, 6, b"x", flags=1, boot_id=9)
    decoder = FrameDecoder()
    items = decoder.feed(bad + good)
    assert isinstance(items[0], BadHeader)
    assert reason in items[0].reason
    assert only_frames(items) == [Frame(0x01, 6, b"x", flags=1, boot_id=9)]
    with pytest.raises(CodecError):
        decode_frame(bad)


def test_decode_frame_refuses_extra_or_missing_bytes() -> None:
    data = hand_frame(0x04, 1, b"\x01\x00")
    with pytest.raises(CodecError):
        decode_frame(data + b"\x00")
    with pytest.raises(CodecError):
        decode_frame(data[:-1])
    with pytest.raises(CodecError):
        decode_frame(data[:10])


def test_encode_frame_refuses_out_of_range_fields() -> None:
    with pytest.raises(CodecError):
        encode_frame(0x100, 1)
    with pytest.raises(CodecError):
        encode_frame(1, 0x10000)
    with pytest.raises(CodecError):
        encode_frame(1, 1, boot_id=-1)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[list[Frame], bytes]:
    fs = draw(st.lists(frames(max_payload=100), min_size=1, max_size=5))
    data = bytearray(b"".join(encode(f) for f in fs))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "huge"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 30))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=30))
        elif op == "truncate":
            del data[at:]
        elif op == "huge":
            length = draw(st.integers(SMALL_MAX + 1, 0xFFFF_FFFF))
            data[at:at] = hand_frame(0x12, 1, length=length)[:16]
    return fs, bytes(data)


@SETTINGS
@given(mutated_streams(), st.lists(st.integers(0, 10**6), max_size=8))
def test_mutated_streams_yield_only_original_frames(
    case: tuple[list[Frame], bytes], cuts: list[int]
) -> None:
    fs, data = case
    decoder = FrameDecoder(max_payload=SMALL_MAX)
    items = feed_checked(decoder, split(data, cuts))
    for item in only_frames(items):
        assert item in fs
    # Whatever came before, a clean frame afterwards is found once the stream is resynced
    # (enough filler completes any frame still being assembled).
    tail = Frame(0x03, 4242, b"resync", flags=1, boot_id=1)
    more = decoder.feed(bytes(SMALL_MAX + OVERHEAD) + encode(tail))
    assert only_frames(more)[-1:] == [tail]


def test_a_header_kept_between_feeds_is_forgotten_on_reset() -> None:
    # The decoder keeps the parsed header of a frame whose rest has not arrived (wanted() and
    # the next feed() skip its CRC); a reset must drop it with the bytes.
    first = Frame(0x12, 1, b"x" * 40, flags=1)
    second = Frame(0x12, 2, b"y" * 8, flags=1)
    decoder = FrameDecoder()
    assert decoder.feed(encode(first)[:16]) == []
    assert decoder.wanted() == 44
    decoder.reset()
    assert decoder.wanted() == 16
    assert decoder.feed(encode(second)) == [second]
    assert decoder.feed(encode(first)[:20]) == []
    assert decoder.feed(encode(first)[20:] + encode(second)) == [first, second]
    assert decoder.buffered == 0
