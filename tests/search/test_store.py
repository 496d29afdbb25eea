"""The run store on a real SQLite file: round trip, read-only loading during writes, rollback, lineage."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing

import pytest

from models.errors import StoreError
from search.store import (
    Lineage, RunStore, ancestry, best_member, best_so_far, exploits, load_run, member_ranking, schedule,
    weight_steps,
)

CONFIG = {"objective": "Q", "mode": "max", "space": {"h0": {"uniform": [0.0, 1.0]}}}


def _store(tmp_path, population=3):
    return RunStore.create(
        tmp_path / "run", config=CONFIG, strategy="pbt", seed=7, population=population,
        steps_per_member=20, eval_every=10, objective="Q", mode="max",
    )


def _result(member, step, q, h0, **extra):
    return {"member": member, "step": step, "objective": q, "metrics": {"Q": q, "test_Q": q / 2, **extra},
            "hparams": {"h0": h0}, "worker": "w0", "node": "n0", "wall_time": step / 10, "train_seconds": 0.5}


def _exploit(store, t, member, step, donor, donor_step, old, new):
    store.add_event(t, "exploit", member, step, {
        "donor": donor, "donor_step": donor_step, "member_objective": 0.1, "donor_objective": 0.9,
        "old_hparams": old, "new_hparams": new})


def test_round_trip_into_frames(tmp_path):
    store = _store(tmp_path)
    for m in range(2):
        store.add_event(0.0, "start", m, 0, {"hparams": {"h0": 0.5 + m / 10}})
        store.put_member(m, status="running", step=0, objective=None, hparams={"h0": 0.5 + m / 10})
    store.add_results([_result(0, 10, 0.3, 0.5), _result(0, 20, 0.6, 0.5), _result(1, 10, float("nan"), 0.6)])
    store.put_member(1, status="failed", step=10, objective=None, hparams={"h0": 0.6}, error="boom")
    store.finish("finished")
    store.write_summary({"best": {"member": 0}})
    run = load_run(tmp_path / "run")
    assert run.info["strategy"] == "pbt" and run.info["seed"] == 7 and run.info["status"] == "finished"
    assert run.info["config"] == CONFIG and run.info["finished_at"] >= run.info["started_at"]
    assert list(run.results["member"]) == [0, 0, 1] and list(run.results["step"]) == [10, 20, 10]
    assert {"Q", "test_Q", "hp.h0", "worker", "node", "wall_time", "train_seconds"} <= set(run.results.columns)
    assert run.results["objective"].isna().tolist() == [False, False, True]
    assert run.members.set_index("member").loc[1, "error"] == "boom"
    assert run.members.set_index("member").loc[0, "hp.h0"] == 0.5
    assert list(run.events["kind"]) == ["start", "start"] and run.events["data"][0] == {"hparams": {"h0": 0.5}}
    assert run.summary == {"best": {"member": 0}}


def test_results_are_idempotent_per_member_and_step(tmp_path):
    store = _store(tmp_path)
    store.add_results([_result(0, 10, 0.3, 0.5)])
    store.add_results([_result(0, 10, 0.4, 0.5)])
    run = load_run(tmp_path / "run")
    assert len(run.results) == 1 and run.results["objective"][0] == 0.4


def test_load_run_is_read_only_and_works_while_written(tmp_path):
    store = _store(tmp_path)
    store.add_results([_result(0, 10, 0.3, 0.5)])
    first = load_run(tmp_path / "run")  # the writer's connection is still open
    store.add_results([_result(0, 20, 0.5, 0.5)])
    assert len(first.results) == 1 and len(load_run(tmp_path / "run").results) == 2
    uri = f"{(tmp_path / 'run' / 'run.db').resolve().as_uri()}?mode=ro"
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(uri, uri=True).execute("DELETE FROM results")
    store.close()
    assert len(load_run(tmp_path / "run").results) == 2  # after the WAL was folded in, too


def test_rollback_returns_to_the_snapshot(tmp_path):
    store = _store(tmp_path)
    store.add_event(0.0, "start", 0, 0, {"hparams": {"h0": 0.5}})
    store.add_results([_result(0, 10, 0.3, 0.5)])
    members = {"0": {"status": "running", "error": None, "step": 10, "objective": 0.3, "hparams": {"h0": 0.5}}}
    store.commit_snapshot({"members": members, "strategy": {"x": 1}}, store.last_event())
    store.add_results([_result(0, 20, 0.6, 0.5), _result(1, 10, 0.2, 0.1)])
    store.add_event(1.0, "finish", 0, 20, {})
    store.put_member(0, status="finished", step=20, objective=0.6, hparams={"h0": 0.5})
    state = RunStore.open(tmp_path / "run").rollback()
    assert state["strategy"] == {"x": 1}
    run = load_run(tmp_path / "run")
    assert list(zip(run.results["member"], run.results["step"])) == [(0, 10)]
    assert list(run.events["kind"]) == ["start"]
    assert run.members.to_dict("records")[0]["step"] == 10 and run.info["status"] == "running"


def test_a_commit_that_fails_is_rolled_back_and_the_next_write_succeeds(tmp_path):
    _store(tmp_path).close()
    run_dir = tmp_path / "run"
    # A deferred foreign key is checked at COMMIT: an event of kind "refused" makes the COMMIT itself
    # fail (as a busy or full disk can), and SQLite then keeps the transaction open.
    with closing(sqlite3.connect(run_dir / "run.db")) as other:
        other.executescript("""
            CREATE TABLE parent (id INTEGER PRIMARY KEY);
            CREATE TABLE orphan (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
            CREATE TRIGGER refuse AFTER INSERT ON events WHEN NEW.kind = 'refused'
            BEGIN INSERT INTO orphan VALUES (1); END;
        """)
    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")  # per connection: the store's checks the deferred key
    store = RunStore(run_dir, conn)
    store.add_event(0.0, "start", 0, 0, {"hparams": {"h0": 0.5}})
    with pytest.raises(StoreError, match=r"run\.db: a write failed and was undone \(FOREIGN KEY constraint failed\)"):
        with store.batch():
            store.add_results([_result(0, 10, 0.3, 0.5)])
            store.add_event(1.0, "refused", 0, 10, {})
    store.add_results([_result(0, 10, 0.4, 0.5)])  # the next writes go through
    store.add_event(2.0, "finish", 0, 10, {})
    store.close()
    run = load_run(run_dir)
    assert list(run.events["kind"]) == ["start", "finish"]  # nothing of the failed write was kept
    assert list(zip(run.results["step"], run.results["objective"])) == [(10, 0.4)]


def test_open_and_create_refuse_what_is_not_theirs(tmp_path):
    with pytest.raises(StoreError, match="not a run directory"):
        RunStore.open(tmp_path)
    with pytest.raises(StoreError, match="not a run directory"):
        load_run(tmp_path)
    _store(tmp_path)
    with pytest.raises(StoreError, match="already holds a run"):
        _store(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.db").write_text("not sqlite at all, just text" * 100)
    with pytest.raises(StoreError):
        load_run(tmp_path / "bad")
    (tmp_path / "run" / "summary.json").write_text('{"best": ')  # not as write_summary writes
    with pytest.raises(StoreError, match=r"summary\.json: cannot read"):
        load_run(tmp_path / "run")


def test_exploits_and_schedule_follow_the_lineage(tmp_path):
    store = _store(tmp_path)
    for m in range(3):
        store.add_event(0.0, "start", m, 0, {"hparams": {"h0": float(m)}})
    # member 1 copies member 0 at step 10 (donor at 10); later member 2 copies member 1 at its step 20,
    # when member 1 is at step 20: the weights of 2 followed 0's schedule to 10, then 1's new h0.
    _exploit(store, 1.0, 1, 10, 0, 10, {"h0": 1.0}, {"h0": 0.3})
    _exploit(store, 2.0, 2, 20, 1, 20, {"h0": 2.0}, {"h0": 0.7})
    # a later exploit by 1 must not change what 2 inherited before it
    _exploit(store, 3.0, 1, 30, 0, 30, {"h0": 0.3}, {"h0": 0.9})
    run = load_run(tmp_path / "run")
    table = exploits(run)
    assert list(table["member"]) == [1, 2, 1] and list(table["donor_step"]) == [10, 20, 30]
    assert json.dumps(table["new_hparams"][0]) == '{"h0": 0.3}'
    assert schedule(run, 0) == [(0, {"h0": 0.0})]
    assert schedule(run, 2) == [(0, {"h0": 0.0}), (10, {"h0": 0.3}), (20, {"h0": 0.7})]
    assert schedule(run, 1) == [(0, {"h0": 0.0}), (30, {"h0": 0.9})]


def test_schedule_uses_the_donors_weight_clock(tmp_path):
    store = _store(tmp_path)
    for m in range(3):
        store.add_event(0.0, "start", m, 0, {"hparams": {"h0": float(m)}})
    _exploit(store, 1.0, 1, 10, 0, 30, {"h0": 1.0}, {"h0": 0.5})  # 1's weights at its step 10 ~ clock 30
    _exploit(store, 2.0, 2, 40, 1, 20, {"h0": 2.0}, {"h0": 0.8})  # 1 at its step 20 = clock 40
    run = load_run(tmp_path / "run")
    assert schedule(run, 2) == [(0, {"h0": 0.0}), (30, {"h0": 0.5}), (40, {"h0": 0.8})]
    assert [(s.member, s.start, s.end) for s in ancestry(run, 2, 50)] == [(0, 0, 30), (1, 10, 20), (2, 40, 50)]
    assert weight_steps(run, 2, 50) == 50  # 30 of 0's, 10 of 1's, 10 of its own
    assert weight_steps(run, 2, 39) == 39  # before its exploit: its own weights
    assert weight_steps(run, 1, 25) == 45


@pytest.mark.parametrize("mode", ["max", "min"])
def test_best_member_ranks_failed_members_last_skips_nan_and_breaks_ties_by_id(tmp_path, mode):
    store = RunStore.create(tmp_path / mode, config=CONFIG, strategy="random", seed=0, population=5,
                            steps_per_member=20, eval_every=10, objective="Q", mode=mode)
    good = 0.4 if mode == "max" else 0.2
    rows = [(0, "finished", 0.3), (1, "failed", 0.1 if mode == "min" else 0.9), (2, "finished", good),
            (3, "finished", float("nan")), (4, "finished", good)]
    for member, status, objective in rows:
        store.put_member(member, status=status, step=20, objective=objective, hparams={"h0": 0.5})
    run = load_run(tmp_path / mode)
    assert best_member(run) == 2  # the failed member's better score does not count; 2 ties 4
    store.put_member(0, status="failed", step=20, objective=0.3, hparams={"h0": 0.5})
    for member in (2, 3, 4):
        store.put_member(member, status="failed", step=20, objective=float("nan"), hparams={"h0": 0.5})
    assert best_member(load_run(tmp_path / mode)) == 1  # only failed members left: the best of them
    store.close()


@pytest.mark.parametrize("mode", ["max", "min"])
def test_member_ranking_puts_the_best_first_failed_after_the_rest_and_nan_last(tmp_path, mode):
    store = RunStore.create(tmp_path / mode, config=CONFIG, strategy="random", seed=0, population=7,
                            steps_per_member=20, eval_every=10, objective="Q", mode=mode)
    sign = 1.0 if mode == "max" else -1.0  # the same story in both modes: higher is better for "max"
    rows = [(0, "finished", sign * 0.3), (1, "failed", sign * 0.9), (2, "finished", sign * 0.4),
            (3, "finished", float("nan")), (4, "finished", sign * 0.4), (5, "finished", -sign * math.inf),
            (6, "failed", sign * 0.1)]
    for member, status, objective in rows:
        store.put_member(member, status=status, step=20, objective=objective, hparams={"h0": 0.5})
    store.close()
    run = load_run(tmp_path / mode)
    assert member_ranking(run) == [2, 4, 0, 5, 1, 6, 3]  # 2 ties 4; an infinitely bad score before failures
    assert best_member(run) == member_ranking(run)[0]


def test_one_lineage_follows_every_member_of_a_long_chain_of_exploits(tmp_path):
    population, every = 40, 10
    store = _store(tmp_path, population=population)
    for m in range(population):
        store.add_event(0.0, "start", m, 0, {"hparams": {"h0": float(m)}})
    for m in range(1, population):  # m copies m - 1 at step 10 m; then m - 1 copies someone else
        _exploit(store, float(m), m, every * m, m - 1, every * m, {"h0": float(m)}, {"h0": m / 100})
    _exploit(store, 99.0, 0, 5 * every, population - 1, 0, {"h0": 0.0}, {"h0": 0.5})  # after 0 was copied
    store.add_results([_result(m, every * population, 0.5, 0.5) for m in range(population)])
    store.close()
    lineage = Lineage(load_run(tmp_path / "run"))
    end = every * population
    for member in range(1, population):
        expected = [(0, 0, every)] + [(k, every * k, every * (k + 1)) for k in range(1, member)]
        assert [(s.member, s.start, s.end) for s in lineage.ancestry(member)] == expected + [(member, every * member, end)]
        assert [s.hparams for s in lineage.ancestry(member)][1:] == [{"h0": k / 100} for k in range(1, member + 1)]
        assert [(s.member, s.start, s.end) for s in lineage.ancestry(member, every * member - 1)] == [
            (member, 0, every * member - 1)]  # before its exploit: its own weights
    # member 0 copied the last member (at its step 0) after it had been copied: its own line now
    assert [(s.member, s.start, s.end) for s in lineage.ancestry(0)] == [(population - 1, 0, 0), (0, 5 * every, end)]
    assert [(s.member, s.start, s.end) for s in lineage.ancestry(0, 5 * every - 1)] == [(0, 0, 5 * every - 1)]


def test_best_so_far_in_min_mode_counts_population_steps_and_skips_infinities(tmp_path):
    store = RunStore.create(tmp_path / "run", config=CONFIG, strategy="random", seed=0, population=2,
                            steps_per_member=20, eval_every=10, objective="Q", mode="min")
    for (member, step, q) in [(0, 10, float("inf")), (1, 10, 0.5), (0, 20, 0.7), (1, 20, 0.2)]:
        store.add_results([{**_result(member, step, q, 0.5), "wall_time": step + member}])
    store.close()
    steps, best = best_so_far(load_run(tmp_path / "run"))
    assert list(steps) == [10, 20, 30, 40]
    assert list(best[1:]) == [0.5, 0.5, 0.2] and best[0] != best[0]  # NaN until a finite objective
