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


def test_digits_stratified_is_the_usual_split_and_differs_from_digits() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_dataset("digits-stratified")
    assert d.x_train.shape == (1257, 64) and d.x_test.shape == (540, 64)
    bunch = load_digits()
    _, x_test, _, y_test = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=0.3, stratify=bunch.target, random_state=0
    )
    np.testing.assert_array_equal(d.x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(d.y_test, y_test)
    assert np.bincount(d.y_test).min() >= 52  # every class in proportion (174-183 each)
    # The old 80/20 split's test images: 229 of 359 are training images of the usual split.
    seen = {row.tobytes() for row in d.x_train}
    old = load_dataset("digits")
    assert sum(row.tobytes() in seen for row in old.x_test) >= 229


def test_own_npz_arrays_are_checked(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "ok.npz", x=x, y=np.array([0.0, 1.0, 2.0, 1.0]))
    own = datasets.load_npz(tmp_path / "ok.npz")
    assert own.x.dtype == np.float32 and own.y.dtype == np.int64 and own.x_cal is None
    assert own.y.tolist() == [0, 1, 2, 1] and len(own.sha256) == 64
    np.savez(tmp_path / "big.npz", x=x * 1e300, y=np.zeros(4, int))
    with pytest.raises(DatasetError, match="beyond float32's range in 4 of 4"):
        datasets.load_npz(tmp_path / "big.npz")
    np.savez(tmp_path / "flat.npz", x=np.zeros(4), y=np.zeros(4, int))
    with pytest.raises(DatasetError, match=r"shape \(4,\).*reshape\(-1, 1\)"):
        datasets.load_npz(tmp_path / "flat.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.npz is empty"):
        datasets.load_npz(tmp_path / "empty.npz")
    (tmp_path / "broken.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:100])
    with pytest.raises(DatasetError, match="broken.npz is a damaged .npz archive"):
        datasets.load_npz(tmp_path / "broken.npz")
    import pickle

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"x": x}))
    with pytest.raises(DatasetError, match="a Python pickle"):
        datasets.load_npz(tmp_path / "pickle.npz")
