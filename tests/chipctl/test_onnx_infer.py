"""Plain PyTorch exports run through ``chipctl infer`` on the simulated chip, as a user would
run them (fixed chip seed; 300 test samples to keep the suite short: the whole test sets and
three seeds are in tests/data/models/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipctl import catalog
from chipctl.cli import main
from chipctl.runfile.reader import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


@pytest.mark.parametrize(
    ("file", "dataset"),
    [("mnist1d_lstm.onnx", "mnist1d"), ("mnist1d_resnet_cnn.dynamo.onnx", "mnist1d")],
)
def test_pytorch_export_runs_on_the_chip_close_to_float32(
    tmp_path: Path, file: str, dataset: str
) -> None:
    procedure = catalog.procedure_class("infer")(
        model=str(MODELS / file), dataset=dataset, drift="25s", compensation="none", samples=300
    )
    with Board("mockchip://?seed=2") as board:
        summary = run_procedure(procedure, board, tmp_path / "run.h5", progress=False)
    assert summary.status == "success", summary.reason
    results = summary.results
    # 300 samples: one sample is 0.33 points; plain training, no compensation needed at 25 s
    assert results["accuracy"]["none"]["25s"] >= results["software_accuracy"] - 0.03


def test_gru_runs_on_the_chip_close_to_float32(tmp_path: Path) -> None:
    """The GRU's products on the cores, its gates on the host, through the command line."""
    out = tmp_path / "gru.h5"
    argv = ["infer", "--model", str(MODELS / "mnist1d_gru.onnx"), "--dataset", "mnist1d"]
    argv += ["--drift", "25s", "--compensation", "none", "--samples", "300"]
    assert main([*argv, "--board", "mockchip://?seed=2", "--out", str(out), "--no-progress"]) == 0
    with RunFile.open(out) as run:
        results = run.results
    # 300 samples: one sample is 0.33 points (seed 2: 88.0 % against 90.3 % in float32)
    assert results["accuracy"]["none"]["25s"] >= results["software_accuracy"] - 0.03
