"""The chip ledger: per chip and core, what the core holds and which run put it there.

Format (``chipctl-ledger/1``): one append-only text file per chip next to its calibration sets
in the default store (:func:`chipctl.calibration.default_store_dir`, ``$CHIPCTL_CALIBRATION_DIR``;
one ledger per chip even when a calibration set is stored elsewhere),
``<store>/<chip_id>/ledger.jsonl``, one JSON object per line, one line per core and event:

- ``event``: ``"start"`` (a run began writing the core's conductances) or ``"end"`` (it
  stopped; ``status`` success, aborted or failed);
- ``core``, ``chip_id``, ``procedure``, ``run_file``, ``wall_time`` (ISO 8601, UTC),
  ``board_time_s`` (the board's virtual clock, null on hardware), ``board_url``;
- ``holds``: what the core holds: ``sha256:<hex>`` of the weights as programmed (float64,
  little-endian, C order, of that core's (256, 256) matrix), ``reference weights (calibrate,
  seed N)`` or ``network tiles of MODEL`` (the catalog entry's ``describe``); ``source``
  (parameter or file), ``mode``, ``gmax_counts`` (end events, when the run reports it),
  ``calibration_set`` (the set in force, when known);
- ``finished``: the run ended with success; ``fingerprint`` (end events): a few verify reads of
  fixed devices of the core (``rows``, ``cols``, ``devices``, ``counts``), taken after the run.

The state of a core is its last line. A core whose last line is a ``start`` was being written
when its run died (killed process, lost link): it is "partially programmed", as is a core whose
run ended aborted or failed.

Writing is safe against a kill mid-write: each event's lines go out in one ``write`` of whole
lines, then flush and fsync. A torn last line (no newline, or not JSON) is ignored with a
warning when the ledger is read.

Who writes it: :func:`chipctl.runner.run_procedure` appends for every catalogued procedure
whose entry ``overwrites`` cores, with or without a front end's ``context`` (scripts included):
the runner is the one place that holds both the board (for the fingerprint) and the records,
and a script that reprograms a core without a trace is exactly the silent overwrite the ledger
exists to catch. Programming a core through :class:`drivers.board.Board` directly (below the
runner) writes nothing; ``chipctl chip status --board`` then shows the core as not matching.

The guard (:func:`check_overwrite`): a run that would overwrite cores whose last line says they
hold a finished programming, and whose fingerprint the chip still shows (correlation of the
re-read counts with the stored ones ≥ :data:`MATCH_CORRELATION`; drift and read noise only
scale and jitter them), is refused with :class:`CoresHoldDataError` unless the user allows it.
A fresh chip (all devices near zero) never matches, so it is never refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.calibration import default_store_dir
from chipctl.errors import ChipctlError
from drivers.board import Board
from procedures.base import Procedure, Record, Start, Stop

log = logging.getLogger(__name__)

FORMAT = "chipctl-ledger/1"
FILE_NAME = "ledger.jsonl"
FINGERPRINT_DEVICES = 128
"""Devices a fingerprint keeps (half programmed, half unprogrammed where the core has both)."""
PROGRAMMED_FRACTION = 0.1
"""A device counts as programmed above this fraction of the core's highest count."""
TRIMMED_TOP = 0.03
"""Share of the highest programmed counts a fingerprint skips (stuck-SET devices)."""
MATCH_CORRELATION = 0.8
"""Lowest correlation of re-read fingerprint counts with the stored ones that still matches."""


class LedgerError(ChipctlError):
    """A ledger that cannot be read or written."""


class CoresHoldDataError(ChipctlError, ValueError):
    """A run would overwrite cores that hold something the ledger recorded (refused)."""


def ledger_path(chip_id: str, store_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<store>/<chip_id>/ledger.jsonl`` (store: the calibration store, default
    :func:`chipctl.calibration.default_store_dir`)."""
    if not chip_id or any(c in chip_id for c in "/\\\0") or chip_id in (".", ".."):
        raise LedgerError(f"chip id {chip_id!r} cannot be used as a file name")
    root = Path(store_dir) if store_dir is not None else default_store_dir()
    return root / chip_id / FILE_NAME


def core_ranges(cores: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    values = sorted({int(c) for c in cores})
    parts: list[str] = []
    start = prev = None
    for core in values:
        if start is None:
            start = prev = core
        elif prev is not None and core == prev + 1:
            prev = core
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = core
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def weights_hash(weights: np.ndarray) -> str:
    """``sha256:<hex>`` of one core's weights (float64, little-endian, C order)."""
    array = np.ascontiguousarray(np.asarray(weights, dtype="<f8"))
    return "sha256:" + hashlib.sha256(array.tobytes()).hexdigest()


# -- the file ---------------------------------------------------------------------------------


@dataclass
class Ledger:
    """The ledger file of one chip."""

    path: Path
    chip_id: str = ""

    @classmethod
    def of(cls, chip_id: str, store_dir: str | os.PathLike[str] | None = None) -> Ledger:
        """The ledger of ``chip_id`` in the calibration store ``store_dir``."""
        return cls(ledger_path(chip_id, store_dir), chip_id)

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append ``entries`` as whole lines in one write, then flush and fsync."""
        if not entries:
            return
        text = "".join(
            json.dumps(dict(e), sort_keys=True, separators=(",", ":"), default=_json) + "\n"
            for e in entries
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                if handle.tell() > 0 and not _ends_with_newline(self.path):
                    # A torn line from a killed writer: end it, so this line stays whole.
                    text = "\n" + text
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot append to the chip ledger: {exc}") from exc

    def entries(self) -> list[dict[str, Any]]:
        """Every readable line, in order; unreadable lines are skipped with a warning."""
        if not self.path.is_file():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read the chip ledger: {exc}") from exc
        lines = data.split(b"\n")
        out: list[dict[str, Any]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            last = number == len(lines)  # no newline after it: torn by a kill mid-write
            try:
                entry = json.loads(line.decode("utf-8"))
                if not isinstance(entry, dict) or "core" not in entry:
                    raise ValueError("not a ledger entry")
            except ValueError:
                what = "torn last line (a write was interrupted)" if last else "unreadable line"
                log.warning("%s: line %d ignored: %s", self.path, number, what)
                continue
            if last:
                log.warning("%s: line %d ignored: torn last line (no newline)", self.path, number)
                continue
            out.append(entry)
        return out

    def state(self) -> dict[int, dict[str, Any]]:
        """Per core its last entry (what the core holds now, as far as the ledger knows)."""
        cores: dict[int, dict[str, Any]] = {}
        for entry in self.entries():
            cores[int(entry["core"])] = entry
        return dict(sorted(cores.items()))


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def state_text(entry: Mapping[str, Any]) -> str:
    """ "programmed", "partially programmed (run did not end)" or "partially programmed (run
    aborted)" for a core's last entry."""
    if entry.get("event") == "start":
        return "partially programmed (run did not end)"
    if entry.get("finished"):
        return "programmed"
    return f"partially programmed (run {entry.get('status', 'ended')})"


# -- fingerprints -----------------------------------------------------------------------------


def take_fingerprint(board: Board, core: int) -> dict[str, list[int]]:
    """Read every device of ``core`` once and keep a few with their counts (the recipe to
    recognise the core later).

    Half the kept devices are programmed ones at evenly spaced ranks of their counts (values
    spanning the programmed range), half are unprogrammed ones at spread addresses (the
    contrast that survives a day of drift, ±15 % per device). Another programming puts other
    values at those addresses, and a fresh chip reads them all near zero. The top few percent
    of counts are skipped: stuck-SET devices sit there, and they belong to the chip, not to
    the programming (a fresh chip of the same seed shows them too).
    """
    shape = board.geometry.device_shape
    rows, cols, devices = np.indices(shape).reshape(3, -1)
    counts = np.asarray(board.verify_read(core, rows, cols, devices), np.int64)
    is_programmed = counts > PROGRAMMED_FRACTION * counts.max()
    programmed = np.flatnonzero(is_programmed)
    ranked = programmed[np.argsort(counts[programmed], kind="stable")]
    ranked = ranked[: max(1, int(ranked.size * (1 - TRIMMED_TOP)))]
    unprogrammed = np.flatnonzero(~is_programmed)
    n_low = min(FINGERPRINT_DEVICES // 2, unprogrammed.size)
    n_high = min(FINGERPRINT_DEVICES - n_low, ranked.size)
    chosen = np.concatenate(
        [
            ranked[np.linspace(0, ranked.size - 1, n_high).round().astype(int)],
            unprogrammed[np.linspace(0, unprogrammed.size - 1, n_low).round().astype(int)],
        ]
    )
    return {
        "rows": rows[chosen].tolist(),
        "cols": cols[chosen].tolist(),
        "devices": devices[chosen].tolist(),
        "counts": counts[chosen].tolist(),
    }


def fingerprint_matches(board: Board, core: int, fingerprint: Mapping[str, Any]) -> bool | None:
    """Whether ``core`` still shows ``fingerprint``: None if the fingerprint cannot tell (none
    stored, or all its counts equal: an empty core), else the correlation test."""
    try:
        then = np.asarray(fingerprint["counts"], np.float64)
        where = [np.asarray(fingerprint[k], np.int64) for k in ("rows", "cols", "devices")]
    except (KeyError, TypeError, ValueError):
        return None
    if then.size < 2 or np.std(then) == 0:
        return None
    now = np.asarray(board.verify_read(core, *where), np.float64)
    if now.shape != then.shape or np.std(now) == 0:
        return False
    return bool(np.corrcoef(then, now)[0, 1] >= MATCH_CORRELATION)


# -- the guard --------------------------------------------------------------------------------


def held_cores(
    board: Board,
    cores: Iterable[int],
    store_dir: str | os.PathLike[str] | None = None,
    *,
    run_file: str | os.PathLike[str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Of ``cores``, those whose ledger entry says they hold a finished programming that the
    chip still shows (fingerprint matches), with that entry. A finished programming whose
    fingerprint cannot tell (none was taken: the link failed at the end of the run) counts as
    held, its entry marked ``unchecked``: a core is never overwritten on a guess. Cores last
    written by ``run_file`` itself (a resumed run) are left out."""
    wanted = sorted({int(c) for c in cores})
    if not wanted:
        return {}
    state = Ledger.of(board.identity.chip_id, store_dir).state()
    own = str(run_file) if run_file is not None else None
    held = {}
    for core in wanted:
        entry = state.get(core)
        if entry is None or entry.get("event") != "end" or not entry.get("finished"):
            continue
        if own is not None and entry.get("run_file") == own:
            continue
        if core >= board.identity.n_cores:
            continue
        shown = fingerprint_matches(board, core, entry.get("fingerprint") or {})
        if shown is None:  # no fingerprint to tell (e.g. its reads failed): assume still held
            held[core] = {**entry, "unchecked": True}
        elif shown:
            held[core] = entry
    return held


def describe_holdings(held: Mapping[int, Mapping[str, Any]]) -> str:
    """``cores 0-1 hold weights sha256:3f2a… programmed by runs/p.h5 at 2024-…``, grouped."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for core, entry in held.items():
        holds = str(entry.get("holds", "?"))
        if holds.startswith("sha256:"):
            holds = f"weights {holds[:19]}…"
        unchecked = " (not checked on the chip: the run took no fingerprint)" * bool(
            entry.get("unchecked")
        )
        key = (holds, str(entry.get("run_file", "?")), str(entry.get("wall_time", "?")))
        groups.setdefault((*key, unchecked), []).append(core)
    parts = []
    for (holds, run_file, when, unchecked), cores in groups.items():
        noun = "core" if len(cores) == 1 else "cores"
        verb = "holds" if len(cores) == 1 else "hold"
        parts.append(
            f"{noun} {core_ranges(cores)} {verb} {holds} programmed by {run_file} at "
            f"{when}{unchecked}"
        )
    return "; ".join(parts)


def check_overwrite(
    board: Board,
    cores: Iterable[int],
    store_dir: str | os.PathLike[str] | None = None,
    *,
    run_file: str | os.PathLike[str] | None = None,
    hint: str = "give --overwrite-cores to reprogram them",
) -> None:
    """Refuse (:class:`CoresHoldDataError`) a run that would overwrite ``cores`` (its catalog
    entry's :func:`chipctl.catalog.overwritten_cores`) while they hold what the ledger
    recorded and the chip still shows. Reads only (verify reads)."""
    held = held_cores(board, cores, store_dir, run_file=run_file)
    if held:
        raise CoresHoldDataError(f"{describe_holdings(held)}; {hint}")


# -- the recorder (a runner subscriber) -------------------------------------------------------


@dataclass
class LedgerRecorder:
    """Runner subscriber: a ``start`` line per overwritten core when the run starts, an ``end``
    line (with a fingerprint read from the board) when it stops. ``described``: per core what
    it will hold (:func:`chipctl.catalog.describe_cores`)."""

    board: Board
    procedure: Procedure
    cores: tuple[int, ...]
    run_file: Path
    described: dict[int, dict[str, Any]] = field(default_factory=dict)
    store_dir: Path | None = None
    board_clock: Any = None

    @property
    def ledger(self) -> Ledger:
        """The ledger of the board's chip."""
        return Ledger.of(self.board.identity.chip_id, self.store_dir)

    def _common(self, core: int) -> dict[str, Any]:
        board_time = None
        if self.board_clock is not None:
            try:
                board_time = float(self.board_clock())
            except Exception:  # noqa: BLE001 (the time is a nice-to-have; the line is not)
                board_time = None
        return {
            "format": FORMAT,
            "chip_id": self.board.identity.chip_id,
            "core": core,
            "procedure": self.procedure.name,
            "run_file": str(self.run_file),
            "board_url": self.board.link.url,
            "wall_time": datetime.now(UTC).isoformat(timespec="seconds"),
            "board_time_s": board_time,
            **self.described.get(core, {}),
        }

    def __call__(self, record: Record) -> None:
        if isinstance(record, Start):
            self.ledger.append(
                [{**self._common(c), "event": "start", "finished": False} for c in self.cores]
            )
        elif isinstance(record, Stop):
            results = record.results or {}
            per_core = results.get("cores") if isinstance(results.get("cores"), dict) else {}
            lines = []
            for core in self.cores:
                entry = {
                    **self._common(core),
                    "event": "end",
                    "status": record.status,
                    "finished": record.status == "success",
                }
                g_max = (per_core or {}).get(str(core), {})
                if isinstance(g_max, dict) and "g_max_counts" in g_max:
                    entry["gmax_counts"] = float(g_max["g_max_counts"])
                if results.get("calibration_set_id") and record.status == "success":
                    entry["calibration_set"] = str(results["calibration_set_id"])
                try:
                    entry["fingerprint"] = take_fingerprint(self.board, core)
                except Exception as exc:  # noqa: BLE001 (a lost link must not hide the line)
                    log.warning("ledger: no fingerprint of core %d: %s", core, exc)
                    entry["fingerprint"] = None
                lines.append(entry)
            self.ledger.append(lines)
