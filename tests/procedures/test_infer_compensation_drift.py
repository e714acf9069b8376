"""Drift compensation on a network without batch norm (as PyTorch's eval export gives it),
through mockchip:// after one day: AdaBS adapts a per-channel affine and says so, per-row GDC
and recalibration beat per-core GDC on the layer error, and the infer run records all of it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Data
from procedures.infer import Infer
from procedures.inference.calibration import tensor_ranges
from procedures.inference.compensation import ChannelStatistics
from procedures.inference.data import InferenceData
from procedures.inference.digital import Float16
from procedures.inference.executor import ChipExecutor
from procedures.inference.graph import Conv, Dense, Flatten, Graph, Lstm, Relu
from procedures.inference.mapping import map_graph
from procedures.inference.reference import forward_tensors

DAY_S = 86400.0
Drifted = tuple[ChipExecutor, np.ndarray, dict[str, ChannelStatistics]]


def _plain_net() -> Graph:
    """Conv(2→16, k3) ReLU → Flatten (16·30 = 480) → Dense 480→10: no batch norm anywhere;
    the dense layer spans two column tiles (partial sums)."""
    rng = np.random.default_rng(5)
    return Graph(
        input_name="x",
        input_shape=(2, 32),
        output_name="y",
        nodes=(
            Conv("conv", ("x",), "c", weight=rng.normal(0, 0.4, (16, 2, 3)),
                 bias=rng.normal(0, 0.1, 16)),
            Relu("relu", ("c",), "r"),
            Flatten("flat", ("r",), "f"),
            Dense("fc", ("f",), "y", weight=rng.normal(0, 0.06, (10, 480)),
                  bias=rng.normal(0, 0.1, 10)),
        ),
    )  # fmt: skip


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def drifted() -> Iterator[Drifted]:
    """The network deployed (seed 7), AdaBS statistics recorded, then one day of drift."""
    graph = _plain_net()
    x = _inputs(400, 1)
    with Board("mockchip://?seed=7&cores=4") as board:
        mapping = map_graph(graph, cores=range(4))
        executor = ChipExecutor(board, graph, mapping, tensor_ranges(graph, x), Float16())
        executor.use_calibration_data(x)
        for _ in executor.program("tdp"):
            pass
        for _ in executor.calibrate(512):
            pass
        reference = executor.record_channel_statistics([x[i : i + 50] for i in range(0, 400, 50)])
        board.advance_clock(DAY_S)
        yield executor, _inputs(300, 2), reference


def _layer_errors(executor: ChipExecutor, x: np.ndarray) -> dict[str, float]:
    values = executor.forward(x, keep=True)
    reference = forward_tensors(executor.graph, x)
    return {
        name: float(np.linalg.norm(values[t] - reference[t]) / np.linalg.norm(reference[t]))
        for name, t in (("conv", "r"), ("fc", "y"))
    }


def test_adabs_adapts_a_per_channel_affine_without_batch_norm(
    drifted: Drifted,
) -> None:
    executor, x, reference = drifted
    assert set(reference) == {"conv", "fc"}
    assert all(np.all(s.var > 0) for s in reference.values())
    executor.reset_batchnorm()
    executor.compensate("gdc")
    before = _layer_errors(executor, x)
    batches = [x[i : i + 50] for i in range(0, 300, 50)]
    adapted = executor.adapt(batches, reference)
    try:
        assert {name: a["kind"] for name, a in adapted.items()} == {
            "conv": "channel-affine",
            "fc": "channel-affine",
        }
        for name, record in adapted.items():
            plan = executor.plans[name]
            assert record["channels"] == plan.scale.size
            # One day of drift beyond GDC: each channel's gain moves by a few per cent.
            assert 0.003 < record["scale_change_mean"] < 0.2, (name, record)
            assert not np.allclose(plan.scale, plan.mapping.affine_scale)
        after = _layer_errors(executor, x)
        assert after["conv"] < before["conv"] + 0.01  # no worse than GDC on the first layer
    finally:
        executor.reset_batchnorm()
    assert np.array_equal(executor.plans["conv"].scale, executor.plans["conv"].mapping.affine_scale)
    with pytest.raises(LimitError, match="no batch norm"):
        executor.adapt_batchnorm(batches)


def test_recalibration_and_per_row_gdc_beat_gdc_after_a_day(
    drifted: Drifted,
) -> None:
    executor, x, _ = drifted
    executor.reset_batchnorm()
    errors = {}
    for method in ("none", "gdc", "gdc-column"):
        executor.compensate(method)
        errors[method] = _layer_errors(executor, x)
    spent = executor.recalibrate(512, seed=0)
    errors["recal"] = _layer_errors(executor, x)
    assert spent == 512 * len(executor.tiles)
    # Measured on chip seeds 7-11, this test run alone (the module's other test runs MVMs on
    # the same chip first, which moves the noise, so the bounds must hold either way): GDC
    # leaves 0.50-0.52 of the output error (fc) without compensation; recalibration 0.68-0.73
    # and per-row GDC 0.73-0.79 of GDC's error at the conv layer, 0.90-0.94 and 0.94-1.01 of it
    # at the output (its input carries the conv's error). The bound of 0.5 that stood here sat
    # on the measured value and failed whenever this test ran first.
    assert errors["gdc"]["fc"] < 0.6 * errors["none"]["fc"], errors
    # Rows drift apart (their own conductances and ν); one factor per core cannot follow them.
    assert errors["recal"]["conv"] < 0.85 * errors["gdc"]["conv"], errors
    assert errors["gdc-column"]["conv"] < 0.85 * errors["gdc"]["conv"], errors
    assert errors["recal"]["fc"] < errors["gdc"]["fc"], errors
    assert errors["gdc-column"]["fc"] < 1.05 * errors["gdc"]["fc"], errors
    # Compensations start from the calibration-time fit: "none" after recal is "none" again.
    executor.compensate("none")
    again = _layer_errors(executor, x)
    assert abs(again["fc"] - errors["none"]["fc"]) < 0.05 * errors["none"]["fc"]


def test_infer_records_what_each_compensation_did() -> None:
    graph = _plain_net()
    x = _inputs(600, 3)
    y = forward_tensors(graph, x)["y"].argmax(1)
    data = InferenceData("toy", x[:400], x[400:], y[400:], n_classes=10)
    procedure = Infer(
        network=graph,
        data=data,
        cores="0-3",
        drift="1d",
        compensation="gdc,adabs,recal",
        adabs_batches=4,
        calibration_samples=200,
    )
    streams: dict[str, list[np.ndarray]] = {}
    with Board("mockchip://?seed=3&cores=4") as board:
        for record in procedure.run(board):
            if isinstance(record, Data):
                streams.setdefault(record.stream, []).append(record.values)
    results = procedure.results
    adapted = results["adabs"]["1d"]
    assert {name: a["kind"] for name, a in adapted.items()} == {
        "conv": "channel-affine",
        "fc": "channel-affine",
    }
    assert results["recal_core_mvms"] == 512 * len(procedure.cores_written)
    assert [int(c) for c in streams["compensation"]] == [1, 2, 4]
    accuracy = results["accuracy"]
    assert all(accuracy[c]["1d"] > 0.8 for c in ("gdc", "adabs", "recal")), accuracy
    assert len(streams["saturated_fraction"]) == len(procedure.cores_written)


def test_adabs_is_refused_where_nothing_can_be_adapted() -> None:
    rng = np.random.default_rng(0)
    lstm = Lstm(
        "lstm",
        ("x",),
        "y",
        w_input=rng.normal(0, 0.3, (32, 4)),
        w_hidden=rng.normal(0, 0.3, (32, 8)),
        bias=np.zeros(32),
        return_sequences=False,
    )
    graph = Graph(input_name="x", input_shape=(5, 4), output_name="y", nodes=(lstm,))
    x = rng.normal(size=(40, 5, 4)).astype(np.float32)
    data = InferenceData("toy", x, x[:8], np.zeros(8, np.int64))
    with pytest.raises(LimitError, match="adabs: .*LSTM"):
        Infer(
            network=graph, data=data, compensation="gdc,adabs", adabs_batches=2, adabs_batch_size=8
        )
    Infer(network=graph, data=data, compensation="gdc,gdc-column,recal")  # the others are fine
