"""Resume after a real driver process is SIGKILLed (grid, random, synchronous and asynchronous PBT),
and synchronous PBT's determinism on the real runner."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from trainables import slow_toy_config, toy_raw

from pbt.api import resume, run
from pbt.config import load_config, parse_config
from models.errors import RunStopped, StoreError
from search.store import HP_PREFIX, hparam_names, load_run

TIMES = ("wall_seconds", "train_seconds")
TIMED_COLUMNS = ("worker", "node", "wall_time", "train_seconds")  # of a result row: where and when, not what
# a decision at every evaluation, half the population in the bottom: exploits often enough that a
# kill finds one to roll back
KILL_PBT = {"interval": 4, "burn_in": 0, "exploit": "truncation", "fraction": 0.5}


def _timeless(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMES}


class StoreProgress(NamedTuple):
    """How far a run got: steps in its last committed snapshot, steps its result rows hold, and
    exploits recorded after that snapshot (all 0 before the first snapshot)."""

    durable: int
    stored: int
    exploits_past: int


def _progress(db: Path) -> StoreProgress:
    """The run's ``StoreProgress``, read like any reader (read-only)."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.execute("BEGIN")  # one consistent read
            row = conn.execute("SELECT state, last_event FROM snapshot").fetchone()
            if row is None:
                return StoreProgress(0, 0, 0)
            eval_every, rows = conn.execute("SELECT eval_every, (SELECT COUNT(*) FROM results) FROM run").fetchone()
            exploits_past = conn.execute(
                "SELECT COUNT(*) FROM events WHERE kind = 'exploit' AND seq > ?", (row[1],)).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return StoreProgress(0, 0, 0)
    durable = sum(m["step"] for m in json.loads(row[0])["members"].values())
    return StoreProgress(durable, rows * eval_every, exploits_past)


def _run_and_kill(address: str, config: Path, out: Path, strategy: str, total_steps: int) -> None:
    """Start ``python -m pbt run`` on the session cluster; SIGKILL it mid-run (``_ready_to_kill``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbt", "run", str(config), "--strategy", strategy, "--seed", "11",
         "--out", str(out), "--address", address, "--workers", "2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _ready_to_kill(_progress(out / "run.db"), strategy, total_steps):
            assert proc.poll() is None, f"the driver ended before it could be killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "the run never reached the point to kill it at"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert load_run(out).info["status"] == "running"  # it really died mid-run


def _ready_to_kill(progress: StoreProgress, strategy: str, total_steps: int) -> bool:
    """A snapshot with progress is durable, results past it are stored (with PBT, an exploit too)
    and steps are left: the resume must roll that work back, do it again, and go on."""
    return (0 < progress.durable < progress.stored < total_steps
            and (strategy != "pbt" or progress.exploits_past > 0))


def _assert_complete(out: Path, summary: dict, population: int, steps: int, eval_every: int) -> None:
    """The resumed run finished with one result row per member at every ``eval_every`` step (none
    missing, none extra), one start and one finish event per member, and exactly the budget."""
    data = load_run(out)
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(population) for s in range(eval_every, steps + 1, eval_every)]
    for kind in ("start", "finish"):
        assert sorted(data.events[data.events["kind"] == kind]["member"]) == list(range(population))
    assert data.info["status"] == "finished" and summary["budget_steps"] == population * steps
    assert data.summary == summary
    checkpoints = list((out / "checkpoints").iterdir())  # the last states, and no half-written file
    assert 1 <= len(checkpoints) <= population
    assert all(p.suffix == ".npz" and not p.name.endswith(".tmp.npz") for p in checkpoints)


def _assert_lineage_consistent(out: Path, summary: dict) -> None:
    """Every exploit names a real member and donor, happened once, is followed by its explore, took
    the donor's state at a step the donor was evaluated, and the result rows were trained with the
    hyperparameters the start and exploit events say the member had at each step."""
    data = load_run(out)
    events = data.events
    exploit_events = events[events["kind"] == "exploit"]
    explore_events = events[events["kind"] == "explore"]
    assert summary["exploits"] == len(exploit_events) > 0
    members = set(data.members["member"])
    evaluated = set(zip(data.results["member"], data.results["step"]))
    taken = list(zip(exploit_events["member"], exploit_events["step"]))
    assert len(set(taken)) == len(taken), "an exploit was recorded twice"
    assert sorted(zip(explore_events["member"], explore_events["step"])) == sorted(taken)
    hparams: dict[int, list[tuple[int, dict]]] = {}  # member -> [(from step, hparams), ...] in event order
    for kind, member, step, record in zip(events["kind"], events["member"], events["step"], events["data"]):
        if kind == "start":
            hparams[member] = [(0, record["hparams"])]
        elif kind == "exploit":
            assert member in members and record["donor"] in members and record["donor"] != member
            assert (record["donor"], record["donor_step"]) in evaluated and (member, step) in evaluated
            assert hparams[member][-1][1] == record["old_hparams"]
            hparams[member].append((step, record["new_hparams"]))
    names = hparam_names(data.results)
    columns = ["member", "step", *(HP_PREFIX + name for name in names)]
    for member, step, *values in data.results[columns].itertuples(index=False):
        had = next(h for start, h in reversed(hparams[member]) if start < step)
        assert dict(zip(names, values)) == had, f"member {member} at step {step}"


@pytest.mark.parametrize("strategy", ["grid", "random", "pbt"])
def test_resume_after_sigkill_has_no_duplicate_and_no_missing_results(ray_cluster, tmp_path, strategy):
    path = slow_toy_config(tmp_path / "slow.toml", steps=80, pbt={**KILL_PBT, "synchronous": True})
    _run_and_kill(ray_cluster.address, path, tmp_path / "killed", strategy, total_steps=4 * 80)
    summary = resume(tmp_path / "killed", workers=2)
    _assert_complete(tmp_path / "killed", summary, population=4, steps=80, eval_every=4)
    if strategy == "pbt":
        _assert_lineage_consistent(tmp_path / "killed", summary)
    # a fixed seed: the resumed run ends exactly where an uninterrupted one does (times aside)
    whole = run(load_config(path), strategy=strategy, seed=11, out=tmp_path / "whole", workers=2)
    assert _timeless(summary) == _timeless(whole)
    assert (load_run(tmp_path / "whole").results.drop(columns=list(TIMED_COLUMNS))
            .equals(load_run(tmp_path / "killed").results.drop(columns=list(TIMED_COLUMNS))))


def test_a_stopped_run_snapshots_all_it_did_says_stopped_and_resumes_to_the_uninterrupted_summary(
        ray_session, tmp_path):
    """``stop`` (what ``pbt stop`` sets through SIGTERM): unlike a kill, the final snapshot holds
    every result the run stored, so a resume redoes nothing."""
    path = slow_toy_config(tmp_path / "slow.toml", steps=80, pbt={**KILL_PBT, "synchronous": True})
    stop = threading.Event()

    def stop_midway(progress) -> None:
        if progress.steps_done >= 80:
            stop.set()

    with pytest.raises(RunStopped):
        run(load_config(path), strategy="pbt", seed=11, out=tmp_path / "stopped", workers=2,
            on_progress=stop_midway, stop=stop)
    progress = _progress(tmp_path / "stopped" / "run.db")
    assert load_run(tmp_path / "stopped").info["status"] == "stopped"
    assert 80 <= progress.durable == progress.stored < 4 * 80 and progress.exploits_past == 0
    summary = resume(tmp_path / "stopped", workers=2)
    _assert_complete(tmp_path / "stopped", summary, population=4, steps=80, eval_every=4)
    whole = run(load_config(path), strategy="pbt", seed=11, out=tmp_path / "whole", workers=2)
    assert _timeless(summary) == _timeless(whole)


def test_asynchronous_pbt_resumes_after_sigkill_complete_within_budget_and_with_a_consistent_lineage(
        ray_cluster, tmp_path):
    """Asynchronous mode decides on worker timing, so the resumed run cannot be compared with an
    uninterrupted one: it must be complete, exact in budget, and agree with its own lineage."""
    path = slow_toy_config(tmp_path / "slow.toml", steps=120,  # long enough to find an exploit past a snapshot
                           pbt={**KILL_PBT, "synchronous": False})
    _run_and_kill(ray_cluster.address, path, tmp_path / "killed", "pbt", total_steps=4 * 120)
    summary = resume(tmp_path / "killed", workers=2)
    _assert_complete(tmp_path / "killed", summary, population=4, steps=120, eval_every=4)
    _assert_lineage_consistent(tmp_path / "killed", summary)


def test_synchronous_pbt_gives_the_same_summary_for_any_number_of_workers(ray_session, tmp_path):
    raw = toy_raw(population=4, steps=48, eval_every=4, pbt={"interval": 8, "synchronous": True})
    config = parse_config(raw, "test")
    summaries = [_timeless(run(config, strategy="pbt", seed=5, out=tmp_path / f"w{n}", workers=n)) for n in (1, 3)]
    assert summaries[0] == summaries[1] and summaries[0]["exploits"] > 0


def test_resume_before_any_snapshot_starts_over_and_a_finished_run_is_left_alone(ray_session, tmp_path):
    config = parse_config(toy_raw(population=3, steps=20, eval_every=4), "test")
    whole = run(config, strategy="random", seed=2, out=tmp_path / "run", workers=2)
    assert resume(tmp_path / "run") == whole  # finished: nothing runs again
    # as if the driver died before its first snapshot: results on disk but nothing durable to resume
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    with conn:
        conn.execute("DELETE FROM snapshot")
        conn.execute("UPDATE run SET status = 'running'")
        conn.execute("DELETE FROM results WHERE step > 8")
    conn.close()
    again = resume(tmp_path / "run", workers=1)
    data = load_run(tmp_path / "run")
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(3) for s in range(4, 21, 4)]
    assert len(data.events) == 6 and _timeless(again) == _timeless(whole)


def test_resume_refuses_a_run_whose_driver_is_still_alive(ray_session, tmp_path):
    config = parse_config(toy_raw(population=2, steps=8, eval_every=4), "test")
    run(config, strategy="random", seed=0, out=tmp_path / "run", workers=1)
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    with conn:
        conn.execute("UPDATE run SET status = 'running'")  # as a driver still at work leaves it
    conn.close()
    before = (tmp_path / "run" / "run.db").read_bytes()
    holder = subprocess.Popen(  # another live driver: holds the run's lock until killed
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(tmp_path / "run" / "driver.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="another driver is still running this run"):
            resume(tmp_path / "run", workers=1)
        assert (tmp_path / "run" / "run.db").read_bytes() == before  # nothing rolled back or written
    finally:
        holder.kill()
        holder.wait()
    resume(tmp_path / "run", workers=1)  # the lock went with its process
    assert load_run(tmp_path / "run").info["status"] == "finished"
