"""Link faults (issue 8): every procedure on a faulty link (corrupted bytes both ways, dropped
and late replies; ``mockchip://`` fault options) gives exactly its clean-link result with the
same chip seed, or stops with a clear error that its run file records; a board reset mid-run
always stops it with a clear error (a programming pulse is never applied twice: the pulses are
one frame, which the board answers from its reply cache when the host repeats it, and a reset
is never retried across).

The link's counters must show that faults happened and were retried, so no case passes
vacuously. One table entry per procedure (:data:`CASES`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.inference import InferModel
from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.base import Procedure
from procedures.calibrate import Calibrate
from procedures.characterize import Characterize
from procedures.drift import DriftMonitor
from procedures.gdc import Compensate
from procedures.program_verify import ProgramVerify
from procedures.snapshot import ConductanceSnapshot

CHIP = "seed=31&cores=2"
FAULTS = "corrupt=5e-7&drop=0.01&delay_rate=0.01&delay_s=0.05&fault_seed=5"
"""Per-byte corruption 5e-7 hits ~12 % of the largest (256 kB MVM) replies; 1 % of the replies
are lost, 1 % late (beyond the timeout)."""
BIG_FRAMES = "corrupt=5e-8&drop=0.02&delay_rate=0.02&delay_s=0.05&fault_seed=5"
"""For runs with 4 MB pulse frames (a whole core's pulses in one frame)."""
FEW_FRAMES = "corrupt=1e-7&drop=0.15&delay_rate=0.15&delay_s=0.05&fault_seed=3"
"""For runs of a few frames: more faults per frame, so some happen."""
CRC_STORM = "corrupt=5e-6&fault_seed=5"
"""Every 4 MB pulse frame corrupted: the retries run out, the run must stop clearly."""
CLEAR_ERRORS = r"^(LinkError|LinkTimeout|FrameError|BoardCrcError|BoardFrameError): "
TIMEOUT_S = 0.03
RETRIES = 6


def _weights() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (256, 256))


def _pulses(board: Board) -> None:
    """Conducting devices on both cores (cheap: one SET pulse each on 4096 devices)."""
    rng = np.random.default_rng(3)
    for core in (0, 1):
        rows, cols = rng.integers(0, 256, (2, 4096))
        board.apply_pulses(core, rows, cols, rng.integers(0, 4, 4096), "set", 300, 1000)


@dataclass(frozen=True)
class FaultCase:
    """One procedure on the link: how to make it, the board setup it needs, result keys that
    differ between any two runs."""

    name: str
    make: Callable[[], Procedure]
    setup: Callable[[Board], None] | None = None
    ignore_results: tuple[str, ...] = ()
    faults: str = FAULTS
    ignore_streams: tuple[str, ...] = ()


CASES = [
    FaultCase(
        "program",
        lambda: ProgramVerify(weights=_weights(), cores=[0, 1], max_iterations=6),
        faults=BIG_FRAMES,
    ),
    FaultCase(
        "characterize",
        lambda: Characterize(weights=_weights(), cores=[0, 1], n_inputs=256),
        setup=_pulses,
        faults=FEW_FRAMES,
    ),
    FaultCase(
        "calibrate",
        lambda: Calibrate(
            cores=[0, 1],
            program_reference=True,
            n_inputs=128,
            n_validation=128,
            verify_reads=1,
            reference_mode="odp",
            set_id="cal-link",
        ),  # fmt: skip
        ignore_results=("created",),
        faults=BIG_FRAMES,
    ),
    FaultCase(
        "drift",
        lambda: DriftMonitor(cores=[0, 1], points=6, sample=128, n_test=32, n_readout=8),
        setup=_pulses,
    ),
    FaultCase("compensate", lambda: Compensate(cores=[0, 1]), setup=_pulses, faults=FEW_FRAMES),
    FaultCase("snapshot", lambda: ConductanceSnapshot(cores=[0, 1]), faults=FEW_FRAMES),
    FaultCase(
        "infer",
        lambda: InferModel(
            model="digits_mlp",
            dataset="digits",
            drift="25s,1d",
            compensation="none,gdc",
            samples=100,
            cores=[0, 1],
        ),
        faults=BIG_FRAMES,
        ignore_results=("inferences_per_s",),
        ignore_streams=("inferences_per_s",),
    ),
]


def _run(case: FaultCase, query: str, path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Run the case on ``mockchip://?QUERY``; its file's outcome and the link counters (plus
    ``setup_requests``: frames before the procedure started)."""
    with Board(f"mockchip://?{query}", timeout_s=TIMEOUT_S, retries=RETRIES) as board:
        if case.setup is not None:
            case.setup(board)
        setup_requests = board.link.stats.requests
        run_procedure(case.make(), board, path, progress=False)
        stats = {**board.link.stats.as_dict(), "setup_requests": setup_requests}
    with RunFile.open(path) as run:
        results = {k: v for k, v in run.results.items() if k not in case.ignore_results}
        outcome = {
            "status": run.status,
            "reason": run.reason,
            "results": json.dumps(results, sort_keys=True),
            "streams": {
                name: run.stream(name) for name in run.streams if name not in case.ignore_streams
            },
        }
    return outcome, stats


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_faulty_link_gives_the_clean_result_or_a_clear_error(
    case: FaultCase, tmp_path: Path
) -> None:
    clean, clean_stats = _run(case, CHIP, tmp_path / "clean.h5")
    assert clean["status"] == "success", clean["reason"]
    assert clean_stats["retries"] == 0, clean_stats

    faulty, stats = _run(case, f"{CHIP}&{case.faults}", tmp_path / "faulty.h5")
    print(f"\n{case.name}: {faulty['status']} {faulty['reason']!r}; link {stats}")
    # faults happened and were retried (no vacuous pass)
    assert stats["retries"] > 0, stats
    assert stats["timeouts"] + stats["corrupt_replies"] + stats["crc_naks"] > 0, stats
    if faulty["status"] != "success":
        # the only other acceptable outcome: stopped, with the link error in the file
        assert faulty["status"] == "failed", faulty["status"]
        assert re.search(CLEAR_ERRORS, faulty["reason"]), faulty["reason"]
        return
    assert faulty["results"] == clean["results"]
    for name, array in clean["streams"].items():
        np.testing.assert_array_equal(faulty["streams"][name], array, err_msg=name)

    # a board reset halfway through: a clear error in the file, never a silent continuation
    setup = clean_stats["setup_requests"]
    reset_at = setup + 1 + (clean_stats["requests"] - setup) // 2
    reset, _ = _run(case, f"{CHIP}&reset_after={reset_at}", tmp_path / "reset.h5")
    print(f"{case.name}: reset at frame {reset_at}: {reset['status']} {reset['reason']!r}")
    assert reset["status"] == "failed", reset["status"]
    assert "reset" in reset["reason"].lower(), reset["reason"]


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("program", "calibrate")],
                         ids=["program", "calibrate"])  # fmt: skip
def test_a_link_too_bad_to_program_stops_the_run_clearly(case: FaultCase, tmp_path: Path) -> None:
    """Every pulse frame corrupted on the way to the board: it refuses each (CRC) and executes
    none; after the retries the run stops, and its file says why."""
    faulty, stats = _run(case, f"{CHIP}&{CRC_STORM}", tmp_path / "storm.h5")
    assert stats["crc_naks"] > RETRIES, stats
    assert faulty["status"] == "failed", faulty["status"]
    assert faulty["reason"].startswith("BoardCrcError: PULSES: request payload failed its CRC; "
                                       "not executed"), faulty["reason"]  # fmt: skip


def test_a_repeated_pulse_frame_is_never_applied_twice() -> None:
    """Pulse replies lost (drop 30 %) or late: the host repeats the frame, the board answers
    from its reply cache; the conductances equal the clean link's, pulse for pulse."""
    rng = np.random.default_rng(9)
    batches = [(rng.integers(0, 256, (2, 512)), rng.integers(0, 4, 512)) for _ in range(12)]
    reads = []
    for query in (CHIP, f"{CHIP}&drop=0.3&delay_rate=0.2&delay_s=0.05&fault_seed=11"):
        with Board(f"mockchip://?{query}", timeout_s=TIMEOUT_S, retries=RETRIES) as board:
            for (rows, cols), devices in batches:
                board.apply_pulses(0, rows, cols, devices, "set", 250, 500)
            rows, cols, devices = np.indices((256, 256, 4)).reshape(3, -1)
            lost = board.link.stats.timeouts
            reads.append(board.verify_read(0, rows, cols, devices))
    assert lost > 0  # replies to pulse frames were lost and the frames repeated
    np.testing.assert_array_equal(reads[1], reads[0])
