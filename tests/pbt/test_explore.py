"""Explore: perturb or resample, never leaving the space. Pure, exhaustive, no Ray."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pbt.explore import explore, perturb
from search.space import Dimension, SearchSpace

SPACE = SearchSpace.from_config({
    "lr": {"loguniform": [1e-4, 1.0]},
    "momentum": {"uniform": [0.0, 0.99]},
    "shift": {"uniform": [-1.0, 1.0]},
    "layers": {"int": [0, 5]},
    "units": {"int": [1, 3]},
    "offset": {"int": [-3, 3]},
    "act": {"choice": ["relu", "tanh", "sigmoid"]},
    "flag": {"choice": [True, 1, "one"]},
    "only": {"choice": ["x"]},
})

EDGES = {
    "lr": [1e-4, 1e-3, 0.9, 1.0],
    "momentum": [0.0, 0.5, 0.9, 0.99],
    "shift": [-1.0, -0.01, 0.0, 0.9, 1.0],
    "layers": [0, 1, 2, 5],
    "units": [1, 2, 3],
    "offset": [-3, -1, 0, 1, 3],
    "act": ["relu", "tanh", "sigmoid"],
    "flag": [True, 1, "one"],
    "only": ["x"],
}


@pytest.mark.parametrize("resample_probability", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("factors", [(0.8, 1.2), (0.5, 2.0, 3.0), (1.0,), (0.01, 100.0)])
def test_explore_never_leaves_the_space(resample_probability: float, factors: tuple[float, ...]) -> None:
    for seed in range(150):
        rng = np.random.default_rng(seed)
        hparams = {name: values[seed % len(values)] for name, values in EDGES.items()}
        for _ in range(4):  # chains of explores, as a lineage would apply them
            new, ops = explore(hparams, SPACE, rng, resample_probability=resample_probability,
                               perturb_factors=factors)
            assert SPACE.validate(new, "explored") == new
            assert list(new) == list(SPACE) == list(ops)
            for name in new:
                assert type(new[name]) is type(SPACE.validate(new, "x")[name])
            hparams = new


def test_every_edge_value_of_every_dimension_stays_inside() -> None:
    for name, dim in SPACE.items():
        for value in EDGES[name]:
            for seed in range(40):
                moved, _ = perturb(dim, value, np.random.default_rng(seed), (0.5, 0.8, 1.2, 2.0))
                assert dim.contains(moved), (name, value, moved)


def test_log_uniform_values_are_multiplied_by_a_listed_factor_then_clipped() -> None:
    lr = SPACE["lr"]
    seen = Counter()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        value, op = perturb(lr, 1e-2, rng, (0.8, 1.2))
        assert value in (pytest.approx(0.008), pytest.approx(0.012))
        assert op in ("*0.8", "*1.2")
        seen[op] += 1
    assert abs(seen["*0.8"] - 1000) < 100  # factors drawn uniformly
    assert perturb(lr, 0.9, np.random.default_rng(0), (1.2,)) == (1.0, "*1.2")
    assert perturb(lr, 1e-4, np.random.default_rng(0), (0.8,)) == (1e-4, "*0.8")


@pytest.mark.parametrize(
    ("name", "value", "factor", "expected", "op"),
    [
        ("momentum", 0.5, 1.2, 0.698, "+0.198"),   # a fifth of the width 0.99
        ("momentum", 0.5, 0.8, 0.302, "-0.198"),
        ("momentum", 0.0, 1.2, 0.198, "+0.198"),   # 0 moves (0 × 1.2 would not)
        ("momentum", 0.9, 1.2, 0.99, "+0.198"),    # clipped at the top
        ("momentum", 0.1, 0.8, 0.0, "-0.198"),     # and at the bottom
        ("shift", -0.5, 1.2, -0.1, "+0.4"),        # up is up on both sides of 0
        ("shift", 0.5, 0.5, -0.5, "-1"),
        ("gamma", 0.99, 0.8, 0.9702, "-0.0198"),   # a narrow range far from 0 is not thrown to its ends
        ("gamma", 0.99, 1.2, 0.999, "+0.0198"),
        ("momentum", 0.5, 1.0, 0.5, "+0"),
    ],
)
def test_uniform_values_move_by_a_share_of_their_range(name: str, value: float, factor: float,
                                                        expected: float, op: str) -> None:
    dim = SPACE[name] if name in SPACE else Dimension(name, "uniform", 0.9, 0.999)
    moved, done = perturb(dim, value, np.random.default_rng(0), (factor,))
    assert (moved, done) == (pytest.approx(expected), op)


@pytest.mark.parametrize(
    ("value", "factor", "expected", "op"),
    [
        (0, 1.2, 1, "+1"),   # 0 × 1.2 rounds back to 0: move up one
        (1, 0.8, 0, "-1"),   # 1 × 0.8 rounds back to 1: move down one
        (1, 1.2, 2, "+1"),
        (2, 1.2, 3, "+1"),   # 2.4 rounds to 2
        (4, 1.2, 5, "*1.2"),
        (5, 1.2, 5, "*1.2"),  # at the top: clipped
        (0, 0.8, 0, "-1"),   # at the bottom: cannot move down
        (5, 0.5, 2, "*0.5"),  # round(2.5) == 2
        (3, 1.0, 3, "*1"),
    ],
)
def test_integers_round_and_never_stick(value: int, factor: float, expected: int, op: str) -> None:
    assert perturb(SPACE["layers"], value, np.random.default_rng(0), (factor,)) == (expected, op)


def test_negative_integers_move_in_the_factors_direction() -> None:
    offset = SPACE["offset"]
    assert perturb(offset, -1, np.random.default_rng(0), (0.8,)) == (0, "+1")  # -0.8: towards 0
    assert perturb(offset, -1, np.random.default_rng(0), (1.2,)) == (-2, "-1")  # -1.2: away from 0
    assert perturb(offset, -3, np.random.default_rng(0), (1.2,)) == (-3, "*1.2")  # clipped at low


def test_an_integer_walk_leaves_zero_and_one() -> None:
    rng = np.random.default_rng(9)
    value, visited = 0, set()
    for _ in range(300):
        value, _ = perturb(SPACE["layers"], value, rng, (0.8, 1.2))
        visited.add(value)
    assert visited == {0, 1, 2, 3, 4, 5}


def test_choices_move_to_a_neighbour() -> None:
    act = SPACE["act"]
    rng = np.random.default_rng(1)
    from_middle = Counter(perturb(act, "tanh", rng, (0.8, 1.2)) for _ in range(1000))
    assert set(from_middle) == {("relu", "prev"), ("sigmoid", "next")}
    assert abs(from_middle[("relu", "prev")] - 500) < 80
    assert {perturb(act, "relu", rng, (0.8,)) for _ in range(50)} == {("tanh", "next")}
    assert {perturb(act, "sigmoid", rng, (0.8,)) for _ in range(50)} == {("tanh", "prev")}
    assert perturb(SPACE["only"], "x", rng, (0.8,)) == ("x", "keep")


def test_choices_keep_true_apart_from_one() -> None:
    flag = SPACE["flag"]
    rng = np.random.default_rng(2)
    moves = {perturb(flag, True, rng, (1.2,)) for _ in range(30)}
    assert moves == {(1, "next")}
    assert all(type(v) is int for v, _ in moves)
    assert {perturb(flag, 1, rng, (1.2,))[0] for _ in range(50)} == {True, "one"}


def test_resample_probability_is_respected_and_resamples_cover_the_prior() -> None:
    rng = np.random.default_rng(3)
    hparams = {name: values[0] for name, values in EDGES.items()}
    ops = Counter()
    resampled = []
    for _ in range(1000):
        new, done = explore(hparams, SPACE, rng, resample_probability=0.25, perturb_factors=(0.8, 1.2))
        ops.update(done.values())
        if done["momentum"] == "resample":
            resampled.append(new["momentum"])
    assert abs(ops["resample"] / (1000 * len(SPACE)) - 0.25) < 0.02
    assert min(resampled) < 0.1 and max(resampled) > 0.89
    never = explore(hparams, SPACE, rng, resample_probability=0.0, perturb_factors=(1.2,))[1]
    assert "resample" not in never.values()
    always = explore(hparams, SPACE, rng, resample_probability=1.0, perturb_factors=(1.2,))[1]
    assert set(always.values()) == {"resample"}


def test_same_seed_same_result_and_seeds_differ() -> None:
    hparams = {name: values[1 % len(values)] for name, values in EDGES.items()}

    def run(seed: int) -> list:
        rng = np.random.default_rng(seed)
        return [explore(hparams, SPACE, rng, resample_probability=0.3, perturb_factors=(0.8, 1.2))
                for _ in range(10)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_dimension_built_directly_works_too() -> None:
    dim = Dimension("n", "int", 1, 2)
    assert perturb(dim, 1, np.random.default_rng(0), (1.2,)) == (2, "+1")
    assert perturb(dim, 2, np.random.default_rng(0), (0.8,)) == (1, "-1")
