"""An embedded Ray listens on loopback only (DESIGN §6), whichever way a search starts it.

Each search runs in a fresh interpreter whose environment lacks ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
(Ray reads it once, at its first import, so only a new process shows what a user gets). A gated
trainable holds the first training call until the test has read the listening TCP sockets of every
process the search started: the driver, gcs_server, raylet and the worker processes.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from workers.cluster import LOOPBACK_ENV

CONFIG = """\
objective = "Q"
mode = "max"

[trainable]
name = "trainables:GatedToy"
started = "{started}"
release = "{release}"

[space]
h0 = {{ uniform = [0.0, 1.0] }}
h1 = {{ uniform = [0.0, 1.0] }}

[budget]
population = 2
steps = 8
eval_every = 4
"""

API_SCRIPT = """\
{first}
from pathlib import Path
from pbt.api import run
from pbt.config import load_config
summary = run(load_config(Path({config!r})), strategy="random", seed=0, out=Path({out!r}), workers=2)
print("budget", summary["budget_steps"])
"""


def _listening(process: psutil.Process) -> list[str]:
    try:
        return [c.laddr.ip for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)  # "::ffff:127.0.0.1" is IPv4 loopback
    return (mapped or address).is_loopback


def _start(command: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ENV}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process, tmp_path / "release"


def _sockets_while_training(process: subprocess.Popen, tmp_path: Path) -> dict[str, list[str]]:
    """Once a worker is training, every listening socket of the search's process tree, by process."""
    started = tmp_path / "started"
    deadline = time.monotonic() + 120
    while not started.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            out, err = process.communicate(timeout=60)
            pytest.fail(f"the search never started training (exit {process.returncode}):\n{out}\n{err}")
        time.sleep(0.05)
    root = psutil.Process(process.pid)
    sockets: dict[str, list[str]] = {}
    for member in [root, *root.children(recursive=True)]:
        hosts = _listening(member)
        if hosts:
            sockets[f"{member.name()}[{member.pid}]"] = hosts
    return sockets


def _finish(process: subprocess.Popen, release: Path) -> tuple[str, str]:
    release.touch()
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return out, err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gated.toml"
    path.write_text(CONFIG.format(started=tmp_path / "started", release=tmp_path / "release"))
    return path


def _cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("pbt")), *args]


def _api(config: Path, out: Path, *, import_ray_first: bool) -> list[str]:
    first = "import ray" if import_ray_first else ""
    return [sys.executable, "-c", API_SCRIPT.format(first=first, config=str(config), out=str(out))]


@pytest.mark.parametrize("way", ["pbt run", "pbt compare", "api.run", "api.run after import ray"])
def test_an_embedded_ray_listens_on_loopback_only(way, config, tmp_path):
    command = {
        "pbt run": _cli("run", str(config), "--strategy", "random", "--workers", "2", "--quiet", "--out", "run"),
        "pbt compare": _cli("compare", str(config), "--strategies", "random", "--seeds", "1", "--workers", "2",
                            "--quiet", "--out", "cmp"),
        "api.run": _api(config, tmp_path / "run", import_ray_first=False),
        "api.run after import ray": _api(config, tmp_path / "run", import_ray_first=True),
    }[way]
    process, release = _start(command, tmp_path)
    try:
        sockets = _sockets_while_training(process, tmp_path)
    finally:
        out, err = _finish(process, release)
    print(way, sockets)
    assert process.returncode == 0, err
    names = " ".join(sockets)
    assert "gcs_server" in names and "raylet" in names, sockets  # the check saw Ray's own servers
    assert "DashboardAgent" in names, sockets  # and ray[default]'s agent (its gRPC, HTTP and metrics ports)
    exposed = {name: hosts for name, hosts in sockets.items() if not all(_is_loopback(h) for h in hosts)}
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_disconnect_gives_ray_back_its_cluster_mode(tmp_path):
    """After an embedded search, a later join of a real cluster from the same process is not
    stuck advertising loopback: the constant and the environment are as Ray set them."""
    script = textwrap.dedent(f"""
        import os
        from ray._private import ray_constants
        from workers.cluster import LOOPBACK_ENV, connect, disconnect
        before = (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(LOOPBACK_ENV))
        connect(num_cpus=1)
        during = (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(LOOPBACK_ENV))
        disconnect()
        print(before, during, (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(LOOPBACK_ENV)))
    """)
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ENV}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "(True, None) (False, '0') (True, None)"
