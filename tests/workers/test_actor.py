"""The worker actor and the pool on real Ray: states as driver-owned refs, held trainables, sizing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import ray

from models import ToyQuadratic
from models.errors import ConfigError, WorkerStartError
from workers import TrainableSpec, Worker, WorkerPool
from workers.actor import HELD_MEMBERS, WorkItem
from workers.cluster import connect, runtime_env

H = {"h0": 1.0, "h1": 0.5}
SPEC = TrainableSpec(ToyQuadratic, {"lr": 0.01})


def _call(worker, version_in, version_out, source=None, steps=8, hparams=H, member=0):
    item = WorkItem(member, 0, hparams, version_in, version_out, steps, 4, passed=source is not None)
    reports, state = worker.run.options(num_returns=2).remote([item], *([source] if source is not None else []))
    (report,) = ray.get(reports)
    return report, state


def _expected_theta(steps, hparams=H):
    toy = ToyQuadratic(hparams, 0)
    toy.train(steps)
    return toy.theta


def test_state_is_a_driver_owned_ref_that_outlives_its_worker(ray_session):
    first = Worker.remote("a", SPEC)
    report, state = _call(first, None, 0)
    assert [e[0] for e in report.evaluations] == [4, 8] and report.worker == "a"
    assert report.started_at <= report.evaluations[0][3] <= report.evaluations[1][3] <= report.finished_at
    ray.kill(first, no_restart=True)
    # the state survives the worker that made it, and another worker continues from it exactly
    second = Worker.remote("b", SPEC)
    report, state = _call(second, 0, 1, source=state)
    assert report.reloaded
    np.testing.assert_array_equal(ray.get(state)["theta"], _expected_theta(16))
    ray.kill(second, no_restart=True)


def test_worker_keeps_the_members_it_ran_last(ray_session):
    worker = Worker.remote("a", SPEC)
    _, s0 = _call(worker, None, 0)
    report, s1 = _call(worker, 0, 1)
    assert not report.reloaded  # held at version 0: no state passed, none needed
    other, _ = _call(worker, None, 2, hparams={"h0": 0.0, "h1": 1.0}, member=1)
    assert other.reloaded
    report, s3 = _call(worker, 1, 3)  # back to member 0: still held at version 1
    assert not report.reloaded
    np.testing.assert_array_equal(ray.get(s3)["theta"], _expected_theta(24))
    report, s4 = _call(worker, 3, 4, member=2)  # member 2 takes member 0's version 3 (an exploit)
    assert report.reloaded  # copied from member 0's trainable held here
    np.testing.assert_array_equal(ray.get(s4)["theta"], _expected_theta(32))
    for member in range(3, 3 + HELD_MEMBERS):  # members 0 and 2 drop out of the worker's keep
        _call(worker, None, 10 + member, member=member)
    report, _ = _call(worker, 3, 5)
    assert report.error.startswith("StateUnavailable") and report.lost  # no longer held, and not passed
    report, s5 = _call(worker, 3, 5, source=s3)
    assert report.reloaded  # loaded from the state passed with the call
    np.testing.assert_array_equal(ray.get(s5)["theta"], _expected_theta(32))
    ray.kill(worker, no_restart=True)


def test_one_call_carries_several_members_and_a_failing_item_spares_the_others(ray_session):
    worker = Worker.remote("a", SPEC)
    bad = {"h0": 1.0, "h1": 0.5, "boom": 1}  # ToyQuadratic rejects unknown hparams: that item fails alone
    items = [WorkItem(0, 0, H, None, 0, 8, 4), WorkItem(1, 0, bad, None, 1, 8, 4), WorkItem(2, 0, H, None, 2, 4, 4)]
    refs = worker.run.options(num_returns=4).remote(items)
    reports = ray.get(refs[0])
    assert [r.member for r in reports] == [0, 1, 2] and [r.error is None for r in reports] == [True, False, True]
    assert reports[1].error.startswith("ConfigError") and ray.get(refs[2]) is None
    np.testing.assert_array_equal(ray.get(refs[1])["theta"], _expected_theta(8))
    np.testing.assert_array_equal(ray.get(refs[3])["theta"], _expected_theta(4))
    ray.kill(worker, no_restart=True)


def test_the_last_item_of_a_member_carries_the_test_metrics_once(ray_session):
    from trainables import HeldOutToy

    worker = Worker.remote("a", TrainableSpec(HeldOutToy, {"lr": 0.01}))
    items = [WorkItem(0, 0, H, None, 0, 8, 4), WorkItem(1, 0, H, None, 1, 8, 4, last=True)]
    reports = ray.get(worker.run.options(num_returns=3).remote(items)[0])
    assert [[sorted(m) for _, m, _, _ in r.evaluations] for r in reports] == [
        [["Q", "Q_hat", "theta0", "theta1"]] * 2,
        [["Q", "Q_hat", "theta0", "theta1"], ["Q", "Q_hat", "test_steps", "theta0", "theta1"]]]
    assert reports[1].evaluations[-1][1]["test_steps"] == 8.0
    ray.kill(worker, no_restart=True)


def test_hparams_change_between_calls_without_touching_weights(ray_session):
    worker = Worker.remote("a", SPEC)
    _, s0 = _call(worker, None, 0)
    new = {"h0": 0.0, "h1": 1.0}
    report, s1 = _call(worker, 0, 1, hparams=new)
    toy = ToyQuadratic(H, 0)
    toy.train(8)
    toy.set_hparams(new)
    toy.train(8)
    np.testing.assert_array_equal(ray.get(s1)["theta"], toy.theta)
    assert report.evaluations[-1][1]["Q_hat"] == toy.evaluate()["Q_hat"]
    ray.kill(worker, no_restart=True)


def test_pool_sizes_to_the_cluster_and_replaces_workers(ray_session):
    cpus = ray.cluster_resources()["CPU"]
    pool = WorkerPool(SPEC)
    try:
        assert len(pool.workers) == int(cpus) and pool.cpus == 1.0
        pool.warm_up(H, 0)
        assert len(pool.poll()) == int(cpus)
        old = next(iter(pool.workers))
        new = pool.replace(old)
        assert old not in pool.workers and new.id in pool.workers and len(pool.workers) == int(cpus)
    finally:
        pool.shutdown()
    crowded = WorkerPool(SPEC, size=3 * int(cpus))
    try:
        assert crowded.cpus == pytest.approx(1 / 3, abs=0.01)  # fractional CPUs per actor
        crowded.warm_up(H, 0)
        assert len(crowded.poll()) == 3 * int(cpus)
    finally:
        crowded.shutdown()
    with pytest.raises(ConfigError, match="workers: must be an integer >= 1, got 0"):
        WorkerPool(SPEC, size=0)


def test_connect_reuses_the_running_ray_and_ships_the_project(ray_session):
    import models
    import pbt
    import search
    import workers

    assert connect(None) is False and connect("auto") is False  # already a driver: nothing started
    with pytest.raises(ConfigError, match="address: must be"):
        connect("  ")
    assert runtime_env()["py_modules"] == [str(Path(m.__file__).parent) for m in (models, workers, search, pbt)]
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes() if n["Alive"])


def _refuse_to_load():
    raise RuntimeError("cannot load this setting here")


class _Unloadable:
    """A ``[trainable]`` setting a worker cannot unpickle: the actor dies before it is up."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def test_pool_replaces_workers_that_die_before_they_are_up_then_names_the_cause(ray_session):
    pool = WorkerPool(TrainableSpec(ToyQuadratic, {"bad": _Unloadable()}), size=1)
    try:
        with pytest.raises(WorkerStartError, match=r"4 workers died before they were up; the last \(w3\): "
                                               r"RuntimeError: cannot load this setting here"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert pool.poll() == []
                time.sleep(0.05)
    finally:
        pool.shutdown()


@ray.remote
class _Hog:
    def ready(self) -> bool:
        return True


def test_warm_up_gives_up_when_the_cluster_cannot_place_a_worker(ray_session):
    hog = _Hog.options(num_cpus=ray.cluster_resources()["CPU"]).remote()  # every CPU taken
    ray.get(hog.ready.remote())
    pool = WorkerPool(SPEC, size=1, start_timeout=1.0)
    try:
        with pytest.raises(WorkerStartError, match=r"1 of 1 workers not up after 1 s: the cluster cannot place them"):
            pool.warm_up(H, 0)
    finally:
        pool.shutdown()
        ray.kill(hog, no_restart=True)
