"""Frames laid out by hand from docs/protocol.md §1, for tests that must not trust the codec.

Only struct, binascii and zlib: a symmetric mistake in ``drivers.link.protocol`` cannot hide here.
"""

from __future__ import annotations

import binascii
import struct
import zlib


def hand_frame(
    command: int,
    seq: int,
    payload: bytes = b"",
    *,
    flags: int = 0,
    status: int = 0,
    boot_id: int = 0,
    version: int = 1,
    length: int | None = None,
) -> bytes:
    """sync, version, command, flags, status, seq, length, boot_id, hcrc (CRC-16/CCITT from
    0xFFFF over bytes 0-13), payload, pcrc (CRC-32). ``length`` may lie, for hostile headers."""
    declared = len(payload) if length is None else length
    head = b"\xa5\x5a" + struct.pack(
        "<BBBBHIH", version, command, flags, status, seq, declared, boot_id
    )
    assert len(head) == 14
    hcrc = struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))
    return head + hcrc + payload + struct.pack("<I", zlib.crc32(payload))
