"""Transport: moves frames over any pyserial port and applies the retry rules of the protocol.

``Link.open(url)`` accepts every pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``,
``rfc2217://…``, ``spy://…``) and the simulator's ``mockchip://``, which pyserial imports from
the package named by a string registered here, so this module never imports the simulator.
One re-entrant lock per link makes a request and its reply (and its retries) atomic, so a TUI,
a procedure and a monitor may share one board.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import logging
import math
import pkgutil
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import serial

from drivers.errors import (
    BOARD_ERRORS,
    BoardError,
    BoardResetError,
    FrameError,
    LimitError,
    LinkClosedError,
    LinkError,
    LinkTimeout,
    UnsupportedVersionError,
)
from drivers.link.protocol import (
    NON_IDEMPOTENT,
    VERSION,
    BadHeader,
    Chunk,
    Command,
    CorruptFrame,
    ErrorCode,
    Flags,
    Frame,
    FrameDecoder,
    encode_chunks,
    encode_frame,
)

log = logging.getLogger(__name__)

URL_HANDLER_GROUP = "chipctl.url_handlers"
"""Entry-point group naming packages of pyserial URL handlers (``protocol_<scheme>`` modules).

The installed project declares the simulator's package there (``pyproject.toml``), so the
driver learns of ``mockchip://`` from the package metadata and names no simulator module."""


RESET_SAFE_COMMANDS = frozenset(
    {
        Command.IDENTIFY,
        Command.STATUS,
        Command.RESET,
        Command.SAFE_STATE,
        Command.CLEAR_ERRORS,
        Command.TEMPERATURE,
        Command.READ_REGISTER,
    }
)
"""Commands that still flow after an unacknowledged board reset (monitoring and making safe)."""


class SerialPort(Protocol):
    """The part of a pyserial port the link uses."""

    timeout: float | None

    def write(self, data: bytes, /) -> int | None:
        """Send ``data``; the number of bytes written."""

    def read(self, size: int = 1, /) -> bytes:
        """Up to ``size`` bytes; fewer (or none) after the port's timeout."""

    def close(self) -> None:
        """Close the port."""


@dataclass
class LinkStats:
    """Counters of what the link went through (shown by the TUI, reported by soak tests)."""

    requests: int = 0
    frames_sent: int = 0
    replies: int = 0
    retries: int = 0
    timeouts: int = 0
    corrupt_replies: int = 0
    crc_naks: int = 0
    stale_replies: int = 0
    garbage_bytes: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self)


@functools.cache
def _url_handler_packages() -> tuple[str, ...]:
    from importlib.metadata import entry_points

    return tuple(sorted({point.value for point in entry_points(group=URL_HANDLER_GROUP)}))


def register_url_handlers() -> None:
    """Let ``serial.serial_for_url`` resolve the URL schemes of the installed handler packages
    (``mockchip://``: entry-point group :data:`URL_HANDLER_GROUP`); idempotent."""
    for package in _url_handler_packages():
        if package not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(package)


class BadUrlError(LimitError, LinkError):
    """A board URL that cannot name a board: empty, unknown scheme, no host or port, a port
    out of range, an unknown option. Refused before pyserial is asked; a ``LimitError`` (bad
    input, a ``ValueError``) and a ``LinkError`` (the link cannot be opened, an ``OSError``)."""


NETWORK_SCHEMES: dict[str, frozenset[str]] = {
    "socket": frozenset({"logging"}),
    "rfc2217": frozenset({"logging", "ign_set_control", "poll_modem", "timeout"}),
}
"""pyserial's TCP schemes (``scheme://HOST:PORT``) and the URL options each accepts."""

LOGGING_LEVELS = ("debug", "info", "warning", "error")


def known_schemes() -> list[str]:
    """URL schemes some handler package provides (pyserial's own and the registered ones)."""
    register_url_handlers()
    names: set[str] = set()
    for package in serial.protocol_handler_packages:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.submodule_search_locations is None:
            continue
        for module in pkgutil.iter_modules(spec.submodule_search_locations):
            if module.name.startswith("protocol_"):
                names.add(module.name.removeprefix("protocol_"))
    return sorted(names)


def _handler_module_name(scheme: str) -> str | None:
    """The module that handles ``scheme://`` in the registered handler packages, if any."""
    register_url_handlers()
    for package in serial.protocol_handler_packages:
        name = f"{package}.protocol_{scheme}"
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return None


def check_url(url: str) -> None:
    """Refuse a board URL that cannot name a board, with a :class:`BadUrlError` naming it.

    Checked here, before pyserial is asked (whose messages for these cases are cryptic): an
    empty URL; an unknown scheme (``foo://``); for ``socket://`` and ``rfc2217://`` a missing
    host or port, a port that is not a number in 1..65535, a malformed host (``[::1``), and
    unknown or malformed options. A URL without a scheme is a serial device path
    (``/dev/ttyUSB0``, ``COM3``) and is left to the operating system. The options of other
    schemes are checked by their handler, when its ``Serial`` class parses a URL without a port
    (a static ``from_url(url)``, as ``mockchip://``'s does): what it refuses is a
    :class:`BadUrlError` too.
    """
    if not isinstance(url, str):
        raise BadUrlError(f"board URL {url!r} is not text")
    if not url.strip():
        raise BadUrlError(
            "board URL is empty (give e.g. mockchip://?seed=1, socket://HOST:PORT, /dev/ttyUSB0)"
        )
    if url != url.strip():
        raise BadUrlError(f"board URL {url!r} has leading or trailing spaces")
    if "://" not in url:
        return
    scheme = url.split("://", 1)[0].lower()
    if not scheme or not scheme.replace("-", "").replace("+", "").replace(".", "").isalnum():
        raise BadUrlError(f"board URL {url!r}: {scheme!r} is not a URL scheme")
    handler = _handler_module_name(scheme)
    if handler is None:
        listed = ", ".join(f"{name}://" for name in known_schemes())
        raise BadUrlError(
            f"board URL {url!r}: unknown scheme {scheme}:// (known: {listed}; "
            "or a serial device such as /dev/ttyUSB0)"
        )
    if scheme in NETWORK_SCHEMES:
        _check_network_url(url, scheme)
    else:
        _check_handler_url(url, handler)


def _check_handler_url(url: str, handler: str) -> None:
    """Let the handler module parse ``url`` if it can without opening anything."""
    try:
        module = importlib.import_module(handler)
    except ImportError:
        return  # pyserial will say why when it opens the URL
    parse = inspect.getattr_static(getattr(module, "Serial", None), "from_url", None)
    if isinstance(parse, staticmethod):
        try:
            parse.__func__(url)
        except (ValueError, serial.SerialException) as exc:
            reason = exc.__context__ if isinstance(exc.__context__, ValueError) else exc
            raise BadUrlError(f"board URL {url!r}: {reason}") from None


def _check_network_url(url: str, scheme: str) -> None:
    form = f"{scheme}://HOST:PORT"
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 (checks the brackets of an IPv6 host)
    except ValueError as exc:
        raise BadUrlError(f"board URL {url!r} is not of the form {form}: {exc}") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise BadUrlError(f"board URL {url!r}: expected {form}, not a path after the port")
    if not parts.hostname:
        raise BadUrlError(f"board URL {url!r} has no host (expected {form})")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    port_text = netloc.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in netloc else ""
    if ":" not in netloc.rsplit("]", 1)[-1] or not port_text:
        raise BadUrlError(f"board URL {url!r} has no port (expected {form})")
    if not port_text.removeprefix("-").isdigit():
        raise BadUrlError(f"board URL {url!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise BadUrlError(f"board URL {url!r}: port {port} is out of range (1-65535)")
    try:
        parts.port  # noqa: B018 (urlsplit checks the rest of HOST:PORT here)
    except ValueError:
        raise BadUrlError(f"board URL {url!r} is not of the form {form}") from None
    options = parse_qs(parts.query, keep_blank_values=True)
    flags = [part for part in parts.query.split("&") if part and "=" not in part]
    options.update({flag: [""] for flag in flags})  # pyserial's flags: ?poll_modem
    unknown = sorted(set(options) - NETWORK_SCHEMES[scheme])
    if unknown:
        raise BadUrlError(
            f"board URL {url!r}: unknown option(s) {unknown}; "
            f"{scheme}:// knows {sorted(NETWORK_SCHEMES[scheme])}"
        )
    for level in options.get("logging", []):
        if level not in LOGGING_LEVELS:
            raise BadUrlError(
                f"board URL {url!r}: logging={level!r} is not one of {list(LOGGING_LEVELS)}"
            )


def _disable_nagle(port: object) -> None:
    """Send each request at once on TCP ports (``socket://``, ``rfc2217://``).

    pyserial leaves Nagle's algorithm on; with a request/response protocol the tail of a
    request then waits for the peer's delayed ACK (tens of ms per large frame).
    """
    sock = getattr(port, "_socket", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoReply(Exception):
    """Internal: an attempt ended without a usable reply."""

    def __init__(self, corrupted: bool) -> None:
        super().__init__("corrupted reply" if corrupted else "no reply")
        self.corrupted = corrupted


class Link:
    """A framed request/response link to one board over a pyserial port.

    Args:
        port: an open pyserial-like port (``read``/``write``/``close``/``timeout``).
        timeout_s: how long one attempt waits for its reply, in seconds.
        retries: how many times a request is resent after a timeout or a corrupted reply.
        url: where the port came from, for messages.
        first_seq: sequence number before the first request; default random, so a new host
            session never reuses the numbers of the previous one (the board's duplicate memory
            would otherwise answer a new request with an old reply, docs/protocol.md §2).
    """

    def __init__(
        self,
        port: SerialPort,
        *,
        timeout_s: float = 2.0,
        retries: int = 3,
        url: str = "",
        first_seq: int | None = None,
    ) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.port = port
        self.url = url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.stats = LinkStats()
        self.boot_id: int | None = None
        self.unacknowledged_reset: tuple[int, int] | None = None
        """(old, new) boot ids of a reset nobody has acknowledged yet."""
        self._decoder = FrameDecoder()
        self._lock = threading.RLock()
        self._seq = secrets.randbelow(0x10000) if first_seq is None else first_seq & 0xFFFF
        self._closed = False
        port.timeout = self.timeout_s

    @classmethod
    def open(cls, url: str, *, timeout_s: float = 2.0, retries: int = 3) -> Link:
        """Open ``url`` with ``serial.serial_for_url`` and wrap it in a link.

        A URL that cannot name a board is refused first (:func:`check_url`,
        :class:`BadUrlError`); a port that cannot be opened is a :class:`LinkError`.
        """
        check_url(url)
        try:
            port = serial.serial_for_url(url, timeout=timeout_s)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LinkError(f"cannot open board link {url!r}: {exc}") from exc
        _disable_nagle(port)
        return cls(port, timeout_s=timeout_s, retries=retries, url=url)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the port (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                # pyserial's socket:// port skips closing its socket when shutdown() fails,
                # as it does once the peer has dropped the connection (an idle timeout).
                sock = getattr(self.port, "_socket", None)
                try:
                    self.port.close()
                finally:
                    if isinstance(sock, socket.socket):
                        sock.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, command: Command, payload: Chunk | Sequence[Chunk] = b"") -> Frame:
        """Send one request and return its successful reply frame.

        ``payload`` is the request payload, as bytes or as a sequence of byte pieces (what the
        payload classes' ``chunks()`` give), which are joined once into the frame.

        Raises the ``BoardError`` subclass matching an error reply, ``BoardResetError`` if
        the board's boot identifier changed, ``LinkTimeout``/``FrameError`` when the retries
        are spent.
        """
        with self._lock:
            if self._closed:
                raise LinkClosedError(f"link {self.url!r} is closed")
            if self.unacknowledged_reset is not None and command not in RESET_SAFE_COMMANDS:
                # Every user of a shared link learns of the reset, not only the first one.
                raise self._reset_error()
            self.stats.requests += 1
            reply = self._transact(command, payload)
            if command == Command.RESET:
                self.unacknowledged_reset = None
            return reply

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _transact(self, command: Command, payload: Chunk | Sequence[Chunk]) -> Frame:
        seq = self._next_seq()
        if isinstance(payload, bytes | bytearray | memoryview):
            frame = encode_frame(command, seq, payload)
        else:
            frame = encode_chunks(command, seq, payload)
        resend_needs_check = command in NON_IDEMPOTENT
        attempt = 0
        while True:
            self._write(frame)
            try:
                reply = self._await_reply(command, seq)
            except _NoReply as no_reply:
                if attempt >= self.retries:
                    if no_reply.corrupted:
                        raise FrameError(
                            f"{command.name}: replies arrived corrupted {attempt + 1} times "
                            f"on {self.url!r}"
                        ) from None
                    raise LinkTimeout(
                        f"{command.name}: no reply within {self.timeout_s} s after "
                        f"{attempt + 1} attempts on {self.url!r}"
                    ) from None
                if resend_needs_check:
                    # The request may or may not have run; only resend if the board did not
                    # reset (its duplicate memory then prevents a second execution).
                    self._transact(Command.STATUS, b"")
                attempt += 1
                self.stats.retries += 1
                log.debug("resending %s seq %d (attempt %d)", command.name, seq, attempt + 1)
                continue
            # Every reply is checked for a reset first (docs §2), a CRC_ERROR reply included:
            # a non-idempotent request is never resent across a reset.
            self._check_boot(command, reply)
            if reply.is_error and reply.status == ErrorCode.CRC_ERROR:
                # The board saw our request corrupted and did not execute it: resend.
                self.stats.crc_naks += 1
                if attempt >= self.retries:
                    # docs §4: CRC_ERROR is BoardCrcError (retried); it remains once retries end.
                    raise self._board_error(command, reply)
                attempt += 1
                self.stats.retries += 1
                continue
            if reply.is_error:
                raise self._board_error(command, reply)
            return reply

    def _write(self, frame: bytes) -> None:
        try:
            self.port.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"write to {self.url!r} failed: {exc}") from exc
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)

    def _await_reply(self, command: Command, seq: int) -> Frame:
        deadline = time.monotonic() + self.timeout_s
        decoder = self._decoder
        corrupted = False
        while True:
            try:
                data = self.port.read(decoder.wanted())
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"read from {self.url!r} failed: {exc}") from exc
            if not data:
                self.stats.timeouts += 1
                decoder.reset()
                raise _NoReply(corrupted)
            # A long reply over a slow link keeps the attempt alive while bytes arrive.
            deadline = time.monotonic() + self.timeout_s
            self.stats.bytes_received += len(data)
            garbage_before = decoder.garbage_bytes
            items = decoder.feed(data)
            self.stats.garbage_bytes += decoder.garbage_bytes - garbage_before
            for item in items:
                if isinstance(item, Frame):
                    if item.is_reply and item.seq == seq and item.command == command:
                        self.stats.replies += 1
                        return item
                    self.stats.stale_replies += 1
                elif isinstance(item, CorruptFrame):
                    self.stats.corrupt_replies += 1
                    if item.seq == seq:
                        corrupted = True
                elif isinstance(item, BadHeader):
                    if item.seq == seq and item.version != VERSION and item.flags & Flags.REPLY:
                        raise UnsupportedVersionError(
                            f"{command.name}: the board answered in protocol version "
                            f"{item.version}; this host speaks {VERSION}",
                            command=command,
                        )
                    self.stats.corrupt_replies += 1
            if corrupted and decoder.buffered == 0:
                raise _NoReply(corrupted=True)
            if time.monotonic() > deadline:
                self.stats.timeouts += 1
                decoder.reset()
                raise _NoReply(corrupted)

    def _check_boot(self, command: Command, reply: Frame) -> None:
        if command in (Command.RESET, Command.IDENTIFY) and self.boot_id is None:
            self.boot_id = reply.boot_id
            return
        if command == Command.RESET and not reply.is_error:
            self.boot_id = reply.boot_id
            return
        if self.boot_id is None:
            self.boot_id = reply.boot_id
        elif reply.boot_id != self.boot_id:
            old, self.boot_id = self.boot_id, reply.boot_id
            self.unacknowledged_reset = (old, reply.boot_id)
            raise self._reset_error()

    def _reset_error(self) -> BoardResetError:
        assert self.unacknowledged_reset is not None
        old, new = self.unacknowledged_reset
        return BoardResetError(
            f"the board on {self.url!r} reset (boot id {old} -> {new}): registers and LDPU "
            "coefficients were lost; device states were kept. Re-initialise and call "
            "acknowledge_reset() before using it again",
            old_boot_id=old,
            new_boot_id=new,
        )

    def acknowledge_reset(self) -> None:
        """Declare the board re-initialised after a reset; commands flow again."""
        with self._lock:
            self.unacknowledged_reset = None

    def _board_error(self, command: Command, reply: Frame) -> BoardError:
        message = bytes(reply.payload).decode("utf-8", errors="replace")
        cls = BOARD_ERRORS.get(reply.status)
        if cls is None:
            return BoardError(
                f"{command.name}: board error code {reply.status}: {message}", command=command
            )
        return cls(f"{command.name}: {message}", command=command)
