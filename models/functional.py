"""The math of the modules and losses as pure functions of arrays (no cached state).

Shapes: ``N`` samples, ``D`` input features, ``H`` output features, ``K`` classes.
"""

from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x`` (N, D) @ ``W`` (D, H) + ``b`` (H,) -> (N, H)."""
    out = x @ W
    out += b
    return out


def linear_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, dW: np.ndarray,
                    db: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
    """Write dL/dW (D, H) into ``dW`` and dL/db (H,) into ``db``; return dL/dx (N, D) or None."""
    np.matmul(x.T, dout, out=dW)
    np.add.reduce(dout, axis=0, out=db)
    return dout @ W.T if input_grad else None


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalise ``x`` (N, D) by its batch statistics; return (out, x_hat, inv_std, batch var)."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return x_hat * gamma + beta, x_hat, inv_std, var


def batchnorm_backward(dout: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                       dgamma: np.ndarray, dbeta: np.ndarray, batch_stats: bool) -> np.ndarray:
    """Write dL/dgamma, dL/dbeta (D,) in place; return dL/dx (N, D), through the batch statistics
    when they normalised (``batch_stats``), else through fixed (running) statistics."""
    np.sum(dout * x_hat, axis=0, out=dgamma)
    np.sum(dout, axis=0, out=dbeta)
    dx_hat = dout * gamma
    if not batch_stats:
        return dx_hat * inv_std
    return inv_std * (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(``logits`` (N, K)) against labels ``y`` (N,) and its gradient.

    Stable for any logits (shifted by the row maximum). Returns (loss, dL/dlogits (N, K)).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    probs = np.exp(shifted)
    sums = np.add.reduce(probs, axis=1, keepdims=True)
    loss = float(np.add.reduce(np.log(sums), axis=None) - np.add.reduce(shifted[rows, y])) / n
    probs /= sums * n
    probs[rows, y] -= 1.0 / n
    return loss, probs


def cross_entropy_and_accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``logits`` (N, K) against ``y`` (N,), without a gradient."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    loss = float(np.mean(log_z - shifted[np.arange(len(y)), y], dtype=np.float64))
    accuracy = float(np.mean(logits.argmax(axis=1) == y))
    return loss, accuracy


def squared_error(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over samples of ½‖pred − target‖² for ``pred``, ``target`` (N, H); returns (loss, dL/dpred)."""
    diff = pred - target
    n = pred.shape[0]
    return 0.5 * float(np.sum(diff * diff)) / n, diff / n


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax of each row of ``logits`` (N, K), stable for any logits."""
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    return shifted - np.log(np.add.reduce(np.exp(shifted), axis=1, keepdims=True))


def entropy(log_probs: np.ndarray) -> np.ndarray:
    """The entropy (N,) of each row of ``log_probs`` (N, K), a distribution's logarithms."""
    return -np.add.reduce(np.exp(log_probs) * log_probs, axis=1)


def policy_gradient(logits: np.ndarray, actions: np.ndarray, advantages: np.ndarray,
                    entropy_coef: float) -> tuple[float, float, np.ndarray]:
    """The actor's loss for a softmax policy: the mean over samples of −A·log π(a|s) − c·H(π(·|s)).

    ``logits`` (N, K), ``actions`` (N,) taken, ``advantages`` A (N,) (constants: no gradient flows
    into them), ``entropy_coef`` c. Returns (loss, mean entropy, dL/dlogits (N, K)), where
    d(−A·log π_a)/dz = A·(π − onehot(a)) and d(−c·H)/dz = c·π⊙(log π + H).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    log_probs = log_softmax(logits)
    probs = np.exp(log_probs)
    h = -np.add.reduce(probs * log_probs, axis=1)
    loss = -(float(np.dot(advantages, log_probs[rows, actions])) + entropy_coef * float(np.add.reduce(h))) / n
    dlogits = probs * (advantages[:, None] + entropy_coef * (log_probs + h[:, None]))
    dlogits[rows, actions] -= advantages
    dlogits /= n
    return loss, float(np.mean(h, dtype=np.float64)), dlogits
