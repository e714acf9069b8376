"""``chipctl program --weights W.npy`` with a matrix larger than one core (issue 15, item 7).

The matrix is split exactly as the inference executor splits a layer (compared with
``map_graph`` on a Dense layer of the same matrix), each core is programmed with its tile, the
run file and the chip ledger say which tile each core holds, and too few cores is refused
before the board with the number needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chipctl.cli import main
from chipctl.ledger import Ledger, weights_hash
from chipctl.runfile import RunFile
from drivers.board import Board
from drivers.errors import LimitError
from procedures.inference.graph import Dense, Graph
from procedures.inference.mapping import map_graph
from procedures.program_verify import ProgramVerify, weight_layout


def _matrix(rows: int, cols: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (rows, cols))
    w[rng.random(w.shape) < 0.3] = 0
    return w


def test_the_split_is_the_executors() -> None:
    w = _matrix(300, 520)
    cores = [9, 2, 40, 7, 11, 5, 63]
    layout = weight_layout(w, cores)
    graph = Graph("x", (520,), (Dense("fc", ("x",), "y", weight=w.astype(np.float32)),), "y")
    executor = map_graph(graph, cores=cores).layers[0].matrices[0]
    assert layout.tiling is not None
    assert layout.tiling.tiles == executor.tiles  # 2 × 3 tiles of 150 × 174, same cores
    assert layout.cores == (9, 2, 40, 7, 11, 5) and layout.unused == (63,)
    for matrix, tile in zip(layout.matrices, executor.tiles, strict=True):
        np.testing.assert_array_equal(matrix, executor.core_weights(tile))
    np.testing.assert_allclose(layout.tiling.assemble(list(layout.matrices)), w, rtol=1e-6)
    # The forms that are not tiled keep their meaning.
    one = np.ones((256, 256))
    assert weight_layout(one, [0, 1]).tiling is None
    assert weight_layout(one, [0, 1]).matrices.shape == (2, 256, 256)
    assert weight_layout(np.stack([one, -one]), [3, 4]).cores == (3, 4)


@pytest.mark.parametrize(
    ("shape", "cores", "fragments"),
    [
        ((600, 300), [0, 1, 2], ("600×300 matrix", "needs 6 cores", "3 given", "--cores 0-5")),
        ((1000,), [0], ("shape (1000,)",)),
        ((2, 300, 300), [0, 1], ("shape (2, 300, 300)", "(2, 256, 256)")),
        ((0, 300), [0], ("shape (0, 300)",)),
    ],
)
def test_bad_shapes_and_too_few_cores_are_refused(
    shape: tuple[int, ...], cores: list[int], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(LimitError) as info:
        ProgramVerify(weights=np.ones(shape), cores=cores)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_too_few_cores_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "w.npy", _matrix(600, 300))
    out = tmp_path / "run.h5"
    code = main(["program", "--weights", str(tmp_path / "w.npy"), "--cores", "0-3",
                 "--no-progress", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "needs 6 cores; 4 given" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_large_matrix_programmed_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path / "store"))
    w = _matrix(300, 280)
    np.save(tmp_path / "w.npy", w)
    url = "mockchip://?seed=4&cores=5"
    out = tmp_path / "program.h5"
    code = main(["program", "--board", url, "--weights", str(tmp_path / "w.npy"),
                 "--cores", "0-4", "--max-iterations", "12", "--no-progress",
                 "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert "a 300×280 matrix in 4 tiles of at most 150×140" in text
    assert "core 3: rows 150:300, columns 140:280" in text and "core(s) 4" in text
    with RunFile.open(out) as run:
        cores = [int(c) for c in run.stream("core")]
        tiles = np.asarray(run.stream("tile"))
        conductance = np.asarray(run.stream("conductance"), np.float64)
        g_max = np.asarray(run.stream("g_max"), np.float64)
        w_max = np.asarray(run.stream("w_max"), np.float64)
        tiling = run.results["tiling"]
    assert sorted(cores) == [0, 1, 2, 3]  # core 4 not needed, not programmed
    assert tiling["matrix_shape"] == [300, 280] and tiling["tiles"] == [2, 2]
    for k, core in enumerate(cores):
        row_tile, col_tile, r0, r1, c0, c1 = (int(v) for v in tiles[k])
        assert (row_tile, col_tile) == divmod(core, 2)
        assert (r0, r1, c0, c1) == (150 * row_tile, 150 * (row_tile + 1),
                                    140 * col_tile, 140 * (col_tile + 1))  # fmt: skip
        cell = conductance[k, ..., 0] + conductance[k, ..., 1]
        cell -= conductance[k, ..., 2] + conductance[k, ..., 3]
        programmed = cell * w_max[k] / g_max[k]
        target = w[r0:r1, c0:c1]
        # What the core holds is its tile (read back within the programming error), and zero
        # outside the tile.
        assert np.corrcoef(programmed[:150, :140].ravel(), target.ravel())[0, 1] > 0.97
        assert np.abs(programmed[150:, :]).mean() < 0.05 * np.abs(target).mean()
    with Board(url) as board:
        state = Ledger.of(board.identity.chip_id).state()
    assert sorted(state) == [0, 1, 2, 3]
    for core in range(4):
        r, c = divmod(core, 2)
        tile = state[core]["tile"]
        assert tile["rows"] == [150 * r, 150 * (r + 1)] and tile["cols"] == [140 * c, 140 * (c + 1)]
        assert tile["of_matrix"] == [300, 280] and tile["matrix_holds"] == weights_hash(w)
        padded = np.zeros((256, 256))
        padded[:150, :140] = w[150 * r : 150 * (r + 1), 140 * c : 140 * (c + 1)]
        assert state[core]["holds"] == weights_hash(padded.astype(np.float32))
    assert main(["chip", "status"]) == 0
    status = capsys.readouterr().out  # a table: a long cell wraps at its spaces
    assert all(f in status for f in ("rows 0:150,", "150:300", "140:280", "300×280 matrix"))


def test_a_tiled_run_resumes_with_its_tiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chipctl.resume import resume_run
    from chipctl.runner import run_procedure
    from procedures.base import Checkpoint, Record

    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path / "store"))
    w = _matrix(300, 280, seed=5)
    checkpoints: list[Record] = []

    def count(record: Record) -> None:
        if isinstance(record, Checkpoint):
            checkpoints.append(record)

    procedure = ProgramVerify(weights=w, cores=[0, 1, 2, 3], cores_per_group=2, max_iterations=8)
    path = tmp_path / "cut.h5"
    with Board("mockchip://?seed=6&cores=4") as board:
        cut = run_procedure(procedure, board, path, progress=False, subscribers=[count],
                            should_stop=lambda: bool(checkpoints))  # fmt: skip
    assert cut.status == "aborted"
    resumed = resume_run(path, progress=False)
    assert resumed.status == "success", resumed.reason
    with RunFile.open(path) as run:
        assert [int(c) for c in run.stream("core")] == [0, 1, 2, 3]
        assert np.asarray(run.stream("tile"))[:, 2:].tolist() == [
            [0, 150, 0, 140], [0, 150, 140, 280], [150, 300, 0, 140], [150, 300, 140, 280]
        ]  # fmt: skip
        assert run.results["tiling"]["matrix_shape"] == [300, 280]
