"""Codec throughput: encode + decode + CRC of MVM-sized frames, in MB/s of frame bytes.

Target (issue 2): at least 100 MB/s. ``python -m benchmarks codec``
"""

from __future__ import annotations

import os

from benchmarks._timing import best_time_s
from drivers.link.protocol import Command, FrameDecoder, encode_frame


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, size in (
        ("small_1KiB", 1024),
        ("mvm_request_64KiB", 65536),
        ("mvm_reply_256KiB", 262144),
    ):
        payload = os.urandom(size)
        decoder = FrameDecoder()

        def round_trip(payload: bytes = payload, decoder: FrameDecoder = decoder) -> None:
            frame = encode_frame(Command.MVM, 7, payload)
            (item,) = decoder.feed(frame)
            assert item.payload == payload  # type: ignore[union-attr]

        seconds = best_time_s(round_trip)
        figures[f"{label}_MB_per_s"] = round((size + 20) / seconds / 1e6, 1)
    figures["target_MB_per_s"] = 100.0
    return figures
