"""Protocol replay testing: a fake port that checks requests and plays back replies.

Like PyMeasure's ``expected_protocol``: give a list of ``(request_bytes, reply_bytes)`` pairs
written from docs/protocol.md (or recorded on hardware); the driver must write exactly each
request, in order, and gets the paired reply. At the end every pair must have been used.

    with expected_frames([(identify_req, identify_reply), (status_req, status_reply)]) as board:
        board.status()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from drivers.board import Board
from drivers.errors import DriverError
from drivers.link.transport import Link


class ReplayMismatch(DriverError, AssertionError):
    """The driver wrote something other than the expected request (a test failure)."""


class ReplayPort:
    """A pyserial-like port scripted with request/reply pairs.

    A pair whose reply is ``None`` models a lost reply: the read times out.
    """

    def __init__(self, pairs: Sequence[tuple[bytes, bytes | None]]) -> None:
        self.pairs = list(pairs)
        self.index = 0
        self.timeout: float | None = None
        self.written: list[bytes] = []
        self._pending = bytearray()
        self.is_open = True

    def write(self, data: bytes) -> int:
        """Check ``data`` against the next expected request and queue its reply."""
        data = bytes(data)
        self.written.append(data)
        if self.index >= len(self.pairs):
            raise ReplayMismatch(f"unexpected extra request {data.hex(' ')}")
        expected, reply = self.pairs[self.index]
        if data != expected:
            raise ReplayMismatch(
                f"request {self.index} differs:\n expected {expected.hex(' ')}\n"
                f"      got {data.hex(' ')}"
            )
        self.index += 1
        if reply is not None:
            self._pending += reply
        return len(data)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes of the queued replies."""
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        return chunk

    def close(self) -> None:
        """Mark the port closed."""
        self.is_open = False

    def assert_done(self) -> None:
        """Raise :class:`ReplayMismatch` unless every request was sent and every reply read."""
        if self.index != len(self.pairs):
            raise ReplayMismatch(f"only {self.index} of {len(self.pairs)} requests were sent")
        if self._pending:
            raise ReplayMismatch(f"{len(self._pending)} reply bytes were never read")


@contextmanager
def expected_frames(
    pairs: Sequence[tuple[bytes, bytes | None]], *, retries: int = 3
) -> Iterator[Board]:
    """A :class:`Board` over a :class:`ReplayPort`; the first pair must be IDENTIFY."""
    port = ReplayPort(pairs)
    board = Board(Link(port, timeout_s=0.01, retries=retries, url="replay", first_seq=0))
    yield board
    port.assert_done()
