"""The PBT paper's toy problem (Jaderberg et al. 2017, fig. 2; DESIGN §7).

The true objective is Q(θ) = 1.2 − (θ0² + θ1²). A member never sees it: it ascends the surrogate
Q̂(θ|h) = 1.2 − (h0·θ0² + h1·θ1²) by gradient steps of size ``lr`` from θ = (0.9, 0.9). With
h = (1, 0) only θ0 shrinks, so Q stays ≤ 0.39; PBT, copying θ between members and perturbing h,
reaches Q near 1.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models import checks
from models.state import check_state

THETA0 = (0.9, 0.9)
_DEFAULTS = {"h0": 1.0, "h1": 1.0}


class ToyQuadratic:
    """A Trainable for the toy. Hyperparameters ``h0``, ``h1`` (default 1.0); setting ``lr``."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, lr: float = 0.01, **unknown: Any) -> None:
        checks.reject_unknown(unknown, ("lr",), "trainable")
        checks.seed(seed)  # the toy is deterministic; the seed is accepted for the common shape
        self.lr = checks.real("trainable.lr", lr, lo=0.0, lo_open=True)
        self.hparams = dict(_DEFAULTS)
        self.set_hparams(hparams)
        self.theta = np.array(THETA0, dtype=np.float64)
        self.step = 0

    @staticmethod
    def true_objective(theta0: np.ndarray | float, theta1: np.ndarray | float) -> np.ndarray:
        """Q(θ) = 1.2 − (θ0² + θ1²), elementwise (broadcasts over a grid for contour plots)."""
        return 1.2 - (np.square(theta0) + np.square(theta1))

    def train(self, steps: int) -> None:
        """``steps`` ascent steps on Q̂: θ ← θ − lr·2·h·θ (elementwise)."""
        checks.integer("steps", steps, lo=0)
        factor = 1.0 - 2.0 * self.lr * self.h
        for _ in range(steps):
            self.theta *= factor
        self.step += steps

    def evaluate(self) -> dict[str, float]:
        """``Q`` (true objective), ``Q_hat`` (surrogate at current h), ``theta0``, ``theta1``."""
        t0, t1 = float(self.theta[0]), float(self.theta[1])
        q_hat = 1.2 - float(self.h[0] * t0 * t0 + self.h[1] * t1 * t1)
        return {"Q": float(self.true_objective(t0, t1)), "Q_hat": q_hat, "theta0": t0, "theta1": t1}

    def get_state(self) -> dict[str, np.ndarray]:
        """``theta`` (2,) float64 and ``step`` () int64."""
        return {"theta": self.theta.copy(), "step": np.array(self.step, dtype=np.int64)}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of any ToyQuadratic."""
        check_state(state, self.get_state())
        self.theta = np.array(state["theta"], dtype=np.float64)
        self.step = int(state["step"])

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Set the given of ``h0``, ``h1`` (others keep their values); θ is untouched."""
        self.hparams = checks.hparams(hparams, self.hparams, {})
        self.h = np.array([self.hparams["h0"], self.hparams["h1"]], dtype=np.float64)
