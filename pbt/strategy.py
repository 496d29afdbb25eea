"""Population Based Training as a ``Strategy`` (DESIGN §4): ready, exploit, explore, in segments.

Plain Python: the decisions (``Start``, ``Exploit``, ``Train``) are data the runner carries out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from pbt.exploit import ranking, tournament, truncation_donor
from pbt.explore import explore
from pbt.settings import PBTSettings, for_budget
from search.budget import Budget
from search.random import random_population
from search.space import SearchSpace
from search.strategy import Decision, Exploit, PopulationView, SegmentResult, Start, Strategy, Train

Status = Literal["new", "idle", "busy", "ready", "done", "failed"]


@dataclass
class _Member:
    """The strategy's own record of one member: what it holds and where it is.

    ``score`` is the oriented score of the member's last told segment, and only while it still
    holds the state evaluated: an exploit clears it and records ``exploited_at`` (the member holds
    another's weights and new hyperparameters, not yet evaluated), so a donor always hands over
    the state its score was measured on, and a member is ranked again once it has evaluated.
    ``history`` holds the told scores of the weights it holds (a receiver inherits its donor's),
    newest last, as many as ``fitness_window``.
    """

    hparams: dict[str, Any]
    step: int = 0
    score: float | None = None
    status: Status = "new"
    exploited_at: int | None = None
    history: list[float] = field(default_factory=list)


class PBTStrategy(Strategy):
    """PBT over ``budget.population`` members, each trained ``budget.steps`` steps in segments.

    Members start like random search (``random_population``: the ``initial`` entries, then draws
    from the prior, so both start from the same population for a seed). Segments end
    on multiples of ``settings.interval`` (the last one at ``budget.steps``). At the end of a segment
    a member with steps left and ``step >= burn_in`` (defaults: ``for_budget``) is *ready*: it exploits
    (truncation or binary tournament over a ``ranking`` whose ties are drawn at random, so tied
    members still exploit and explore) and explores, giving ``Exploit`` then ``Train``; otherwise
    just ``Train``.

    Synchronous (default): ready members wait until every live member has reported its score at
    the same boundary; then all are decided in member order from the scores at that boundary, so a
    seed gives the same decisions whatever order results arrive in and for any number of workers.
    With truncation, a member that the scores already in place in the middle (at least the bottom
    count strictly below it and the top count strictly above it, however the rest score and
    however ties are drawn) can neither give nor receive at this boundary, so it goes on training
    instead of waiting.
    Asynchronous: ready members are decided in the order they became ready, against the latest
    scores of every member that has one (finished members included: they still hold their state).
    """

    name = "pbt"

    def __init__(self, space: SearchSpace, budget: Budget, settings: PBTSettings,
                 initial: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> None:
        self.space = space
        self.budget = budget
        self.settings = for_budget(settings, budget)
        self.lead_limit = None if self.settings.synchronous else self.settings.interval
        self.rng = rng
        self._members = [_Member(hparams=h) for h in random_population(space, budget, initial, rng)]
        self._ready: list[int] = []  # asynchronous: in the order members became ready
        self._boundaries: dict[int, dict[int, float]] = {}  # synchronous: scores at undecided boundaries

    # -- the Strategy interface -----------------------------------------------------------------

    def ask(self, view: PopulationView) -> list[Decision]:
        """Start new members, decide for ready ones, and give every idle member its next segment."""
        decisions: list[Decision] = []
        for member, state in enumerate(self._members):
            if state.status == "new":
                decisions.append(Start(member, dict(state.hparams)))
                state.status = "idle"
        if self.settings.synchronous:
            decisions += self._decide_at_barrier()
        else:
            decisions += self._decide_in_turn(view)
        for member, state in enumerate(self._members):
            if state.status == "idle":
                decisions.append(Train(member, self._segment(state.step)))
                state.status = "busy"
        return decisions

    def tell(self, result: SegmentResult) -> None:
        """Record the segment's end; the member is done, ready, or simply continues."""
        state = self._members[result.member]
        state.step, state.score, state.exploited_at = result.end_step, result.score, None
        state.history = [*state.history, result.score][-self.settings.fitness_window:]
        if state.step >= self.budget.steps:
            state.status = "done"
        elif state.step % self.settings.interval == 0 and state.step >= self.settings.burn_in:
            state.status = "ready"
            if self.settings.synchronous:
                self._boundaries.setdefault(state.step, {})[result.member] = self._fitness(state, result.score, state.step)
            else:
                self._ready.append(result.member)
        else:
            state.status = "idle"

    def on_failure(self, member: int, error: str) -> None:
        """The member is out: no more segments, never a donor."""
        self._members[member].status = "failed"
        if member in self._ready:
            self._ready.remove(member)
        for scores in self._boundaries.values():  # reported at a boundary, then lost: not a donor there
            scores.pop(member, None)

    def is_finished(self, view: PopulationView) -> bool:
        """Every member has used its steps or failed."""
        return all(m.status in ("done", "failed") for m in self._members)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable: generator state, every member's record, the ready queue.

        A segment in flight stays in flight: the runner restores it with the snapshot, finishes
        it and tells it, so the strategy does not ask for it again.
        """
        members = [{**asdict(m), "score": _encode_score(m.score), "history": [_encode_score(h) for h in m.history]}
                   for m in self._members]
        boundaries = {str(b): {str(m): _encode_score(s) for m, s in scores.items()}
                      for b, scores in self._boundaries.items()}
        return {"rng": self.rng.bit_generator.state, "members": members, "ready": list(self._ready),
                "boundaries": boundaries}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly where ``state_dict`` was taken."""
        self.rng.bit_generator.state = dict(state["rng"])
        self._members = [
            _Member(hparams=dict(m["hparams"]), step=int(m["step"]), score=_decode_score(m["score"]),
                    status=m["status"], exploited_at=m["exploited_at"],
                    history=[_decode_score(h) for h in m["history"]])
            for m in state["members"]
        ]
        self._ready = [int(m) for m in state["ready"]]
        self._boundaries = {int(b): {int(m): _decode_score(s) for m, s in scores.items()}
                            for b, scores in state["boundaries"].items()}

    # -- decisions ------------------------------------------------------------------------------

    def _segment(self, step: int) -> int:
        interval = self.settings.interval
        return min((step // interval + 1) * interval, self.budget.steps) - step

    def _donor(self, member: int, ranked: Sequence[int], scores: Mapping[int, float],
               current: Mapping[int, float]) -> int | None:
        if self.settings.exploit == "tournament":
            return tournament(member, ranked, scores, self.rng, current)
        return truncation_donor(member, ranked, scores, self.settings.fraction, self.rng, current)

    def _exploit(self, member: int, donor: int, donor_hparams: Mapping[str, Any],
                 donor_history: Sequence[float]) -> Exploit:
        """Explore the donor's hyperparameters; ``member`` holds the donor's state, not yet evaluated,
        and the history of its scores."""
        hparams, ops = explore(donor_hparams, self.space, self.rng,
                               resample_probability=self.settings.resample_probability,
                               perturb_factors=self.settings.perturb_factors)
        receiver = self._members[member]
        receiver.hparams, receiver.score, receiver.exploited_at = hparams, None, receiver.step
        receiver.history = list(donor_history)
        return Exploit(member, donor, dict(hparams), ops)

    def _fitness(self, member: _Member, latest: float, step: int) -> float:
        """What a member is ranked by: its last ``fitness_window`` scores (its told ``history``, and
        ``latest`` if that was evaluated at a ``step`` after them), by their best (``fitness =
        "best"``) or their mean. So a member whose scores swing (a high learning rate, a noisy
        validation) is judged by what its weights showed over the last intervals, not by one
        evaluation; ``-inf`` when the latest is (a diverged member is always replaced)."""
        if latest == -math.inf:
            return latest
        window = member.history if step <= member.step else [*member.history, latest]
        window = window[-self.settings.fitness_window:]
        return max(window) if self.settings.fitness == "best" else float(np.mean(window))

    def _latest_scores(self, view: PopulationView) -> tuple[dict[int, float], dict[int, float]]:
        """The fitness and the latest score (``current``) of every member still in and holding the
        state it evaluated.

        The view may be ahead of the told segments (a runner evaluates every ``eval_every`` steps
        inside a segment); a member exploited since its last evaluation is left out until its
        clock moves past the exploit.
        """
        scores, current = {}, {}
        for seen in view.members:
            state = self._members[seen.member]
            if seen.score is None or seen.failed or state.status == "failed":
                continue
            if state.exploited_at is not None and seen.step <= state.exploited_at:
                continue
            scores[seen.member] = self._fitness(state, seen.score, seen.step)
            current[seen.member] = seen.score
        return scores, current

    def _decide_in_turn(self, view: PopulationView) -> list[Decision]:
        """Asynchronous: each ready member, in turn, against the latest scores of the others."""
        decisions: list[Decision] = []
        scores, current = self._latest_scores(view)
        for member in self._ready:
            state = self._members[member]
            scores[member], current[member] = self._fitness(state, state.score, state.step), state.score
            donor = self._donor(member, ranking(scores, self.rng), scores, current)
            if donor is not None:
                decisions.append(self._exploit(member, donor, self._members[donor].hparams,
                                               self._members[donor].history))
                del scores[member], current[member]
            self._members[member].status = "idle"
        self._ready.clear()
        return decisions

    def _decide_at_barrier(self) -> list[Decision]:
        """Synchronous: decide the earliest boundary once every live member has reported at it.

        Until then, release the members already certain to be in the middle (truncation).
        """
        boundary = min(self._boundaries, default=None)
        if boundary is None:
            return []
        scores = self._boundaries[boundary]
        pending = [m for m, s in enumerate(self._members) if s.status != "failed" and m not in scores]
        if pending:
            self._release_middle(boundary, scores, len(scores) + len(pending))
            return []
        del self._boundaries[boundary]
        return self._decide_boundary(boundary, scores)

    def _waiting(self, boundary: int) -> list[int]:
        return [m for m, s in enumerate(self._members) if s.status == "ready" and s.step == boundary]

    def _release_middle(self, boundary: int, scores: Mapping[int, float], most: int) -> None:
        """Members with at least the bottom count scoring strictly below and the top count strictly
        above go on, wherever the ranking puts ties; ``most`` bounds the population here, and the
        count never shrinks as it grows, so the release holds whatever the rest report."""
        if self.settings.exploit != "truncation":
            return  # any member may draw any other in a tournament
        count = min(math.ceil(self.settings.fraction * most), most // 2)
        for member in self._waiting(boundary):
            below = sum(s < scores[member] for s in scores.values())
            above = sum(s > scores[member] for s in scores.values())
            if scores[member] > -math.inf and below >= count and above >= count:
                self._members[member].status = "idle"

    def _decide_boundary(self, boundary: int, scores: Mapping[int, float]) -> list[Decision]:
        """Every member waiting at ``boundary``, in member order, from the scores at ``boundary``
        and one ranking drawn for it.

        A donor always ranks above its receiver in that ranking, so emitting the exploits from the
        lowest-ranked receiver up hands every receiver its donor's boundary state even when that
        donor is itself replaced (tournament).
        """
        waiting = self._waiting(boundary)
        ranked = ranking(scores, self.rng)
        hparams = {m: dict(self._members[m].hparams) for m in waiting}  # at the boundary, before any exploit
        history = {m: list(self._members[m].history) for m in waiting}
        current = {m: self._members[m].history[-1] for m in scores}  # scored at the boundary (before any exploit)
        chosen = []
        for member in waiting:
            donor = self._donor(member, ranked, scores, current)
            if donor is not None:
                chosen.append(self._exploit(member, donor, hparams[donor], history[donor]))
        for member in waiting:
            self._members[member].status = "idle"
        position = {m: i for i, m in enumerate(ranked)}
        return sorted(chosen, key=lambda e: position[e.member])


def _encode_score(score: float | None) -> float | str | None:
    """JSON has no infinity: ``-inf`` (a NaN or infinite objective) is stored as ``"-inf"``."""
    return "-inf" if score == -math.inf else score


def _decode_score(score: float | str | None) -> float | None:
    return -math.inf if score == "-inf" else score
