"""TCP server for the simulated board, reached by the host as ``socket://127.0.0.1:PORT``.

It runs the same :class:`~drivers.sim.board_model.SimulatedBoard` as ``mockchip://``. One host
at a time, like a real board: a second connection gets a ``BUSY`` error reply to its first
request and is closed. A host that disconnects mid-frame only loses that frame; the board (and
its chip state) waits for the next connection. A host that gets no reply for ``idle_timeout_s``
(default :data:`DEFAULT_IDLE_TIMEOUT_S`; the ``idle_timeout`` option, ``chipctl sim serve
--idle-timeout``) is dropped, so a hung or forgotten host cannot hold the board for ever: the
idle time counts from the last reply sent (docs/protocol.md), so bytes that complete no request
(garbage, a trickle) do not keep a host connected. Receiving polls every :data:`POLL_S`; a
reply is sent with a blocking socket (at most the idle timeout), so a host that pauses before
reading a large reply gets all of it. Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from drivers.link.protocol import ErrorCode, FrameDecoder, encode_error
from drivers.sim.board_model import BoardOptions, SimulatedBoard
from drivers.sim.child import announced_child
from drivers.sim.faults import FaultInjector, as_received

log = logging.getLogger(__name__)

RECV_CHUNK = 1 << 20
BUSY_WAIT_S = 2.0
BUSY_GRACE_S = 0.5
"""How long a new host waits for the previous one to be released before it is told BUSY."""
DEFAULT_IDLE_TIMEOUT_S = 300.0
"""A host that gets no reply for this long (s) is disconnected and the board freed."""
POLL_S = 0.2
"""How often (s) a serving thread looks up from a quiet socket (stop flag, idle time); bounds
receiving only, never sending a reply."""
SERVER_OPTIONS = ("idle_timeout",)
"""Options of the server itself, taken out of the options query before the board's."""


def check_idle_timeout(value: float | None) -> float | None:
    """``value`` as an idle timeout in s (> 0, finite), or None (never drop a quiet host)."""
    if value is None:
        return None
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"idle timeout must be > 0 s (or none), got {value!r}")
    return seconds


def split_server_options(query: str) -> tuple[str, float | None]:
    """(the board's options query, idle timeout in s) from an options query.

    ``idle_timeout=S`` (seconds; ``0`` or ``none`` = never) is the server's own option; the
    rest is left for :meth:`BoardOptions.from_query`. No ``idle_timeout`` gives the default.
    """
    idle: float | None = DEFAULT_IDLE_TIMEOUT_S
    kept = []
    for part in query.lstrip("?&").split("&"):
        key, _, text = part.partition("=")
        if key not in SERVER_OPTIONS:
            if part:
                kept.append(part)
            continue
        if text.strip().lower() in ("0", "none", "never"):
            idle = None
            continue
        try:
            idle = check_idle_timeout(float(text))
        except ValueError:
            raise ValueError(
                f"option idle_timeout={text!r} must be seconds > 0 (or 0/none = never)"
            ) from None
    return "&".join(kept), idle


class SimServer:
    """Serve one simulated board on a TCP port.

    Args:
        options: the simulated board's options (seed, cores, clock, faults, reset_after).
        host: address to bind; 127.0.0.1 by default (the protocol has no authentication).
        port: TCP port; 0 picks a free one (see :attr:`address`).
        idle_timeout_s: a host that gets no reply for this long (s: it sent no complete
            request) is disconnected (logged) and the next host is served; it also bounds
            sending one reply. None never drops a quiet host.
    """

    def __init__(
        self,
        options: BoardOptions,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.idle_timeout_s = check_idle_timeout(idle_timeout_s)
        self.options = options
        self.board = SimulatedBoard.from_options(options)
        self.faults = FaultInjector(options.faults) if options.faults.active else None
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.clients_served = 0
        self.clients_refused = 0
        self.clients_dropped_idle = 0

    @property
    def url(self) -> str:
        """The ``socket://HOST:PORT`` URL of the server."""
        host, port = self.address
        return f"socket://{host}:{port}"

    def start(self) -> SimServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="chipctl-sim-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listener and wait for the serving thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Accept hosts until :meth:`stop` (or Ctrl-C)."""
        log.info("simulated board serving on %s", self.url)
        while not self._stop.is_set():
            try:
                connection, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            threading.Thread(
                target=self._admit, args=(connection, peer), name=f"sim-client-{peer}", daemon=True
            ).start()

    def _admit(self, connection: socket.socket, peer: object) -> None:
        # A host that just disconnected may still be being released: wait a moment before BUSY.
        if self._busy.acquire(timeout=BUSY_GRACE_S):
            self._serve_client(connection, peer)
        else:
            self._refuse_busy(connection)

    def _serve_client(self, connection: socket.socket, peer: object) -> None:
        self.clients_served += 1
        log.info("host %s connected", peer)
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(POLL_S)
            last_reply = time.monotonic()  # idle time counts from the last reply sent
            while not self._stop.is_set():
                try:
                    data: bytes | None = connection.recv(RECV_CHUNK)
                except TimeoutError:
                    data = None
                if data is not None:
                    if not data:
                        break
                    if self._answer(connection, data):
                        last_reply = time.monotonic()
                quiet_s = time.monotonic() - last_reply
                if self.idle_timeout_s is not None and quiet_s >= self.idle_timeout_s:
                    self.clients_dropped_idle += 1
                    log.warning(
                        "host %s sent no request for %.1f s (idle timeout %g s, counted "
                        "from the last reply): disconnecting it so the next host can connect",
                        peer,
                        quiet_s,
                        self.idle_timeout_s,
                    )
                    break
        except OSError as exc:
            log.warning("host %s dropped: %s", peer, exc)
        finally:
            self.board.disconnect()
            connection.close()
            self._busy.release()
            log.info("host %s disconnected", peer)

    def _answer(self, connection: socket.socket, data: bytes) -> bool:
        """Feed ``data`` to the board and send its replies; True if it answered a request.

        Sent with a blocking socket bounded by the idle timeout (not the receive poll), so a
        host that reads a large reply late still gets all of it.
        """
        if self.faults is not None:
            data = self.faults.incoming(data)
        replies = self.board.receive(data)
        for reply, delay in as_received(self.faults, replies):
            if delay:
                time.sleep(delay)
            connection.settimeout(self.idle_timeout_s)
            try:
                connection.sendall(reply)
            finally:
                connection.settimeout(POLL_S)
        return bool(replies)

    def _refuse_busy(self, connection: socket.socket) -> None:
        """Answer the first request of a second host with BUSY, then close."""
        self.clients_refused += 1
        decoder = FrameDecoder(max_payload=1 << 16)
        deadline = time.monotonic() + BUSY_WAIT_S
        try:
            connection.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                items = decoder.feed(data)
                if items:
                    first = items[0]  # Frame, CorruptFrame or BadHeader: all carry command, seq
                    connection.sendall(
                        encode_error(
                            first.command,
                            first.seq,
                            ErrorCode.BUSY,
                            "another host holds this board",
                            boot_id=self.board.boot_id,
                        )
                    )
                    return
                if decoder.buffered > 1 << 16:
                    return
        except OSError:
            pass
        finally:
            connection.close()


def serve(
    options: BoardOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
) -> None:
    """Serve until Ctrl-C, announcing the URL on stdout first (one line ending in the URL)."""
    server = SimServer(options, host=host, port=port, idle_timeout_s=idle_timeout_s)
    chip = server.board.chip
    print(
        f"simulated board (chip {chip.chip_id}, {options.cores} cores) on {server.url}", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@contextmanager
def spawned(query: str = "", *, host: str = "127.0.0.1") -> Iterator[str]:
    """A simulated board server in a child process for the ``with`` block; yields its URL.

    ``query`` holds BoardOptions as a URL query (``"seed=5&cores=2"``), and the server's own
    ``idle_timeout=S`` if wanted.
    """
    command = [sys.executable, "-m", "drivers.sim.server", "--host", host, "--options", query]
    with announced_child(command) as (line, errors):
        if " on socket://" not in line:
            raise RuntimeError(f"simulator server did not start: {line}{errors}")
        yield line.rsplit(" on ", 1)[1].strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m drivers.sim.server``: serve a simulated board until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--options", default="", help="BoardOptions (and idle_timeout=S) as a URL query"
    )
    args = parser.parse_args(argv)
    try:
        query, idle_timeout_s = split_server_options(args.options)
        options = BoardOptions.from_query(query)
    except ValueError as exc:
        print(f"simulator server: {exc}", file=sys.stderr)
        return 2
    serve(options, host=args.host, port=args.port, idle_timeout_s=idle_timeout_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
