"""Data sets for the built-in classifier, split train/validation/test 60/20/20 by a seed and
standardised with the training split's statistics.

Built-ins: ``digits`` (scikit-learn's bundled 8×8 digits, 1,797 samples, no download), and the
classic synthetic sets ``xor``, ``quadrants``, ``spirals`` and ``checkerboard`` (generated from the seed). Anything
else that ends in ``.npz`` (or names a path) is a user's file holding ``X`` (samples × features)
and ``y`` (integer labels).
"""

from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from models.errors import ConfigError

FRACTIONS = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class Dataset:
    """Standardised splits: ``X_*`` (N, D) in ``dtype``, ``y_*`` (N,) int64 in [0, n_classes)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        """``D``: the width of every ``X_*``."""
        return self.X_train.shape[1]


def split(X: np.ndarray, y: np.ndarray, seed: int, dtype: type = np.float32) -> Dataset:
    """Shuffle by ``seed``, cut 60/20/20, standardise every split with the training mean and std
    (constant features are only centred); labels are mapped to 0..K−1 in sorted order."""
    classes, y = np.unique(y, return_inverse=True)
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(FRACTIONS[0] * n)), int(round(FRACTIONS[1] * n))
    parts = np.split(order, [n_train, n_train + n_val])
    X = np.asarray(X, dtype=np.float64)
    mean = X[parts[0]].mean(axis=0)
    std = X[parts[0]].std(axis=0)
    std[std == 0] = 1.0
    Xs = ((X - mean) / std).astype(dtype)
    (a, b, c) = ((Xs[p], y[p].astype(np.int64)) for p in parts)
    return Dataset(*a, *b, *c, n_classes=len(classes))


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: X (1797, 64), y (1797,) in 0..9 (read once per process, read-only)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    for a in (data.data, data.target):
        a.setflags(write=False)
    return data.data, data.target


def xor(rng: np.random.Generator, n: int = 400, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs at (±1, ±1); label 1 where exactly one coordinate is positive."""
    corners = rng.integers(0, 2, size=(n, 2))
    X = (2.0 * corners - 1.0) + noise * rng.standard_normal((n, 2))
    return X, corners[:, 0] ^ corners[:, 1]


def quadrants(rng: np.random.Generator, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    """Points uniform on [−1, 1]²; the label (0..3) is the quadrant."""
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    return X, 2 * (X[:, 1] < 0) + (X[:, 0] < 0)


def spirals(rng: np.random.Generator, n: int = 600, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals of 1.5 turns; the label (0, 1) is the spiral."""
    y = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi
    r = t / (3.0 * np.pi)
    angle = t + np.pi * y
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) + noise * rng.standard_normal((n, 2))
    return X, y


def checkerboard(rng: np.random.Generator, n: int = 1200, cells: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Points uniform on [−1, 1]² under a ``cells`` × ``cells`` checkerboard; the label (0, 1) is the
    square's colour. Every square needs boundaries of its own, so a small net learns it slowly."""
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    square = np.minimum(((X + 1.0) / 2.0 * cells).astype(int), cells - 1)
    return X, (square[:, 0] + square[:, 1]) % 2


def load_npz(path: str, field: str = "trainable.dataset") -> tuple[np.ndarray, np.ndarray]:
    """``X`` (N, D) finite numbers and ``y`` (N,) integers from a user's ``.npz``; ConfigError otherwise."""
    where = f"{field}: {path}"
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{where}: not a readable .npz file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"{where}: not an .npz archive (holds a single array)")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            raise ConfigError(f"{where}: missing array {', '.join(map(repr, missing))} "
                              f"(has {', '.join(archive.files) or 'none'})")
        try:
            X, y = archive["X"], archive["y"]
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot read arrays ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise ConfigError(f"{where}: X must be a 2-D numeric array (samples × features), "
                          f"got shape {X.shape} dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise ConfigError(f"{where}: X holds NaN or infinite values")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ConfigError(f"{where}: y must be a 1-D array of integer labels, got shape {y.shape} dtype {y.dtype}")
    if len(X) != len(y):
        raise ConfigError(f"{where}: X has {len(X)} samples but y has {len(y)}")
    if len(y) < 5:
        raise ConfigError(f"{where}: needs at least 5 samples for a 60/20/20 split, got {len(y)}")
    return X, y


SYNTHETIC = {"xor": xor, "quadrants": quadrants, "spirals": spirals, "checkerboard": checkerboard}
BUILTIN = ("digits", *SYNTHETIC)


def load_dataset(name: str, seed: int = 0, dtype: type = np.float32) -> Dataset:
    """The data set ``name`` (a built-in or a path to ``.npz``) generated and split by ``seed``.

    A built-in's splits are made once per process and shared, read-only, by every caller (each
    member of a search builds its trainable from the same split)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"trainable.dataset: must be a data set name or a path to .npz, got {name!r}")
    if name in BUILTIN:
        return _builtin(name, seed, np.dtype(dtype))
    if name.endswith(".npz") or os.sep in name:
        return split(*load_npz(name), seed, dtype)
    raise ConfigError(f"trainable.dataset: unknown data set {name!r}; use one of "
                      f"{', '.join(BUILTIN)} or a path to a .npz file")


@functools.lru_cache(maxsize=16)
def _builtin(name: str, seed: int, dtype: np.dtype) -> Dataset:
    X, y = digits() if name == "digits" else SYNTHETIC[name](np.random.default_rng(seed))
    data = split(X, y, seed, dtype.type)
    for array in (data.X_train, data.y_train, data.X_val, data.y_val, data.X_test, data.y_test):
        array.setflags(write=False)
    return data
