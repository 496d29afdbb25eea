"""Optimizers, outside the network: they see ``(params, grads)`` and keep their own named ``slots``.

Hyperparameters (``lr``, ``momentum``, ...) are plain attributes, so changing one mid-training is
an assignment. ``slots`` holds every array of optimizer state (updated in place), keyed
``<slot>.<param name>``; Adam's step count is the 0-d slot ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class SGD:
    """SGD with momentum and L2 weight decay (PyTorch's rule):
    g ← grad + wd·p;  v ← μ·v + g;  p ← p − lr·v.
    """

    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
                 lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.params, self.grads = dict(params), dict(grads)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.slots = {f"velocity.{k}": np.zeros_like(p) for k, p in self.params.items()}
        self._tmp = {k: np.empty_like(p) for k, p in self.params.items()}

    def step(self) -> None:
        """One update of every parameter, in place."""
        for k, p in self.params.items():
            g, v, tmp = self.grads[k], self.slots[f"velocity.{k}"], self._tmp[k]
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=tmp)
                tmp += g
                g = tmp
            v *= self.momentum
            v += g
            np.multiply(v, self.lr, out=tmp)
            p -= tmp


class Adam:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient (PyTorch's ``Adam``)."""

    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.params, self.grads = dict(params), dict(grads)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.slots = {"t": np.zeros((), np.int64)}
        for k, p in self.params.items():
            self.slots[f"m.{k}"] = np.zeros_like(p)
            self.slots[f"v.{k}"] = np.zeros_like(p)

    def step(self) -> None:
        """One update of every parameter, in place."""
        self.slots["t"] += 1
        t = int(self.slots["t"])
        b1, b2 = self.betas
        correction = float(np.sqrt(1.0 - b2**t))
        step_size = self.lr * correction / (1.0 - b1**t)
        eps = self.eps * correction
        for k, p in self.params.items():
            g = self.grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            m, v = self.slots[f"m.{k}"], self.slots[f"v.{k}"]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) + eps)


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale every gradient in place so that their global L2 norm is at most ``max_norm``; return
    the norm before clipping (PyTorch's ``clip_grad_norm_``)."""
    norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm
