"""Modules side by side on one input: the heads of a network, or whole networks (actor and critic)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.module import Module


class Branches(Module):
    """Every branch applied to the same input (N, D); their outputs (N, H_i) concatenated along
    the feature axis into (N, Σ H_i). ``backward`` splits dL/d(output) by the branches' widths and
    sums their dL/dx. ``params``, ``grads`` and ``buffers`` are the branches' own arrays under
    prefixed names (``0.W``, ``1.0.b``), as in ``Sequential``.

    When a branch skips dL/dx (a first ``Linear`` with ``input_grad=False``), so does ``backward``:
    it returns None.
    """

    def __init__(self, branches: Sequence[Module]) -> None:
        super().__init__()
        self.branches = list(branches)
        for i, m in enumerate(self.branches):
            for name in ("params", "grads", "buffers"):
                getattr(self, name).update({f"{i}.{k}": v for k, v in getattr(m, name).items()})
        self._splits: list[int] = []

    def forward(self, x: np.ndarray) -> np.ndarray:
        outs = [m.forward(x) for m in self.branches]
        self._splits = np.cumsum([o.shape[1] for o in outs[:-1]]).tolist()
        return np.concatenate(outs, axis=1)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        dxs = [m.backward(np.ascontiguousarray(d)) for m, d in zip(self.branches, np.split(dout, self._splits, axis=1))]
        if any(d is None for d in dxs):
            return None
        dx = dxs[0]
        for more in dxs[1:]:
            dx = dx + more
        return dx

    def set_training(self, training: bool) -> None:
        self.training = training
        for m in self.branches:
            m.set_training(training)
