"""Offline data sets: shapes, normalisation, fixed splits, the MNIST-1D cache."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from chipctl import datasets
from chipctl.datasets import DatasetError, load_dataset


def test_digits_shapes_scaling_and_fixed_split() -> None:
    d = load_dataset("digits", seed=0)
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.x_train.dtype == np.float32 and d.y_test.dtype == np.int64
    assert d.sample_shape == (8, 8)
    assert d.x_train.min() >= 0.0 and d.x_train.max() == 1.0
    assert set(np.unique(d.y_test)) == set(range(10))
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(d.x_test, again.x_test)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(d.y_test, other.y_test)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="cifar"):
        load_dataset("cifar")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHIPCTL_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_mnist1d_generated_locally_with_defaults_and_cached(cache: Path) -> None:
    np.random.seed(123)  # noqa: NPY002 - the package uses the legacy global generator
    random.seed(5)
    expected_np, expected_py = np.random.random(), random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(5)
    d = load_dataset("mnist1d")
    # loading does not disturb the caller's global generators
    assert np.random.random() == expected_np  # noqa: NPY002
    assert random.random() == expected_py
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == np.float32
    whole = np.concatenate([d.x_train, d.x_test])
    assert abs(float(whole.mean())) < 1e-3 and abs(float(whole.std()) - 1.0) < 1e-3
    assert np.bincount(d.y_test, minlength=10).min() > 80
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1
    cached = load_dataset("mnist1d")
    np.testing.assert_array_equal(cached.x_test, d.x_test)
    np.testing.assert_array_equal(cached.y_train, d.y_train)


def test_corrupt_cache_is_regenerated(cache: Path) -> None:
    reference = datasets.load_mnist1d(cache=False)
    path = cache / f"mnist1d-{datasets._mnist1d_version()}-defaults.npz"
    path.write_bytes(b"not an npz file")
    d = datasets.load_mnist1d()
    np.testing.assert_array_equal(d.x_train, reference.x_train)
    with np.load(path) as npz:  # rewritten with the good data
        assert npz["x"].shape == (4000, 40)
