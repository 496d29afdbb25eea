"""The Strategy interface: what the runner asks, what it is told, and the decisions it carries out.

A strategy is plain Python: it never imports ``ray``, touches SQLite or writes files. It sees frozen
snapshots of the population (``PopulationView``), returns decisions as data (``Start``, ``Train``,
``Exploit``) and is told each finished segment (``SegmentResult``). The runner carries the decisions
out, in the order given, on the workers and in the store.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["max", "min"]


def oriented_score(objective: float, mode: Mode) -> float:
    """The objective turned so that higher is better; NaN and infinities rank last (``-inf``)."""
    if not math.isfinite(objective):
        return -math.inf
    return objective if mode == "max" else -objective


@dataclass(frozen=True)
class MemberView:
    """A frozen snapshot of one member, as a strategy sees it.

    ``step`` is the member's own clock: optimizer steps executed *for this member* (an exploit
    copies weights, not steps). ``score`` is the latest validation objective oriented by
    ``oriented_score``; ``None`` before the first evaluation.
    """

    member: int
    hparams: Mapping[str, Any]
    step: int
    score: float | None
    busy: bool
    failed: bool = False


@dataclass(frozen=True)
class PopulationView:
    """All members that have been started, ordered by member id."""

    members: tuple[MemberView, ...]

    def __getitem__(self, member: int) -> MemberView:
        return self.members[member]


@dataclass(frozen=True)
class Start:
    """Create member ``member`` with ``hparams``: a fresh trainable seeded from the run seed."""

    member: int
    hparams: Mapping[str, Any]


@dataclass(frozen=True)
class Train:
    """Advance ``member`` by ``steps`` optimizer steps (a multiple of ``eval_every``)."""

    member: int
    steps: int


@dataclass(frozen=True)
class Exploit:
    """``member`` takes ``donor``'s state (weights, optimizer slots, counters) and ``hparams``.

    ``hparams`` are the donor's after explore; ``ops`` says per hyperparameter what explore did
    (e.g. ``{"lr": "*1.2", "momentum": "resample"}``). Costs no steps.
    """

    member: int
    donor: int
    hparams: Mapping[str, Any]
    ops: Mapping[str, str]


Decision = Start | Train | Exploit


@dataclass(frozen=True)
class SegmentResult:
    """One finished ``Train``: the evaluations made every ``eval_every`` steps inside it.

    ``evaluations`` is ``((step, metrics), ...)`` with steps on the member's own clock;
    ``score`` is the oriented objective of the last evaluation.
    """

    member: int
    start_step: int
    end_step: int
    hparams: Mapping[str, Any]
    evaluations: tuple[tuple[int, Mapping[str, float]], ...]
    score: float


class Strategy(ABC):
    """Decides what the population trains next. Subclasses: grid, random, PBT."""

    name: str
    #: At most how many steps ahead of the least advanced member in training a member may be given
    #: work; ``None``: no limit. Asynchronous PBT sets its interval, so that it compares members at
    #: about the same step even when some workers are slower than others.
    lead_limit: int | None = None

    @abstractmethod
    def ask(self, view: PopulationView) -> list[Decision]:
        """Decisions to carry out now, in order; ``[]`` while waiting for results."""

    @abstractmethod
    def tell(self, result: SegmentResult) -> None:
        """A ``Train`` finished."""

    @abstractmethod
    def is_finished(self, view: PopulationView) -> bool:
        """True once every member has used its steps (or failed)."""

    def on_failure(self, member: int, error: str) -> None:
        """``member``'s trainable raised; it is out of the search. Default: nothing to update."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state for resume (random generator state, pending decisions)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
