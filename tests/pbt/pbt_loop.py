"""An in-process stand-in for the runner, for driving strategies in tests without Ray.

Like the runner it carries out ``Start``/``Train``/``Exploit`` on real trainables, splits each
``Train`` into calls of ``eval_every`` steps whose results (state, metrics) show in the view as
they finish, and tells the strategy at the end of the segment. ``workers`` simulated workers take
seeded random times per call, so results arrive in a seed-dependent order. Decisions are checked
against the Strategy contract as they come.
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
    trains: list[tuple[int, int, int]] = field(default_factory=list)  # member, from step, slowest live step
    steps_trained: int = 0
    final: dict[int, dict[str, float]] = field(default_factory=dict)
    hparams: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)

    def best(self, metric: str) -> float:
        return max(metrics[metric] for metrics in self.final.values())


@dataclass
class _Segment:
    start: int
    end: int
    hparams: dict[str, Any]
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)


class Loop:
    """Drives one strategy to the end (or until ``stop_after`` segments are told), in simulated time."""

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
        self.metrics: dict[int, dict[str, float] | None] = {}
        self.segments: dict[int, _Segment] = {}
        self.queue: list[int] = []  # members whose segment waits for a worker
        self.events: list[tuple[float, int, int, Any, Any]] = []
        self.now = 0.0
        self.seq = 0
        self.free = workers

    def view(self) -> PopulationView:
        return PopulationView(tuple(
            MemberView(m, dict(self.hparams[m]), self.steps[m], self._score(m), m in self.segments,
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
            self.now, _, member, outcome, state = heapq.heappop(self.events)
            if isinstance(outcome, str):
                self.free += 1
                del self.segments[member]
                self.record.failed.add(member)
                self.strategy.on_failure(member, outcome)
            elif self._complete(member, outcome, state):
                told += 1
                if stop_after is not None and told >= stop_after:
                    return self.record
        assert self.strategy.is_finished(self.view())
        assert not self.queue and not self.segments
        self.record.hparams = {m: dict(h) for m, h in self.hparams.items()}
        return self.record

    def crash(self, strategy: Strategy) -> None:
        """The driver died and was resumed with ``strategy`` (restored from its ``state_dict``).

        As the runner does, segments in flight continue from the member's last finished call and
        are told to the restored strategy when they end.
        """
        in_flight = [member for _, _, member, _, _ in sorted(self.events)]
        self.queue = in_flight + self.queue
        self.events.clear()
        self.free = self.workers
        self.strategy = strategy

    def _score(self, member: int) -> float | None:
        metrics = self.metrics[member]
        return None if metrics is None else oriented_score(metrics[self.objective], self.mode)

    def _carry_out(self, decisions: list[Any]) -> None:
        self.record.batches.append(list(decisions))
        for decision in decisions:
            self.record.decisions.append(decision)
            member = decision.member
            if isinstance(decision, Start):
                assert member not in self.hparams, f"member {member} started twice"
                self.hparams[member] = dict(decision.hparams)
                self.states[member] = self.make(decision.hparams, member).get_state()
                self.steps[member], self.metrics[member] = 0, None
            elif isinstance(decision, Exploit):
                assert member not in self.segments, f"exploit into busy member {member}"
                assert decision.donor not in self.record.failed, "a failed member donated"
                assert decision.donor != member and self.metrics[decision.donor] is not None
                self.record.exploits.append({
                    "member": member, "donor": decision.donor, "step": self.steps[member],
                    "donor_step": self.steps[decision.donor], "member_score": self._score(member),
                    "donor_score": self._score(decision.donor), "old": self.hparams[member],
                    "new": dict(decision.hparams), "ops": dict(decision.ops),
                })
                self.states[member] = self.states[decision.donor]
                self.hparams[member] = dict(decision.hparams)
            else:
                assert isinstance(decision, Train)
                assert member not in self.segments, f"Train for busy member {member}"
                assert member not in self.record.failed, f"Train for failed member {member}"
                assert decision.steps > 0 and decision.steps % self.budget.eval_every == 0
                assert self.steps[member] + decision.steps <= self.budget.steps, "over budget"
                start = self.steps[member]
                slowest = min(self.steps[m] for m in self.hparams if m not in self.record.failed)
                self.record.trains.append((member, start, slowest))
                self.segments[member] = _Segment(start, start + decision.steps, dict(self.hparams[member]))
                self.queue.append(member)

    def _dispatch(self) -> None:
        while self.free and self.queue:
            self.free -= 1
            self._call(self.queue.pop(0))

    def _call(self, member: int) -> None:
        """Run the member's next ``eval_every`` steps now; the outcome lands after a random time."""
        segment = self.segments[member]
        trainable = self.make(segment.hparams, member)
        trainable.set_state(self.states[member])
        try:
            trainable.train(self.budget.eval_every)
            outcome, state = trainable.evaluate(), trainable.get_state()
        except Exception as exc:  # a failing trainable: the member is out
            outcome, state = f"{member}: {exc}", None
        duration = self.budget.eval_every * (1.0 + self.jitter * self.timing.random())
        self.seq += 1
        heapq.heappush(self.events, (self.now + duration, self.seq, member, outcome, state))

    def _complete(self, member: int, metrics: dict[str, float], state: dict[str, np.ndarray]) -> bool:
        """A call finished: the view moves on; True when it ended the segment (and was told)."""
        segment = self.segments[member]
        self.states[member], self.metrics[member] = state, metrics
        self.steps[member] += self.budget.eval_every
        self.record.steps_trained += self.budget.eval_every
        segment.evaluations.append((self.steps[member], metrics))
        self.record.results.append((member, self.steps[member], metrics, dict(segment.hparams)))
        if self.steps[member] < segment.end:
            self._call(member)
            return False
        del self.segments[member]
        self.free += 1
        self.record.final[member] = metrics
        self.strategy.tell(SegmentResult(member, segment.start, segment.end, dict(segment.hparams),
                                         tuple(segment.evaluations), self._score(member)))
        return True
