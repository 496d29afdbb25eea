"""PBT's settings, the config's ``[pbt]`` table, validated where they enter."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from models.errors import ConfigError
from search.budget import Budget

# Defaults relative to a member's steps, chosen on the quality suite (README: bench/quality.py).
BURN_IN_FRACTION = 0.25  # no member is replaced in this first part of training
DECISIONS = 10  # the default interval: about this many ready points per member


@dataclass(frozen=True)
class PBTSettings:
    """How often members are ready, how they exploit and how they explore (DESIGN §4)."""

    interval: int | None = None  # None and burn_in None: derived from the budget (``for_budget``)
    burn_in: int | None = None
    exploit: Literal["truncation", "tournament"] = "truncation"
    fraction: float = 0.25
    resample_probability: float = 0.25
    perturb_factors: tuple[float, ...] = (0.8, 1.2)
    synchronous: bool = True  # chosen on the quality suite: it met the target on every task, and is exact for a seed
    fitness_window: int = 4  # a member is ranked by its last fitness_window ready scores...
    fitness: Literal["best", "mean"] = "best"  # ...by their best, or by their mean

    def __post_init__(self) -> None:
        if self.interval is not None:
            _require_int("interval", self.interval, minimum=1)
        if self.burn_in is not None:
            _require_int("burn_in", self.burn_in, minimum=0)
        if self.exploit not in ("truncation", "tournament"):
            raise ConfigError(f"pbt.exploit: must be 'truncation' or 'tournament', got {self.exploit!r}")
        if not _is_number(self.fraction) or not 0 < self.fraction <= 0.5:
            raise ConfigError(f"pbt.fraction: must be in (0, 0.5], got {self.fraction!r}")
        if not _is_number(self.resample_probability) or not 0 <= self.resample_probability <= 1:
            raise ConfigError(
                f"pbt.resample_probability: must be in [0, 1], got {self.resample_probability!r}"
            )
        factors = self.perturb_factors
        if (
            not isinstance(factors, (list, tuple))
            or not factors
            or not all(_is_number(f) and f > 0 for f in factors)
        ):
            raise ConfigError(f"pbt.perturb_factors: must be a non-empty list of numbers > 0, got {factors!r}")
        object.__setattr__(self, "perturb_factors", tuple(float(f) for f in factors))
        _require_int("fitness_window", self.fitness_window, minimum=1)
        if self.fitness not in ("best", "mean"):
            raise ConfigError(f"pbt.fitness: must be 'best' or 'mean', got {self.fitness!r}")
        if not isinstance(self.synchronous, bool):
            raise ConfigError(f"pbt.synchronous: must be true or false, got {self.synchronous!r}")


def for_budget(settings: PBTSettings, budget: Budget) -> PBTSettings:
    """``settings`` with the defaults that depend on the budget filled in, then checked against it.

    PBT judged on short horizons is greedy: a slow learning rate leads early and wins, and a
    member whose payoff comes late is replaced before it shows it. So by default a member is
    ready about ``DECISIONS`` times (``interval``: that share of its steps, in whole evaluations)
    and never before ``BURN_IN_FRACTION`` of its steps (``burn_in``, in whole intervals).
    """
    interval = settings.interval
    if interval is None:
        interval = max(1, round(budget.steps / DECISIONS / budget.eval_every)) * budget.eval_every
    elif interval % budget.eval_every:
        raise ConfigError(f"pbt.interval: must be a multiple of budget.eval_every ({budget.eval_every}), got {interval}")
    burn_in = settings.burn_in
    if burn_in is None:
        burn_in = math.ceil(BURN_IN_FRACTION * budget.steps / interval) * interval
    return replace(settings, interval=interval, burn_in=burn_in)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"pbt.{name}: must be an integer >= {minimum}, got {value!r}")
