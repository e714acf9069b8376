"""``chipctl chip status``: what the chip ledger says each core holds, checked against a board.

Without ``--board`` it prints the ledger of ``--chip`` (or of every chip in the store); with
``--board URL`` the ledger of the board's chip, and a ``on chip`` column from re-reading each
core's fingerprint devices: ``matches``, ``DOES NOT MATCH`` (reprogrammed outside the ledger,
erased, or another chip), or ``-`` when the fingerprint cannot tell (:mod:`chipctl.ledger`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chipctl.calibration import default_store_dir
from chipctl.cli import common
from chipctl.ledger import Ledger, fingerprint_matches, state_text


def _holds(entry: dict[str, Any]) -> str:
    holds = str(entry.get("holds") or f"written by {entry.get('procedure', '?')}")
    holds = holds[:19] + "…" if holds.startswith("sha256:") else holds
    tile = entry.get("tile")
    if isinstance(tile, dict):  # a tile of a larger matrix (program, docs/programming.md)
        (r0, r1), (c0, c1) = tile.get("rows", "??"), tile.get("cols", "??")
        shape = "×".join(str(n) for n in tile.get("of_matrix", ()))
        holds += f" (rows {r0}:{r1}, columns {c0}:{c1} of a {shape} matrix)"
    return holds


def _table(ledger: Ledger, board: Any = None) -> tuple[Any, int]:
    from rich.table import Table

    table = Table(title=f"Chip {ledger.chip_id}: ledger {ledger.path}")
    columns = ["core", "holds", "state", "procedure", "run file", "Gmax", "mode"]
    columns += ["programmed (UTC)", "board time s", "calibration set"]
    if board is not None:
        columns.append("on chip")
    for column in columns:
        table.add_column(column)
    mismatches = 0
    for core, entry in ledger.state().items():
        gmax = entry.get("gmax_counts")
        board_time = entry.get("board_time_s")
        row = [
            str(core),
            _holds(entry),
            state_text(entry),
            str(entry.get("procedure", "?")),
            str(entry.get("run_file", "?")),
            f"{gmax:.4g}" if isinstance(gmax, int | float) else "-",
            str(entry.get("mode") or "-"),
            str(entry.get("wall_time", "?")),
            f"{board_time:.6g}" if isinstance(board_time, int | float) else "-",
            str(entry.get("calibration_set") or "-"),
        ]
        if board is not None:
            if core >= board.identity.n_cores:
                verdict: bool | None = False
            else:
                verdict = fingerprint_matches(board, core, entry.get("fingerprint") or {})
            if verdict is False:
                mismatches += 1
            row.append({True: "matches", False: "[red]DOES NOT MATCH[/]", None: "-"}[verdict])
        table.add_row(*row)
    return table, mismatches


def _cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(width=200)
    store = args.calibration_dir or default_store_dir()
    if args.board is not None:
        from drivers.board import Board

        with Board(args.board, timeout_s=args.timeout) as board:
            ledger = Ledger.of(board.identity.chip_id, store)
            table, mismatches = _table(ledger, board)
        console.print(table)
        if mismatches:
            print(
                f"{mismatches} core(s) do not hold what the ledger says (reprogrammed outside "
                "chipctl's runs, erased, or another chip)"
            )
        return 0
    chips = (
        [args.chip]
        if args.chip
        else sorted(p.parent.name for p in Path(store).glob("*/ledger.jsonl"))
    )
    if not chips:
        print(f"no chip ledger in {store}")
        return 0
    for chip in chips:
        table, _ = _table(Ledger.of(chip, store))
        console.print(table)
    return 0


def add_chip_commands(commands: Any) -> set[str]:
    """Add ``chip``; returns its name."""
    chip = commands.add_parser("chip", help="what the chip ledger says the cores hold")
    sub = chip.add_subparsers(dest="chip_command", required=True, metavar="ACTION")
    status = sub.add_parser(
        "status",
        help="per core what it holds (from the ledger); with --board, checked on the chip",
    )
    status.add_argument(
        "--board",
        default=None,
        metavar="URL",
        help="check each core's fingerprint on this board (its chip's ledger is shown)",
    )
    status.add_argument(
        "--timeout", type=common.positive_seconds, default=5.0, metavar="S",
        help="reply timeout per attempt in s",
    )  # fmt: skip
    status.add_argument("--chip", default=None, help="only this chip id (without --board)")
    common.add_calibration_dir_option(
        status,
        "store holding the ledgers (default: $CHIPCTL_CALIBRATION_DIR or the checkout's "
        "calibration_data/)",
    )
    status.set_defaults(handler=_cmd_status)
    return {"chip"}
