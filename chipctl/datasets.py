"""Data sets for the inference executor: the built-in digits and MNIST-1D, and the user's own.

The built-in sets are available without any network access:

* ``digits``: scikit-learn's :func:`sklearn.datasets.load_digits` (1,797 handwritten digits as
  8×8 images with 17 grey levels, shipped inside scikit-learn). Normalisation: pixel / 16, so
  ``x`` lies in [0, 1]; images are flattened row-major to 64 features. A fixed random split by
  ``seed`` (default 0) puts round(20 %) = 359 samples in the test set, 1,438 in training: the
  first 359 of ``numpy.random.default_rng(seed).permutation(1797)`` are the test set. This is
  *not* the split most digits models are trained on (below): a model trained on the usual
  split has seen 229 of these 359 test images (64 %) in training.
* ``digits-stratified``: the same images and scaling with the usual split,
  ``sklearn.model_selection.train_test_split(x, y, test_size=0.3, stratify=y,
  random_state=seed)``: 540 test samples, 1,257 training, each class in proportion.
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

The user's own data (:func:`load_npz`) is an ``.npz`` archive written by ``numpy.savez`` with
the arrays ``x`` (samples, ...) and ``y`` (samples,) integer class labels, and optionally
``x_cal`` (calibration samples, same per-sample shape as ``x``). It is checked whole before
anything reaches a board: a file that is not an ``.npz`` archive (a ``.npy`` array, a pickle, a
text file renamed), pickled object arrays (never loaded: unpickling can run code), missing or
unexpected arrays, non-numeric dtypes, NaN or infinite values, labels that are not whole
non-negative numbers, and lengths of ``x`` and ``y`` that differ are each a
:class:`DatasetError` naming the file and the array.
"""

from __future__ import annotations

import hashlib
import os
import random
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from chipctl.errors import ChipctlError

DATASETS = ("digits", "digits-stratified", "mnist1d")
"""Names accepted by :func:`load_dataset`."""

DIGITS_TEST_FRACTION = 0.2
"""Fraction of the 1,797 digits held out for the test set of ``digits``."""
STRATIFIED_TEST_FRACTION = 0.3
"""Fraction held out, per class, for the test set of ``digits-stratified``."""
SPLITS = {
    "digits": "test: 359 of the 1,797 digits, the first of a permutation by seed 0 (80/20); "
    "calibration: the other 1,438",
    "digits-stratified": "test: 540 of the 1,797 digits by train_test_split(test_size=0.3, "
    "stratify=y, random_state=0); calibration: the other 1,257",
    "mnist1d": "test: the package's 1,000 test signals; calibration: its 4,000 training signals",
}
"""How each built-in set is split, as runs report it."""
NPZ_ARRAYS = ("x", "y", "x_cal")
"""The arrays an own-data ``.npz`` file may hold (``x`` and ``y`` required)."""


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
    if name == "digits-stratified":
        return load_digits_stratified(seed=seed)
    if name == "mnist1d":
        return load_mnist1d(cache=cache)
    raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits in scikit-learn's order: x float32 (pixel / 16), y int64."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise DatasetError(
            "the digits data set needs scikit-learn (pip install scikit-learn)"
        ) from exc
    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    return x, np.asarray(bunch.target, dtype=np.int64)


def _digits(name: str, train: np.ndarray, test: np.ndarray) -> Dataset:
    x, y = _digits_arrays()
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        n_classes=10,
        sample_shape=(8, 8),
        normalisation="pixel/16 in [0, 1]",
    )


def load_digits(*, seed: int = 0) -> Dataset:
    """scikit-learn digits, pixels / 16 in [0, 1], 80/20 split by a permutation from ``seed``."""
    n = len(_digits_arrays()[1])
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * DIGITS_TEST_FRACTION)
    return _digits("digits", train=order[n_test:], test=order[:n_test])


def load_digits_stratified(*, seed: int = 0) -> Dataset:
    """scikit-learn digits, pixels / 16, the usual stratified 70/30 split: the rows that
    ``train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)`` returns."""
    from sklearn.model_selection import train_test_split

    _, y = _digits_arrays()
    train, test = train_test_split(
        np.arange(len(y)), test_size=STRATIFIED_TEST_FRACTION, stratify=y, random_state=seed
    )
    return _digits("digits-stratified", train=np.asarray(train), test=np.asarray(test))


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
        # Our own handle: np.load leaves its own open when the zip is damaged.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
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


@dataclass(frozen=True, eq=False)
class OwnData:
    """The arrays of a user's ``.npz`` file, checked (:func:`load_npz`).

    ``x`` float32 (samples, ...), ``y`` int64 (samples,), ``x_cal`` float32 (calibration
    samples, ...) with the per-sample shape of ``x``, or None; ``sha256`` of the file."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_cal: np.ndarray | None
    sha256: str


def _file_kind(head: bytes) -> str | None:
    """What a file that is not an .npz archive is, from its first bytes (None: a zip)."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle, not an .npz archive (pickles are never loaded: they can run code)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, not an .npz archive"
    if not head:
        return "empty"
    return "not an .npz archive (no zip header; is it a text or other file renamed?)"


def _numeric(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    """``array`` as float32, refusing non-numbers and NaN/inf (naming the first bad sample)."""
    if array.dtype.kind not in "fiu":
        raise DatasetError(
            f"{path}: array {key!r} has dtype {array.dtype}; it must hold numbers "
            "(float or integer)"
        )
    if array.ndim < 2 or array.shape[0] == 0:
        hint = " (one feature per sample: save x.reshape(-1, 1))" if array.ndim == 1 else ""
        raise DatasetError(
            f"{path}: array {key!r} has shape {array.shape}; it must be (samples, ...) with at "
            f"least one sample{hint}"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # refused below, by sample
        values = array.astype(np.float32)
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raw_bad = ~np.isfinite(array.astype(np.float64).reshape(len(array), -1)).all(axis=1)
        what = "NaN or infinite values" if raw_bad.any() else "values beyond float32's range"
        raise DatasetError(
            f"{path}: array {key!r} has {what} in {int(bad.sum())} of {len(values)} samples "
            f"(first: sample {int(np.argmax(bad))}); remove or replace them"
        )
    return values


def _labels(path: Path, y: np.ndarray, n_samples: int) -> np.ndarray:
    """``y`` as int64 class labels 0, 1, 2, ...: whole, non-negative numbers, one per sample."""
    if y.ndim == 2 and y.shape[0] == n_samples and y.shape[1] > 1:
        raise DatasetError(
            f"{path}: array 'y' has shape {y.shape}: it must be one class label per sample; "
            "for one-hot rows save y.argmax(axis=1)"
        )
    if y.ndim != 1:
        raise DatasetError(f"{path}: array 'y' has shape {y.shape}; it must be (samples,) labels")
    if len(y) != n_samples:
        raise DatasetError(
            f"{path}: 'x' has {n_samples} samples but 'y' has {len(y)} labels; they must be "
            "equal (one label per sample)"
        )
    if y.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: array 'y' has dtype {y.dtype}; labels must be integers")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            first = int(np.argmin(whole))
            raise DatasetError(
                f"{path}: label y[{first}] = {y[first]:g} is not a whole number; labels are "
                "class numbers 0, 1, 2, ..."
            )
    if y.size and y.min() < 0:
        raise DatasetError(
            f"{path}: label {y.min():g} is negative (y[{int(np.argmin(y))}]); labels are class "
            "numbers 0, 1, 2, ..."
        )
    return y.astype(np.int64)


def load_npz(path: str | Path) -> OwnData:
    """The user's own data from an ``.npz`` file (see the module docstring), checked whole."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise DatasetError(f"{path}: {what}; give an .npz file made by numpy.savez(x=..., y=...)")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            digest.update(head)
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    kind = _file_kind(head)
    if kind is not None:
        raise DatasetError(f"{path} is {kind}; save the data with numpy.savez(FILE, x=..., y=...)")
    try:
        # Our own handle: np.load leaves its own open when the zip is damaged.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            keys = list(npz.files)
            missing = [k for k in ("x", "y") if k not in keys]
            extra = [k for k in keys if k not in NPZ_ARRAYS]
            if missing or extra:
                raise DatasetError(
                    f"{path} holds arrays {keys}; it must hold 'x' and 'y' (and may hold "
                    f"'x_cal'), nothing else"
                    + (f": missing {missing}" if missing else "")
                    + (f"; unexpected {extra}" if extra else "")
                )
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except DatasetError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DatasetError(
                f"{path} holds pickled Python objects (dtype object); they are never loaded "
                "(unpickling can run code): save numeric arrays"
            ) from None
        raise DatasetError(f"{path} is a damaged .npz archive: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is a damaged .npz archive: {exc}") from None
    x = _numeric(path, "x", arrays["x"])
    y = _labels(path, arrays["y"], len(x))
    x_cal = None
    if "x_cal" in arrays:
        x_cal = _numeric(path, "x_cal", arrays["x_cal"])
        if x_cal.shape[1:] != x.shape[1:]:
            raise DatasetError(
                f"{path}: 'x_cal' samples have shape {x_cal.shape[1:]}, 'x' samples "
                f"{x.shape[1:]}; calibration samples must have the test samples' shape"
            )
    return OwnData(path.name, x, y, x_cal, digest.hexdigest())
