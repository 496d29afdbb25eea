"""Joining a cluster started with ``ray start`` (issue 9 §2 and §3), as a user does.

A head on loopback (``ray start --head``, no CPUs) with Ray's token under a temporary HOME, and a worker
node started from a second virtualenv that holds only ray and numpy: that node can import the project,
and a custom trainable that only the driver's source directory has, through Ray's runtime environment
alone. Every search runs in a driver subprocess, ``pbt run|compare --address ...``, whose environment
lacks ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` (the join itself must keep a loopback cluster on loopback).

The head and the node run in sessions of their own (``ray_processes``), killed even when a test fails.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import ray
from ray_processes import clean_env, free_port, start_ray, stop_session

from search.store import load_run
from workers.cluster import LOOPBACK_ENV

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LAB_MODULE = '''\
"""A custom trainable that only the driver's source directory has: it reports where it ran."""
import importlib.util
import sys

from models import ToyQuadratic


class WhereToy(ToyQuadratic):
    def __init__(self, hparams, seed, *, node_prefix, lr=0.01):
        super().__init__(hparams, seed, lr=lr)
        self.node_prefix = node_prefix

    def evaluate(self):
        return {**super().evaluate(), "on_node": float(sys.prefix == self.node_prefix),
                "sklearn_here": float(importlib.util.find_spec("sklearn") is not None)}
'''
# ``ray start --address`` refuses to start a worker node while Ray's cluster mode is off (loopback only),
# so the node is started with the machinery ``ray start`` itself and ``ray.cluster_utils`` use.
NODE_SCRIPT = """\
import signal, sys
from ray._private.node import Node
from ray._private.parameter import RayParams

gcs_address, temp_dir = sys.argv[1:3]
params = RayParams(gcs_address=gcs_address, node_ip_address="127.0.0.1", num_cpus=2, num_gpus=0,
                   temp_dir=temp_dir, min_worker_port=0, max_worker_port=0, node_manager_port=0,
                   include_log_monitor=False)
node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=False)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the atexit hook of Node stops what it started
print("Ray runtime started", flush=True)
signal.pause()
"""
LAB_CONFIG = """\
objective = "Q"
mode = "max"

[trainable]
name = "lab_trainables:WhereToy"
node_prefix = "{node_prefix}"

[space]
h0 = {{ uniform = [0.0, 1.0] }}
h1 = {{ uniform = [0.0, 1.0] }}

[budget]
population = 4
steps = 20
eval_every = 4

[pbt]
interval = 8
"""
DIGITS_CONFIG = """\
objective = "val_accuracy"
mode = "max"

[trainable]
name = "mlp"
dataset = "digits"
hidden = [16]

[space]
lr = { loguniform = [0.01, 0.3] }

[budget]
population = 2
steps = 200
eval_every = 100
"""


@pytest.fixture(scope="session")
def node_venv(request) -> Path:
    """A virtualenv holding only ray and numpy (the driver's versions), built once and cached."""
    key = f"py{sys.version_info[0]}{sys.version_info[1]}-ray{ray.__version__}-numpy{np.__version__}"
    venv = request.config.cache.mkdir("node-venv") / key
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               f"ray=={ray.__version__}", f"numpy=={np.__version__}"]
        if made.returncode == 0:
            made = subprocess.run(pip, capture_output=True, text=True, timeout=900)
        if made.returncode != 0:
            last = (made.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"cannot build a virtualenv with only ray=={ray.__version__} and numpy: {last}")
        (venv / "complete").touch()
    return venv


@dataclass
class LoopbackCluster:
    address: str
    home: Path  # holds .ray/auth_token
    token: str
    ray_tmpdir: Path  # RAY_TMPDIR under which 'auto' finds this cluster
    node_prefix: str  # sys.prefix of the worker node's Python


@pytest.fixture(scope="module")
def loopback_cluster(node_venv, tmp_path_factory):
    """A head (no CPUs) and one 2-CPU worker node from ``node_venv``, on loopback, with a token."""
    root = Path(tempfile.mkdtemp(prefix="pbtj"))  # short: Ray's socket paths live under it
    home = tmp_path_factory.mktemp("home")
    token = secrets.token_hex(32)
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)
    (home / ".ray" / "auth_token").chmod(0o600)
    port = free_port()
    head = node = None
    try:
        head = start_ray(
            [str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "0", "--block",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(root / "ray"),
             "--dashboard-agent-listen-port", str(free_port())],
            clean_env(home, **{LOOPBACK_ENV: "0"}), root, root / "head.log")
        node = start_ray([str(node_venv / "bin" / "python"), "-c", NODE_SCRIPT, f"127.0.0.1:{port}",
                           str(root / "ray")],
                          clean_env(home, RAY_AUTH_MODE="token", **{LOOPBACK_ENV: "0"}), root, root / "node.log")
        yield LoopbackCluster(f"127.0.0.1:{port}", home, token, root, str(node_venv))
    finally:
        for process in (node, head):
            if process is not None:
                stop_session(process)
        shutil.rmtree(root, ignore_errors=True)


def _driver(args: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 240):
    """``pbt ARGS`` from an empty directory; the custom trainable's module is only on its PYTHONPATH."""
    source = tmp_path / "driver_src"
    source.mkdir(exist_ok=True)
    (source / "lab_trainables.py").write_text(LAB_MODULE)
    cwd = tmp_path / "driver_cwd"  # Ray puts the driver's directory on its workers' path: keep it empty
    cwd.mkdir(exist_ok=True)
    started = time.monotonic()
    done = subprocess.run([str(BIN / "pbt"), *args], cwd=cwd, env={**env, "PYTHONPATH": str(source)},
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


def _lab_config(tmp_path: Path, cluster: LoopbackCluster) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(LAB_CONFIG.format(node_prefix=cluster.node_prefix))
    return path


def _assert_trained_on_the_bare_node(run_dir: Path, members: int) -> None:
    results = load_run(run_dir).results
    assert len(results) == members * 5 and set(results["member"]) == set(range(members))
    assert set(results["on_node"]) == {1.0}  # every evaluation ran in the node's virtualenv
    assert set(results["sklearn_here"]) == {0.0}  # which has no scikit-learn (nor the project)


def test_the_node_has_neither_the_project_nor_scikit_learn(node_venv, tmp_path):
    """The premise of the tests below: only the runtime environment can bring our code to that node."""
    modules = ("models", "sklearn", "lab_trainables")
    probe = f"import importlib.util as u; print([u.find_spec(m) is None for m in {modules}])"
    done = subprocess.run([str(node_venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                          env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[True, True, True]", done.stderr


def test_run_joins_a_head_by_its_loopback_address_and_ships_a_trainable_only_the_driver_has(
        loopback_cluster, tmp_path):
    config = _lab_config(tmp_path, loopback_cluster)
    done, _ = _driver(["run", str(config), "--strategy", "random", "--workers", "2", "--quiet", "--out",
                       str(tmp_path / "run"), "--address", loopback_cluster.address],
                      clean_env(loopback_cluster.home), tmp_path)  # the token from ~/.ray/auth_token
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_trained_on_the_bare_node(tmp_path / "run", members=4)


def test_compare_ships_the_trainable_too(loopback_cluster, tmp_path):
    config = _lab_config(tmp_path, loopback_cluster)
    no_token_home = tmp_path / "home"
    no_token_home.mkdir()
    done, _ = _driver(["compare", str(config), "--strategies", "random,pbt", "--seeds", "1", "--workers", "2",
                       "--quiet", "--out", str(tmp_path / "cmp"), "--address", loopback_cluster.address],
                      clean_env(no_token_home, RAY_AUTH_TOKEN=loopback_cluster.token), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for strategy in ("random", "pbt"):
        (run_dir,) = (tmp_path / "cmp").glob(f"*{strategy}*")
        _assert_trained_on_the_bare_node(run_dir, members=4)


def test_auto_finds_the_head_and_digits_trains_on_a_node_without_scikit_learn(loopback_cluster, tmp_path):
    config = tmp_path / "digits.toml"
    config.write_text(DIGITS_CONFIG)
    env = clean_env(loopback_cluster.home, RAY_TMPDIR=str(loopback_cluster.ray_tmpdir))
    done, _ = _driver(["run", str(config), "--strategy", "random", "--workers", "2", "--quiet", "--out",
                       str(tmp_path / "run"), "--address", "auto"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["budget_steps"] == 400 and summary["best"]["objective"] > 0.5
    assert len(load_run(tmp_path / "run").results) == 4


@pytest.mark.parametrize("token, state", [(None, "needs a token"), ("0" * 64, "refused this driver's token")])
def test_a_driver_without_the_right_token_is_refused_in_one_line(loopback_cluster, tmp_path, token, state):
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    env = clean_env(empty_home) if token is None else clean_env(empty_home, RAY_AUTH_TOKEN=token)
    done, seconds = _driver(["run", str(_lab_config(tmp_path, loopback_cluster)), "--quiet", "--out",
                             str(tmp_path / "run"), "--address", loopback_cluster.address], env, tmp_path, timeout=60)
    assert done.returncode == 2 and seconds < 20
    assert done.stderr.splitlines() == [
        f"pbt: error: address: the Ray cluster at {loopback_cluster.address} {state}: put the cluster's "
        "token (`ray get-auth-token` on the head prints it) in RAY_AUTH_TOKEN or ~/.ray/auth_token"]
    assert not (tmp_path / "run").exists()


def test_a_cluster_without_token_authentication_is_joined_by_a_driver_that_has_a_token(ray_cluster, tmp_path):
    """The suite's own cluster (``ray.cluster_utils``) runs without token authentication. A driver
    that sent its token anyway would also demand one of the cluster's workers, and its actors would
    never be created: the token goes out only to a cluster that asks for it."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    done, _ = _driver(["run", str(EXAMPLES / "toy.toml"), "--strategy", "random", "--workers", "2", "--quiet",
                       "--out", str(tmp_path / "run"), "--address", ray_cluster.address], clean_env(home), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["budget_steps"] == 2 * 200


def test_a_closed_port_fails_in_one_line_within_seconds(tmp_path):
    port = free_port()  # nothing listens there once the probe socket is closed
    done, seconds = _driver(["run", str(EXAMPLES / "toy.toml"), "--quiet", "--out",
                             str(tmp_path / "run"), "--address", f"127.0.0.1:{port}"],
                            clean_env(tmp_path), tmp_path, timeout=60)
    assert done.returncode == 2 and seconds < 20, (seconds, done.stderr[-2000:])
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"pbt: error: address: nothing listens at 127.0.0.1:{port}")
    assert not (tmp_path / "run").exists()



@pytest.mark.parametrize("on_path", [True, False], ids=["shadowing ours", "beside ours"])
def test_a_trainable_package_named_like_one_of_ours_is_one_line(on_path, tmp_path):
    """A package of the user's called ``models`` either shadows ours or cannot be imported beside it;
    either way it would never reach a cluster's nodes, so it is refused by name."""
    package = tmp_path / "driver_src" / "models"
    package.mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "mynet.py").write_text("class Net:\n    pass\n")
    config = tmp_path / "mine.toml"
    config.write_text(LAB_CONFIG.format(node_prefix="-").replace("lab_trainables:WhereToy", "models.mynet:Net"))
    env = clean_env(tmp_path)
    done = subprocess.run([str(BIN / "pbt"), "run", str(config), "--quiet", "--out", str(tmp_path / "run")],
                          cwd=tmp_path / "driver_src", capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(tmp_path / "driver_src")} if on_path else env)
    taken = "(models, workers, search and pbt are pbt-search's own top-level packages)"
    expected = (f"pbt: error: {config}: {package / '__init__.py'}: your package 'models' shadows pbt-search's own; "
                f"rename yours {taken}" if on_path else
                f"pbt: error: {config}: trainable.name: cannot import module 'models.mynet' (No module named "
                f"'models.mynet'); if 'models' is your package, rename it {taken}")
    assert (done.returncode, done.stderr.splitlines()) == (2, [expected])
    assert not (tmp_path / "run").exists()
