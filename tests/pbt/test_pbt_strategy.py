"""PBTStrategy driven in a plain in-process loop on real ToyQuadratic trainables (no Ray)."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from pbt_loop import Loop, LoopRecord

from models import ToyQuadratic
from models.errors import ConfigError
from pbt.settings import PBTSettings, for_budget
from pbt.strategy import PBTStrategy
from search.budget import Budget
from search.random import RandomStrategy
from search.space import SearchSpace
from search.strategy import Exploit, MemberView, PopulationView, SegmentResult, Start, Train

SPACE = SearchSpace.from_config({"h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]}})
BUDGET = Budget(population=6, steps=120, eval_every=4)


def toy(hparams: Any, member: int) -> ToyQuadratic:
    return ToyQuadratic(hparams, member, lr=0.01)


def strategy(seed: int = 0, budget: Budget = BUDGET, initial: tuple = (), **settings: Any) -> PBTStrategy:
    settings = {"interval": 12, "fraction": 0.25, "burn_in": 0, "synchronous": False, **settings}
    return PBTStrategy(SPACE, budget, PBTSettings(**settings), initial, np.random.default_rng(seed))


def drive(seed: int = 0, *, make=toy, budget: Budget = BUDGET, workers: int = 2, timing_seed: int = 0,
          **settings: Any) -> LoopRecord:
    return Loop(strategy(seed, budget, **settings), make, budget, objective="Q", workers=workers,
                timing_seed=timing_seed).run()


def exploit_decisions(record: LoopRecord) -> list[Exploit]:
    return [d for d in record.decisions if isinstance(d, Exploit)]


# -- starting and segments -------------------------------------------------------------------------

def test_starts_like_random_search_from_the_same_seed() -> None:
    initial = ({"h0": 1.0, "h1": 0.0},)
    pbt = strategy(3, initial=initial)
    rnd = RandomStrategy(SPACE, BUDGET, initial, np.random.default_rng(3))
    empty = PopulationView(())
    starts = [d for d in pbt.ask(empty) if isinstance(d, Start)]
    assert starts == [d for d in rnd.ask(empty) if isinstance(d, Start)]
    assert [s.member for s in starts] == list(range(6))
    assert starts[0].hparams == {"h0": 1.0, "h1": 0.0}


def test_segments_end_on_interval_boundaries_and_the_budget_is_exact() -> None:
    budget = Budget(population=3, steps=100, eval_every=4)
    record = drive(budget=budget, interval=12)
    trains = Counter()
    for d in record.decisions:
        if isinstance(d, Train):
            trains[d.member] += 1
            assert d.steps in (12, 4)  # 8 segments of 12, then the last 4 to reach 100
    assert trains == {0: 9, 1: 9, 2: 9}
    assert record.steps_trained == budget.total_steps
    assert sorted((m, s) for m, s, _, _ in record.results) == [
        (m, s) for m in range(3) for s in range(4, 101, 4)
    ]


@pytest.mark.parametrize("synchronous", [False, True])
def test_the_default_burn_in_is_a_quarter_of_the_steps_in_whole_intervals(synchronous: bool) -> None:
    record = drive(5, synchronous=synchronous, burn_in=None)  # ceil(0.25 × 120 / 12) × 12 = 36
    assert min(e["step"] for e in record.exploits) == 36
    assert for_budget(PBTSettings(interval=12), BUDGET).burn_in == 36
    assert for_budget(PBTSettings(interval=50), Budget(population=2, steps=1000, eval_every=50)).burn_in == 250
    assert for_budget(PBTSettings(interval=100), Budget(population=2, steps=3000, eval_every=100)).burn_in == 800
    assert for_budget(PBTSettings(interval=12, burn_in=0), BUDGET).burn_in == 0


@pytest.mark.parametrize("steps, eval_every, interval, burn_in", [
    (3000, 100, 300, 900), (2000, 100, 200, 600), (200, 2, 20, 60), (1000, 50, 100, 300), (120, 4, 12, 36),
    (120, 40, 40, 40), (30, 10, 10, 10),
])
def test_by_default_a_member_is_ready_about_ten_times(steps, eval_every, interval, burn_in) -> None:
    settings = for_budget(PBTSettings(), Budget(population=4, steps=steps, eval_every=eval_every))
    assert (settings.interval, settings.burn_in) == (interval, burn_in)


@pytest.mark.parametrize("synchronous", [False, True])
def test_exploits_only_after_burn_in_at_boundaries_with_steps_left(synchronous: bool) -> None:
    record = drive(5, synchronous=synchronous, burn_in=40)
    assert record.exploits
    for e in record.exploits:
        assert e["step"] >= 40 and e["step"] % 12 == 0 and e["step"] < BUDGET.steps
    assert record.steps_trained == BUDGET.total_steps


@pytest.mark.parametrize("exploit", ["truncation", "tournament"])
@pytest.mark.parametrize("synchronous", [False, True])
def test_every_exploit_copies_a_member_at_least_as_good_and_explores(exploit: str, synchronous: bool) -> None:
    record = drive(2, exploit=exploit, synchronous=synchronous)
    assert len(record.exploits) >= 8
    assert any(e["donor_score"] > e["member_score"] for e in record.exploits)
    for e in record.exploits:
        assert e["donor_score"] >= e["member_score"]
        assert set(e["ops"]) == {"h0", "h1"}
        assert SPACE.validate(e["new"], "new") == e["new"]


def test_truncation_replaces_at_most_the_bottom_fraction_at_each_synchronous_boundary() -> None:
    record = drive(2, synchronous=True, fraction=0.25)  # ceil(0.25 × 6) = 2
    per_boundary = Counter(e["step"] for e in record.exploits)
    assert per_boundary and max(per_boundary.values()) <= 2


# -- synchronous: the same decisions whatever the timing -----------------------------------------

def test_synchronous_decisions_do_not_depend_on_timing_or_workers() -> None:
    runs = [drive(7, synchronous=True, workers=w, timing_seed=t) for w, t in ((1, 0), (2, 1), (3, 2), (6, 3))]
    first = runs[0]
    assert len(exploit_decisions(first)) >= 5
    for other in runs[1:]:
        assert exploit_decisions(other) == exploit_decisions(first)
        assert other.final == first.final
        assert other.hparams == first.hparams


def test_synchronous_decides_only_when_every_live_member_is_at_the_boundary() -> None:
    record = drive(4, synchronous=True, workers=2, timing_seed=5)
    for e in record.exploits:
        assert e["donor_step"] == e["step"]
    for batch in record.batches:
        exploits = [d for d in batch if isinstance(d, Exploit)]
        receivers = [d.member for d in exploits]
        # a donor that is itself replaced in the same round hands over its state first
        for i, d in enumerate(exploits):
            assert d.donor not in receivers[:i]


def test_synchronous_truncation_lets_certain_middle_members_train_on() -> None:
    budget = Budget(population=8, steps=24, eval_every=4)
    pbt = strategy(0, budget=budget, synchronous=True, fraction=0.25)  # count 2 of 8
    pbt.ask(PopulationView(()))
    for member, score in [(0, 0.1), (1, 0.2), (2, 0.5), (3, 0.8), (4, 0.9)]:
        pbt.tell(SegmentResult(member, 0, 12, {}, ((12, {"Q": score}),), score))
    # 2 has two below and two above: whatever 5, 6, 7 score, it neither gives nor receives
    assert pbt.ask(PopulationView(())) == [Train(2, 12)]
    pbt.tell(SegmentResult(5, 0, 12, {}, ((12, {"Q": 0.3}),), 0.3))  # 0.1 and 0.2 below, three above
    assert pbt.ask(PopulationView(())) == [Train(5, 12)]
    pbt.tell(SegmentResult(6, 0, 12, {}, ((12, {"Q": 0.05}),), 0.05))  # now 1 has two below
    assert pbt.ask(PopulationView(())) == [Train(1, 12)]
    pbt.tell(SegmentResult(7, 0, 12, {}, ((12, {"Q": -math.inf}),), -math.inf))
    decisions = pbt.ask(PopulationView(()))
    exploits = [d for d in decisions if isinstance(d, Exploit)]
    assert [e.member for e in exploits] == [7, 6]  # the bottom two, weakest first
    assert {e.donor for e in exploits} <= {3, 4}  # the top two, still at the boundary
    assert sorted(d.member for d in decisions if isinstance(d, Train)) == [0, 3, 4, 6, 7]


def test_synchronous_release_happens_and_changes_nothing() -> None:
    record = drive(7, synchronous=True, workers=3, timing_seed=1, fraction=0.25)
    assert any(start > slowest for _, start, slowest in record.trains)  # someone trained on
    tournament = drive(7, synchronous=True, workers=3, timing_seed=1, exploit="tournament")
    assert all(start == slowest for _, start, slowest in tournament.trains)


def test_synchronous_tournament_chains_hand_over_boundary_states() -> None:
    record = drive(11, synchronous=True, exploit="tournament")
    chained = 0
    for batch in record.batches:
        exploits = [d for d in batch if isinstance(d, Exploit)]
        receivers = {d.member for d in exploits}
        chained += sum(d.donor in receivers for d in exploits)
        for i, d in enumerate(exploits):
            assert d.donor not in [x.member for x in exploits[:i]]
    assert chained >= 1  # the case exists in this run


def test_asynchronous_runs_differ_with_timing_but_keep_the_budget() -> None:
    a = drive(7, timing_seed=0)
    b = drive(7, timing_seed=1)
    assert exploit_decisions(a) != exploit_decisions(b)
    assert a.steps_trained == b.steps_trained == BUDGET.total_steps


def view(*members: tuple[int, int, float | None, bool]) -> PopulationView:
    """(member, step, score, busy) tuples as a runner's view."""
    return PopulationView(tuple(MemberView(m, {}, step, score, busy) for m, step, score, busy in members))


def test_asynchronous_decisions_use_the_views_latest_scores_and_skip_fresh_receivers() -> None:
    budget = Budget(population=3, steps=48, eval_every=4)
    pbt = strategy(0, budget=budget, fraction=0.25)  # one bottom, one top
    pbt.ask(PopulationView(()))
    pbt.tell(SegmentResult(0, 0, 12, {}, ((12, {"Q": 0.3}),), 0.3))
    # member 1 is mid-segment; the runner already saw its evaluation at step 8
    decisions = pbt.ask(view((0, 12, 0.3, False), (1, 4, 0.9, True), (2, 4, 0.5, True)))
    assert [type(d) for d in decisions] == [Exploit, Train]
    assert decisions[0].member == 0 and decisions[0].donor == 1
    # member 0 now holds 1's weights, unevaluated: until its clock moves it neither ranks nor
    # donates, although the view still shows its old 0.3, better than 1's latest 0.25
    pbt.tell(SegmentResult(2, 0, 12, {}, ((12, {"Q": 0.1}),), 0.1))
    decisions = pbt.ask(view((0, 12, 0.3, True), (1, 8, 0.25, True), (2, 12, 0.1, False)))
    assert [(d.member, d.donor) for d in decisions if isinstance(d, Exploit)] == [(2, 1)]
    pbt.tell(SegmentResult(1, 0, 12, {}, ((12, {"Q": 0.05}),), 0.05))
    # 1 fell to the bottom; 0 has evaluated its new state (step 16 > 12) and ranks with 0.95
    decisions = pbt.ask(view((0, 16, 0.95, True), (1, 12, 0.05, False), (2, 12, 0.3, True)))
    assert [(d.member, d.donor) for d in decisions if isinstance(d, Exploit)] == [(1, 0)]


# -- ties, NaN and failures -----------------------------------------------------------------------

class Flat(ToyQuadratic):
    """Every member scores the same: accuracy-like ties."""

    def evaluate(self) -> dict[str, float]:
        return {**super().evaluate(), "Q": 0.5}


class Poisoned(ToyQuadratic):
    """Its objective is NaN whatever weights it holds."""

    def evaluate(self) -> dict[str, float]:
        return {**super().evaluate(), "Q": math.nan}


class Failing(ToyQuadratic):
    """Raises once its clock passes 40 steps."""

    def train(self, steps: int) -> None:
        if self.step >= 40:
            raise RuntimeError("diverged")
        super().train(steps)


@pytest.mark.parametrize("exploit", ["truncation", "tournament"])
@pytest.mark.parametrize("synchronous", [False, True])
def test_a_population_that_all_ties_keeps_exploiting_and_exploring(exploit: str, synchronous: bool) -> None:
    """The old rule "ties never exploit" froze populations on a plateau (issue 10)."""
    record = drive(0, make=lambda h, m: Flat(h, m), exploit=exploit, synchronous=synchronous)
    boundaries = set(range(12, BUDGET.steps, 12))
    if synchronous:
        assert {e["step"] for e in record.exploits} == boundaries  # someone explores at every one
    else:  # each ready member draws its own ranking: in the bottom 2 of 6 a third of the time
        assert len(record.exploits) >= 10 and len({e["step"] for e in record.exploits}) >= 6
    assert all(e["donor_score"] == e["member_score"] == 0.5 for e in record.exploits)
    if exploit == "truncation" and synchronous:  # exactly the drawn bottom ceil(0.25 × 6) = 2
        assert Counter(e["step"] for e in record.exploits) == {b: 2 for b in boundaries}
    assert len({e["member"] for e in record.exploits}) >= BUDGET.population - 1  # the draw reaches (nearly) everyone
    assert record.steps_trained == BUDGET.total_steps


@pytest.mark.parametrize("synchronous", [False, True])
def test_a_nan_member_is_always_replaced_and_never_donates(synchronous: bool) -> None:
    make = lambda h, m: Poisoned(h, m) if m == 3 else toy(h, m)  # noqa: E731
    record = drive(0, make=make, synchronous=synchronous)
    receivers = Counter(e["member"] for e in record.exploits)
    assert receivers[3] == BUDGET.steps // 12 - 1  # every boundary with steps left
    assert all(e["donor"] != 3 for e in record.exploits)


@pytest.mark.parametrize("synchronous", [False, True])
def test_a_failed_member_is_out_and_the_rest_finish(synchronous: bool) -> None:
    make = lambda h, m: Failing(h, m) if m == 2 else toy(h, m)  # noqa: E731
    record = drive(0, make=make, synchronous=synchronous)
    assert record.failed == {2}
    # the loop asserts no failed member donates once its failure is told; before that, only
    # its last told state (step 36) can be handed over
    assert all(e["donor_step"] <= 36 for e in record.exploits if e["donor"] == 2)
    late = [e for e in record.exploits if e["step"] >= 60]
    assert late and all(2 not in (e["member"], e["donor"]) for e in late)
    done = {m for m, s, _, _ in record.results if s == BUDGET.steps}
    assert done == {0, 1, 3, 4, 5}


# -- resume ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stop_after", [1, 5, 13, 22, 31, 40])
def test_state_dict_resumes_identically_in_synchronous_mode(stop_after: int) -> None:
    uninterrupted = drive(9, synchronous=True)
    loop = Loop(strategy(9, synchronous=True), toy, BUDGET, objective="Q", timing_seed=3)
    loop.run(stop_after=stop_after)
    saved = json.loads(json.dumps(loop.strategy.state_dict(), allow_nan=False))
    restored = strategy(12345, synchronous=True)  # another seed: everything must come from the state
    restored.load_state_dict(saved)
    loop.crash(restored)
    resumed = loop.run()
    assert exploit_decisions(resumed) == exploit_decisions(uninterrupted)
    assert resumed.final == uninterrupted.final
    assert resumed.hparams == uninterrupted.hparams


def test_state_dict_is_strict_json_with_nan_members() -> None:
    make = lambda h, m: Poisoned(h, m) if m == 0 else toy(h, m)  # noqa: E731
    loop = Loop(strategy(0), make, BUDGET, objective="Q")
    loop.run(stop_after=20)
    text = json.dumps(loop.strategy.state_dict(), allow_nan=False)
    copy = strategy(1)
    copy.load_state_dict(json.loads(text))
    assert copy.state_dict() == loop.strategy.state_dict()


def test_in_flight_segments_stay_in_flight_after_a_resume() -> None:
    budget = Budget(population=2, steps=24, eval_every=4)
    pbt = strategy(0, budget=budget)
    trains = [d for d in pbt.ask(PopulationView(())) if isinstance(d, Train)]
    assert trains == [Train(0, 12), Train(1, 12)]
    pbt.tell(SegmentResult(0, 0, 12, {}, ((12, {"Q": 0.1}),), 0.1))
    restored = strategy(5, budget=budget)
    restored.load_state_dict(json.loads(json.dumps(pbt.state_dict())))
    assert restored.ask(PopulationView(())) == [Train(0, 12)]  # 1 is still in flight: the runner finishes it
    restored.tell(SegmentResult(1, 0, 12, {}, ((12, {"Q": 0.2}),), 0.2))
    assert restored.ask(PopulationView(())) == [Train(1, 12)]


# -- configuration ---------------------------------------------------------------------------------

def test_bad_construction_is_one_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^pbt\.interval: must be a multiple of budget\.eval_every \(4\), got 10$"):
        strategy(interval=10)
    with pytest.raises(ConfigError, match=r"^initial: 7 entries"):
        strategy(initial=({"h0": 0.5, "h1": 0.5},) * 7)
    with pytest.raises(ConfigError, match=r"^initial\[0\]\.h0: "):
        strategy(initial=({"h0": 2.0, "h1": 0.5},))


@pytest.mark.parametrize("window, fitness, exploits", [(2, "best", []), (1, "best", [(0, 3)]),
                                                     (2, "mean", [(1, 3)]), (1, "mean", [(0, 3)])])
def test_a_member_is_ranked_by_its_last_fitness_window_scores(window: int, fitness: str,
                                                              exploits: list[tuple[int, int]]) -> None:
    """Member 0 led at step 12 and dipped at 24. Judged by its best over two intervals it is still
    the best, so it is not replaced; but what it holds now scored 0.3, below the weakest member's
    0.5, so it donates to nobody. By the mean of two (0.6) it is in the middle and member 3 (0.7)
    donates to the weakest; judged on its latest score it is replaced. A receiver takes its donor's
    history with its state."""
    budget = Budget(population=4, steps=48, eval_every=4)
    pbt = strategy(0, budget=budget, synchronous=True, burn_in=24, fitness_window=window, fitness=fitness)
    pbt.ask(PopulationView(()))
    for step, scores in ((12, (0.9, 0.5, 0.6, 0.7)), (24, (0.3, 0.5, 0.6, 0.7))):
        for member, score in enumerate(scores):
            pbt.tell(SegmentResult(member, step - 12, step, {}, ((step, {"Q": score}),), score))
        decisions = pbt.ask(PopulationView(()))
    assert [(d.member, d.donor) for d in decisions if isinstance(d, Exploit)] == exploits
    histories = [m["history"] for m in pbt.state_dict()["members"]]
    for receiver, donor in exploits:
        assert histories[receiver] == histories[donor] == [0.7, 0.7][-window:]
