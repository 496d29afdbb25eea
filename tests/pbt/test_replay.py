"""``pbt.replay``: a fresh member retrained on the best member's schedule, on runs made by the real runner."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from models.errors import StoreError
from pbt.api import run
from pbt.config import parse_config
from pbt.replay import format_replay, replay
from search.store import RunStore, exploits, load_run

TOY = Path(__file__).resolve().parents[2] / "examples" / "toy.toml"


def toy_config(population: int, synchronous: bool) -> Any:
    raw = tomllib.loads(TOY.read_text())
    raw["budget"].update(population=population, steps=80, eval_every=2)
    raw["pbt"].update(interval=4, resample_probability=0.5, synchronous=synchronous)
    return parse_config(raw, source=str(TOY))


@pytest.mark.parametrize("synchronous", [True, False])
def test_replaying_the_toy_reproduces_the_best_member_exactly(ray_session, tmp_path: Path,
                                                               synchronous: bool) -> None:
    # the toy is deterministic whatever the seed, so the schedule alone must give the same weights:
    # this checks the lineage, the weight clock through donors, and the replay loop together
    summary = run(toy_config(6, synchronous), strategy="pbt", seed=4, out=tmp_path / "run", workers=2)
    data = load_run(tmp_path / "run")
    best = summary["best"]["member"]
    assert summary["exploits"] > 0
    result = replay(tmp_path / "run")
    assert result["member"] == best
    assert result["schedule"] == summary["best"]["schedule"]
    assert result["replay"]["Q"] == result["original"]["Q"] == summary["best"]["objective"]
    assert result["replay"]["theta0"] == result["original"]["theta0"]
    if synchronous:  # deterministic: the best member's hyperparameters changed along its lineage
        assert len(summary["best"]["schedule"]) > 1 and result["steps"] == 80
        assert all(e.step == e.donor_step for e in exploits(data).itertuples())
    assert replay(tmp_path / "run") == result  # the default seed is fixed by the run's seed


def test_replay_of_an_mlp_run_reports_validation_and_test_metrics(ray_session, tmp_path: Path) -> None:
    raw = {
        "objective": "val_accuracy", "mode": "max",
        "trainable": {"name": "mlp", "dataset": "digits", "hidden": [32], "batch_size": 32},
        "space": {"lr": {"loguniform": [1e-2, 0.5]}, "momentum": {"uniform": [0.0, 0.9]}},
        "budget": {"population": 4, "steps": 300, "eval_every": 50},
        "pbt": {"interval": 50, "fraction": 0.25, "synchronous": True},
    }
    summary = run(parse_config(raw, "test"), strategy="pbt", seed=1, out=tmp_path / "run", workers=2)
    tested = load_run(tmp_path / "run").results.dropna(subset=["test_accuracy"])
    assert sorted(tested["member"]) == [0, 1, 2, 3] and set(tested["step"]) == {300}  # each member's last only
    result = replay(tmp_path / "run")
    other = replay(tmp_path / "run", seed=12345)
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert math.isfinite(result["replay"][key]) and math.isfinite(other["replay"][key])
        assert key in result["original"]
    assert result["original"]["val_accuracy"] == summary["best"]["objective"]
    assert result["original"]["test_accuracy"] == summary["best"]["test"]["test_accuracy"]
    assert result["replay"]["val_accuracy"] > 0.8  # the schedule trains a fresh network well
    assert other["seed"] == 12345 and other["replay"] != result["replay"]  # another initialisation
    text = format_replay(result)
    assert f"best member {result['member']}" in text
    assert any(line.startswith("test_accuracy") for line in text.splitlines())


def test_replay_needs_a_finished_run(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", config={}, strategy="pbt", seed=0, population=2,
                            steps_per_member=8, eval_every=4, objective="Q", mode="max")
    with pytest.raises(StoreError, match="the run has not finished"):
        replay(tmp_path / "run")
    store.write_summary({"strategy": "pbt", "best": None})  # every member failed before evaluating
    store.close()
    with pytest.raises(StoreError, match="no member has a validation objective"):
        replay(tmp_path / "run")
    with pytest.raises(StoreError, match="not a run directory"):
        replay(tmp_path / "nowhere")
