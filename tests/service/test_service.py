"""Service mode against a real head (issue 14): ``ray start --head`` as a user starts it, with Ray's
token, its dashboard and job server where Ray puts them by default (loopback), and every ``pbt``
command run as a user runs it, in a subprocess.

One head per module (2 CPUs, in a session of its own under a temporary HOME; killed, with the
jobs' drivers, even when a test fails). The client's HOME is another folder, with the token in
``RAY_AUTH_TOKEN``: a storage folder named from ``~`` is the head's, not readable by the client,
so what the client shows of it comes from the job's logs. The job server's own REST API (not
``pbt``) tells the tests when a job has ended.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from ray_processes import clean_env, free_port, session_processes, start_ray, stop_session
from trainables import slow_toy_config

from models.errors import StoreError
from pbt.api import run
from pbt.config import load_config
from search.store import load_run
from workers.cluster import LOOPBACK_ENV

BIN = Path(sys.executable).parent
TRAINABLES_DIR = Path(__file__).resolve().parents[1] / "workers"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
TIMES = ("wall_seconds", "train_seconds")


@dataclass
class Head:
    address: str  # the job server: http://127.0.0.1:PORT
    home: Path  # the head's HOME (holds .ray/auth_token; ~/pbt-runs is the default storage)
    token: str
    process: subprocess.Popen
    root: Path  # Ray's temporary folder is under it, and so are the jobs' working directories
    client_env: dict[str, str]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    root = Path(tempfile.mkdtemp(prefix="pbts"))  # short: Ray's socket paths live under it
    home, client_home = tmp_path_factory.mktemp("head-home"), tmp_path_factory.mktemp("client-home")
    token = secrets.token_hex(32)
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)
    (home / ".ray" / "auth_token").chmod(0o600)
    dashboard = free_port()
    process = None
    try:
        process = start_ray(
            [str(BIN / "ray"), "start", "--head", "--port", str(free_port()), "--num-cpus", "2",
             "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(free_port()),
             "--disable-usage-stats", "--temp-dir", str(root / "ray"), "--block"],
            clean_env(home, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **{LOOPBACK_ENV: "0"}), root,
            root / "head.log")
        head = Head(f"http://127.0.0.1:{dashboard}", home, token, process, root,
                    clean_env(client_home, RAY_AUTH_TOKEN=token, PYTHONPATH=str(TRAINABLES_DIR)))
        deadline = time.monotonic() + 60
        while _answers(head) is None:
            assert time.monotonic() < deadline, f"the job server never answered:\n{(root / 'head.log').read_text()}"
            time.sleep(0.5)
        yield head
    finally:
        if process is not None:
            stop_session(process, working_under=root)
        shutil.rmtree(root, ignore_errors=True)


def _rest(head: Head, path: str) -> object:
    """GET the job server's REST API with the token, as any HTTP client would."""
    request = urllib.request.Request(head.address + path, headers={"Authorization": f"Bearer {head.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _answers(head: Head) -> object | None:
    try:
        return _rest(head, "/api/jobs/")
    except OSError:
        return None


def _wait_until_ended(head: Head, job: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while (status := _rest(head, f"/api/jobs/{job}")["status"]) not in TERMINAL:
        assert time.monotonic() < deadline, f"job {job} still {status} after {timeout} s"
        time.sleep(0.5)
    return status


def _pbt(head: Head, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return _pbt_at_once(head, [args], cwd=cwd, timeout=timeout)[0]


def _pbt_at_once(head: Head, commands: list[tuple[str, ...]], cwd: Path,
                 timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """``pbt ARGS --address HEAD`` for each of ``commands``, all at once (each pays the start of Python)."""
    processes = [subprocess.Popen([str(BIN / "pbt"), *args, "--address", head.address], cwd=cwd,
                                  env=head.client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args in commands]
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
        return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(processes, outputs)]
    finally:
        for process in processes:
            process.kill()


def _submit(head: Head, config: Path, *args: str) -> str:
    return _submit_at_once(head, config, [args])[0]


def _submit_at_once(head: Head, config: Path, submissions: list[tuple[str, ...]]) -> list[str]:
    """The job ids of ``pbt submit CONFIG --strategy pbt --seed 3 ARGS`` for each of ``submissions``, all at once."""
    jobs = []
    for done in _pbt_at_once(head, [("submit", str(config), "--strategy", "pbt", "--seed", "3", *args)
                                    for args in submissions], cwd=config.parent):
        assert done.returncode == 0, done.stderr
        job, run_dir = done.stdout.splitlines()
        assert re.fullmatch(r"job: pbt-[0-9a-f]{8}", job) and run_dir.startswith("run directory: ")
        jobs.append(job.removeprefix("job: "))
    return jobs


def _config(tmp_path: Path, steps: int, delay: float = 0.02, name: str = "slow.toml") -> Path:
    return slow_toy_config(tmp_path / name, steps=steps, delay=delay,
                           pbt={"interval": 8, "burn_in": 0, "synchronous": True})


def _timeless(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMES}


def _results(run_dir: Path) -> int:
    """The result rows of a run's store; 0 before its store is written."""
    try:
        return len(load_run(run_dir).results)
    except StoreError:
        return 0


def _listening(head: Head) -> dict[str, list]:
    """The listening TCP sockets of the head's processes (``ray start`` and all it started) and of the
    jobs' drivers (in sessions of their own, in the jobs' working directories), by process."""
    sockets = {}
    for process in session_processes(head.process, working_under=head.root):
        try:
            hosts = [c.laddr for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
            if hosts:
                sockets[f"{' '.join(process.cmdline()[:3])}[{process.pid}]"] = hosts
        except psutil.Error:
            continue
    return sockets


def _row(jobs_output: str, job: str) -> str:
    return next(line for line in jobs_output.splitlines() if line.startswith(job))


def test_bad_input_is_refused_in_one_line_and_nothing_is_submitted(head, tmp_path):
    """A bad config, run name or storage folder before anything is submitted; a job id the cluster
    does not know, for every command that takes one."""
    storage = tmp_path / "storage"
    bad = tmp_path / "bad.toml"
    bad.write_text(_config(tmp_path, steps=8).read_text().replace("population = 4", "population = 0"))
    before = _rest(head, "/api/jobs/")
    cases = {
        (str(bad),): f"pbt: error: {bad}: budget.population: must be an integer >= 1, got 0",
        (str(tmp_path / "slow.toml"), "--name", "../out"):
            "pbt: error: --name: a run name is one folder name (letters, digits, '.', '_', '-', not starting "
            "with '.' or '-'), got '../out'",
        (str(tmp_path / "slow.toml"), "--name", "/etc"):
            "pbt: error: --name: a run name is one folder name (letters, digits, '.', '_', '-', not starting "
            "with '.' or '-'), got '/etc'",
        (str(tmp_path / "slow.toml"), "--storage", "runs"):
            "pbt: error: --storage: must be an absolute path on the head (or start with ~), got 'runs'",
    }
    commands = [("submit", *args, *(() if "--storage" in args else ("--storage", str(storage)))) for args in cases]
    unknown = "pbt: error: job: the cluster has no job 'pbt-00000000' (`pbt jobs` lists them)"
    commands += [(command, "pbt-00000000") for command in ("status", "logs", "stop", "resume")]
    lines = [*cases.values(), *[unknown] * 4]
    for args, line, done in zip(commands, lines, _pbt_at_once(head, commands, cwd=tmp_path)):
        assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [line], ""), args
    assert _rest(head, "/api/jobs/") == before and not storage.exists()


def test_two_searches_at_once_both_finish_and_a_third_waits_for_room(head, tmp_path):
    """a and b (one worker each, slowed) share the head's 2 CPUs; c asks for 2 workers and waits, saying so,
    until both are done. ``jobs``, ``status`` and ``logs`` show it all, from the store where the
    client can read it (b, c) and from the logs where it cannot (a, in the head's ~/pbt-runs). While
    they train, the head (with Ray's default dashboard host) and the searches' drivers listen on
    loopback only."""
    config, storage = _config(tmp_path, steps=120), tmp_path / "storage"
    slower = _config(tmp_path, steps=120, delay=0.05, name="slower.toml")  # c waits long enough to be seen under load
    a, b = _submit_at_once(head, slower, [
        ("--name", "a", "--workers", "1"),  # default storage: ~/pbt-runs on the head
        ("--name", "b", "--workers", "1", "--storage", str(storage))])
    c = _submit(head, config, "--name", "c", "--workers", "2", "--storage", str(storage))
    follow = subprocess.Popen([str(BIN / "pbt"), "logs", c, "--follow", "--address", head.address], cwd=tmp_path,
                              env=head.client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen, sockets = {a: False, b: False, c: False}, {}
        deadline = time.monotonic() + 120
        while not all(seen.values()) and time.monotonic() < deadline:
            jobs = _pbt(head, "jobs", cwd=tmp_path)
            assert jobs.returncode == 0, jobs.stderr
            steps = [re.search(r"\brunning +pbt +([\d,]+)/480 \(", _row(jobs.stdout, job)) for job in (a, b)]
            training = [done is not None and 0 < int(done[1].replace(",", "")) < 480 for done in steps]
            if all(training) and not sockets:
                sockets = _listening(head)
            seen[a], seen[b] = seen[a] or training[0], seen[b] or training[1]
            seen[c] |= " waiting for room " in _row(jobs.stdout, c)
        assert all(seen.values()), f"not seen mid-run or waiting: {seen}\n{jobs.stdout}"
        assert [_wait_until_ended(head, job) for job in (a, b, c)] == ["SUCCEEDED"] * 3
        followed, follow_noise = follow.communicate(timeout=60)  # --follow ends with the job
    finally:
        follow.kill()
    assert int(head.address.rsplit(":", 1)[1]) in {addr.port for hosts in sockets.values() for addr in hosts}, sockets
    assert any("DashboardAgent" in name for name in sockets), sockets  # its gRPC, HTTP and metrics ports
    assert sum("pbt.service_driver" in name for name in sockets) >= 2, sorted(sockets)  # a's and b's drivers
    exposed = {name: hosts for name, hosts in sockets.items()
               if not all(ipaddress.ip_address(addr.ip.removeprefix("::ffff:")).is_loopback for addr in hosts)}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert follow_noise == ""  # none of Ray's client logging ("WebSocket closed for job ...")
    assert "waiting for room: this search's 2 workers need 2 CPUs; " in followed
    assert "room found after " in followed and "steps 480/480 (100%)" in followed and "best: member" in followed

    runs = {job: load_run(path) for job, path in
            [(a, head.home / "pbt-runs" / "a"), (b, storage / "b"), (c, storage / "c")]}
    for data in runs.values():
        assert data.summary["budget_steps"] == 4 * 120 and len(data.results) == 4 * 120 // 4
    started, finished = ({job: data.info[key] for job, data in runs.items()} for key in ("started_at", "finished_at"))
    assert started[a] < finished[b] and started[b] < finished[a]  # a and b trained at once
    assert started[c] > max(finished[a], finished[b])  # c waited for both

    status_a, status_b, logs = _pbt_at_once(head, [("status", a), ("status", b), ("logs", a)], cwd=tmp_path)
    assert status_a.returncode == status_b.returncode == logs.returncode == 0
    assert "status: succeeded\nrun: ~/pbt-runs/a (on the head)\nsearch: pbt, seed 3, slower.toml\n" in status_a.stdout
    assert "progress: members 4/4 done | steps 480/480 (100%) | best Q " in status_a.stdout  # from a's logs
    assert f"run: {storage / 'b'} (on the head) (its store: finished)\n" in status_b.stdout
    best_b = runs[b].summary["best"]
    assert f"best Q {best_b['objective']:.4g} (member {best_b['member']})" in status_b.stdout  # from b's store
    assert re.search(r"^members \d/4 done \| steps [\d,]+/480 \(\d+%\) \| best Q ", logs.stdout, re.MULTILINE)
    assert "steps 480/480 (100%)" in logs.stdout and "best: member" in logs.stdout

    dashboard = subprocess.Popen([str(BIN / "pbt"), "dashboard", "--storage", str(storage), "--port", "0"],
                                 cwd=tmp_path, env=head.client_env, stdout=subprocess.PIPE, text=True)
    try:
        url = dashboard.stdout.readline().strip()
        page = urllib.request.urlopen(url, timeout=30).read().decode()
    finally:
        dashboard.kill()
        dashboard.wait()
    assert ">storage/b</a>" in page and ">storage/c</a>" in page


def test_stopped_searches_resume_as_jobs_to_the_summary_of_an_uninterrupted_one(head, tmp_path, ray_session):
    """Stopped gracefully (grace 30 s: the store says stopped), or killed at once (grace 0: Ray's
    SIGKILL escalation, the store as the driver left it): both resume, as jobs, to the summary an
    uninterrupted run of the same seed ends with (synchronous PBT)."""
    config, storage = _config(tmp_path, steps=120), tmp_path / "storage"
    graces = {"graceful": 30, "killed": 0}
    jobs = dict(zip(graces, _submit_at_once(head, config, [
        ("--name", name, "--workers", "1", "--storage", str(storage), "--stop-grace", str(grace))
        for name, grace in graces.items()])))
    deadline = time.monotonic() + 120
    while min(_results(storage / name) for name in jobs) < 20:
        assert time.monotonic() < deadline, "the searches never got going"
        time.sleep(0.2)
    stops = _pbt_at_once(head, [("stop", job) for job in jobs.values()], cwd=tmp_path)
    for (name, job), stopped in zip(jobs.items(), stops):
        assert stopped.returncode == 0, stopped.stderr
        store_status = "stopped" if graces[name] else "running"  # killed at once: as the driver left it
        assert stopped.stdout == (f"job {job}: stopped; run {storage / name} (its store: {store_status}); "
                                  f"`pbt resume {job}` continues it\n")
        assert _rest(head, f"/api/jobs/{job}")["status"] == "STOPPED"
        left = load_run(storage / name)
        assert left.info["status"] == store_status and len(left.results) < 4 * 120 // 4

    resumed = {}
    for (name, job), again in zip(jobs.items(), _pbt_at_once(head, [("resume", job) for job in jobs.values()],
                                                             cwd=tmp_path)):
        assert again.returncode == 0, again.stderr
        lines = re.fullmatch(r"job: (pbt-[0-9a-f]{8})\nrun directory: (.*) \(on the head\)\n", again.stdout)
        assert lines and lines[1] != job and lines[2] == str(storage / name)
        resumed[name] = lines[1]

    whole = run(load_config(config), strategy="pbt", seed=3, out=tmp_path / "whole", workers=2)
    for name, job in resumed.items():
        assert _wait_until_ended(head, job) == "SUCCEEDED"
        data = load_run(storage / name)
        assert data.info["status"] == "finished" and len(data.results) == 4 * 120 // 4
        assert json.loads((storage / name / "service.json").read_text()) == {"jobs": [jobs[name], job]}
        assert _timeless(data.summary) == _timeless(whole), name


def test_a_search_whose_driver_dies_shows_failed_and_resumes_as_a_job(head, tmp_path, ray_session):
    """The job's driver killed on the head (SIGKILL, not ``pbt stop``): Ray calls the job failed, and so
    do ``jobs`` and ``status``; ``pbt resume`` of its run directory on the head (the other test resumes
    by job id) continues it as a job to the summary of an uninterrupted run (synchronous PBT)."""
    config, storage = _config(tmp_path, steps=120), tmp_path / "storage"
    job = _submit(head, config, "--name", "crash", "--workers", "1", "--storage", str(storage))
    deadline = time.monotonic() + 120
    while _results(storage / "crash") < 20:
        assert time.monotonic() < deadline, "the search never got going"
        time.sleep(0.2)
    drivers = [p for p in session_processes(head.process, working_under=head.root)
               if "pbt.service_driver" in " ".join(p.cmdline()) and job in p.cmdline()]
    assert len(drivers) == 1, drivers
    drivers[0].kill()
    assert _wait_until_ended(head, job) == "FAILED"
    assert 20 <= _results(storage / "crash") < 4 * 120 // 4

    jobs, status = _pbt_at_once(head, [("jobs",), ("status", job)], cwd=tmp_path)
    assert jobs.returncode == status.returncode == 0, jobs.stderr + status.stderr
    assert re.match(rf"{job} +failed +pbt ", _row(jobs.stdout, job))
    assert "status: failed" in status.stdout and "(its store: running)" in status.stdout

    again = _pbt(head, "resume", str(storage / "crash"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = re.fullmatch(rf"job: (pbt-[0-9a-f]{{8}})\nrun directory: {storage / 'crash'} \(on the head\)\n",
                           again.stdout)[1]
    whole = run(load_config(config), strategy="pbt", seed=3, out=tmp_path / "whole", workers=2)
    assert _wait_until_ended(head, resumed) == "SUCCEEDED"
    data = load_run(storage / "crash")
    assert data.info["status"] == "finished" and len(data.results) == 4 * 120 // 4
    assert _timeless(data.summary) == _timeless(whole)
