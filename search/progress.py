"""What the runner reports while a search trains; the terminal display and the dashboard render it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running search. ``best_objective`` is the raw (not oriented) objective."""

    population: int
    members_done: int
    steps_done: int
    budget_steps: int
    best_member: int | None
    best_objective: float | None
    exploits: int
    elapsed_seconds: float
