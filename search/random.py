"""Random search (DESIGN §4): the ``initial`` members, then independent draws from the space's prior.

The draws come from Optuna's ``RandomSampler``, asked through an in-memory study with the space's
Optuna distributions and seeded from the run's generator: Optuna's sampler is the reference
implementation of "sample each distribution from its prior" (log-uniform, integers, categoricals),
and asking a study is how a user of Optuna would swap in another sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from search.budget import Budget
from search.independent import IndependentStrategy, initial_hparams
from search.space import SearchSpace


def random_population(
    space: SearchSpace, budget: Budget, initial: Sequence[Mapping[str, Any]], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """The ``initial`` entries, then independent draws from the prior up to ``budget.population``:
    how random search and PBT start, so that both start from the same members for a seed."""
    fixed = initial_hparams(space, budget, initial)
    return fixed + _prior_draws(space, budget.population - len(fixed), rng)


def _prior_draws(space: SearchSpace, count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``count`` independent draws from the prior via Optuna's ``RandomSampler`` seeded from ``rng``."""
    sampler = optuna.samplers.RandomSampler(seed=int(rng.integers(2**32)))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line on stderr
    try:
        study = optuna.create_study(sampler=sampler)
    finally:
        optuna.logging.set_verbosity(verbosity)
    distributions = space.distributions
    draws = [study.ask(distributions).params for _ in range(count)]
    return [{name: space[name].canonical(params[name]) for name in space} for params in draws]


class RandomStrategy(IndependentStrategy):
    """Members ``0..len(initial)-1`` train ``initial`` unchanged; the rest are independent samples."""

    name = "random"

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        initial: Sequence[Mapping[str, Any]],
        rng: np.random.Generator,
    ) -> None:
        super().__init__(budget, random_population(space, budget, initial, rng))
