"""The chip ledger and the guard on destructive runs (issue 17), through the CLI text, on a
simulator server that outlives the commands (like a real chip: it keeps what was programmed)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chipctl.cli import main
from chipctl.ledger import Ledger, fingerprint_matches, take_fingerprint
from drivers.board import Board
from drivers.sim.board_model import BoardOptions
from drivers.sim.server import SimServer

FAST = ["--max-iterations", "4", "--no-progress"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A calibration store (and so ledger folder) of this test alone."""
    root = tmp_path / "store"
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(root))
    return root


@pytest.fixture
def server() -> Iterator[SimServer]:
    with SimServer(BoardOptions(seed=11, cores=4)) as sim:
        yield sim


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.npy"
    np.save(path, np.random.default_rng(5).uniform(-1, 1, (256, 256)))
    return path


def _program(url: str, weights: Path, out: Path, cores: str = "0-1", *extra: str) -> int:
    return main(
        ["program", "--board", url, "--weights", str(weights), "--cores", cores,
         "--out", str(out), *FAST, *extra]
    )  # fmt: skip


def _ledger(url: str, store: Path) -> Ledger:
    with Board(url) as board:
        return Ledger.of(board.identity.chip_id, store)


def _all_reads(url: str, core: int) -> np.ndarray:
    with Board(url) as board:
        rows, cols, devices = np.indices(board.geometry.device_shape).reshape(3, -1)
        return np.asarray(board.verify_read(core, rows, cols, devices), np.float64)


def test_program_is_recorded_and_a_second_program_refused(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _program(server.url, weights, tmp_path / "p1.h5") == 0
    state = _ledger(server.url, store).state()
    assert sorted(state) == [0, 1]
    for entry in state.values():
        assert entry["event"] == "end" and entry["finished"] and entry["procedure"] == "program"
        assert entry["holds"].startswith("sha256:") and entry["run_file"].endswith("p1.h5")
        assert entry["gmax_counts"] > 0 and entry["mode"] == "tdp"
        assert entry["board_time_s"] is not None and entry["wall_time"]
        assert len(entry["fingerprint"]["counts"]) > 64
    capsys.readouterr()
    assert _program(server.url, weights, tmp_path / "p2.h5", "1") == 2
    err = capsys.readouterr().err
    assert "core 1 holds weights sha256:" in err and "--overwrite-cores" in err
    assert not (tmp_path / "p2.h5").exists()
    assert _program(server.url, weights, tmp_path / "p2.h5", "1", "--overwrite-cores") == 0
    assert _ledger(server.url, store).state()[1]["run_file"].endswith("p2.h5")


def test_a_core_without_fingerprint_counts_as_held(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A finished programming whose fingerprint could not be taken (the recorder writes
    ``"fingerprint": null`` when the link fails at the end of the run) is protected on trust,
    and the refusal says it was not checked on the chip."""
    assert _program(server.url, weights, tmp_path / "p1.h5") == 0
    ledger = _ledger(server.url, store)
    ledger.append([{**ledger.state()[1], "fingerprint": None}])  # as after a lost link
    capsys.readouterr()
    assert _program(server.url, weights, tmp_path / "p2.h5", "0-1") == 2
    err = capsys.readouterr().err
    assert "core 0 holds weights sha256:" in err
    assert "core 1 holds weights sha256:" in err and "not checked on the chip" in err
    assert not (tmp_path / "p2.h5").exists()
    assert _program(server.url, weights, tmp_path / "p2.h5", "1", "--overwrite-cores") == 0


def test_calibrate_program_reference_is_refused_then_allowed(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _program(server.url, weights, tmp_path / "p.h5") == 0
    before = _all_reads(server.url, 0)
    capsys.readouterr()
    calibrate = ["calibrate", "--board", server.url, "--cores", "0-1", "--program-reference",
                 "--n-inputs", "128", "--n-validation", "128", "--verify-reads", "1",
                 "--reference-mode", "odp", "--no-progress"]  # fmt: skip
    assert main([*calibrate, "--out", str(tmp_path / "c1.h5")]) == 2
    err = capsys.readouterr().err
    assert "cores 0-1 hold weights sha256:" in err and "p.h5" in err
    assert "--overwrite-cores" in err and not (tmp_path / "c1.h5").exists()
    after = _all_reads(server.url, 0)
    assert np.corrcoef(before, after)[0, 1] > 0.99  # untouched but for read noise
    assert abs(after.mean() - before.mean()) < 0.02 * before.mean()

    assert main([*calibrate, "--out", str(tmp_path / "c2.h5"), "--overwrite-cores"]) == 0
    state = _ledger(server.url, store).state()
    for core in (0, 1):
        assert state[core]["holds"] == "reference weights (calibrate, seed 0)"
        assert state[core]["procedure"] == "calibrate" and state[core]["finished"]
        assert state[core]["calibration_set"].startswith("cal-")


def test_calibrate_by_default_keeps_the_weights(
    tmp_path: Path, store: Path, server: SimServer, weights: Path
) -> None:
    assert _program(server.url, weights, tmp_path / "p.h5") == 0
    code = main(["calibrate", "--board", server.url, "--cores", "0-1", "--n-inputs", "128",
                 "--n-validation", "128", "--verify-reads", "1", "--no-progress",
                 "--out", str(tmp_path / "c.h5")])  # fmt: skip
    assert code == 0
    state = _ledger(server.url, store).state()
    assert state[0]["procedure"] == "program"  # nothing overwritten, nothing recorded


def test_infer_onto_programmed_cores_is_refused(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _program(server.url, weights, tmp_path / "p.h5") == 0
    capsys.readouterr()
    code = main(["infer", "--board", server.url, "--model", "digits_mlp", "--dataset", "digits",
                 "--cores", "0-3", "--drift", "25s", "--compensation", "none",
                 "--samples", "64", "--out", str(tmp_path / "i.h5"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    # The cores named are those of the infer tiles that still hold the programmed weights.
    assert code == 2 and "--overwrite-cores" in err, err
    assert re.search(r"cores? [0-9, -]+ holds? weights sha256:", err), err
    assert not (tmp_path / "i.h5").exists()


def test_recipe_step_without_overwrite_cores_is_refused_before_any_step(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _program(server.url, weights, tmp_path / "p.h5") == 0
    recipe = tmp_path / "recipe.toml"
    steps = f"""
board = "{server.url}"
out_dir = "recipe-runs"

[[step]]
procedure = "program"
weights = "w.npy"
cores = "2"
max_iterations = 4

[[step]]
procedure = "calibrate"
cores = "0-1"
program_reference = true
n_inputs = 128
n_validation = 128
verify_reads = 1
reference_mode = "odp"
"""
    recipe.write_text(steps)
    capsys.readouterr()
    assert main(["run", str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "step 2 (calibrate)" in err and "cores 0-1 hold weights" in err
    assert "overwrite_cores = true" in err
    assert (
        not list((tmp_path / "recipe-runs").glob("*.h5"))
        if (tmp_path / "recipe-runs").exists()
        else True
    )
    assert 2 not in _ledger(server.url, store).state()  # step 1 never ran

    # Two steps of one recipe on the same core: the second needs overwrite_cores too.
    recipe.write_text(steps.replace('cores = "0-1"', 'cores = "2"'))
    assert main(["run", str(recipe), "--no-progress"]) == 2
    assert "that step 1 (program) programs" in capsys.readouterr().err

    recipe.write_text(
        steps.replace(
            "program_reference = true", "program_reference = true\noverwrite_cores = true"
        )
    )
    assert main(["run", str(recipe), "--no-progress"]) == 0
    state = _ledger(server.url, store).state()
    assert state[0]["procedure"] == "calibrate" and state[2]["procedure"] == "program"


def test_chip_status_flags_a_core_reprogrammed_outside_the_ledger(
    tmp_path: Path, store: Path, server: SimServer, weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _program(server.url, weights, tmp_path / "p.h5") == 0
    with Board(server.url) as board:  # below the runner: no ledger line
        rows, cols, devices = np.indices(board.geometry.device_shape).reshape(3, -1)
        for part in np.array_split(np.arange(rows.size), 16):  # erase the core, then new weights
            board.apply_pulses(1, rows[part], cols[part], devices[part], "reset", 700, 125)
        rng = np.random.default_rng(9)
        rows, cols = rng.integers(0, 256, (2, 8192))
        board.apply_pulses(1, rows, cols, rng.integers(0, 4, 8192), "set", 300, 1000)
    capsys.readouterr()
    assert main(["chip", "status", "--board", server.url]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "matches" in lines["0"] and "DOES NOT MATCH" in lines["1"]
    assert "1 core(s) do not hold what the ledger says" in out
    # Without a board: the ledger alone, per chip.
    assert main(["chip", "status"]) == 0
    assert "SIM-HERMES-0011" in capsys.readouterr().out
    # The reprogrammed core is no longer guarded; the intact one still is.
    assert _program(server.url, weights, tmp_path / "p2.h5", "1") == 0
    assert _program(server.url, weights, tmp_path / "p3.h5", "0") == 2


def test_a_fresh_mockchip_is_never_refused(tmp_path: Path, store: Path, weights: Path) -> None:
    url = "mockchip://?seed=12&cores=2"
    assert _program(url, weights, tmp_path / "a.h5", "0") == 0
    assert len(_ledger(url, store).state()) == 1
    assert _program(url, weights, tmp_path / "b.h5", "0") == 0  # a new process-local chip
    with Board(url) as board:
        assert fingerprint_matches(board, 0, _ledger(url, store).state()[0]["fingerprint"]) is False


def test_a_torn_last_line_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(tmp_path / "chip" / "ledger.jsonl", "chip")
    ledger.append([{"core": 0, "event": "end", "finished": True, "holds": "x"}])
    with open(ledger.path, "ab") as handle:
        handle.write(b'{"core": 1, "event": "st')  # killed mid-write
    with caplog.at_level(logging.WARNING):
        assert list(ledger.state()) == [0]
    assert "torn last line" in caplog.text
    ledger.append([{"core": 2, "event": "start", "finished": False}])
    assert list(ledger.state()) == [0, 2]  # the new line stays whole after the torn one


def test_fingerprint_tolerates_drift_and_noise() -> None:
    with SimServer(BoardOptions(seed=13, cores=1)) as sim, Board(sim.url) as board:
        rng = np.random.default_rng(1)
        rows, cols = rng.integers(0, 256, (2, 4096))
        board.apply_pulses(0, rows, cols, rng.integers(0, 4, 4096), "set", 300, 1000)
        fingerprint = take_fingerprint(board, 0)
        board.advance_clock(86400.0)
        assert fingerprint_matches(board, 0, fingerprint) is True
        assert fingerprint_matches(board, 0, {}) is None


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_fingerprint_of_a_dense_matrix_survives_a_day_and_a_fresh_chip_never_matches(
    tmp_path: Path, store: Path, weights: Path, seed: int
) -> None:
    """Dense uniform weights put many devices near Gmax, and stuck-SET devices sit at the same
    addresses on a fresh chip of the same seed: neither may decide the match (measured
    correlations 0.99 right after, 0.95–0.97 after a day, 0.01 on a fresh chip)."""
    url = f"mockchip://?seed={seed}&cores=2"
    with SimServer(BoardOptions(seed=seed, cores=2)) as sim:
        assert _program(sim.url, weights, tmp_path / "p.h5", "0") == 0
        fingerprint = _ledger(sim.url, store).state()[0]["fingerprint"]
        with Board(sim.url) as board:
            board.advance_clock(86400.0)
            assert fingerprint_matches(board, 0, fingerprint) is True
            assert fingerprint_matches(board, 1, fingerprint) is False
    with Board(url) as fresh:
        assert fingerprint_matches(fresh, 0, fingerprint) is False
