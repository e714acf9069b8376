"""``chipctl demo``, ``chipctl identify`` and ``chipctl sim serve``: the board itself."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from typing import Any

from chipctl.cli import common

log = logging.getLogger("chipctl")


def _cmd_demo(args: argparse.Namespace) -> int:
    from chipctl.demo import print_demo, run_demo

    result = run_demo(
        args.board,
        out_dir=args.out_dir,
        n_inputs=args.inputs,
        seed=args.seed,
        timeout_s=args.timeout,
        station_file=args.station,
        infer_samples=args.infer_samples,
        overwrite=args.overwrite,
    )
    print_demo(result)
    runs = [summary for m in result.modes for summary in (m.program, m.characterize)]
    runs += [m.calibrated for m in result.modes if m.calibrated is not None]
    runs += [r for r in (result.drift, result.inference) if r is not None]
    return 0 if all(summary.status == "success" for summary in runs) else 1


def _cmd_identify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from drivers.board import Board

    with Board(args.board, timeout_s=args.timeout) as board:
        ident = board.identity
        status = board.status()
        table = Table(title=f"Board on {args.board}", show_header=False)
        for key, value in asdict(ident).items():
            table.add_row(key, str(value))
        table.add_row("boot_id", str(status.boot_id))
        table.add_row("uptime_s", f"{status.uptime_s:.6g}")
        table.add_row("errors", ", ".join(status.errors) or "none")
        table.add_row("temperature_C", f"{board.temperature_c():.2f}")
        Console().print(table)
    return 0


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from drivers.sim.board_model import BoardOptions
    from drivers.sim.server import check_idle_timeout, serve, split_server_options

    query = f"seed={args.seed}&cores={args.cores}&clock={args.clock}"
    if args.options:
        query += "&" + args.options.lstrip("?&")
    try:
        query, idle_timeout_s = split_server_options(query)
        if args.idle_timeout is not None:
            idle_timeout_s = check_idle_timeout(args.idle_timeout) if args.idle_timeout else None
        options = BoardOptions.from_query(query)
    except ValueError as exc:
        print(f"chipctl sim serve: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving the simulated board on %s: the protocol has no authentication", args.host
        )
    serve(options, host=args.host, port=args.port, idle_timeout_s=idle_timeout_s)
    return 0


def add_board_commands(commands: Any) -> set[str]:
    """Add ``demo``, ``identify`` and ``sim``; returns their names."""
    demo = commands.add_parser(
        "demo",
        help="program random weights with ODP and TDP, characterise the MVM error, write run files",
    )
    common.add_board_option(demo)
    demo.add_argument(
        "--out-dir", default=None, metavar="DIR", help="folder for the run files (runs/demo-TIME)"
    )
    common.add_overwrite_option(demo, "--out-dir (its run files)")
    demo.add_argument(
        "--inputs", type=int, default=2048, help="random inputs per characterisation (2048)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    demo.add_argument(
        "--infer-samples",
        type=int,
        default=0,
        metavar="N",
        help="test samples of the inference step (0 = whole test set, -1 = skip it)",
    )
    demo.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help="station file of a real bench (default: the simulated station around --board)",
    )
    demo.set_defaults(handler=_cmd_demo)

    identify = commands.add_parser("identify", help="print the board's identity and status")
    common.add_board_option(identify)
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
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="disconnect a host that sends nothing for S seconds, freeing the board for the "
        "next one (default 300; 0 = never)",
    )
    serve.set_defaults(handler=_cmd_sim_serve)

    return {"demo", "identify", "sim"}
