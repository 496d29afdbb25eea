"""PBT's explore step: perturb or resample the hyperparameters a member inherited (DESIGN §4).

A pure function of the hyperparameters, the space and a seeded ``np.random.Generator``; the
result never leaves the space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search.space import Dimension, SearchSpace


def explore(hparams: Mapping[str, Any], space: SearchSpace, rng: np.random.Generator, *,
            resample_probability: float, perturb_factors: Sequence[float]) -> tuple[dict[str, Any], dict[str, str]]:
    """New hyperparameters and, per name, what was done (``"resample"``, ``"*1.2"``, ``"+0.2"``, ``"+1"``, ``"next"``...).

    Per dimension, in space order: with probability ``resample_probability`` a fresh draw from the
    prior; otherwise a perturbation (``perturb``).
    """
    new: dict[str, Any] = {}
    ops: dict[str, str] = {}
    for name, dim in space.items():
        if rng.random() < resample_probability:
            new[name], ops[name] = dim.sample(rng), "resample"
        else:
            new[name], ops[name] = perturb(dim, hparams[name], rng, perturb_factors)
    return new, ops


def perturb(dim: Dimension, value: Any, rng: np.random.Generator,
            perturb_factors: Sequence[float]) -> tuple[Any, str]:
    """One value perturbed inside ``dim``: ``(value, op)``.

    A factor is drawn uniformly from ``perturb_factors`` and the value moves in its prior's own
    scale, then is clipped. Log-uniform floats are multiplied by it. Uniform floats move by
    ``factor - 1`` of their range's width (``0.8``: down a fifth of the range), so a value at 0
    still moves and a narrow range far from 0 (``gamma`` in ``[0.9, 0.999]``) is not thrown to its
    ends. Integers are multiplied, then rounded; if rounding would give the same value back
    (``1 × 0.8``, ``0 × 1.2``), they move one step in the factor's direction, so an integer never
    sticks at 0 or 1 while the range lets it move. Choices move to a neighbouring value (either
    side, uniformly; the only side at an end).
    """
    if dim.kind == "choice":
        return _neighbour(dim, value, rng)
    factor = float(perturb_factors[int(rng.integers(len(perturb_factors)))])
    op = f"*{factor:g}"
    if dim.kind == "uniform":
        shift = (factor - 1.0) * (dim.high - dim.low)
        return dim.clip(value + shift), f"{shift:+.3g}"
    if dim.kind == "loguniform":
        return dim.clip(value * factor), op
    moved = round(value * factor)
    if moved == value and factor != 1.0:
        direction = np.sign(value * factor - value) if value != 0 else np.sign(factor - 1.0)
        moved = value + int(direction)
        op = f"{int(direction):+d}"
    return dim.clip(moved), op


def _neighbour(dim: Dimension, value: Any, rng: np.random.Generator) -> tuple[Any, str]:
    current = dim.clip(value)  # the element of ``choices`` itself (keeps True apart from 1)
    index = next(i for i, choice in enumerate(dim.choices) if choice is current)
    sides = [s for s in (-1, 1) if 0 <= index + s < len(dim.choices)]
    if not sides:
        return dim.choices[index], "keep"
    side = sides[int(rng.integers(len(sides)))]
    return dim.choices[index + side], "next" if side > 0 else "prev"
