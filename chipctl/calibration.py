"""Calibration sets: the LDPU coefficients a ``calibrate`` run fitted, stored per chip.

Format (``chipctl-calibration/1``): one NumPy ``.npz`` file per set (no pickles),
``<store>/<chip_id>/<set_id>.npz``, holding

- ``metadata``: UTF-8 JSON as a uint8 array: ``format``, ``id``, ``created`` (ISO 8601, UTC),
  ``chip_id``, ``procedure``, ``parameters``, ``mode`` (MVM mode calibrated), ``cores``,
  ``counts_per_unit`` (k̄, calibrated MVM counts per verify count × input LSB),
  ``read_voltage_mv``, ``board``, ``results`` and ``content_hash``;
- the coefficient arrays, float16 as the LDPU holds them, shape (n_cores, 256) each:
  ``gain_pos``, ``offset_pos``, ``gain_neg``, ``offset_neg``, ``affine_scale``,
  ``affine_offset``; ``cores`` (int16, n_cores).

``content_hash`` = sha256 over the canonical JSON of the metadata without the hash, then per
array (sorted by name) its name, dtype, shape and little-endian bytes. Loading checks the
format, the chip id, the shapes and the hash; a mismatch or a damaged/truncated file raises
:class:`CalibrationError` naming the file.

Store location: ``$CHIPCTL_CALIBRATION_DIR`` if set, else the checkout's ``calibration_data/``
(next to the ``chipctl`` package), else ``./calibration_data``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import chipctl
from chipctl.errors import ChipctlError
from drivers.board import Board
from drivers.ldpu import COEFFICIENT_FIELDS, ROWS, LdpuCoefficients
from procedures.base import Data, Record, Start, Stop

FORMAT = "chipctl-calibration/1"
ENV_VAR = "CHIPCTL_CALIBRATION_DIR"
ARRAYS = COEFFICIENT_FIELDS


class CalibrationError(ChipctlError):
    """A calibration set is missing, damaged, or does not fit the chip."""


def default_store_dir() -> Path:
    """``$CHIPCTL_CALIBRATION_DIR``, else the checkout's calibration_data/, else ./."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1] / "calibration_data"
    if checkout.is_dir():
        return checkout
    return Path("calibration_data")


def _safe_name(text: str, what: str) -> str:
    if not text or any(c in text for c in "/\\\0") or text in (".", ".."):
        raise CalibrationError(f"{what} {text!r} cannot be used as a file name")
    return text


def content_hash(metadata: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the canonical metadata JSON (without the hash) and the arrays."""
    digest = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != "content_hash"}
    digest.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass
class CalibrationSet:
    """One calibration set: metadata and per-core LDPU coefficient arrays."""

    metadata: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def id(self) -> str:
        """The set's unique id (``cal-<UTC time>-<hash>``)."""
        return str(self.metadata["id"])

    @property
    def chip_id(self) -> str:
        """Id of the chip the set was measured on."""
        return str(self.metadata["chip_id"])

    @property
    def cores(self) -> list[int]:
        """The cores the set has coefficients for."""
        return [int(c) for c in self.arrays["cores"]]

    @property
    def mode(self) -> int:
        """The MVM mode the set was fitted in: 1- or 4-phase."""
        return int(self.metadata["mode"])

    @property
    def counts_per_unit(self) -> float:
        """k̄: ADC counts per int8 unit of the calibrated output, mean over the cores."""
        return float(self.metadata["counts_per_unit"])

    def ldpu(self, core: int) -> LdpuCoefficients:
        """The LDPU coefficients of ``core``."""
        cores = self.cores
        if core not in cores:
            raise CalibrationError(f"calibration set {self.id} has no core {core} (has {cores})")
        k = cores.index(core)
        return LdpuCoefficients(**{name: self.arrays[name][k] for name in ARRAYS}, relu=False)

    def seal(self) -> CalibrationSet:
        """Set the content hash (after building or changing the set)."""
        self.metadata["content_hash"] = content_hash(self.metadata, self.arrays)
        return self

    def check(self, where: str) -> None:
        """Format, shapes and hash; :class:`CalibrationError` naming ``where``."""
        if self.metadata.get("format") != FORMAT:
            raise CalibrationError(
                f"{where}: format {self.metadata.get('format')!r}, expected {FORMAT!r}"
            )
        for key in ("id", "created", "chip_id", "mode", "counts_per_unit", "content_hash"):
            if key not in self.metadata:
                raise CalibrationError(f"{where}: metadata has no {key!r}")
        if "cores" not in self.arrays:
            raise CalibrationError(f"{where}: no 'cores' array")
        n = self.arrays["cores"].shape
        if len(n) != 1 or n[0] < 1:
            raise CalibrationError(f"{where}: 'cores' must be a non-empty 1-d array, got {n}")
        for name in ARRAYS:
            array = self.arrays.get(name)
            if array is None:
                raise CalibrationError(f"{where}: no {name!r} array")
            if array.shape != (n[0], ROWS):
                raise CalibrationError(
                    f"{where}: {name} has shape {array.shape}, expected ({n[0]}, {ROWS})"
                )
            if not np.all(np.isfinite(array)):
                raise CalibrationError(f"{where}: {name} holds non-finite values")
        expected = content_hash(self.metadata, self.arrays)
        if expected != self.metadata["content_hash"]:
            raise CalibrationError(
                f"{where}: content hash mismatch (stored {self.metadata['content_hash'][:12]}…, "
                f"computed {expected[:12]}…): the file was changed or damaged"
            )


def build_set(
    *,
    set_id: str,
    created: str,
    chip_id: str,
    procedure: str,
    parameters: Mapping[str, Any],
    cores: Iterable[int],
    coefficients: Mapping[str, np.ndarray],
    mode: int,
    counts_per_unit: float,
    extra: Mapping[str, Any] | None = None,
) -> CalibrationSet:
    """A sealed calibration set from fitted coefficients (arrays (n_cores, 256))."""
    core_list = [int(c) for c in cores]
    arrays = {name: np.asarray(coefficients[name], np.float16) for name in ARRAYS}
    arrays["cores"] = np.asarray(core_list, np.int16)
    params = {
        k: (v.tolist() if isinstance(v, np.ndarray) and v.size <= 16 else v)
        for k, v in parameters.items()
        if not (isinstance(v, np.ndarray) and v.size > 16)
    }
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "id": set_id,
        "created": created,
        "chip_id": chip_id,
        "procedure": procedure,
        "parameters": json.loads(json.dumps(params, default=_json_default)),
        "mode": int(mode),
        "cores": core_list,
        "counts_per_unit": float(counts_per_unit),
        "software_version": chipctl.__version__,
    }
    if extra:
        metadata.update(json.loads(json.dumps(dict(extra), default=_json_default)))
    return CalibrationSet(metadata, arrays).seal()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CalibrationStore:
    """Calibration sets under ``root/<chip_id>/<set_id>.npz``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()

    def path_of(self, chip_id: str, set_id: str) -> Path:
        """Path of set ``set_id`` of chip ``chip_id`` (ids checked to be safe file names)."""
        return self.root / _safe_name(chip_id, "chip id") / f"{_safe_name(set_id, 'set id')}.npz"

    def save(self, calibration: CalibrationSet) -> Path:
        """Write the set (atomically: a temporary file, then rename); returns its path."""
        calibration.check("calibration set to save")
        path = self.path_of(calibration.chip_id, calibration.id)
        if path.exists():
            raise CalibrationError(f"{path}: a calibration set with this id exists already")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(calibration.metadata, sort_keys=True, indent=1).encode()
        tmp = path.with_suffix(".npz.tmp")
        with open(tmp, "wb") as handle:
            arrays: dict[str, Any] = {"metadata": np.frombuffer(meta, np.uint8)}
            arrays.update(calibration.arrays)
            np.savez(handle, **arrays)
        os.replace(tmp, path)
        calibration.path = path
        return path

    @staticmethod
    def read(path: str | os.PathLike[str], *, chip_id: str | None = None) -> CalibrationSet:
        """Load and check one set file; ``chip_id`` must match if given."""
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"{path}: no such calibration set file")
        try:
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                raw = {name: np.array(data[name]) for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise CalibrationError(
                f"{path}: not a readable calibration set (corrupted or truncated?): {exc}"
            ) from None
        try:
            metadata = json.loads(raw.pop("metadata").tobytes().decode())
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: unreadable metadata: {exc}") from None
        if not isinstance(metadata, dict):
            raise CalibrationError(f"{path}: metadata is not a JSON object")
        calibration = CalibrationSet(metadata, raw, path)
        calibration.check(str(path))
        if chip_id is not None and calibration.chip_id != chip_id:
            raise CalibrationError(
                f"{path}: calibration set is for chip {calibration.chip_id!r}, not {chip_id!r}"
            )
        if path.stem != calibration.id:
            raise CalibrationError(f"{path}: file name does not match the set id {calibration.id}")
        return calibration

    def load(self, chip_id: str, set_id: str) -> CalibrationSet:
        """The set ``set_id`` of ``chip_id``, checked."""
        return self.read(self.path_of(chip_id, set_id), chip_id=chip_id)

    def list(self, chip_id: str | None = None) -> list[tuple[Path, dict[str, Any] | str]]:
        """(path, metadata) per set file, or (path, error text) for unreadable ones; by time."""
        chips = [chip_id] if chip_id else sorted(p.name for p in self.root.glob("*") if p.is_dir())
        out: list[tuple[Path, dict[str, Any] | str]] = []
        for chip in chips:
            for path in sorted((self.root / _safe_name(chip, "chip id")).glob("*.npz")):
                try:
                    out.append((path, self.read(path, chip_id=chip).metadata))
                except CalibrationError as exc:
                    out.append((path, str(exc)))

        def key(item: tuple[Path, dict[str, Any] | str]) -> tuple[str, str]:
            meta = item[1]
            return (str(meta.get("created", "")) if isinstance(meta, dict) else "", str(item[0]))

        return sorted(out, key=key)

    def latest(self, chip_id: str, *, mode: int | None = None) -> CalibrationSet | None:
        """The newest readable set of ``chip_id`` (for MVM ``mode`` if given), or None."""
        for path, meta in reversed(self.list(chip_id)):
            if isinstance(meta, dict) and (mode is None or int(meta["mode"]) == mode):
                return self.read(path, chip_id=chip_id)
        return None


def apply_set(
    board: Board, calibration: CalibrationSet, cores: Iterable[int] | None = None
) -> list[int]:
    """Load the set's LDPU coefficients onto ``cores`` (default: all of the set's cores).

    Refuses a set of another chip, and cores the set or the board does not have.
    """
    chip = board.identity.chip_id
    where = str(calibration.path or calibration.id)
    if calibration.chip_id != chip:
        raise CalibrationError(
            f"{where}: calibration set is for chip {calibration.chip_id!r}, board has {chip!r}"
        )
    wanted = list(cores) if cores is not None else calibration.cores
    n_board = board.identity.n_cores
    missing = [c for c in wanted if c not in calibration.cores]
    if missing:
        raise CalibrationError(f"{where}: no coefficients for core(s) {missing}")
    beyond = [c for c in wanted if not 0 <= c < n_board]
    if beyond:
        raise CalibrationError(f"{where}: core(s) {beyond} not on this board ({n_board} cores)")
    for core in wanted:
        board.load_ldpu(core, calibration.ldpu(core))
    return wanted


class CalibrationRecorder:
    """Runner subscriber: collects a ``calibrate`` run's coefficients, saves the set on success.

    ``run_procedure(Calibrate(...), board, path, subscribers=[recorder])``; afterwards
    ``recorder.saved`` is the set's path (None if the run did not succeed).
    """

    def __init__(self, store: CalibrationStore) -> None:
        self.store = store
        self.saved: Path | None = None
        self.calibration: CalibrationSet | None = None
        self._start: Start | None = None
        self._rows: dict[str, list[np.ndarray]] = {}

    def __call__(self, record: Record) -> None:
        if isinstance(record, Start):
            self._start = record
            self._rows = {}
        elif isinstance(record, Data):
            if record.stream in (*ARRAYS, "core"):
                self._rows.setdefault(record.stream, []).append(np.asarray(record.values))
        elif isinstance(record, Stop) and record.status == "success" and self._start:
            self.calibration = calibration_from_run(self._start, self._rows, record.results)
            self.saved = self.store.save(self.calibration)

    def message(self) -> str:
        """What a front end tells the user after the run ("" if no set was stored)."""
        if self.saved is None or self.calibration is None:
            return ""
        return f"calibration set {self.calibration.id} stored in {self.saved}"


class ResumedCalibrationRecorder(CalibrationRecorder):
    """The recorder of a resumed ``calibrate`` run: as :class:`CalibrationRecorder`, but a set
    of the same id that the interrupted run already stored (it died after storing the set,
    before its run file said "success") is accepted when its coefficients are the same; a
    different one is still an error."""

    def __call__(self, record: Record) -> None:
        if isinstance(record, Stop) and record.status == "success" and self._start is not None:
            calibration = calibration_from_run(self._start, self._rows, record.results)
            path = self.store.path_of(calibration.chip_id, calibration.id)
            if path.exists():
                stored = CalibrationStore.read(path)
                same = stored.arrays.keys() == calibration.arrays.keys() and all(
                    np.array_equal(stored.arrays[k], calibration.arrays[k])
                    for k in calibration.arrays
                )
                if same:
                    self.calibration, self.saved = stored, path
                    return
        super().__call__(record)


def calibration_from_run(
    start: Start, rows: Mapping[str, list[np.ndarray]], results: Mapping[str, Any]
) -> CalibrationSet:
    """Build the set from a calibrate run's Start record, coefficient rows and results."""
    meta = start.metadata
    try:
        cores = [int(c) for c in rows["core"]]
        coefficients = {name: np.stack(rows[name]) for name in ARRAYS}
        set_id = str(results["calibration_set_id"])
    except KeyError as exc:
        raise CalibrationError(f"the calibrate run yielded no {exc}") from None
    extra = {
        "board": {
            k: meta.get(k) for k in ("board_id", "firmware_version", "board_url", "simulated")
        },
        "results": {k: v for k, v in results.items() if k not in ("cores",)},
    }
    return build_set(
        set_id=set_id,
        created=str(results.get("created", "")),
        chip_id=str(meta.get("chip_id", "")),
        procedure=start.procedure,
        parameters=start.parameters,
        cores=cores,
        coefficients=coefficients,
        mode=int(results["mode"]),
        counts_per_unit=float(results["counts_per_unit"]),
        extra=extra,
    )
