"""The project's one gradient check: analytic gradients against central differences.

Run it in float64. ``relative_error`` is ‖a − n‖ / (‖a‖ + ‖n‖), robust where both are ~0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from models.module import Module


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """‖a − n‖ / max(‖a‖ + ‖n‖, 1e-300)."""
    num = np.linalg.norm(analytic - numeric)
    return float(num / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-300))


def check_gradients(loss: Callable[[], float], analytic: Mapping[str, np.ndarray],
                    arrays: Mapping[str, np.ndarray], eps: float = 1e-6) -> dict[str, float]:
    """Relative error of each ``analytic[name]`` against central differences of ``loss()``.

    ``loss`` must read the arrays in ``arrays`` (which are perturbed in place and restored) and
    be deterministic. Returns ``{name: relative error}``.
    """
    errors = {}
    for name, x in arrays.items():
        if x.dtype != np.float64:
            raise TypeError(f"gradient check needs float64, {name} is {x.dtype}")
        numeric = np.zeros_like(x)
        flat, nflat = x.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            nflat[i] = (up - down) / (2 * eps)
        errors[name] = relative_error(analytic[name], numeric)
    return errors


def check_module(module: Module, x: np.ndarray, rng: np.random.Generator,
                 before_forward: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Check ``module``'s dL/dx (key ``"x"``) and every parameter gradient, with L = Σ forward(x)·R
    for a fixed random R. ``before_forward`` restores any randomness (e.g. Dropout's generator).
    """
    before_forward()
    out = module.forward(x)
    weights = rng.standard_normal(out.shape)

    def loss() -> float:
        before_forward()
        return float(np.sum(module.forward(x) * weights))

    before_forward()
    module.forward(x)
    dx = module.backward(weights)
    analytic = {"x": dx, **{k: g.copy() for k, g in module.grads.items()}}
    return check_gradients(loss, analytic, {"x": x, **module.params})
