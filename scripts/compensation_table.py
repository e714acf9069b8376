"""Accuracy per (model, chip seed, drift time, compensation) on mockchip:// (issue 15.5).

Runs ``infer`` (TDP, four-phase, workload Gmax unless ``--gmax worst-case``) on the whole test
set of each model for chip seeds 1-3 at 25 s and one day, with every compensation, and prints
one markdown row per (model, seed, time). A model the importer refuses is reported, not run.

    PYTHONPATH=. .venv/bin/python scripts/compensation_table.py [--models NAME,...]
        [--seeds 1,2,3] [--gmax workload]
"""

from __future__ import annotations

import argparse
import time

from chipctl.inference import InferModel
from drivers.board import Board
from drivers.errors import LimitError
from procedures.inference.compensation import COMPENSATIONS

PLAIN = "tests/data/models"
MODELS = {
    "mnist1d_resnet_cnn": (f"{PLAIN}/mnist1d_resnet_cnn.onnx", "mnist1d"),
    "digits_cnn2d": (f"{PLAIN}/digits_cnn2d.onnx", "digits-stratified"),
    "mnist1d_lstm_plain": (f"{PLAIN}/mnist1d_lstm.onnx", "mnist1d"),
    "mnist1d_gru": (f"{PLAIN}/mnist1d_gru.onnx", "mnist1d"),
    "digits_wide_mlp": (f"{PLAIN}/digits_wide_mlp.onnx", "digits-stratified"),
    "mnist1d_cnn": ("mnist1d_cnn", "mnist1d"),
    "digits_mlp": ("digits_mlp", "digits"),
    "mnist1d_lstm": ("mnist1d_lstm", "mnist1d"),
}
DRIFT = (("25s", "25 s"), ("1d", "1 d"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--gmax", default="workload")
    args = parser.parse_args()
    header = ["model", "seed", "float32", "time", *COMPENSATIONS, "best − float32"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    for name in args.models.split(","):
        model, dataset = MODELS[name]
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            try:
                procedure = InferModel(
                    model=model,
                    dataset=dataset,
                    drift=",".join(label for label, _ in DRIFT),
                    compensation=",".join(COMPENSATIONS),
                    gmax=args.gmax,
                )
            except LimitError as exc:
                print(f"| {name} | – | – | – | {str(exc).splitlines()[0]} |", flush=True)
                break
            with Board(f"mockchip://?seed={seed}") as board:
                for _ in procedure.run(board):
                    pass
            results = procedure.results
            if "accuracy" not in results:
                print(f"| {name} | {seed} | failed: {results} |", flush=True)
                continue
            software = 100 * results["software_accuracy"]
            for label, shown in DRIFT:
                row = [100 * results["accuracy"][c][label] for c in COMPENSATIONS]
                cells = [name, str(seed), f"{software:.1f}", shown]
                cells += [f"{v:.1f}" for v in row] + [f"{max(row[1:]) - software:+.1f}"]
                print("| " + " | ".join(cells) + " |", flush=True)
            print(f"<!-- {name} seed {seed}: {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
