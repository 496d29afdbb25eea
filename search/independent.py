"""The shared engine of grid and random search: a fixed set of hyperparameters, each trained unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.errors import ConfigError
from search.budget import Budget
from search.space import SearchSpace
from search.strategy import Decision, PopulationView, SegmentResult, Start, Strategy, Train


def initial_hparams(
    space: SearchSpace, budget: Budget, initial: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The ``[[initial]]`` entries validated against the space; no more of them than the population."""
    if len(initial) > budget.population:
        raise ConfigError(
            f"initial: {len(initial)} entries but budget.population is {budget.population}"
        )
    return [space.validate(h, f"initial[{i}]") for i, h in enumerate(initial)]


class IndependentStrategy(Strategy):
    """Starts member ``i`` with ``hparams[i]`` and trains it for all the steps it has left.

    One ``Train`` per member: nothing here depends on results, so the runner is free to cut it
    into calls that keep workers busy (results are still recorded every ``eval_every``).

    A member gets a ``Train`` only when it is idle (not busy in the view, no ``Train`` of ours
    still untold) and has steps left, so the executed budget is exactly ``population * steps``
    less what failed members did not use. Nothing is drawn after construction, so the only state
    is which ``Train`` is outstanding; after a resume the view's steps say where each member is.
    """

    def __init__(self, budget: Budget, hparams: Sequence[Mapping[str, Any]]) -> None:
        if len(hparams) != budget.population:
            raise ValueError(f"{len(hparams)} hyperparameter sets for a population of {budget.population}")
        self.budget = budget
        self.hparams = tuple(dict(h) for h in hparams)
        self._started = 0
        self._pending: set[int] = set()
        self._failed: set[int] = set()

    def ask(self, view: PopulationView) -> list[Decision]:
        """Start the members not yet started, then train each idle member with steps left to the end."""
        decisions: list[Decision] = []
        self._started = max(self._started, len(view.members))
        steps = {m.member: m.step for m in view.members}
        busy = {m.member for m in view.members if m.busy}
        self._failed |= {m.member for m in view.members if m.failed}
        while self._started < self.budget.population:
            member = self._started
            decisions.append(Start(member, dict(self.hparams[member])))
            steps[member] = 0
            self._started += 1
        for member in sorted(steps):
            if member in busy or member in self._pending or member in self._failed:
                continue
            if steps[member] < self.budget.steps:
                decisions.append(Train(member, self.budget.steps - steps[member]))
                self._pending.add(member)
        return decisions

    def tell(self, result: SegmentResult) -> None:
        """The member is idle again; its clock is read from the next view."""
        self._pending.discard(result.member)

    def on_failure(self, member: int, error: str) -> None:
        """A failed member gets no more steps."""
        self._pending.discard(member)
        self._failed.add(member)

    def is_finished(self, view: PopulationView) -> bool:
        """Every member started, and each has used its steps or failed, with nothing outstanding."""
        return (
            len(view.members) == self.budget.population
            and not self._pending
            and all(m.failed or m.member in self._failed or (m.step >= self.budget.steps and not m.busy)
                    for m in view.members)
        )
