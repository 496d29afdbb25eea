"""Ray started the way a user starts it (``ray start``), for the tests that join or submit to it.

Each process runs in a session of its own, beside the suite's one Ray session, and is killed by
session (with what it started) even when a test fails. Importable by any test module
(``tests/conftest.py`` puts this directory on the path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

START_TIMEOUT_S = 90


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This machine's environment without Ray's settings or the suite's PYTHONPATH, with ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    return {**env, "HOME": str(home), **extra}


def start_ray(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own; returns once it says it is up."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Ray runtime started" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_session(process)
            pytest.fail(f"{command[:3]} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def session_processes(process: subprocess.Popen, working_under: Path | None = None) -> list[psutil.Process]:
    """Every process of ``process``'s session (``ray start`` and all it started), and every process
    whose working directory is under ``working_under`` (a Ray job's driver runs in a session of its
    own, in the job's working directory under Ray's temporary folder)."""
    members = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == process.pid or (
                    working_under is not None and Path(p.cwd()).is_relative_to(working_under)):
                members.append(p)
        except (OSError, psutil.Error):
            continue
    return members


def stop_session(process: subprocess.Popen, working_under: Path | None = None) -> None:
    """SIGKILL the processes :func:`session_processes` finds (on SIGTERM they take more than 15 s
    here, and nothing of theirs outlives the test's temporary directory)."""
    members = session_processes(process, working_under)
    for p in members:
        try:
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(members, timeout=10)
    process.poll()
