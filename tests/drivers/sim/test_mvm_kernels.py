"""The compiled and the numpy MVM kernel: same arithmetic, same statistics; row ranges and
zero-input skipping leave the counts of the rows read bit-identical (issue 16)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from drivers.float16 import (
    float16_on_bits,
    hardware_float16,
    round_float16,
    round_float16_from64,
)
from drivers.ldpu import LdpuCoefficients
from drivers.link.payloads import MvmRequest
from drivers.sim import mvm, mvm_numba
from drivers.sim.adc import AdcBank
from drivers.sim.mvm import CoreOperands, NumpyMvmKernel
from drivers.sim.mvm_choice import KERNEL_ENV, make_kernel
from drivers.sim.mvm_numba import NumbaMvmKernel

KERNELS = (NumpyMvmKernel, NumbaMvmKernel)


def _operands(noise_rel: float, seed: int = 0) -> CoreOperands:
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.0, 8.0, (256, 256, 4)).astype(np.float32)
    var = ((noise_rel * g) ** 2).astype(np.float32)
    return NumpyMvmKernel().prepare(g, var, read_voltage_mv=200.0, one_phase_asymmetry=0.03)


def _run(kernel: Any, op: CoreOperands, x: np.ndarray, mode: int, seed: int, **kw: Any) -> Any:
    adc = AdcBank(rng=np.random.default_rng(1), n_cores=x.shape[0])
    rngs = [np.random.default_rng([seed, k]) for k in range(x.shape[0])]
    return kernel.run([op] * x.shape[0], adc, np.arange(x.shape[0]), x, mode, rngs,
                      window_ns=128.0, **kw)  # fmt: skip


@pytest.mark.parametrize("mode", [1, 4])
@pytest.mark.parametrize("low", [-127, 0])  # 0: no x− products in the compiled four-phase
def test_kernels_agree_exactly_without_noise(mode: int, low: int) -> None:
    x = np.random.default_rng(3).integers(low, 128, (2, 16, 256)).astype(np.int8)
    op = _operands(0.0)
    a = _run(NumpyMvmKernel(), op, x, mode, 5)
    b = _run(NumbaMvmKernel(), op, x, mode, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]


@pytest.mark.parametrize("mode", [1, 4])
def test_kernels_agree_in_mean_and_variance(mode: int) -> None:
    """1500 repeats of one input per core: per-row means within 5 standard errors, pooled
    variances within 6 %."""
    x = np.random.default_rng(4).integers(-40, 41, (2, 1, 256)).astype(np.int8)
    x = np.repeat(x, 1500, axis=1)
    op = _operands(0.05)
    a = _run(NumpyMvmKernel(), op, x, mode, 6)
    b = _run(NumbaMvmKernel(), op, x, mode, 7)
    for counter in (0, 1):
        ca, cb = a[counter].astype(float), b[counter].astype(float)
        va, vb = ca.var(axis=1), cb.var(axis=1)
        se = np.sqrt((va + vb) / x.shape[1]) + 1e-3
        assert np.all(np.abs(ca.mean(axis=1) - cb.mean(axis=1)) < 5 * se + 0.05)
        assert va.mean() > 0.05  # noise is there to compare
        assert abs(vb.mean() / va.mean() - 1.0) < 0.06


def test_compiled_normals_are_standard_normal() -> None:
    z = np.empty(400_000, np.float32)
    mvm_numba._fill_normals(np.uint64(2024), 0, z)
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2 / z.size)
    assert abs(np.mean(z**4) - 3.0) < 0.05
    assert abs(np.mean(z > 2.0) - 0.02275) < 0.002


@pytest.mark.parametrize("kernel_type", KERNELS)
@pytest.mark.parametrize("mode", [1, 4])
def test_row_range_and_zero_skipping_keep_the_rows_read_bit_identical(
    kernel_type: type, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(8).integers(-127, 128, (2, 12, 256)).astype(np.int8)
    x[:, :, 40:] = 0  # a small layer: the rest of the columns padded with zeros
    op = _operands(0.05)
    kernel = kernel_type()
    skipped = _run(kernel, op, x, mode, 9)
    part = _run(kernel, op, x, mode, 9, rows=(3, 70))
    for module in (mvm, mvm_numba):
        monkeypatch.setattr(module, "active_columns", lambda x: None)  # every column computed
    dense = _run(kernel, op, x, mode, 9)
    for counter in (0, 1):
        np.testing.assert_array_equal(skipped[counter], dense[counter])
        np.testing.assert_array_equal(part[counter], dense[counter][:, :, 3:70])


@pytest.mark.parametrize("rows", [None, (3, 13)])  # x− conversions left out; of zeros (few rows)
def test_four_phase_without_negative_inputs_keeps_the_noise_of_the_full_pass(
    rows: tuple[int, int] | None,
) -> None:
    """No input negative: the x− conversions are left out (their count is the ADC's at zero
    current) or converted from zeros. The same samples in a batch that has a negative input
    elsewhere (the full pass, with x− products) get the same noisy counts, bit for bit."""
    rng = np.random.default_rng(21)
    x = rng.integers(0, 128, (2, 12, 256)).astype(np.int8)
    with_negative = np.concatenate([x, rng.integers(-127, 128, (2, 1, 256)).astype(np.int8)], 1)
    assert with_negative[:, 12].min() < 0
    op = _operands(0.05)
    alone = _run(NumbaMvmKernel(), op, x, 4, 22, rows=rows)
    mixed = _run(NumbaMvmKernel(), op, with_negative, 4, 22, rows=rows)
    for counter in (0, 1):
        np.testing.assert_array_equal(alone[counter], mixed[counter][:, :12])


@pytest.mark.parametrize("kernel_type", KERNELS)
@pytest.mark.parametrize("mode", [1, 4])
def test_repeated_input_columns_enter_once_with_the_same_counts(
    kernel_type: type, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 40-column matrix copied 5 times (as the executor replicates a narrow layer): its
    inputs repeat, the GEMMs see 40 columns with summed conductances. Same noise draws; the
    sums differ only in float32 order, so a count moves by at most 1, and rarely."""
    rng = np.random.default_rng(16)
    x = np.zeros((2, 300, 256), np.int8)
    x[:, :, :40] = rng.integers(-127, 128, (2, 300, 40))
    x[:, :, 40:200] = np.tile(x[:, :, :40], 4)
    x[1, :, 7] = 0  # a zero column inside a set of repeats
    x[1, :5, 47] = 3  # almost a repeat: differs in a few samples only
    plan = mvm.active_columns(x[0])
    assert plan is not None and plan.members is not None
    assert plan.take == slice(0, 40)  # the sets' first columns are consecutive: a view
    plan1 = mvm.active_columns(x[1])
    # column 7 left out; its copy 47 stands alone, 87, 127 and 167 remain a set
    assert plan1 is not None and isinstance(plan1.take, np.ndarray)
    assert len(plan1.take) == 41 and 7 not in plan1.take
    op = _operands(0.05)
    merged = _run(kernel_type(), op, x, mode, 17)
    for module in (mvm, mvm_numba):
        monkeypatch.setattr(module, "active_columns", lambda x: None)  # every column computed
    dense = _run(kernel_type(), op, x, mode, 17)
    for counter in (0, 1):
        moved = np.abs(merged[counter].astype(int) - dense[counter].astype(int))
        assert moved.max() <= 1 and np.mean(moved) < 2e-3


@pytest.mark.parametrize("kernel_type", KERNELS)
def test_remembered_sums_follow_the_copies_not_only_their_first_columns(
    kernel_type: type,
) -> None:
    """Copies of columns 0..39 at 40..79, then at 100..139: the same first columns (a slice),
    different operand rows to sum. A kernel that remembered the first batch's sums must not
    reuse them for the second."""
    rng = np.random.default_rng(23)
    first = np.zeros((1, 20, 256), np.int8)
    first[0, :, :40] = rng.integers(0, 128, (20, 40))
    second = first.copy()
    first[0, :, 40:80] = first[0, :, :40]
    second[0, :, 100:140] = second[0, :, :40]
    op = _operands(0.05)
    kernel = kernel_type()
    for _ in range(2):  # asked for twice: the sums are remembered
        _run(kernel, op, first, 4, 24)
    np.testing.assert_array_equal(
        _run(kernel, op, second, 4, 24)[0], _run(kernel_type(), op, second, 4, 24)[0]
    )


def test_compiled_column_sets_are_numpys() -> None:
    """Zero columns, repeats, near-repeats (equal on the probe rows only) and a batch of one."""
    rng = np.random.default_rng(18)
    cases = []
    for batch in (1, 7, 300):
        x = rng.integers(-3, 4, (batch, 256)).astype(np.int8)  # few values: chance repeats
        x[:, 100:140] = x[:, 20:60]
        x[:, 200:] = 0
        x[batch // 2, 130] += 1  # a near-repeat, different in one sample only
        cases.append(x)
    cases.append(np.zeros((5, 256), np.int8))
    cases.append(rng.integers(-127, 128, (64, 256)).astype(np.int8))
    spans = np.zeros((3, 9, 256), np.int8)
    spans[0, :, 40:90] = rng.integers(1, 128, (9, 50))  # distinct columns: a span
    spans[1, 3, 255] = 1  # one column, the last
    spans[2] = rng.integers(1, 128, (9, 256))  # every column, distinct: None
    cases += list(spans)
    pixels = np.zeros((50, 256), np.int8)  # four copies of 64 inputs, some zero in every copy
    pixels[:, :64] = rng.integers(0, 17, (50, 64))
    pixels[:, [0, 7, 31, 63]] = 0
    pixels[:, 64:] = np.tile(pixels[:, :64], 3)
    cases.append(pixels.copy())
    pixels[:, 64 + 7] = 5  # a zero column's copy is not zero
    pixels[:, 128 + 10] = 0  # a copy is zero where its column is not
    cases.append(pixels)
    for x in cases:
        np.testing.assert_array_equal(mvm_numba._column_sets(x), mvm.column_sets(x))
        mine, numpys = mvm_numba.active_columns(x), mvm.active_columns(x)
        assert (mine is None and numpys is None) or mine.key == numpys.key  # type: ignore[union-attr]
        sets = mvm.column_sets(x)
        for c in np.flatnonzero(sets >= 0):  # the definition, checked directly
            assert np.array_equal(x[:, c], x[:, sets[c]])
            assert not any(np.array_equal(x[:, c], x[:, r]) for r in range(sets[c]))


def test_column_sets_stay_exact_when_hashes_collide() -> None:
    """Replica blocks (the executor's layout), shifted blocks and near-repeats, with every
    column given one hash, or hashes in a few classes: the row-order check and the full
    comparisons after it still give numpy's sets."""
    rng = np.random.default_rng(19)
    h = rng.integers(-2, 3, (400, 40)).astype(np.int8)
    x = np.zeros((400, 256), np.int8)
    x[:, :40], x[:, 40:80], x[:, 100:140] = h, h, h  # replicas
    x[:, 150:189] = h[:, 1:]  # a block equal to a shifted one
    x[:, 200:240] = h
    x[123, 210] += 1  # a near-repeat inside a replica block
    x[:, 250] = x[:, 7]
    bits = np.bitwise_or.reduce(x, axis=0).astype(np.int8)
    expected = mvm.column_sets(x)
    for hashes in (np.zeros(256, np.uint32), (np.arange(256) % 3).astype(np.uint32)):
        np.testing.assert_array_equal(mvm_numba._sets_from_hashes(x, hashes, bits), expected)
    np.testing.assert_array_equal(mvm_numba._column_sets(x), expected)


def test_kernel_choice_by_name_environment_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    assert isinstance(make_kernel(), NumbaMvmKernel)
    assert type(make_kernel("numpy")) is NumpyMvmKernel
    monkeypatch.setenv(KERNEL_ENV, "numpy")
    assert type(make_kernel()) is NumpyMvmKernel
    with pytest.raises(ValueError, match="CHIPCTL_MVM_KERNEL"):
        make_kernel("fast")
    with Board("mockchip://?seed=1&cores=2&kernel=numba") as board:
        assert board.mvm(0, np.ones(256, int)).positive.shape == (256,)


def test_mvm_row_range_over_the_link() -> None:
    x = np.random.default_rng(10).integers(-60, 61, (2, 5, 256))
    results = []
    for rows in (None, (7, 100)):
        with Board("mockchip://?seed=3&cores=2") as board:
            raw = board.mvm([0, 1], x, mode=4, rows=rows)
            results.append((raw.positive, raw.negative))
            assert board.mvm([1], x[1:], mode=1, output="ldpu", rows=rows).shape[-1] == (
                256 if rows is None else 93
            )
            with pytest.raises(LimitError, match="MVM rows"):
                board.mvm(0, x[0], rows=(5, 5))
            with pytest.raises(LimitError, match="MVM rows"):
                board.mvm(0, x[0], rows=(0, 257))
    (full_p, full_n), (part_p, part_n) = results
    np.testing.assert_array_equal(full_p[:, :, 7:100], part_p)
    np.testing.assert_array_equal(full_n[:, :, 7:100], part_n)


def test_mvm_request_row_range_on_the_wire() -> None:
    inputs = np.arange(-3, 3, dtype=np.int8).reshape(1, 2, 3)
    plain = MvmRequest(mode=4, output=0, cores=np.array([5], np.uint8), inputs=inputs)
    assert plain.encode()[3] == 0  # flags 0: the layout of before the row range
    ranged = MvmRequest(mode=4, output=0, cores=np.array([5], np.uint8), inputs=inputs, rows=(2, 9))
    wire = ranged.encode()
    assert wire[3] == 1 and len(wire) == len(plain.encode()) + 4
    back = MvmRequest.decode(wire)
    assert back.rows == (2, 9) and back.cols == 3
    np.testing.assert_array_equal(back.inputs, inputs)
    assert MvmRequest.decode(plain.encode()).rows is None


@numba.njit(cache=True)
def _round_on_bits(x: np.ndarray) -> None:
    for j in range(x.size):
        x[j] = float16_on_bits(x[j])


def _float32_rounding_cases() -> np.ndarray:
    """Random bit patterns, ties of every binade, the overflow and subnormal edges, specials."""
    rng = np.random.default_rng(11)
    bits = rng.integers(-(2**31), 2**31, 300_000).astype(np.int32)
    exponents = np.arange(-26, 17, dtype=np.float64)
    ties = np.concatenate([(1.0 + (2 * k + 1) * 2.0**-11) * 2.0**exponents for k in range(8)])
    edges = np.array(
        [65519.99, 65520.0, -65520.0, 65504.0, 65536.0, 2.0**-14, 2.0**-14 - 2.0**-26, 2.0**-25]
    )
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -1e-40])
    chosen = np.concatenate([ties, -ties, edges, specials]).astype(np.float32)
    return np.concatenate([bits.view(np.float32), chosen])


@pytest.mark.parametrize("path", ["target", "bits"])
def test_compiled_float16_rounding_is_numpys(path: str) -> None:
    """Both paths of to_float16: the compile target's (hardware on x86-64 with F16C, which
    this test asserts where the CPU has it) and the integer one."""
    x = _float32_rounding_cases()
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float32)
    if path == "target":
        round_float16(x)
    else:
        _round_on_bits(x)
    same = (expected.view(np.int32) == x.view(np.int32)) | (np.isnan(expected) & np.isnan(x))
    assert same.all(), x[~same][:5]
    features = llvm.get_host_cpu_features().flatten().split(",")
    if path == "target" and platform.machine() == "x86_64" and "+f16c" in features:
        assert hardware_float16(numba.core.registry.cpu_target.target_context)


_GENERIC_TARGET_LDPU = """
import numpy as np, numba.core.registry as registry
from drivers.float16 import hardware_float16
from drivers.ldpu import LdpuCoefficients
from drivers.sim.mvm_numba import apply_ldpu_compiled
assert not hardware_float16(registry.cpu_target.target_context)
rng = np.random.default_rng(1)
for scale in (1e-3, 1.0, 50.0, 3e4):
    arrays = [np.clip(rng.normal(0.0, scale, 256), -6e4, 6e4) for _ in range(6)]
    table = LdpuCoefficients.from_stacked(np.stack(arrays), relu=False)
    p, n = (rng.integers(0, 845, (64, 256)).astype(np.uint16) for _ in range(2))
    assert np.array_equal(apply_ldpu_compiled(table, p, n), table.apply(p, n))
print("ok")
"""


def test_ldpu_chain_on_a_target_without_hardware_float16(tmp_path: Any) -> None:
    """Compiled for a CPU without F16C (numba's generic target, its own cache), the chain
    takes the integer path, where emitting the conversion would crash the process."""
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _GENERIC_TARGET_LDPU], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_compiled_float16_rounding_of_doubles_is_numpys() -> None:
    """Rounded once from the double, as numpy does (via float32 would differ at ties)."""
    rng = np.random.default_rng(15)
    random_bits = rng.integers(-(2**63), 2**63 - 1, 300_000, dtype=np.int64).view(np.float64)
    ties = (np.arange(-70_000, 70_000) + 0.5) * 1.0  # ties at the integers' grid and above 2048
    quanta = np.arange(-5000, 5000) * 2.0**-25  # subnormal ties
    near_float32_ties = np.float32(1.0 + 2.0**-11) + np.arange(-3, 4) * 2.0**-40  # 1 + half a step
    edges = np.array([65519.99, 65520.0, -65520.0, 65504.0, 2.0**-14, 2.0**-14 - 2.0**-26])
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e-300])
    normals = [rng.normal(0, scale, 50_000) for scale in (1.0, 1e-5, 7e4)]
    x = np.concatenate([random_bits, *normals, ties, quanta, near_float32_ties, edges, specials])
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(np.float16).astype(np.float64)
    out = np.empty_like(x)
    round_float16_from64(x, out)
    same = (expected.view(np.int64) == out.view(np.int64)) | (np.isnan(expected) & np.isnan(out))
    assert same.all(), x[~same][:5]


@pytest.mark.parametrize("scale", [1e-3, 1.0, 50.0, 3e4])  # 50 and 3e4 overflow float16
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rows", [200, 10, 700])  # vector body and remainder of every length
def test_compiled_ldpu_chain_is_the_numpy_one(scale: float, relu: bool, rows: int) -> None:
    rng = np.random.default_rng(12)
    arrays = [np.clip(rng.normal(0.0, scale, rows), -6e4, 6e4) for _ in range(6)]
    for a in arrays[:4]:
        a[: rows // 4] = 0.0  # inactive rows
    table = LdpuCoefficients.from_stacked(np.stack(arrays), relu=relu)
    positive = rng.integers(0, 845, (64, rows)).astype(np.uint16)
    negative = rng.integers(0, 845, (64, rows)).astype(np.uint16)
    expected = table.apply(positive, negative)
    np.testing.assert_array_equal(NumbaMvmKernel().ldpu(table, positive, negative), expected)
    np.testing.assert_array_equal(NumpyMvmKernel().ldpu(table, positive, negative), expected)


@pytest.mark.parametrize("mode", [1, 4])
def test_compiled_kernel_does_not_depend_on_the_thread_split(mode: int) -> None:
    x = np.random.default_rng(13).integers(-127, 128, (3, 300, 256)).astype(np.int8)
    op = _operands(0.05)
    one = _run(NumbaMvmKernel(threads=1), op, x, mode, 14)
    three = _run(NumbaMvmKernel(threads=3), op, x, mode, 14)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", [1, 4])
def test_run_ldpu_is_run_then_ldpu(kernel: type, mode: int) -> None:
    """The compiled kernel applies the LDPU inside its worker jobs, block by block (here a
    batch split over two threads and a row range): the int8 outputs and the saturations are
    those of ``run`` followed by ``ldpu`` for each core."""
    rng = np.random.default_rng(15)
    x = rng.integers(-127, 128, (2, 300, 256)).astype(np.int8)
    x[1, :, 100:] = 0
    op, rows = _operands(0.05), (40, 200)
    tables = [
        LdpuCoefficients.from_stacked(rng.normal(0.0, s, (6, 160)), relu=relu)
        for s, relu in ((0.05, False), (0.2, True))
    ]
    pos, neg, n_sat = _run(kernel(threads=2), op, x, mode, 16, rows=rows)
    adc = AdcBank(rng=np.random.default_rng(1), n_cores=2)
    rngs = [np.random.default_rng([16, k]) for k in range(2)]
    out, fused_sat = kernel(threads=2).run_ldpu(
        [op] * 2, adc, np.arange(2), x, mode, rngs, tables, window_ns=128.0, rows=rows
    )
    assert out.dtype == np.int8 and out.shape == (2, 300, 160)
    for k in range(2):
        np.testing.assert_array_equal(out[k], tables[k].apply(pos[k], neg[k]))
    assert fused_sat == n_sat and len(np.unique(out)) > 5
