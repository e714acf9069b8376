"""Inference throughput through ``mockchip://`` against the float32 numpy forward pass.

For each shipped model and three plainly trained ones (``tests/data/models``, named ``own_…``):
programmed and calibrated once on ``mockchip://?seed=1``, then the test samples
(``INFER_SAMPLES``, default 1000 or the whole test set if smaller) are streamed through the
board link in the chosen MVM mode, float16 LDPU, 25 s after programming. The baseline is
``procedures.inference.reference.forward`` on the same samples, measured in the same run, the
faster of numpy as it comes and numpy with OpenBLAS held at one thread.
``ratio`` = baseline time / chip time (issue 16 targets: >= 0.1 each, >= 0.2 for the CNN);
``cpu_ratio`` compares process CPU times instead (steadier on a shared machine). Each time is
the best single call of at least ``INFER_REPEATS`` (default 3) and of at least 0.5 s of calls
(``benchmarks/_timing.py``), for the chip and numpy alike.

Environment: ``INFER_MODES`` (default "4,1"), ``INFER_KERNELS`` (default "numba,numpy": the
simulator's MVM kernels, ``mockchip://?kernel=...``), ``INFER_MODELS`` (default all; e.g.
``mnist1d_cnn,digits_wide_mlp``). ``calls_per_inference``: the board's MVM calls of one forward
pass over the samples, divided by the samples.

Why a ratio stays low (figures in docs/inference.md, "Throughput"): every output row costs four
noisy conversions and the float16 LDPU in four-phase (c = 6–14 ns of compiled work) and six
matrix products where numpy has one (four when no input is negative), so a layer with k active
inputs is bound near 1/(6 + c·F/2k) on one thread (F the matmul rate): about 0.15 for the
digits MLP's first layer (pixels: 1/(4 + c·F/2k), one noise word per conversion), and its batch
split over two threads gains far less than twice (the hand-off to a sleeping thread); the
MLPs' numpy forward over their test sets takes about 0.1 ms, less than one MVM round trip
through the board protocol (140–150 µs); an LSTM's steps are sequential round trips.
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks._timing import best_single_cpu_s, best_single_s
from chipctl.inference import inference_data, model_path
from chipctl.onnx_import import load_onnx
from drivers.board import Board
from drivers.errors import LimitError
from drivers.sim.threads import BlasThreads
from procedures.inference.calibration import tensor_ranges
from procedures.inference.digital import Float16
from procedures.inference.executor import ChipExecutor
from procedures.inference.mapping import map_graph
from procedures.inference.reference import forward

MODELS = (
    ("mnist1d_cnn", "mnist1d"),
    ("mnist1d_lstm", "mnist1d"),
    ("digits_mlp", "digits"),
    # plainly trained networks as a user brings them (tests/data/models/README.md): the
    # peer's kind of 1-D CNN, an LSTM, an MLP wider than a core (320 rows over two cores)
    ("tests/data/models/mnist1d_resnet_cnn.onnx", "mnist1d"),
    ("tests/data/models/mnist1d_lstm.onnx", "mnist1d"),
    ("tests/data/models/digits_wide_mlp.onnx", "digits-stratified"),
)


def measure(
    model: str, dataset: str, samples: int, mvm_mode: int, repeats: int, kernel: str = "auto"
) -> dict:
    """Inferences per second on the simulated chip and in numpy for one model."""
    graph = load_onnx(model_path(model))
    data = inference_data(dataset)
    x = data.x_test[:samples]
    ranges = tensor_ranges(graph, data.x_calibration[:500])
    with Board(f"mockchip://?seed=1&kernel={kernel}") as board:
        executor = ChipExecutor(
            board, graph, map_graph(graph), ranges, Float16(), mvm_mode=mvm_mode
        )
        executor.use_calibration_data(data.x_calibration[:500])
        for _ in executor.program("tdp"):
            pass
        for _ in executor.calibrate():
            pass
        board.advance_clock(25.0)  # scored 25 s after programming, as `infer` does first
        calls = 0
        mvm = board.mvm

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return mvm(*args, **kwargs)  # type: ignore[call-overload]

        # scored before the timing, whose number of calls depends on the machine's speed (each
        # call moves the virtual clock, so the noise draws after it would too)
        board.mvm = counting  # type: ignore[method-assign,assignment]
        outputs = executor.forward(x)[graph.output_name]
        board.mvm = mvm  # type: ignore[method-assign]
        accuracy = float(np.mean(outputs.argmax(1) == data.y_test[: len(x)]))
        chip_s = best_single_s(lambda: executor.forward(x), repeats)
        chip_cpu_s = best_single_cpu_s(lambda: executor.forward(x), repeats)

    def one_blas_thread() -> None:
        with BlasThreads(1):
            forward(graph, x)

    # the faster of numpy as it comes and numpy with OpenBLAS at one thread (on a busy machine
    # OpenBLAS's own threads slow down many times, which would flatter the ratios)
    ways = (lambda: forward(graph, x), one_blas_thread)
    numpy_s = min(best_single_s(way, max(repeats, 5)) for way in ways)
    numpy_cpu_s = min(best_single_cpu_s(way, max(repeats, 5)) for way in ways)
    return {
        "samples": len(x),
        "chip_per_s": len(x) / chip_s,
        "numpy_per_s": len(x) / numpy_s,
        "ratio": numpy_s / chip_s,
        "cpu_ratio": numpy_cpu_s / chip_cpu_s,
        "calls_per_inference": calls / len(x),
        "chip_accuracy": accuracy,
    }


def run_from_env() -> dict:
    samples = int(os.environ.get("INFER_SAMPLES", "1000"))
    repeats = int(os.environ.get("INFER_REPEATS", "3"))
    modes = [int(m) for m in os.environ.get("INFER_MODES", "4,1").split(",")]
    kernels = os.environ.get("INFER_KERNELS", "numba,numpy").split(",")
    figures: dict = {"target_ratio": 0.1, "target_ratio_cnn": 0.2}
    chosen = os.environ.get("INFER_MODELS", "")
    for model, dataset in MODELS:
        name = model.rsplit("/", 1)[-1].removesuffix(".onnx")
        if chosen and name not in chosen.split(","):
            continue
        if "/" in model:
            name = f"own_{name}"
        for mode in modes:
            for kernel in kernels:
                try:
                    figures[f"{name}_{mode}phase_{kernel}"] = measure(
                        model, dataset, samples, mode, repeats, kernel
                    )
                except LimitError as exc:  # e.g. one-phase calibration of the shipped LSTM
                    figures[f"{name}_{mode}phase_{kernel}"] = {"error": str(exc)}
    return figures


def run() -> dict:
    return run_from_env()
