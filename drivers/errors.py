"""Exceptions raised by the drivers, all under one root, :class:`DriverError`.

Where a built-in exception fits, the class also inherits it, so callers may catch either
(``LinkTimeout`` is a ``TimeoutError``, ``LimitError`` a ``ValueError``), as ophyd's
``LimitError(ValueError, OpException)`` does.
"""

from __future__ import annotations


class DriverError(Exception):
    """Root of every error raised by ``drivers``."""


class LimitError(DriverError, ValueError):
    """A value was refused on the host before anything was sent (out of range, NaN, bad shape)."""


class LinkError(DriverError, OSError):
    """The byte link to the board failed."""


class LinkTimeout(LinkError, TimeoutError):
    """No valid reply arrived within the timeout, after all retries."""


class FrameError(LinkError):
    """Frames kept arriving corrupted, after all retries."""


class LinkClosedError(LinkError):
    """The link was used after it was closed."""


class ProtocolError(DriverError):
    """A reply was well framed but did not match what the command defines."""


class BoardResetError(DriverError):
    """The board's boot identifier changed: it reset since the last reply.

    Registers and LDPU coefficients were lost; PCM device states were kept (non-volatile).
    """

    def __init__(self, message: str, *, old_boot_id: int, new_boot_id: int) -> None:
        super().__init__(message)
        self.old_boot_id = old_boot_id
        self.new_boot_id = new_boot_id


class BoardError(DriverError):
    """The board answered with an error code (see docs/protocol.md, section 4)."""

    code: int = -1

    def __init__(self, message: str, *, command: int | None = None) -> None:
        super().__init__(message)
        self.command = command


class BoardCrcError(BoardError):
    """The board received a request whose CRC failed; it did not execute it."""

    code = 1


class BoardFrameError(BoardError):
    """The board refused a frame with bad flags or reserved fields."""

    code = 2


class UnknownCommandError(BoardError):
    """The board does not know the command code."""

    code = 3


class BadPayloadError(BoardError, ValueError):
    """The payload length or layout did not match the command."""

    code = 4


class BoardRangeError(BoardError, ValueError):
    """A core, address, amplitude, width, register value or input was out of range."""

    code = 5


class BoardBusyError(BoardError):
    """Another host holds the board."""

    code = 6


class NotSupportedError(BoardError):
    """The command or register is not available on this board (e.g. CLOCK on hardware)."""

    code = 7


class HardwareFault(BoardError):
    """The board could not carry out the command."""

    code = 8


class UnsupportedVersionError(BoardError):
    """The board does not speak the frame's protocol version."""

    code = 9


BOARD_ERRORS: dict[int, type[BoardError]] = {
    cls.code: cls
    for cls in (
        BoardCrcError,
        BoardFrameError,
        UnknownCommandError,
        BadPayloadError,
        BoardRangeError,
        BoardBusyError,
        NotSupportedError,
        HardwareFault,
        UnsupportedVersionError,
    )
}
