"""One contract, every Strategy: driven in a plain loop with a fake in-process score (no Ray).

The loop plays the runner: it carries out decisions in order, keeps segments in flight and
finishes them one at a time in an order drawn from its own seeded generator, and checks on every
decision that proposals stay in the space, that no member is trained while busy, failed or past
its steps, and at the end that the executed budget is exactly population x steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from pbt.settings import PBTSettings
from pbt.strategy import PBTStrategy
from search.budget import Budget
from search.grid import GridStrategy
from search.random import RandomStrategy
from search.space import SearchSpace
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

SPACE = SearchSpace.from_config({
    "lr": {"loguniform": [1e-4, 1.0]},
    "momentum": {"uniform": [0.0, 0.99]},
    "layers": {"int": [1, 4]},
    "act": {"choice": ["relu", "tanh", "gelu"]},
})
BUDGET = Budget(population=6, steps=60, eval_every=5)
INITIAL = ({"lr": 1.0, "momentum": 0.0, "layers": 1, "act": "relu"},)


FACTORIES = {  # grid: 1 initial + 2 lr x 3 act x 1 point for momentum and layers = 7 members
    "grid": lambda rng: GridStrategy(
        SPACE, Budget(7, BUDGET.steps, BUDGET.eval_every), {"lr": [1e-3, 1e-1]}, INITIAL, rng),
    "random": lambda rng: RandomStrategy(SPACE, BUDGET, INITIAL, rng),
    "pbt-async": lambda rng: PBTStrategy(SPACE, BUDGET, PBTSettings(interval=10), INITIAL, rng),
    "pbt-sync": lambda rng: PBTStrategy(
        SPACE, BUDGET, PBTSettings(interval=10, synchronous=True), INITIAL, rng),
    "pbt-tournament": lambda rng: PBTStrategy(
        SPACE, BUDGET, PBTSettings(interval=10, burn_in=20, exploit="tournament"), INITIAL, rng),
}
NAMES = list(FACTORIES)


def quality(hparams) -> float:
    """A fake learning rate of progress: best near lr 1e-2, momentum 0.9, 3 layers, gelu."""
    lr = math.log10(hparams["lr"])
    return (
        3.0
        - (lr + 2.0) ** 2 / 4.0
        - (hparams["momentum"] - 0.9) ** 2
        - abs(hparams["layers"] - 3) / 3.0
        + 0.5 * (hparams["act"] == "gelu")
    )


@dataclass
class FakeMember:
    hparams: dict
    step: int = 0
    weights: float = 0.0  # the "state": what exploit copies
    score: float | None = None
    busy: bool = False
    failed: bool = False
    trained: int = 0  # steps executed for this member


@dataclass
class Trace:
    decisions: list = field(default_factory=list)
    members: dict = field(default_factory=dict)
    executed: int = 0


def drive(strategy: Strategy, budget: Budget, *, order_seed: int = 0, fail: tuple[int, int] | None = None,
          mode: str = "max") -> Trace:
    """Run ``strategy`` to the end; ``fail=(member, step)`` makes that member raise in the segment that passes ``step``."""
    rng = np.random.default_rng(order_seed)
    trace = Trace()
    members: dict[int, FakeMember] = trace.members
    in_flight: list[Train] = []

    def snapshot() -> PopulationView:
        return PopulationView(tuple(
            MemberView(i, dict(m.hparams), m.step, m.score, m.busy, m.failed) for i, m in sorted(members.items())
        ))

    for _ in range(100_000):
        for decision in strategy.ask(snapshot()):
            trace.decisions.append(decision)
            if isinstance(decision, Start):
                assert decision.member == len(members), "members start in order, once each"
                assert SPACE.validate(decision.hparams, "start") == dict(decision.hparams)
                members[decision.member] = FakeMember(dict(decision.hparams))
            elif isinstance(decision, Train):
                m = members[decision.member]
                assert not m.busy, f"Train for busy member {decision.member}"
                assert not m.failed, f"Train for failed member {decision.member}"
                assert decision.steps > 0 and decision.steps % budget.eval_every == 0
                assert m.step + decision.steps <= budget.steps, f"Train past the steps of {decision.member}"
                m.busy = True
                in_flight.append(decision)
            elif isinstance(decision, Exploit):
                m, donor = members[decision.member], members[decision.donor]
                assert decision.member != decision.donor
                assert not m.busy and not m.failed and not donor.failed
                assert SPACE.validate(decision.hparams, "exploit") == dict(decision.hparams)
                assert set(decision.ops) <= set(SPACE)
                m.weights, m.score, m.hparams = donor.weights, donor.score, dict(decision.hparams)
            else:
                raise AssertionError(f"unknown decision {decision!r}")
        if strategy.is_finished(snapshot()):
            assert not in_flight, "finished with segments in flight"
            return trace
        assert in_flight, "stalled: nothing in flight and not finished"
        train = in_flight.pop(int(rng.integers(len(in_flight))))
        m = members[train.member]
        m.busy = False
        if fail is not None and train.member == fail[0] and m.step + train.steps > fail[1]:
            m.failed = True
            strategy.on_failure(train.member, "RuntimeError: injected")
            continue
        evaluations = []
        start = m.step
        for _ in range(train.steps // budget.eval_every):
            m.weights += budget.eval_every * quality(m.hparams)
            m.step += budget.eval_every
            raw = m.weights if mode == "max" else -m.weights
            evaluations.append((m.step, {"objective": raw}))
        m.trained += train.steps
        trace.executed += train.steps
        m.score = oriented_score(evaluations[-1][1]["objective"], mode)
        strategy.tell(SegmentResult(train.member, start, m.step, dict(m.hparams), tuple(evaluations), m.score))
    raise AssertionError("the strategy never finished")


def population(strategy_name: str) -> int:
    return 7 if strategy_name == "grid" else BUDGET.population


@pytest.mark.parametrize("name", NAMES)
def test_budget_holds_exactly(name):
    strategy = FACTORIES[name](np.random.default_rng(0))
    trace = drive(strategy, BUDGET, order_seed=1)
    n = population(name)
    assert trace.executed == n * BUDGET.steps
    assert sorted(trace.members) == list(range(n))
    assert all(m.trained == BUDGET.steps and m.step == BUDGET.steps for m in trace.members.values())
    assert strategy.is_finished(PopulationView(tuple(
        MemberView(i, m.hparams, m.step, m.score, False) for i, m in trace.members.items())))


@pytest.mark.parametrize("name", NAMES)
def test_initial_members_start_as_given(name):
    trace = drive(FACTORIES[name](np.random.default_rng(0)), BUDGET)
    starts = [d for d in trace.decisions if isinstance(d, Start)]
    assert dict(starts[0].hparams) == INITIAL[0]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name):
    a = drive(FACTORIES[name](np.random.default_rng(5)), BUDGET, order_seed=2).decisions
    b = drive(FACTORIES[name](np.random.default_rng(5)), BUDGET, order_seed=2).decisions
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_another_seed_other_proposals_unless_nothing_is_drawn(name):
    a = drive(FACTORIES[name](np.random.default_rng(5)), BUDGET, order_seed=2).decisions
    b = drive(FACTORIES[name](np.random.default_rng(6)), BUDGET, order_seed=2).decisions
    assert (a == b) == (name == "grid")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("order_seed", [0, 3])
def test_a_failed_member_gets_no_more_steps_and_the_search_goes_on(name, order_seed):
    trace = drive(FACTORIES[name](np.random.default_rng(0)), BUDGET, order_seed=order_seed, fail=(2, 15))
    failed = trace.members[2]
    assert failed.failed and failed.trained < BUDGET.steps
    others = [m for i, m in trace.members.items() if i != 2]
    assert all(m.trained == BUDGET.steps for m in others)
    assert trace.executed == (population(name) - 1) * BUDGET.steps + failed.trained


@pytest.mark.parametrize("name", NAMES)
def test_minimising_keeps_the_same_contract(name):
    trace = drive(FACTORIES[name](np.random.default_rng(0)), BUDGET, mode="min")
    assert trace.executed == population(name) * BUDGET.steps


def test_pbt_exploits_in_this_loop():
    """Guards the suite itself: the fake scores differ enough that PBT's exploit path is exercised."""
    trace = drive(FACTORIES["pbt-async"](np.random.default_rng(0)), BUDGET)
    assert any(isinstance(d, Exploit) for d in trace.decisions)
