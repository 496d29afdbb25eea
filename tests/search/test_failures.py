"""Failures on real Ray: a worker process that dies mid-train, a trainable that raises, a replacement
worker that comes up between two polls of the pool."""

from __future__ import annotations

import ray
from trainables import SlowToy, toy_q, toy_raw

from pbt.api import run
from pbt.config import parse_config
from pbt.strategies import make_strategy
from search.runner import Runner, strategy_rng
from search.store import RunStore, load_run
from workers import TrainableSpec, WorkerPool
from workers.pool import PoolWorker


def test_worker_death_mid_train_is_recovered_from_the_last_state(ray_session, tmp_path):
    marker = tmp_path / "died"
    trainable = {"name": "trainables:SlowToy", "delay": 0.001, "die_once": str(marker), "die_at": 20}
    config = parse_config(toy_raw(population=3, steps=40, eval_every=4, trainable=trainable), "test")
    summary = run(config, strategy="random", seed=1, out=tmp_path / "run", workers=2)
    assert marker.exists()  # a worker really called os._exit in the middle of train()
    data = load_run(tmp_path / "run")
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(3) for s in range(4, 41, 4)]
    failures = data.events[data.events["kind"] == "failure"]
    assert len(failures) >= 1 and all(d["recovered"] for d in failures["data"])
    assert {"error", "worker", "node"} <= set(failures["data"].iloc[0])
    assert set(data.members["status"]) == {"finished"}
    # continued from its last state: no step was trained twice, and the maths is unbroken
    assert summary["budget_steps"] == 3 * 40
    for row in data.results.to_dict("records"):
        assert row["objective"] == toy_q({"h0": row["hp.h0"], "h1": row["hp.h1"]}, row["step"])


def test_a_trainable_that_raises_is_a_failed_member_and_the_search_goes_on(ray_session, tmp_path):
    trainable = {"name": "trainables:SlowToy", "raise_h0": 0.5}
    initial = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.5, "h1": 0.5}, {"h0": 0.0, "h1": 1.0}]
    config = parse_config(toy_raw(population=3, steps=20, eval_every=4, trainable=trainable, initial=initial),
                          "test")
    summary = run(config, strategy="random", seed=1, out=tmp_path / "run", workers=2)
    data = load_run(tmp_path / "run")
    members = data.members.set_index("member")
    assert list(members["status"]) == ["finished", "failed", "finished"]
    assert members.loc[1, "error"] == "ValueError: diverged at step 0"
    failure = data.events[data.events["kind"] == "failure"]
    assert list(failure["member"]) == [1] and failure["data"].iloc[0]["recovered"] is False
    assert sorted(set(data.results["member"])) == [0, 2] and len(data.results) == 2 * 5
    assert summary["failed_members"] == [1] and summary["best"]["member"] in (0, 2)
    assert summary["budget_steps"] == 2 * 20


def test_a_worker_death_counts_against_the_running_call_only(ray_session, tmp_path):
    # one worker, items of 0.4 s: after the first calls each call carries one member, and a second
    # call waits behind the running one. Member 0 kills the worker 0.2 s into its item from step 8,
    # while member 1's next item is queued behind it: member 1 is re-sent, not charged a death.
    marker = tmp_path / "died"
    trainable = {"name": "trainables:SlowToy", "delay": 0.1, "die_once": str(marker), "die_at": 10}
    config = parse_config(toy_raw(population=3, steps=16, eval_every=4, trainable=trainable), "test")
    run(config, strategy="random", seed=1, out=tmp_path / "run", workers=1)
    assert marker.exists()
    data = load_run(tmp_path / "run")
    failures = data.events[data.events["kind"] == "failure"]
    assert list(failures["member"]) == [0] and failures["data"].iloc[0]["recovered"] is True
    assert set(data.members["status"]) == {"finished"}
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(3) for s in range(4, 17, 4)]


class _ReplacementUpBetweenPolls(WorkerPool):
    """The real pool, with one poll scripted: the first poll after a worker is replaced reports no
    worker up, and returns only once the replacement is up, so the next poll sees it. The runner's
    race on demand: a replacement that comes up between two polls of the pool."""

    def __init__(self, spec: TrainableSpec, size: int) -> None:
        super().__init__(spec, size)
        self.replacement: PoolWorker | None = None
        self.scripted_polls = 0

    def replace(self, worker_id: str) -> PoolWorker:
        self.replacement = super().replace(worker_id)
        return self.replacement

    def poll(self) -> list[PoolWorker]:
        if self.replacement is None:
            return super().poll()
        ray.get(self.replacement.ready)  # up now; this poll does not say so yet
        self.replacement = None
        self.scripted_polls += 1
        return []


def test_a_replacement_that_comes_up_between_two_polls_takes_the_waiting_members(ray_session, tmp_path):
    # one worker; member 0 kills it from step 6, so every member waits for its replacement
    marker = tmp_path / "died"
    settings = {"delay": 0.01, "die_once": str(marker), "die_at": 6}
    config = parse_config(toy_raw(population=2, steps=12, eval_every=4,
                                  trainable={"name": "trainables:SlowToy", **settings}), "test")
    store = RunStore.create(tmp_path / "run", config=config.raw, strategy="random", seed=1, population=2,
                            steps_per_member=12, eval_every=4, objective="Q", mode="max")
    pool = _ReplacementUpBetweenPolls(TrainableSpec(SlowToy, settings), size=1)
    try:
        summary = Runner(make_strategy("random", config, strategy_rng(1)), store, pool, budget=config.budget,
                         objective="Q", mode="max", seed=1).run()
    finally:
        pool.shutdown()
        store.close()
    assert marker.exists() and pool.scripted_polls == 1  # the worker died and the race was played
    data = load_run(tmp_path / "run")
    assert sorted(zip(data.results["member"], data.results["step"])) == [(m, s) for m in range(2) for s in (4, 8, 12)]
    assert set(data.members["status"]) == {"finished"} and summary["budget_steps"] == 2 * 12
