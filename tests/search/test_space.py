"""The search space: parsing [space], sampling, clipping, membership, validation and grid points."""

import math

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from models.errors import ConfigError
from search.space import Dimension, SearchSpace

TABLE = {
    "lr": {"loguniform": [1e-4, 1.0]},
    "momentum": {"uniform": [0.0, 0.99]},
    "layers": {"int": [1, 4]},
    "act": {"choice": ["relu", "tanh", "gelu"]},
}


@pytest.fixture
def space():
    return SearchSpace.from_config(TABLE)


def test_from_config_keeps_order_kinds_and_bounds(space):
    assert list(space) == ["lr", "momentum", "layers", "act"]
    assert space["lr"] == Dimension("lr", "loguniform", 1e-4, 1.0)
    assert space["layers"] == Dimension("layers", "int", 1, 4)
    assert isinstance(space["layers"].low, int)
    assert space["momentum"].low == 0.0 and isinstance(space["momentum"].low, float)
    assert space["act"].choices == ("relu", "tanh", "gelu")


def test_distributions_are_optunas(space):
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1.0, log=True)
    assert d["momentum"] == FloatDistribution(0.0, 0.99)
    assert d["layers"] == IntDistribution(1, 4)
    assert d["act"] == CategoricalDistribution(["relu", "tanh", "gelu"])


@pytest.mark.parametrize(
    "table, message",
    [
        ({}, "space: must define at least one hyperparameter"),
        ([1, 2], "space: must be a table"),
        ({"lr": {"normal": [0, 1]}}, "space.lr: unknown kind 'normal'"),
        ({"lr": [0, 1]}, "space.lr: must be one of"),
        ({"lr": {"uniform": [0, 1], "int": [0, 1]}}, "space.lr: must be one of"),
        ({"lr": {"uniform": [1, 1]}}, "space.lr: low must be < high, got [1, 1]"),
        ({"lr": {"uniform": [2.0, 1.0]}}, "space.lr: low must be < high"),
        ({"lr": {"int": [3, 3]}}, "space.lr: low must be < high"),
        ({"lr": {"loguniform": [0.0, 1.0]}}, "space.lr: loguniform low must be > 0, got 0.0"),
        ({"lr": {"loguniform": [-1.0, 1.0]}}, "space.lr: loguniform low must be > 0"),
        ({"lr": {"uniform": [0.0]}}, "space.lr: uniform needs [low, high]"),
        ({"lr": {"uniform": "0,1"}}, "space.lr: uniform needs [low, high]"),
        ({"lr": {"uniform": ["a", 1]}}, "space.lr: uniform bounds must be finite numbers"),
        ({"lr": {"uniform": [True, 2]}}, "space.lr: uniform bounds must be finite numbers"),
        ({"lr": {"uniform": [0.0, math.inf]}}, "space.lr: uniform bounds must be finite numbers"),
        ({"n": {"int": [0.5, 3]}}, "space.n: int bounds must be integers"),
        ({"act": {"choice": []}}, "space.act: choice must be a non-empty list"),
        ({"act": {"choice": "relu"}}, "space.act: choice must be a non-empty list"),
        ({"act": {"choice": [[64], [128]]}}, "space.act: choices must be strings, numbers or booleans"),
        ({"act": {"choice": ["a", "a"]}}, "space.act: choice 'a' is listed twice"),
    ],
)
def test_from_config_rejects_bad_tables_in_one_line(table, message):
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_config(table)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_int_bounds_written_as_whole_floats_are_ints():
    dim = SearchSpace.from_config({"n": {"int": [1.0, 3.0]}})["n"]
    assert (dim.low, dim.high) == (1, 3) and isinstance(dim.low, int)


def test_sample_is_seeded_in_range_and_plain_python(space):
    a = [space.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(2000)]
    for draw in draws:
        assert all(space[name].contains(value) for name, value in draw.items())
        assert type(draw["lr"]) is float and type(draw["layers"]) is int and type(draw["act"]) is str
    # loguniform: the decades are equally likely (a uniform draw would put ~90% in the top decade)
    decades = np.floor(np.log10([d["lr"] for d in draws]))
    counts = np.bincount((decades + 4).astype(int), minlength=4)
    assert counts.min() > 400 and counts.max() < 600
    assert {d["layers"] for d in draws} == {1, 2, 3, 4}
    assert {d["act"] for d in draws} == {"relu", "tanh", "gelu"}
    assert 0.45 < np.mean([d["momentum"] for d in draws]) / 0.99 < 0.55


def test_clip(space):
    assert space["lr"].clip(5.0) == 1.0
    assert space["lr"].clip(1e-9) == 1e-4
    assert space["momentum"].clip(0.5) == 0.5
    assert space["momentum"].clip(-1) == 0.0 and type(space["momentum"].clip(-1)) is float
    assert space["layers"].clip(2.6) == 3 and type(space["layers"].clip(2.6)) is int
    assert space["layers"].clip(0.2) == 1
    assert space["layers"].clip(9.7) == 4
    assert space["act"].clip("tanh") == "tanh"
    with pytest.raises(ValueError):
        space["act"].clip("sigmoid")


def test_contains(space):
    assert space["lr"].contains(1e-4) and space["lr"].contains(1.0) and space["lr"].contains(1)
    assert not space["lr"].contains(1.0000001)
    assert not space["lr"].contains(math.nan)
    assert not space["lr"].contains(True)
    assert not space["lr"].contains("0.1")
    assert space["layers"].contains(2) and space["layers"].contains(2.0)
    assert not space["layers"].contains(2.5) and not space["layers"].contains(5)
    assert space["act"].contains("relu") and not space["act"].contains("RELU")
    flags = SearchSpace.from_config({"f": {"choice": [1, True]}})["f"]
    assert flags.contains(True) and flags.contains(1) and not SearchSpace.from_config(
        {"f": {"choice": [1]}})["f"].contains(True)


def test_validate_returns_canonical_values_in_space_order(space):
    got = space.validate({"act": "gelu", "layers": 2.0, "momentum": 0, "lr": 1}, "initial[0]")
    assert list(got) == list(space)
    assert got == {"lr": 1.0, "momentum": 0.0, "layers": 2, "act": "gelu"}
    assert type(got["layers"]) is int and type(got["lr"]) is float


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"lr": 0.1, "momentum": 0.5, "layers": 2, "act": "relu", "beta": 1}, "initial[1].beta: unknown hyperparameter"),
        ({"lr": 0.1, "momentum": 0.5, "layers": 2}, "initial[1].act: missing"),
        ({"lr": 2.0, "momentum": 0.5, "layers": 2, "act": "relu"}, "initial[1].lr: 2.0 is outside the space (loguniform [0.0001, 1.0])"),
        ({"lr": 0.1, "momentum": 0.5, "layers": 2.5, "act": "relu"}, "initial[1].layers: 2.5 is outside"),
        ({"lr": 0.1, "momentum": 0.5, "layers": 2, "act": "elu"}, "initial[1].act: 'elu' is outside the space (choice of"),
        ({"lr": "fast", "momentum": 0.5, "layers": 2, "act": "relu"}, "initial[1].lr: 'fast' is outside"),
        ([0.1], "initial[1]: must be a table"),
    ],
)
def test_validate_names_the_field(space, hparams, message):
    with pytest.raises(ConfigError, match=None) as info:
        space.validate(hparams, "initial[1]")
    assert message in str(info.value)


def test_grid_points_per_dimension_log_spaced_and_centred():
    space = SearchSpace.from_config({"lr": {"loguniform": [1e-4, 1.0]}, "m": {"uniform": [0.0, 0.9]}})
    points = space.grid({}, 4)
    assert points == [
        {"lr": 1e-3, "m": 0.225}, {"lr": 1e-3, "m": 0.675},
        {"lr": 0.1, "m": 0.225}, {"lr": 0.1, "m": 0.675},
    ]
    one = space.grid({}, 1)
    assert one == [{"lr": 1e-2, "m": 0.45}]


def test_grid_explicit_lists_and_choices_fix_the_rest():
    space = SearchSpace.from_config(TABLE)
    points = space.grid({"lr": [1e-3, 1e-2, 0.1]}, 3 * 3 * 2 * 2)
    assert len(points) == 36
    assert len({tuple(p.values()) for p in points}) == 36
    assert {p["lr"] for p in points} == {1e-3, 1e-2, 0.1}
    assert {p["act"] for p in points} == {"relu", "tanh", "gelu"}
    assert {p["layers"] for p in points} == {2, 3}
    assert {p["momentum"] for p in points} == {0.2475, 0.7425}
    for p in points:
        assert space.validate(p, "grid") == p
    # the first dimension varies slowest: the cross product in space order
    assert [p["lr"] for p in points[:12]] == [1e-3] * 12


def test_grid_all_explicit_must_match_count():
    space = SearchSpace.from_config({"lr": {"loguniform": [1e-4, 1.0]}, "act": {"choice": ["a", "b"]}})
    assert len(space.grid({"lr": [0.1, 0.01]}, 4)) == 4
    with pytest.raises(ConfigError) as info:
        space.grid({"lr": [0.1, 0.01]}, 5)
    assert str(info.value).startswith("grid: [grid] lists and choices give 4 points but 5 grid members")
    assert "budget.population" in str(info.value)


def test_grid_misfit_says_the_sizes_and_the_fix():
    space = SearchSpace.from_config({"lr": {"loguniform": [1e-4, 1.0]}, "m": {"uniform": [0.0, 0.9]}})
    with pytest.raises(ConfigError) as info:
        space.grid({}, 8)
    message = str(info.value)
    assert "8 grid members cannot be 1 fixed point(s) x n^2" in message
    assert "lr, m" in message and "1, 4, 9, 16, 25" in message and "[grid]" in message


def test_grid_int_dimension_too_narrow_for_n_distinct_points():
    space = SearchSpace.from_config({"n": {"int": [1, 2]}})
    assert space.grid({}, 2) == [{"n": 1}, {"n": 2}]
    with pytest.raises(ConfigError, match=r"^grid.n: 3 distinct points do not fit in int \[1, 2\]"):
        space.grid({}, 3)


@pytest.mark.parametrize(
    "explicit, message",
    [
        ({"beta": [1]}, "grid.beta: not a dimension of [space]"),
        ({"lr": []}, "grid.lr: must be a non-empty list"),
        ({"lr": 0.1}, "grid.lr: must be a non-empty list"),
        ({"lr": [0.1, 5.0]}, "grid.lr: 5.0 is outside the space"),
        ({"lr": [0.1, 0.1]}, "grid.lr: 0.1 is listed twice"),
        ({"act": ["relu", "swish"]}, "grid.act: 'swish' is outside"),
    ],
)
def test_grid_rejects_bad_explicit_lists(space, explicit, message):
    with pytest.raises(ConfigError) as info:
        space.grid(explicit, 0)
    assert message in str(info.value)


def test_grid_of_zero_points_is_empty(space):
    assert space.grid({"lr": [0.1]}, 0) == []
