"""The runner on real Ray actors and a real store: budget, results, exploit hand-over, summary."""

from __future__ import annotations

import pytest
from trainables import toy_q, toy_raw

from models.errors import RunFailed, StrategyError
from pbt.api import run
from pbt.config import parse_config
from search.budget import Budget
from search.runner import Runner, member_seed, strategy_rng
from search.store import RunStore, exploits, load_run, schedule
from search.strategy import Exploit, PopulationView, SegmentResult, Start, Strategy, Train
from models import ToyQuadratic
from workers import TrainableSpec, WorkerPool


def _rows(run):
    return list(zip(run.results["member"], run.results["step"]))


def test_random_search_executes_the_budget_with_every_result(ray_session, tmp_path):
    config = parse_config(toy_raw(population=5, steps=40, eval_every=4), "test")
    seen = []
    summary = run(config, strategy="random", seed=3, out=tmp_path / "run", workers=2, on_progress=seen.append)
    data = load_run(tmp_path / "run")
    assert summary["budget_steps"] == 5 * 40 and summary["exploits"] == 0
    assert sorted(_rows(data)) == [(m, s) for m in range(5) for s in range(4, 41, 4)]  # none missing, none twice
    assert set(data.members["status"]) == {"finished"} and list(data.members["step"]) == [40] * 5
    assert sorted(data.events["kind"]) == ["finish"] * 5 + ["start"] * 5
    # every evaluation is the toy's own maths for that member's hyperparameters: states moved intact
    for row in data.results.to_dict("records"):
        assert row["objective"] == toy_q({"h0": row["hp.h0"], "h1": row["hp.h1"]}, row["step"])
        assert row["Q"] == row["objective"] and row["train_seconds"] >= 0 and row["worker"].startswith("w")
    final = data.results[data.results["step"] == 40].set_index("member")["objective"]
    assert summary["best"]["member"] == int(final.idxmax()) and summary["best"]["objective"] == final.max()
    assert summary["best"]["schedule"] == [[0, summary["best"]["hparams"]]] and summary["best"]["test"] == {}
    assert data.info["status"] == "finished" and data.summary == summary
    # the last snapshot names one state per member; nothing else is kept
    assert len(list((tmp_path / "run" / "checkpoints").glob("member-*.npz"))) == 5
    assert seen and seen[-1].steps_done == 200 and seen[-1].members_done == 5


def test_members_stay_on_the_worker_that_ran_them(ray_session, tmp_path):
    initial = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    config = parse_config(toy_raw(population=2, steps=40, eval_every=4, initial=initial), "test")
    run(config, strategy="grid", seed=0, out=tmp_path / "run", workers=2)
    workers = load_run(tmp_path / "run").results.groupby("member")["worker"].nunique()
    assert list(workers) == [1, 1]


def test_a_slower_workers_members_keep_up_with_the_population(ray_session, tmp_path):
    """Asynchronous PBT, one worker twice as slow as the other (3 and 6 ms a step). Members stay
    with their worker, but none is given a segment more than an interval ahead of the least
    advanced one, so the faster worker takes the slower one's members: the members' steps never
    spread over 3 intervals (with members kept by their worker they spread to 36 of the 80 steps)."""
    trainable = {"name": "trainables:SlowWorkerToy", "slow": str(tmp_path / "slow"), "delay": 0.003, "slowdown": 2}
    config = parse_config(toy_raw(population=4, steps=80, eval_every=4, trainable=trainable,
                                  pbt={"interval": 4, "burn_in": 80, "synchronous": False}), "test")  # no exploit
    run(config, strategy="pbt", seed=0, out=tmp_path / "run", workers=2)
    results = load_run(tmp_path / "run").results.sort_values("wall_time", kind="stable")
    clocks, spread = {}, 0
    for member, step in zip(results["member"], results["step"]):
        clocks[member] = step
        if len(clocks) == 4:
            spread = max(spread, max(clocks.values()) - min(clocks.values()))
    assert results.groupby("member")["worker"].nunique().max() == 2  # members moved to keep up
    assert spread <= 12, spread


class _CopyOnce(Strategy):
    """Two members train 8 steps; member 1 then takes member 0's state with new hparams; both finish."""

    name = "copy-once"

    def __init__(self) -> None:
        self.told: list[SegmentResult] = []
        self.phase = 0

    def ask(self, view: PopulationView) -> list:
        if self.phase == 0:
            self.phase = 1
            return [Start(0, {"h0": 1.0, "h1": 0.0}), Start(1, {"h0": 0.0, "h1": 1.0}), Train(0, 8), Train(1, 8)]
        if self.phase == 1 and len(self.told) == 2:
            self.phase = 2
            return [Exploit(1, 0, {"h0": 0.5, "h1": 0.5}, {"h0": "*0.5", "h1": "resample"}), Train(1, 8), Train(0, 8)]
        return []

    def tell(self, result: SegmentResult) -> None:
        self.told.append(result)

    def is_finished(self, view: PopulationView) -> bool:
        return len(self.told) == 4


def test_exploit_hands_the_donor_state_to_the_receiver(ray_session, tmp_path):
    budget = Budget(population=2, steps=16, eval_every=4)
    store = RunStore.create(tmp_path / "run", config={}, strategy="copy-once", seed=0, population=2,
                            steps_per_member=16, eval_every=4, objective="Q", mode="max")
    pool = WorkerPool(TrainableSpec(ToyQuadratic, {"lr": 0.01}), size=2)
    try:
        summary = Runner(_CopyOnce(), store, pool, budget=budget, objective="Q", mode="max", seed=0).run()
    finally:
        pool.shutdown()
        store.close()
    data = load_run(tmp_path / "run")
    toy = ToyQuadratic({"h0": 1.0, "h1": 0.0}, 0)
    toy.train(8)
    donor_q = toy.evaluate()["Q"]
    toy.set_hparams({"h0": 0.5, "h1": 0.5})
    toy.train(8)
    q1 = data.results.set_index(["member", "step"])["objective"]
    assert q1[(1, 16)] == toy.evaluate()["Q"]  # member 1 continued from member 0's weights
    table = exploits(data)
    assert table.to_dict("records") == [{
        "step": 8, "member": 1, "donor": 0, "donor_step": 8, "member_objective": q1[(1, 8)],
        "donor_objective": donor_q, "old_hparams": {"h0": 0.0, "h1": 1.0}, "new_hparams": {"h0": 0.5, "h1": 0.5}}]
    explore = data.events[data.events["kind"] == "explore"]["data"].iloc[0]
    assert explore == {"ops": {"h0": "*0.5", "h1": "resample"}, "old_hparams": {"h0": 1.0, "h1": 0.0},
                       "new_hparams": {"h0": 0.5, "h1": 0.5}}
    assert schedule(data, 1) == [(0, {"h0": 1.0, "h1": 0.0}), (8, {"h0": 0.5, "h1": 0.5})]
    assert summary["exploits"] == 1 and summary["budget_steps"] == 32
    assert summary["best"]["member"] == 1 and summary["best"]["schedule"] == [
        [0, {"h0": 1.0, "h1": 0.0}], [8, {"h0": 0.5, "h1": 0.5}]]
    # both members shared one state after the exploit until member 1 trained: one file per live state now
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.npz"))
    assert len(names) == 2 and names[0].startswith("member-0-") and names[1].startswith("member-1-")


class _Idle(Strategy):
    """Starts one member, then asks for nothing and never finishes."""

    name = "idle"

    def ask(self, view: PopulationView) -> list:
        return [] if view.members else [Start(0, {"h0": 1.0, "h1": 0.0})]

    def tell(self, result: SegmentResult) -> None:
        raise AssertionError("nothing was trained")

    def is_finished(self, view: PopulationView) -> bool:
        return False


def test_a_strategy_that_asks_for_nothing_while_a_worker_is_free_fails_the_run(ray_session, tmp_path):
    store = RunStore.create(tmp_path / "run", config={}, strategy="idle", seed=0, population=1,
                            steps_per_member=8, eval_every=4, objective="Q", mode="max")
    pool = WorkerPool(TrainableSpec(ToyQuadratic, {"lr": 0.01}), size=1)
    try:
        with pytest.raises(RunFailed) as failed:
            Runner(_Idle(), store, pool, budget=Budget(population=1, steps=8, eval_every=4), objective="Q",
                   mode="max", seed=0).run()
    finally:
        pool.shutdown()
        store.close()
    assert str(failed.value) == f"{tmp_path / 'run'}: run failed: the strategy asked for nothing while no member is training"
    assert isinstance(failed.value.__cause__, StrategyError)
    assert failed.value.resumable is False  # it failed before its first snapshot
    assert load_run(tmp_path / "run").info["status"] == "failed"


def test_one_rng_tree_from_the_seed():
    assert member_seed(5, 3) == member_seed(5, 3) != member_seed(5, 4) != member_seed(6, 4)
    assert strategy_rng(5).integers(1 << 30) == strategy_rng(5).integers(1 << 30)
    assert len({member_seed(0, m) for m in range(1000)}) == 1000
