"""Resume after a real driver process is SIGKILLed, and synchronous PBT's determinism on the real runner."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainables import toy_raw

from pbt.api import resume, run
from pbt.config import load_config, parse_config
from models.errors import StoreError
from search.store import load_run

TIMES = ("wall_seconds", "train_seconds")
SLOW_TOY = """
objective = "Q"
mode = "max"

[trainable]
name = "trainables:SlowToy"
delay = 0.02
lr = 0.01

[space]
h0 = {{ uniform = [0.0, 1.0] }}
h1 = {{ uniform = [0.0, 1.0] }}

[budget]
population = 4
steps = {steps}
eval_every = 4

[pbt]
interval = 8
fraction = 0.25
synchronous = true
"""


def _timeless(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMES}


def _progress_in_snapshot(db: Path) -> int:
    """Steps the last committed snapshot holds (0 if none yet), read like any reader: read-only."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT state FROM snapshot").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return 0 if row is None else sum(m["step"] for m in json.loads(row[0])["members"].values())


def _run_and_kill(address: str, config: Path, out: Path, strategy: str, total_steps: int) -> None:
    """Start ``python -m pbt run`` on the session cluster; SIGKILL it once a snapshot holds progress."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbt", "run", str(config), "--strategy", strategy, "--seed", "11",
         "--out", str(out), "--address", address, "--workers", "2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if 0 < _progress_in_snapshot(out / "run.db") < total_steps // 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the driver ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert load_run(out).info["status"] == "running"  # it really died mid-run


@pytest.mark.parametrize("strategy", ["random", "pbt"])
def test_resume_after_sigkill_has_no_duplicate_and_no_missing_results(ray_cluster, tmp_path, strategy):
    path = tmp_path / "slow.toml"
    path.write_text(SLOW_TOY.format(steps=80))
    _run_and_kill(ray_cluster.address, path, tmp_path / "killed", strategy, total_steps=4 * 80)
    summary = resume(tmp_path / "killed", workers=2)
    data = load_run(tmp_path / "killed")
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(4) for s in range(4, 81, 4)]
    assert sorted(data.events[data.events["kind"] == "start"]["member"]) == [0, 1, 2, 3]
    assert sorted(data.events[data.events["kind"] == "finish"]["member"]) == [0, 1, 2, 3]
    assert data.info["status"] == "finished" and summary["budget_steps"] == 4 * 80
    checkpoints = list((tmp_path / "killed" / "checkpoints").iterdir())
    assert 1 <= len(checkpoints) <= 4 and all(p.suffix == ".npz" for p in checkpoints)
    # a fixed seed: the resumed run ends exactly where an uninterrupted one does (times aside)
    whole = run(load_config(path), strategy=strategy, seed=11, out=tmp_path / "whole", workers=2)
    assert _timeless(summary) == _timeless(whole)
    if strategy == "pbt":
        assert summary["exploits"] > 0
        assert (load_run(tmp_path / "whole").results.drop(columns=["worker", "node", "wall_time", "train_seconds"])
                .equals(data.results.drop(columns=["worker", "node", "wall_time", "train_seconds"])))


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
