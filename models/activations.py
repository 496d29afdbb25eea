"""Elementwise non-linearities (no parameters); any input shape."""

from __future__ import annotations

import numpy as np

from models import functional as F
from models.module import Module


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (self._out > 0)


class LeakyReLU(Module):
    """x for x > 0, ``slope``·x otherwise."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._scale = np.where(x > 0, 1.0, self.slope).astype(x.dtype)
        return x * self._scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._scale


class Sigmoid(Module):
    """1 / (1 + e^−x), computed stably."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = F.sigmoid(x)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._out * (1.0 - self._out)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = np.tanh(x)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1.0 - self._out * self._out)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}
