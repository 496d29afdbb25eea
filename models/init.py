"""Weight initialisation (eager: shapes are known at construction)."""

from __future__ import annotations

import numpy as np


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: type = np.float32) -> np.ndarray:
    """(fan_in, fan_out) weights from U(−a, a), a = √(6 / (fan_in + fan_out)); for tanh and sigmoid."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_in, fan_out)).astype(dtype)


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: type = np.float32) -> np.ndarray:
    """(fan_in, fan_out) weights from N(0, 2 / fan_in); for ReLU and LeakyReLU."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
