"""The noisy quadratic model (Zhang et al. 2019): a problem where a learning-rate schedule beats
every constant learning rate.

The loss is L(θ) = ½ Σᵢ hᵢ θᵢ² with curvatures hᵢ = 1/i (i = 1..dim), from θ = 1. A step of SGD
sees the gradient h⊙θ plus noise of variance ``noise``·hᵢ per coordinate (gradient noise grows
with curvature, as a minibatch's does). A large learning rate shrinks the flat directions quickly
but leaves a noise floor proportional to itself; a small one has a low floor but never reaches it
within the budget. Decaying the rate gets both: with the default settings and 2,000 steps, the best
exponential decay ends about 5 times lower than the best constant (expected losses, computed exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models import checks
from models.optim import SGD
from models.state import check_state, rng_from_array, rng_to_array

HPARAM_DEFAULTS = {"lr": 0.1, "momentum": 0.0}
HPARAM_BOUNDS = {"lr": {"lo": 0.0, "lo_open": True}, "momentum": {"lo": 0.0, "hi": 1.0, "hi_open": True}}


class NoisyQuadratic:
    """A Trainable: SGD with momentum (``models.SGD``) on the noisy quadratic model.

    Settings: ``dim`` (default 100), ``noise`` (gradient noise scale, default 0.01).
    Hyperparameters: ``lr`` (default 0.1; above 2 the stiffest direction diverges), ``momentum``
    (default 0). The seed decides the gradient noise. ``evaluate`` gives the exact loss (no data,
    so no held-out split and no ``test``); a diverged run reports ``inf``.
    """

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, dim: int = 100, noise: float = 0.01,
                 **unknown: Any) -> None:
        checks.reject_unknown(unknown, ("dim", "noise"), "trainable")
        seed = checks.seed(seed)
        dim = checks.integer("trainable.dim", dim, lo=1)
        self.noise = checks.real("trainable.noise", noise, lo=0.0)
        self.hparams = checks.hparams(hparams, HPARAM_DEFAULTS, HPARAM_BOUNDS)
        self.curvature = 1.0 / np.arange(1, dim + 1, dtype=np.float64)
        self._noise_std = np.sqrt(self.noise * self.curvature)
        self.theta = np.ones(dim)
        self._grad = np.zeros(dim)
        self.optimizer = SGD({"theta": self.theta}, {"theta": self._grad}, lr=self.hparams["lr"])
        self.set_hparams(self.hparams)
        self._rng = np.random.default_rng(seed)
        self._step = 0

    def train(self, steps: int) -> None:
        """``steps`` SGD steps on noisy gradients."""
        checks.integer("steps", steps, lo=0)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging lr ends in inf, reported as such
            for _ in range(steps):
                np.multiply(self.curvature, self.theta, out=self._grad)
                self._grad += self._noise_std * self._rng.standard_normal(len(self.theta))
                self.optimizer.step()
        self._step += steps

    def evaluate(self) -> dict[str, float]:
        """``loss``: L(θ) exactly; ``inf`` once the iterate has diverged."""
        with np.errstate(over="ignore", invalid="ignore"):
            loss = 0.5 * float(np.dot(self.curvature, self.theta * self.theta))
        return {"loss": loss if np.isfinite(loss) else float("inf")}

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of ``theta``, the optimizer's ``opt.*`` slots, ``step`` and ``rng``."""
        state = {"theta": self.theta.copy(), "step": np.array(self._step, np.int64), "rng": rng_to_array(self._rng)}
        state.update({f"opt.{k}": v.copy() for k, v in self.optimizer.slots.items()})
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of a NoisyQuadratic of the same ``dim``."""
        check_state(state, self.get_state())
        self.theta[...] = state["theta"]
        for k, v in self.optimizer.slots.items():
            v[...] = state[f"opt.{k}"]
        self._step = int(state["step"])
        rng_from_array(self._rng, state["rng"])

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Change the given of ``lr``, ``momentum``; θ and the velocity are untouched."""
        self.hparams = checks.hparams(hparams, self.hparams, HPARAM_BOUNDS)
        self.optimizer.lr = self.hparams["lr"]
        self.optimizer.momentum = self.hparams["momentum"]
