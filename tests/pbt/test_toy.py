"""The PBT paper's toy (DESIGN §7): two members from h = (1, 0) and (0, 1), 200 steps.

Grid (no exploit, no explore) stays at Q ≤ 0.39; PBT with its default settings (the example sets
only the interval) reaches Q ≥ 1.19 for most seeds, asynchronous and synchronous.

The two members are exact mirror images (θ0 and θ1 swap), so at equal steps their scores are
exactly equal. Synchronous PBT decides at boundaries where the pair always ties: the ranking draws
which of the two is ahead, and the other copies it and explores, so a tied pair still moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pbt_loop import Loop, LoopRecord

from models import ToyQuadratic
from pbt.api import run as api_run
from pbt.config import load_config
from pbt.settings import PBTSettings
from pbt.strategy import PBTStrategy
from search.budget import Budget
from search.grid import GridStrategy
from search.space import SearchSpace

SPACE = SearchSpace.from_config({"h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]}})
BUDGET = Budget(population=2, steps=200, eval_every=2)
INITIAL = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})
SEEDS = range(12)
TOY = Path(__file__).resolve().parents[2] / "examples" / "toy.toml"


def toy(hparams: Any, member: int) -> ToyQuadratic:
    return ToyQuadratic(hparams, member, lr=0.01)


def run(strategy: Any, seed: int) -> LoopRecord:
    # call times vary 1-3x, as on shared machines, so the members drift apart in time
    return Loop(strategy, toy, BUDGET, objective="Q", workers=2, timing_seed=seed, jitter=2.0).run()


def pbt(seed: int, synchronous: bool = False) -> PBTStrategy:
    settings = PBTSettings(interval=4, synchronous=synchronous)  # examples/toy.toml: defaults but the interval
    return PBTStrategy(SPACE, BUDGET, settings, INITIAL, np.random.default_rng(seed))


def test_grid_stays_at_or_below_0_39() -> None:
    for seed in SEEDS:
        grid = GridStrategy(SPACE, BUDGET, {}, INITIAL, np.random.default_rng(seed))
        record = run(grid, seed)
        assert max(metrics["Q"] for _, _, metrics, _ in record.results) <= 0.39
        assert record.steps_trained == BUDGET.total_steps


@pytest.mark.parametrize("synchronous", [False, True])
def test_pbt_reaches_1_19_within_200_steps_for_most_seeds(synchronous: bool) -> None:
    best = []
    for seed in SEEDS:
        record = run(pbt(seed, synchronous), seed)
        assert record.steps_trained == BUDGET.total_steps
        assert record.exploits
        best.append(record.best("Q"))
    # measured: 7 of 12 (asynchronous) and 6 of 12 (synchronous) reach 1.19, the rest 1.08-1.19. The
    # default burn-in (a quarter of the steps, which the spirals and the checkerboard need) leaves the
    # toy 148 steps; with burn_in = 20, 15 and 14 of 16 reach it (README: the quality suite).
    reached = sum(q >= 1.19 for q in best)
    assert reached >= 6, best
    assert min(best) > 1.05, best  # even the unlucky seeds are far above grid's 0.39


def test_synchronous_pbt_breaks_the_mirror_pairs_tie_by_a_draw() -> None:
    record = run(pbt(0, synchronous=True), 0)
    first = record.exploits[0]
    assert first["member_score"] == first["donor_score"]  # the pair is tied at every boundary


# -- end to end, through pbt.api.run on the real runner ------------------------------------------

def toy_config() -> Any:
    return load_config(TOY)  # asynchronous; evaluations every 2 steps, decisions every 4


def test_end_to_end_grid_stays_low_and_pbt_climbs(ray_session, tmp_path: Path) -> None:
    config = toy_config()
    grid = api_run(config, strategy="grid", seed=0, out=tmp_path / "grid", workers=2)
    assert grid["best"]["objective"] <= 0.39 and grid["exploits"] == 0
    best = []
    for seed in range(5):
        summary = api_run(config, strategy="pbt", seed=seed, out=tmp_path / f"pbt{seed}", workers=2)
        assert summary["budget_steps"] == BUDGET.total_steps
        best.append(summary["best"]["objective"])
    # real workers' timing decides the asynchronous outcome, so a seed does not fix it here; with the
    # default burn-in (52 of 200 steps) the quality suite's runs reached 1.108-1.198, grid 0.3897
    assert max(best) >= 1.18, best
    assert sum(q > 1.0 for q in best) >= 4, best
