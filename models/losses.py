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


class PolicyGradientLoss:
    """The actor's loss of a softmax policy: mean of −A·log π(a|s) − ``entropy_coef``·H(π(·|s)) over
    logits (N, K), the actions taken (N,) and their advantages (N,). ``entropy``: the last mean H."""

    def __init__(self, entropy_coef: float = 0.0) -> None:
        self.entropy_coef = entropy_coef
        self.entropy = 0.0

    def forward(self, logits: np.ndarray, actions: np.ndarray, advantages: np.ndarray) -> float:
        loss, self.entropy, self._dlogits = F.policy_gradient(logits, actions, advantages, self.entropy_coef)
        return loss

    def backward(self) -> np.ndarray:
        return self._dlogits


class ActorCriticLoss:
    """The A2C loss of a network whose output (N, K + 1) is K policy logits and a value: the actor's
    ``PolicyGradientLoss`` plus ``value_coef`` · ½(V − R)², both means over the samples, for the
    actions taken (N,), their advantages (N,) and the returns R (N,) the value is fitted to."""

    def __init__(self, entropy_coef: float = 0.0, value_coef: float = 0.5) -> None:
        self.policy = PolicyGradientLoss(entropy_coef)
        self.value_coef = value_coef
        self.value_loss = 0.0

    def forward(self, out: np.ndarray, actions: np.ndarray, advantages: np.ndarray, returns: np.ndarray) -> float:
        k = out.shape[1] - 1
        policy_loss = self.policy.forward(out[:, :k], actions, advantages)
        self.value_loss, self._dvalue = F.squared_error(out[:, k:], returns[:, None])
        return policy_loss + self.value_coef * self.value_loss

    def backward(self) -> np.ndarray:
        return np.concatenate([self.policy.backward(), self.value_coef * self._dvalue], axis=1)
