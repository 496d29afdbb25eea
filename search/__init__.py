"""The search space, the Strategy interface, grid and random search, the budget."""

from search.budget import Budget
from search.grid import GridStrategy
from search.random import RandomStrategy
from search.space import Dimension, SearchSpace
from search.strategy import Strategy

__all__ = ["Budget", "Dimension", "GridStrategy", "RandomStrategy", "SearchSpace", "Strategy"]
