"""A network as a sequence of modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.module import Module


class Sequential(Module):
    """Modules applied in order. ``params``, ``grads`` and ``buffers`` are the children's own
    arrays under prefixed names (``0.W``, ``0.b``, ``2.running_mean``, ...); nested containers
    nest the prefixes (``1.0.W``).
    """

    def __init__(self, modules: Sequence[Module]) -> None:
        super().__init__()
        self.modules = list(modules)
        for i, m in enumerate(self.modules):
            for name in ("params", "grads", "buffers"):
                getattr(self, name).update({f"{i}.{k}": v for k, v in getattr(m, name).items()})

    def forward(self, x: np.ndarray) -> np.ndarray:
        for m in self.modules:
            x = m.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        for m in reversed(self.modules):
            dout = m.backward(dout)
        return dout

    def set_training(self, training: bool) -> None:
        self.training = training
        for m in self.modules:
            m.set_training(training)
