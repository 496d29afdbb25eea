"""``[resources]`` on real Ray: workers sized to what fits, the ones that do not fit joining as they come,
GPUs scheduled on a test node that declares them, and GPUs asked of a cluster that has none."""

from __future__ import annotations

import re

import pytest
import ray
from trainables import toy_raw

import workers.pool
from models import ToyQuadratic
from pbt.api import run
from pbt.cli import main
from pbt.config import parse_config
from search.store import load_run
from workers import TrainableSpec, WorkerPool
from workers.actor import Worker, WorkItem

H = {"h0": 1.0, "h1": 0.5}
SPEC = TrainableSpec(ToyQuadratic, {"lr": 0.01})


def _config(resources: dict, population: int = 4, steps: int = 40, trainable: dict | None = None):
    raw = toy_raw(population=population, steps=steps, eval_every=4,
                  trainable=trainable or {"name": "trainables:SlowToy", "delay": 0.01})
    return parse_config({**raw, "resources": resources}, "test")


@ray.remote
class _Hog:
    def ready(self) -> bool:
        return True


@pytest.fixture
def gpu_node(ray_cluster):
    """A node declaring 2 GPUs (and 2 CPUs) to Ray, for this test only."""
    node = ray_cluster.add_node(num_cpus=2, num_gpus=2)
    ray_cluster.wait_for_nodes()
    yield node
    ray_cluster.remove_node(node)
    ray_cluster.wait_for_nodes()


def test_the_pool_holds_as_many_workers_as_fit(ray_session):
    cpus = ray.cluster_resources()["CPU"]
    halves = WorkerPool(SPEC, cpus=0.5)
    try:
        assert (halves.size, halves.fit, halves.cpus) == (2 * cpus, 2 * cpus, 0.5)
    finally:
        halves.shutdown()
    more = WorkerPool(SPEC, size=int(cpus) + 1, cpus=1.0, start_timeout=30)
    try:
        assert (more.size, more.fit) == (cpus + 1, cpus)
        more.warm_up(H, 0)  # the one that does not fit is not waited for
        assert len(more.poll()) == cpus
    finally:
        more.shutdown()


def test_a_search_starts_with_the_workers_that_fit_and_takes_the_others_as_they_come(
        ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(workers.pool, "START_TIMEOUT_S", 20.0)
    monkeypatch.setattr(workers.pool, "START_GRACE_S", 0.5)
    hog = _Hog.options(num_cpus=ray.cluster_resources()["CPU"] - 1).remote()  # room for one worker of two
    ray.get(hog.ready.remote())
    freed = []

    def free_a_cpu(progress):
        if not freed and progress.steps_done >= 40:
            ray.kill(hog, no_restart=True)
            freed.append(progress.elapsed_seconds)

    try:
        summary = run(_config({"cpus_per_worker": 1, "workers": 2}, population=4, steps=80), strategy="random",
                      seed=0, out=tmp_path / "run", on_progress=free_a_cpu)
    finally:
        ray.kill(hog, no_restart=True)
    results = load_run(tmp_path / "run").results
    assert freed and summary["budget_steps"] == 4 * 80 and len(results) == 4 * 20
    first_row = results.groupby("worker")["wall_time"].min().sort_values()
    assert len(first_row) == 2 and first_row.iloc[1] > freed[0]  # the second worker came once a CPU was free


def test_workers_that_ask_for_gpus_run_where_the_gpus_are(gpu_node, tmp_path):
    config = _config({"cpus_per_worker": 0.5, "gpus_per_worker": 0.5}, trainable={"name": "trainables:PlacedToy"})
    summary = run(config, strategy="random", seed=1, out=tmp_path / "run")
    results = load_run(tmp_path / "run").results
    assert summary["budget_steps"] == 4 * 40
    assert results["worker"].nunique() == 4  # as many as fit: 2 GPUs / 0.5 each
    assert set(results["node"]) == {gpu_node.node_id}
    assert set(results["gpu_share"]) == {0.5} and set(results["gpu_ids"]) == {1.0}


def test_a_torch_worker_given_a_gpu_that_torch_cannot_use_fails_its_member_in_one_line(gpu_node):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here: the adapter would use it")
    from torch_trainables import Placed

    worker = Worker.options(num_cpus=0.5, num_gpus=1).remote("g", TrainableSpec(Placed, {}))
    try:
        (report,) = ray.get(worker.run.options(num_returns=2).remote([WorkItem(0, 0, {"lr": 0.1}, None, 0, 2, 2)])[0])
    finally:
        ray.kill(worker, no_restart=True)
    assert re.fullmatch(rf"RuntimeError: this worker was given GPU \d+ but torch {re.escape(torch.__version__)} "
                        r"sees no CUDA device \(a CPU build of torch\?\)", report.error or "")


def test_gpus_asked_of_a_cluster_without_any_are_one_line_before_anything_starts(ray_session, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "GPU" not in ray.cluster_resources()
    (tmp_path / "c.toml").write_text('objective = "Q"\nmode = "max"\n[trainable]\nname = "toy"\n'
                                     '[space]\nh0 = { uniform = [0.0, 1.0] }\nh1 = { uniform = [0.0, 1.0] }\n'
                                     '[budget]\npopulation = 2\nsteps = 8\neval_every = 4\n'
                                     '[resources]\ngpus_per_worker = 1\n')
    for argv in (["run", "c.toml", "--out", "run"], ["compare", "c.toml", "--out", "cmp", "--seeds", "1"]):
        assert main([*argv, "--quiet"]) == 2
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [
            "pbt: error: resources.gpus_per_worker: 1 GPU per worker asked, but the Ray cluster has no GPU "
            "(set it to 0, or join a cluster with GPUs: --address)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
