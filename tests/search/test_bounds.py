"""Memory and disk stay bounded in long runs (issue 13): a PBT search of many intervals on real Ray
actors and real checkpoint files, its object store and checkpoint directory sampled as it runs."""

from __future__ import annotations

import time

import numpy as np
from trainables import toy_raw

from pbt.api import run
from pbt.config import parse_config
from search.checkpoints import load_checkpoint
from workers.cluster import object_store_bytes

POPULATION, INTERVALS = 8, 40


def test_object_store_and_checkpoints_stay_within_a_few_states_per_member(ray_session, tmp_path):
    """Asynchronous PBT, 8 members x 40 intervals, states of ~256 KB (in Ray's shared-memory store):
    at the end the object store holds <= 3 x population x state size, and the checkpoint files
    never exceed 2 x population x state size (sampled at every progress report and at the end)."""
    raw = toy_raw(population=POPULATION, steps=4 * INTERVALS, eval_every=4,
                  trainable={"name": "trainables:BulkyToy", "kb": 256, "delay": 0.002},
                  pbt={"interval": 4, "burn_in": 0})
    out = tmp_path / "run"
    time.sleep(1.5)  # Ray's view of its stores settles on what earlier tests left
    before = object_store_bytes()
    disk: list[int] = []
    store: list[int] = []

    def sample(progress) -> None:
        disk.append(sum(p.stat().st_size for p in (out / "checkpoints").glob("*.npz") if p.exists()))
        if progress.steps_done == progress.budget_steps:  # the last report: the runner holds every reference
            time.sleep(1.5)  # Ray's view of its shared-memory stores lags
            store.append(object_store_bytes() - before)

    summary = run(parse_config(raw, "test"), strategy="pbt", seed=0, out=out, workers=2, on_progress=sample)
    state = sum(a.nbytes for a in load_checkpoint(next((out / "checkpoints").glob("*.npz"))).values())
    unit = POPULATION * state
    assert summary["exploits"] > 0 and state > 256 * 1024
    assert store and store[-1] <= 3 * unit, f"object store {store[-1] / unit:.2f} x population x state"
    assert len(disk) > 5 and max(disk) <= 2 * unit, f"checkpoints {max(disk) / unit:.2f} x population x state"
    assert np.isfinite(summary["best"]["objective"])
