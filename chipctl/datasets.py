"""Real, offline data sets for the inference executor: scikit-learn digits and MNIST-1D.

Both are available without any network access:

* ``digits``: scikit-learn's :func:`sklearn.datasets.load_digits` (1,797 handwritten digits as
  8×8 images with 17 grey levels, shipped inside scikit-learn). Normalisation: pixel / 16, so
  ``x`` lies in [0, 1]; images are flattened row-major to 64 features. A fixed random split by
  ``seed`` (default 0) puts round(20 %) = 359 samples in the test set, 1,438 in training.
* ``mnist1d``: MNIST-1D (Greydanus & Steinbach 2024, package ``mnist1d``), *generated locally* by
  ``mnist1d.data.make_dataset()`` with the package's default arguments (5,000 signals of length
  40, seed 42, 4,000 train / 1,000 test). The package's download path is never used.
  Normalisation: the package's own, i.e. the whole data set shifted to zero mean and scaled to
  unit standard deviation; we keep that unchanged.

Generating MNIST-1D takes about 0.9 s plus about 0.9 s to import the package (it pulls in
matplotlib and scipy) on the development machine, so the arrays are cached as ``.npz`` under the
user cache directory (``$CHIPCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/chipctl``, else
``~/.cache/chipctl``), keyed by the package version. A cache that cannot be read or written is
ignored and the data are regenerated. ``make_dataset`` reseeds numpy's and Python's *global*
random generators; we save and restore both, so loading the data has no side effect on callers.

All arrays are returned as float32 (``x``) and int64 (``y``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from chipctl.errors import ChipctlError

DATASETS = ("digits", "mnist1d")
"""Names accepted by :func:`load_dataset`."""

DIGITS_TEST_FRACTION = 0.2
"""Fraction of the 1,797 digits held out for the test set."""


class DatasetError(ChipctlError, ValueError):
    """An unknown data set name, a missing package or unusable data."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set with a fixed train/test split.

    ``x_*`` are float32 arrays (samples, features) and ``y_*`` int64 class labels.
    ``sample_shape`` is the natural shape of one sample (``(8, 8)`` for digits, ``(40,)`` for
    MNIST-1D); the rows of ``x_*`` are those samples flattened row-major.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    sample_shape: tuple[int, ...]
    normalisation: str

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x = getattr(self, f"x_{part}")
            y = getattr(self, f"y_{part}")
            if x.dtype != np.float32 or x.ndim != 2:
                raise DatasetError(f"{self.name}: x_{part} must be 2-D float32, got {x.dtype}")
            if y.shape != (x.shape[0],) or y.dtype != np.int64:
                raise DatasetError(f"{self.name}: y_{part} must be int64 of length {x.shape[0]}")
            if not np.all(np.isfinite(x)):
                raise DatasetError(f"{self.name}: x_{part} contains NaN or infinite values")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise DatasetError(f"{self.name}: y_{part} outside 0..{self.n_classes - 1}")
        if int(np.prod(self.sample_shape)) != self.x_train.shape[1]:
            raise DatasetError(f"{self.name}: sample_shape {self.sample_shape} != features")


def load_dataset(name: str, *, seed: int = 0, cache: bool = True) -> Dataset:
    """Load ``"digits"`` or ``"mnist1d"`` (see the module docstring for splits and scaling).

    Args:
        name: data set name, one of :data:`DATASETS`.
        seed: split seed for ``digits`` (MNIST-1D has the package's own fixed split).
        cache: use the on-disk cache for MNIST-1D.
    """
    if name == "digits":
        return load_digits(seed=seed)
    if name == "mnist1d":
        return load_mnist1d(cache=cache)
    raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def load_digits(*, seed: int = 0) -> Dataset:
    """scikit-learn digits, pixels / 16 in [0, 1], 80/20 split by a permutation from ``seed``."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise DatasetError(
            "the digits data set needs scikit-learn (pip install scikit-learn)"
        ) from exc
    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * DIGITS_TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return Dataset(
        name="digits",
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        n_classes=10,
        sample_shape=(8, 8),
        normalisation="pixel/16 in [0, 1]",
    )


def cache_dir() -> Path:
    """The user cache directory for generated data (see the module docstring)."""
    explicit = os.environ.get("CHIPCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "chipctl"


def _mnist1d_version() -> str:
    try:
        return version("mnist1d")
    except PackageNotFoundError as exc:
        raise DatasetError("the mnist1d data set needs the mnist1d package") from exc


def generate_mnist1d() -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset()`` with its defaults, without touching global RNG state.

    Returns ``x``, ``y``, ``x_test``, ``y_test`` as produced by the package (float64/int64).
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DatasetError("the mnist1d data set needs the mnist1d package") from exc
    # mnist1d seeds the legacy global generators; save and restore them around the call.
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in ("x", "y", "x_test", "y_test")}
    except (OSError, KeyError, ValueError):
        return None
    if arrays["x"].shape != (4000, 40) or arrays["x_test"].shape != (1000, 40):
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"]
        )
        os.replace(tmp, path)
    except OSError:
        return


def load_mnist1d(*, cache: bool = True) -> Dataset:
    """MNIST-1D from ``make_dataset()`` defaults: 4,000 train / 1,000 test signals of length 40."""
    path = cache_dir() / f"mnist1d-{_mnist1d_version()}-defaults.npz"
    arrays = _read_cache(path) if cache else None
    if arrays is None:
        arrays = generate_mnist1d()
        if cache:
            _write_cache(path, arrays)
    return Dataset(
        name="mnist1d",
        x_train=arrays["x"].astype(np.float32),
        y_train=arrays["y"].astype(np.int64),
        x_test=arrays["x_test"].astype(np.float32),
        y_test=arrays["y_test"].astype(np.int64),
        n_classes=10,
        sample_shape=(40,),
        normalisation="zero mean, unit standard deviation over the whole set (package default)",
    )
