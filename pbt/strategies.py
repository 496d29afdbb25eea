"""The strategies a run can use, built from a validated config and the run's generator."""

from __future__ import annotations

import numpy as np

from models.errors import ConfigError
from pbt.config import RunConfig
from pbt.strategy import PBTStrategy
from search.grid import GridStrategy
from search.random import RandomStrategy
from search.strategy import Strategy

STRATEGIES = ("pbt", "grid", "random")
COMPARED = "grid,random,pbt"  # what ``pbt compare`` runs by default, in this order


def parse_strategies(text: str) -> tuple[str, ...]:
    """``"grid,random,pbt"`` → the named strategies, each known and listed once."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown:
        raise ConfigError(f"--strategies: unknown strategy {unknown[0]!r}; use a comma-separated subset of {COMPARED}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--strategies: each strategy once, got {text!r}")
    return names


def make_strategy(name: str, config: RunConfig, rng: np.random.Generator) -> Strategy:
    """The strategy ``name`` (one of ``STRATEGIES``) for ``config``; ``ConfigError`` if it cannot be built."""
    if name == "grid":
        return GridStrategy(config.space, config.budget, config.grid, config.initial, rng)
    if name == "random":
        return RandomStrategy(config.space, config.budget, config.initial, rng)
    if name == "pbt":
        return PBTStrategy(config.space, config.budget, config.pbt, config.initial, rng)
    raise ConfigError(f"--strategy: unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
