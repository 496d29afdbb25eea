"""The budget every strategy is held to: optimizer steps, counted the same way for grid, random and PBT."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """``population`` members, each trained for ``steps`` optimizer steps, evaluated every ``eval_every``.

    The total is ``population * steps``; copying weights (exploit) costs no steps.
    """

    population: int
    steps: int
    eval_every: int

    def __post_init__(self) -> None:
        for name in ("population", "steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"budget.{name}: must be an integer >= 1, got {value!r}")
        if self.steps % self.eval_every:
            raise ConfigError(
                f"budget.steps: must be a multiple of budget.eval_every ({self.eval_every}), got {self.steps}"
            )

    @property
    def total_steps(self) -> int:
        """Optimizer steps over the whole population."""
        return self.population * self.steps
