"""An in-process stand-in for the runner, for driving strategies in tests without Ray.

It carries out ``Start``/``Train``/``Exploit`` on real trainables, simulates ``workers`` workers
whose segments take seeded random times (so results arrive in a seed-dependent order), and
checks the decisions against the Strategy contract as it goes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.budget import Budget
from search.strategy import (
    Exploit,
    MemberView,
    PopulationView,
    SegmentResult,
    Start,
    Strategy,
    Train,
    oriented_score,
)


@dataclass
class LoopRecord:
    """What a driven search did."""

    results: list[tuple[int, int, dict[str, float], dict[str, Any]]] = field(default_factory=list)
    exploits: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Any] = field(default_factory=list)
    batches: list[list[Any]] = field(default_factory=list)
    steps_trained: int = 0
    final: dict[int, dict[str, float]] = field(default_factory=dict)
    hparams: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)

    def best(self, metric: str) -> float:
        return max(metrics[metric] for metrics in self.final.values())


class Loop:
    """Drives one strategy to the end (or until ``stop_after`` results), in simulated time."""

    def __init__(self, strategy: Strategy, make: Callable[[Mapping[str, Any], int], Any], budget: Budget,
                 *, objective: str, mode: str = "max", workers: int = 2, timing_seed: int = 0,
                 jitter: float = 0.3) -> None:
        self.strategy = strategy
        self.make = make
        self.budget = budget
        self.objective = objective
        self.mode = mode
        self.workers = workers
        self.timing = np.random.default_rng(timing_seed)
        self.jitter = jitter
        self.record = LoopRecord()
        self.hparams: dict[int, dict[str, Any]] = {}
        self.states: dict[int, dict[str, np.ndarray]] = {}
        self.steps: dict[int, int] = {}
        self.scores: dict[int, float | None] = {}
        self.busy: set[int] = set()
        self.queue: list[Train] = []
        self.events: list[tuple[float, int, Any]] = []
        self.now = 0.0
        self.seq = 0
        self.free = workers

    def view(self) -> PopulationView:
        return PopulationView(tuple(
            MemberView(m, dict(self.hparams[m]), self.steps[m], self.scores[m], m in self.busy,
                       m in self.record.failed)
            for m in sorted(self.hparams)
        ))

    def run(self, stop_after: int | None = None) -> LoopRecord:
        told = 0
        while True:
            self._carry_out(self.strategy.ask(self.view()))
            self._dispatch()
            if not self.events:
                break
            self.now, _, _, outcome, state = heapq.heappop(self.events)
            self.free += 1
            if isinstance(outcome, str):
                member = int(outcome.split(":")[0])
                self.busy.discard(member)
                self.record.failed.add(member)
                self.strategy.on_failure(member, outcome)
            else:
                self._complete(outcome, state)
                self.strategy.tell(outcome)
                told += 1
                if stop_after is not None and told >= stop_after:
                    return self.record
        assert self.strategy.is_finished(self.view())
        assert not self.queue and not self.busy
        self.record.hparams = {m: dict(h) for m, h in self.hparams.items()}
        return self.record

    def crash(self, strategy: Strategy) -> None:
        """The driver died and was resumed with ``strategy`` (restored from its ``state_dict``).

        As the runner does, segments in flight are trained again from the member's last told
        state, in the order they were dispatched, and told to the restored strategy.
        """
        in_flight = [train for *_, train, _, _ in sorted(self.events)]
        self.queue = in_flight + self.queue
        self.events.clear()
        self.free = self.workers
        self.strategy = strategy

    def _complete(self, result: SegmentResult, state: dict[str, np.ndarray]) -> None:
        member = result.member
        self.busy.discard(member)
        self.states[member] = state
        self.steps[member] = result.end_step
        self.scores[member] = result.score
        for step, metrics in result.evaluations:
            self.record.results.append((member, step, metrics, dict(result.hparams)))
            self.record.steps_trained += self.budget.eval_every
        self.record.final[member] = result.evaluations[-1][1]

    def _carry_out(self, decisions: list[Any]) -> None:
        self.record.batches.append(list(decisions))
        for decision in decisions:
            self.record.decisions.append(decision)
            member = decision.member
            if isinstance(decision, Start):
                assert member not in self.hparams, f"member {member} started twice"
                self.hparams[member] = dict(decision.hparams)
                self.states[member] = self.make(decision.hparams, member).get_state()
                self.steps[member], self.scores[member] = 0, None
            elif isinstance(decision, Exploit):
                assert member not in self.busy, f"exploit into busy member {member}"
                assert decision.donor not in self.record.failed, "a failed member donated"
                assert decision.donor != member
                self.record.exploits.append({
                    "member": member, "donor": decision.donor, "step": self.steps[member],
                    "donor_step": self.steps[decision.donor], "member_score": self.scores[member],
                    "donor_score": self.scores[decision.donor], "old": self.hparams[member],
                    "new": dict(decision.hparams), "ops": dict(decision.ops),
                })
                self.states[member] = self.states[decision.donor]
                self.hparams[member] = dict(decision.hparams)
                self.scores[member] = self.scores[decision.donor]
            else:
                assert isinstance(decision, Train)
                assert member not in self.busy, f"Train for busy member {member}"
                assert member not in self.record.failed, f"Train for failed member {member}"
                assert decision.steps > 0 and decision.steps % self.budget.eval_every == 0
                assert self.steps[member] + decision.steps <= self.budget.steps, "over budget"
                self.busy.add(member)
                self.queue.append(decision)

    def _dispatch(self) -> None:
        while self.free and self.queue:
            train = self.queue.pop(0)
            self.free -= 1
            outcome, state = self._train(train)
            duration = train.steps * (1.0 + self.jitter * self.timing.random())
            self.seq += 1
            heapq.heappush(self.events, (self.now + duration, self.seq, train, outcome, state))

    def _train(self, train: Train) -> tuple[SegmentResult | str, dict[str, np.ndarray] | None]:
        """Run the segment now; its result (or error) is delivered at its simulated end."""
        member = train.member
        trainable = self.make(self.hparams[member], member)
        trainable.set_state(self.states[member])
        start = self.steps[member]
        evaluations = []
        try:
            for _ in range(train.steps // self.budget.eval_every):
                trainable.train(self.budget.eval_every)
                evaluations.append((start + (len(evaluations) + 1) * self.budget.eval_every,
                                    trainable.evaluate()))
        except Exception as exc:  # a failing trainable: the member is out
            return f"{member}: {exc}", None
        score = oriented_score(evaluations[-1][1][self.objective], self.mode)
        result = SegmentResult(member, start, start + train.steps, dict(self.hparams[member]),
                               tuple(evaluations), score)
        return result, trainable.get_state()
