"""THE one Ray session of the test session: a small local cluster (one head node) on loopback only.

Tests that need more nodes add them to ``ray_cluster`` and remove them before they end. The
directory of the test trainables (``tests/workers/trainables.py``) is put on ``PYTHONPATH`` before
Ray starts, so every Ray worker (and every driver subprocess) can import them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray binds 127.0.0.1 only (DESIGN §6)
TRAINABLES_DIR = str(Path(__file__).parent / "workers")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TRAINABLES_DIR, os.environ.get("PYTHONPATH")]))
if TRAINABLES_DIR not in sys.path:
    sys.path.insert(0, TRAINABLES_DIR)

HEAD_CPUS = 2


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's Ray: a ``ray.cluster_utils.Cluster`` with a head of ``HEAD_CPUS`` CPUs, connected."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS, "include_dashboard": False})
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def ray_session(ray_cluster):
    """For tests that only need Ray up (the session cluster, as it is)."""
    return ray_cluster
