"""Grid and random search as strategies: which members they start and how they hand out steps."""

import numpy as np
import pytest

from models.errors import ConfigError
from search.budget import Budget
from search.grid import GridStrategy
from search.random import RandomStrategy
from search.space import SearchSpace
from search.strategy import MemberView, PopulationView, SegmentResult, Start, Train

SPACE = SearchSpace.from_config({"lr": {"loguniform": [1e-4, 1.0]}, "m": {"uniform": [0.0, 0.9]}})
INITIAL = [{"lr": 0.5, "m": 0.0}]


def view(*members):
    return PopulationView(tuple(members))


def idle(member, step, hparams=None, failed=False):
    return MemberView(member, hparams or {}, step, None, busy=False, failed=failed)


def result(member, start, end):
    return SegmentResult(member, start, end, {}, ((end, {"x": 0.0}),), 0.0)


def test_grid_starts_initial_members_then_the_grid_in_order():
    strategy = GridStrategy(SPACE, Budget(5, 20, 10), {}, INITIAL, np.random.default_rng(0))
    decisions = strategy.ask(view())
    starts = [d for d in decisions if isinstance(d, Start)]
    assert [s.member for s in starts] == [0, 1, 2, 3, 4]
    assert starts[0].hparams == {"lr": 0.5, "m": 0.0}
    assert [s.hparams for s in starts[1:]] == SPACE.grid({}, 4)
    assert [d for d in decisions if isinstance(d, Train)] == [Train(m, 20) for m in range(5)]  # all its steps
    assert strategy.name == "grid"


def test_grid_uses_explicit_lists_and_ignores_the_generator():
    a = GridStrategy(SPACE, Budget(3, 10, 10), {"lr": [1e-3, 1e-2, 1e-1]}, [], np.random.default_rng(0))
    b = GridStrategy(SPACE, Budget(3, 10, 10), {"lr": [1e-3, 1e-2, 1e-1]}, [], np.random.default_rng(99))
    assert a.hparams == b.hparams == tuple({"lr": lr, "m": 0.45} for lr in (1e-3, 1e-2, 1e-1))


def test_grid_of_only_initial_members_trains_them_unchanged():
    initial = [{"lr": 1.0, "m": 0.0}, {"lr": 1e-4, "m": 0.9}]
    strategy = GridStrategy(SPACE, Budget(2, 10, 5), {}, initial, np.random.default_rng(0))
    assert strategy.hparams == tuple(initial)


def test_grid_that_does_not_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="grid: 2 grid members cannot be"):
        GridStrategy(SPACE, Budget(3, 10, 10), {}, INITIAL, np.random.default_rng(0))


@pytest.mark.parametrize("cls", ["grid", "random"])
def test_more_initial_entries_than_population_is_a_config_error(cls):
    initial = [{"lr": 0.1, "m": 0.1}] * 3
    with pytest.raises(ConfigError, match=r"^initial: 3 entries but budget.population is 2$"):
        build(cls, Budget(2, 10, 10), initial, np.random.default_rng(0))


@pytest.mark.parametrize("cls", ["grid", "random"])
def test_initial_entry_outside_the_space_is_a_config_error(cls):
    with pytest.raises(ConfigError, match=r"^initial\[0\].lr: 2.0 is outside"):
        build(cls, Budget(4, 10, 10), [{"lr": 2.0, "m": 0.1}], np.random.default_rng(0))


def build(cls, budget, initial, rng):
    if cls == "grid":
        return GridStrategy(SPACE, budget, {}, initial, rng)
    return RandomStrategy(SPACE, budget, initial, rng)


def test_random_samples_are_seeded_distinct_and_in_the_space():
    a = RandomStrategy(SPACE, Budget(9, 10, 10), INITIAL, np.random.default_rng(3))
    b = RandomStrategy(SPACE, Budget(9, 10, 10), INITIAL, np.random.default_rng(3))
    c = RandomStrategy(SPACE, Budget(9, 10, 10), INITIAL, np.random.default_rng(4))
    assert a.hparams == b.hparams
    assert a.hparams[1:] != c.hparams[1:]
    assert a.hparams[0] == {"lr": 0.5, "m": 0.0}
    for h in a.hparams:
        assert SPACE.validate(h, "h") == h and type(h["lr"]) is float
    assert a.name == "random"


def test_random_covers_each_dimension_with_more_values_than_a_grid_of_the_same_size():
    # Bergstra & Bengio 2012: 16 random points give 16 distinct lr values; a 4x4 grid gives 4.
    random = RandomStrategy(SPACE, Budget(16, 10, 10), [], np.random.default_rng(0))
    grid = GridStrategy(SPACE, Budget(16, 10, 10), {}, [], np.random.default_rng(0))
    assert len({h["lr"] for h in random.hparams}) == 16
    assert len({h["lr"] for h in grid.hparams}) == 4


def test_random_draws_follow_the_log_prior():
    strategy = RandomStrategy(SPACE, Budget(400, 10, 10), [], np.random.default_rng(1))
    decades = np.floor(np.log10([h["lr"] for h in strategy.hparams])) + 4
    counts = np.bincount(decades.astype(int), minlength=4)
    assert counts.min() > 70, counts


def test_a_member_gets_one_segment_at_a_time_until_its_steps_are_used():
    strategy = RandomStrategy(SPACE, Budget(2, 20, 10), [], np.random.default_rng(0))
    first = strategy.ask(view())
    assert [type(d) for d in first] == [Start, Start, Train, Train]
    # the runner has not told anything yet: no second Train, even if its view says idle
    assert strategy.ask(view(idle(0, 0), idle(1, 0))) == []
    strategy.tell(result(0, 0, 10))
    assert strategy.ask(view(idle(0, 10), idle(1, 0))) == [Train(0, 10)]
    strategy.tell(result(0, 10, 20))
    assert strategy.ask(view(idle(0, 20), idle(1, 0))) == []
    assert not strategy.is_finished(view(idle(0, 20), idle(1, 0)))
    strategy.tell(result(1, 0, 10))
    assert strategy.ask(view(idle(0, 20), idle(1, 10))) == [Train(1, 10)]
    strategy.tell(result(1, 10, 20))
    assert strategy.ask(view(idle(0, 20), idle(1, 20))) == []
    assert strategy.is_finished(view(idle(0, 20), idle(1, 20)))


def test_busy_members_in_the_view_get_no_train():
    strategy = RandomStrategy(SPACE, Budget(2, 20, 10), [], np.random.default_rng(0))
    busy = MemberView(1, {}, 0, None, busy=True)
    # a resumed strategy: members exist already, nothing of ours is outstanding
    assert strategy.ask(view(idle(0, 10), busy)) == [Train(0, 10)]


@pytest.mark.parametrize("cls", ["grid", "random"])
def test_a_failed_member_is_out(cls):
    strategy = build(cls, Budget(2, 20, 10), INITIAL, np.random.default_rng(0))
    strategy.ask(view())
    strategy.on_failure(0, "ValueError: boom")
    strategy.tell(result(1, 0, 10))
    assert strategy.ask(view(idle(0, 0), idle(1, 10))) == [Train(1, 10)]
    strategy.tell(result(1, 10, 20))
    assert strategy.ask(view(idle(0, 0), idle(1, 20))) == []
    assert strategy.is_finished(view(idle(0, 0), idle(1, 20)))


def test_a_member_failed_in_the_view_is_out_after_a_resume():
    strategy = RandomStrategy(SPACE, Budget(2, 20, 10), [], np.random.default_rng(0))
    members = view(idle(0, 10, failed=True), idle(1, 20))
    assert strategy.ask(members) == []
    assert strategy.is_finished(members)


def test_resume_starts_only_members_not_yet_started():
    strategy = RandomStrategy(SPACE, Budget(3, 20, 10), [], np.random.default_rng(0))
    decisions = strategy.ask(view(idle(0, 20), idle(1, 10)))
    assert decisions == [Start(2, strategy.hparams[2]), Train(1, 10), Train(2, 20)]  # the steps each has left
