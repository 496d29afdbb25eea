"""Layers with parameters or randomness: Linear, Dropout, BatchNorm. Shapes: (N, D) in, (N, H) out."""

from __future__ import annotations

import numpy as np

from models import functional as F
from models.init import glorot_uniform, he_normal
from models.module import Module

INITS = {"he": he_normal, "glorot": glorot_uniform}


class Linear(Module):
    """y = x W + b with ``W`` (D, H), ``b`` (H,), initialised eagerly ("he" or "glorot"; b = 0).

    ``input_grad=False`` (a first layer, whose input is data) skips dL/dx: ``backward`` returns None.
    """

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator, *, init: str = "he",
                 dtype: type = np.float32, input_grad: bool = True) -> None:
        super().__init__()
        self.params = {"W": INITS[init](rng, d_in, d_out, dtype), "b": np.zeros(d_out, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.input_grad = input_grad
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return F.linear_forward(x, self.params["W"], self.params["b"])

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        return F.linear_backward(dout, self._x, self.params["W"], self.grads["W"], self.grads["b"],
                                 self.input_grad)


class Dropout(Module):
    """Inverted dropout: in training, zero each unit with probability ``p`` and scale the rest by
    1/(1−p); identity in evaluation (and when ``p`` is 0, drawing no random numbers).

    ``p`` is a plain attribute (a hyperparameter); ``rng`` belongs to the trainable's state.
    """

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        super().__init__()
        self.p = p
        self.rng = rng
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.p
        self._mask = (self.rng.random(x.shape, dtype=np.float32) < keep) * x.dtype.type(1.0 / keep)
        return x * self._mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self._mask is None else dout * self._mask


class BatchNorm(Module):
    """Batch normalisation over the sample axis of (N, D) inputs, with ``gamma``, ``beta`` (D,).

    Training: normalise by the batch's statistics and update the running ones (buffers
    ``running_mean``, ``running_var``) with ``momentum``. Evaluation: normalise by the running ones.
    """

    def __init__(self, dim: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype: type = np.float32) -> None:
        super().__init__()
        self.params = {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(dim, dtype), "running_var": np.ones(dim, dtype)}
        self.momentum, self.eps = momentum, eps
        self._cache: tuple[np.ndarray, np.ndarray, bool] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not self.training:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            x_hat = (x - self.buffers["running_mean"]) * inv_std
            self._cache = (x_hat, inv_std, False)
            return x_hat * gamma + beta
        out, x_hat, inv_std, var = F.batchnorm_forward(x, gamma, beta, self.eps)
        self._cache = (x_hat, inv_std, True)
        m, n = self.momentum, x.shape[0]
        self.buffers["running_mean"] *= 1.0 - m
        self.buffers["running_mean"] += m * x.mean(axis=0)
        self.buffers["running_var"] *= 1.0 - m
        self.buffers["running_var"] += m * var * (n / max(n - 1, 1))
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_hat, inv_std, batch_stats = self._cache
        return F.batchnorm_backward(dout, x_hat, inv_std, self.params["gamma"],
                                    self.grads["gamma"], self.grads["beta"], batch_stats)
