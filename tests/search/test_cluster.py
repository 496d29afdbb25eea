"""A search on a multi-node cluster (head + two worker nodes, all on loopback), and a node removed mid-run."""

from __future__ import annotations

import pytest
import ray
from trainables import toy_q, toy_raw

from pbt.api import run
from pbt.config import parse_config
from search.store import load_run


@pytest.fixture(scope="module")
def two_more_nodes(ray_cluster):
    """The session cluster plus two 1-CPU worker nodes, removed again after this module."""
    nodes = [ray_cluster.add_node(num_cpus=1) for _ in range(2)]
    ray_cluster.wait_for_nodes()
    yield ray_cluster, nodes
    for node in nodes:
        if node in ray_cluster.worker_nodes:
            ray_cluster.remove_node(node)
    ray_cluster.wait_for_nodes()


def _slow_config(population: int, steps: int = 40, delay: float = 0.004):
    trainable = {"name": "trainables:SlowToy", "delay": delay}
    return parse_config(toy_raw(population=population, steps=steps, eval_every=4, trainable=trainable), "test")


def test_members_run_on_more_than_one_node(two_more_nodes, tmp_path):
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes() if n["Alive"])
    summary = run(_slow_config(population=4), strategy="random", seed=2, out=tmp_path / "run")
    data = load_run(tmp_path / "run")
    assert int(ray.cluster_resources()["CPU"]) == 4
    assert data.results["worker"].nunique() == 4  # default: one worker per CPU, each member on its own
    assert data.results["node"].nunique() >= 2
    assert len(data.results) == 4 * 10 and summary["budget_steps"] == 160


def test_a_node_removed_mid_run_is_recovered(two_more_nodes, tmp_path):
    cluster, nodes = two_more_nodes
    victim = nodes[0]
    removed = []

    def remove_when_running(progress):
        if not removed and progress.steps_done >= 40:
            removed.append(victim.node_id)
            cluster.remove_node(victim, allow_graceful=False)

    summary = run(_slow_config(population=6, steps=60, delay=0.02), strategy="random", seed=4, out=tmp_path / "run",
                  on_progress=remove_when_running)
    data = load_run(tmp_path / "run")
    assert removed
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(6) for s in range(4, 61, 4)]
    failures = data.events[data.events["kind"] == "failure"]
    assert len(failures) >= 1 and all(d["recovered"] for d in failures["data"])
    assert {d["node"] for d in failures["data"]} == {removed[0]}
    assert set(data.members["status"]) == {"finished"} and summary["budget_steps"] == 6 * 60
    for row in data.results.to_dict("records"):
        assert row["objective"] == toy_q({"h0": row["hp.h0"], "h1": row["hp.h1"]}, row["step"])
