"""Grid search (DESIGN §4): the ``initial`` members, then the cross product of the ``[grid]`` lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search.budget import Budget
from search.independent import IndependentStrategy, initial_hparams
from search.space import SearchSpace


class GridStrategy(IndependentStrategy):
    """Members ``0..len(initial)-1`` train ``initial`` unchanged; the rest are the grid points in order.

    The grid has ``population - len(initial)`` points (``SearchSpace.grid``); a ``ConfigError``
    says how to make the sizes fit. ``rng`` is accepted so every strategy is built alike; a grid
    draws nothing.
    """

    name = "grid"

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        grid: Mapping[str, Sequence[Any]],
        initial: Sequence[Mapping[str, Any]],
        rng: np.random.Generator,
    ) -> None:
        fixed = initial_hparams(space, budget, initial)
        super().__init__(budget, fixed + space.grid(grid, budget.population - len(fixed)))
