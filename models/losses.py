"""Losses: ``forward(pred, target) -> float`` (mean over samples) and ``backward() -> dL/dpred``."""

from __future__ import annotations

import numpy as np

from models import functional as F


class SoftmaxCrossEntropy:
    """Fused, numerically stable softmax + cross-entropy of logits (N, K) against labels (N,)."""

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        loss, self._dlogits = F.softmax_cross_entropy(logits, y)
        return loss

    def backward(self) -> np.ndarray:
        return self._dlogits


class SquaredError:
    """Mean over samples of ½‖pred − target‖² for pred, target (N, H)."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        loss, self._dpred = F.squared_error(pred, target)
        return loss

    def backward(self) -> np.ndarray:
        return self._dpred
