"""The ``chipctl`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chipctl import DEFAULT_BOARD_URL, __version__

log = logging.getLogger("chipctl")


def _add_board_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--board",
        default=DEFAULT_BOARD_URL,
        metavar="URL",
        help=(
            "board URL: mockchip://?seed=N (built-in simulated chip), socket://HOST:PORT "
            f"(simulator server or networked board), /dev/ttyUSB0 (default: {DEFAULT_BOARD_URL})"
        ),
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="reply timeout per attempt in s"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from chipctl.demo import print_demo, run_demo

    result = run_demo(
        args.board,
        core=args.core,
        batch=args.batch,
        mode=args.mode,
        seed=args.seed,
        timeout_s=args.timeout,
    )
    print_demo(result)
    return 0


def _cmd_identify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from drivers.board import Board

    with Board(args.board, timeout_s=args.timeout) as board:
        ident = board.identity
        status = board.status()
        table = Table(title=f"Board on {args.board}", show_header=False)
        for key, value in vars(ident).items():
            table.add_row(key, str(value))
        table.add_row("boot_id", str(status.boot_id))
        table.add_row("uptime_s", f"{status.uptime_s:.6g}")
        table.add_row("errors", ", ".join(status.errors) or "none")
        table.add_row("temperature_C", f"{board.temperature_c():.2f}")
        Console().print(table)
    return 0


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from drivers.sim.board_model import BoardOptions
    from drivers.sim.server import serve

    query = f"seed={args.seed}&cores={args.cores}&clock={args.clock}"
    if args.options:
        query += "&" + args.options.lstrip("?&")
    try:
        options = BoardOptions.from_query(query)
    except ValueError as exc:
        print(f"chipctl sim serve: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving the simulated board on %s: the protocol has no authentication", args.host
        )
    serve(options, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chipctl",
        description="Control stack for the 64-core PCM in-memory-computing test chip.",
    )
    parser.add_argument("--version", action="version", version=f"chipctl {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="program a random weight matrix onto a core, run MVMs and report the error"
    )
    _add_board_option(demo)
    demo.add_argument("--core", type=int, default=0, help="core to use (default 0)")
    demo.add_argument(
        "--batch", type=int, default=256, help="number of MVM input vectors (default 256)"
    )
    demo.add_argument(
        "--mode", type=int, choices=(1, 4), default=4, help="MVM mode: 1- or 4-phase (default 4)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    demo.set_defaults(handler=_cmd_demo)

    identify = commands.add_parser("identify", help="print the board's identity and status")
    _add_board_option(identify)
    identify.set_defaults(handler=_cmd_identify)

    sim = commands.add_parser("sim", help="the simulated board")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    serve = sim_commands.add_parser(
        "serve", help="serve a simulated board over TCP (socket://HOST:PORT)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=5555, help="TCP port (default 5555; 0 picks a free one)"
    )
    serve.add_argument("--seed", type=int, default=1, help="chip instance seed (default 1)")
    serve.add_argument("--cores", type=int, default=64, help="number of cores (default 64)")
    serve.add_argument("--clock", choices=("virtual", "real"), default="virtual", help="clock mode")
    serve.add_argument(
        "--options",
        default="",
        metavar="QUERY",
        help="more simulator options as a URL query, e.g. 'corrupt=1e-4&drop=0.01'",
    )
    serve.set_defaults(handler=_cmd_sim_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from drivers.errors import DriverError

    try:
        return int(args.handler(args))
    except DriverError as exc:
        print(f"chipctl {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
