"""A run resumed on a board that kept its state restores the deployed layout with the
calibration: a replicated tile gets its input on every copy again, so GDC keeps its accuracy
(without the copies the MLP fell from 98 % to 91 %)."""

from __future__ import annotations

from pathlib import Path

from chipctl import catalog
from chipctl.resume import resume_run
from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board
from drivers.sim.server import spawned

PARAMS = {
    "model": "digits_mlp",
    "dataset": "digits",
    "drift": "25s",
    "compensation": "gdc,adabs",
    "samples": 200,
}
DEPLOYMENT_SAFE_POINTS = 28
"""check_stop calls while digits_mlp is programmed and calibrated (tests/chipctl/test_inference)."""


def test_resume_on_a_kept_chip_keeps_the_replicated_layout(tmp_path: Path) -> None:
    calls = [0]

    def stop_after_deployment() -> bool:
        calls[0] += 1
        return calls[0] > DEPLOYMENT_SAFE_POINTS + 1

    with spawned("seed=1&cores=4") as url:
        with Board(url) as board:
            cut = run_procedure(
                catalog.procedure_class("infer")(**PARAMS),
                board,
                tmp_path / "cut.h5",
                progress=False,
                should_stop=stop_after_deployment,
            )
        assert cut.status == "aborted"
        resumed = resume_run(tmp_path / "cut.h5", progress=False)
    assert resumed.status == "success", resumed.reason
    results = resumed.results
    assert max(c["replicas"] for c in _allocation(tmp_path / "cut.h5")) > 1
    for compensation in ("gdc", "adabs"):
        assert results["accuracy"][compensation]["25s"] >= results["software_accuracy"] - 0.03
    # AdaBS's reference statistics come back from the checkpoint (else adapting is refused).
    adapted = results["adabs"]["25s"]
    assert adapted and all(a["kind"] == "channel-affine" for a in adapted.values())


def _allocation(path: Path) -> list[dict[str, int]]:
    with RunFile.open(path) as run:
        return [
            {"core": int(c), "replicas": int(r)}
            for c, r in zip(run.stream("core"), run.stream("replicas"), strict=True)
        ]
