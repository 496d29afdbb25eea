"""The module contract every layer, activation and container follows.

A module owns ``params`` and ``grads`` (same keys, same shapes), non-trained ``buffers`` (e.g.
BatchNorm's running statistics) and a ``training`` flag. ``forward(x)`` caches what ``backward``
needs; ``backward(dout)`` fills ``grads`` and returns dL/dx.

Invariant: the arrays in ``params``, ``grads`` and ``buffers`` are created once, eagerly, and are
only ever updated IN PLACE, never rebound. Containers and optimizers hold references to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Module(ABC):
    """Base of every module: forward, backward, parameters and their gradients, mode."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True

    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Output for input ``x``; caches what ``backward`` needs."""

    @abstractmethod
    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Given dL/d(output), fill ``grads`` in place and return dL/dx."""

    def set_training(self, training: bool) -> None:
        """Training mode (True) or evaluation mode (False)."""
        self.training = training
