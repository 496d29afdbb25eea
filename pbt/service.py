"""Service mode (issue 14), the client: searches submitted to a Ray cluster as Ray Jobs, then watched,
stopped and resumed through the head's job server.

The job server is part of the head's dashboard (``ray start --head``; port 8265, on loopback unless
the head was started with ``--dashboard-host``), reached with Ray's ``JobSubmissionClient`` (from
``ray[default]``). ``submit`` stages what a search needs into the job's ``working_dir``: the project's
packages, the config as JSON with the ``.npz`` data set it names, and a custom trainable's top-level
package or module. The job runs ``python -m pbt.service_driver`` on the head (see there), which
writes the run to ``<storage>/<name>`` on the head and records its job id in the run's
``service.json``. A job's metadata (``pbt.*`` keys) says which run it drives. What a job has done
is read from the run's store where the storage folder is readable (on the head, for the run's latest
job), else from the last progress line of the job's logs (the line ``pbt run`` shows).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import pandas as pd

from models.errors import ConfigError, StoreError
from pbt.api import user_modules
from pbt.config import RunConfig
from pbt.terminal import format_progress, format_steps, parse_progress
from search.progress import Progress
from search.store import RunData, best_member, load_run
from workers.cluster import TOKEN_HINT, first_line, runtime_env, use_token_if_any
from workers.trainable import OWN_ROOT

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # as Ray's own `ray job` commands read it
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_STORAGE = "~/pbt-runs"  # on the head
STOP_GRACE_S = 30  # seconds Ray waits after SIGTERM before it kills a stopping driver
STOP_WAIT_S = 30  # beyond the grace period, how long `pbt stop` waits for the job to end
SERVICE_FILE = "service.json"  # in a run directory: {"jobs": [the ids of the jobs that drove it, oldest first]}
CONFIG_FILE = "config.json"
INPUTS_DIR = "inputs"
WAITING = "waiting for room"  # how a job's driver starts the lines it logs while it waits
META = "pbt."
JOB_ID = re.compile(r"pbt-[0-9a-f]{8}")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
QUIET_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging",  # "Uploading package..."
                 "ray.dashboard.modules.job.sdk")  # "WebSocket closed for job ..." at the end of logs --follow


def default_address() -> str:
    """``$RAY_API_SERVER_ADDRESS``, else the job server of a head on this machine (or at an SSH tunnel's end)."""
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def is_job_server(address: str | None) -> bool:
    """``address`` names a job server (``http(s)://...``) rather than a Ray cluster to join."""
    return address is not None and address.startswith(("http://", "https://"))


def is_job_id(text: str) -> bool:
    """``text`` is an id ``pbt submit`` gives a job."""
    return JOB_ID.fullmatch(text) is not None


def check_name(name: str) -> str:
    """A run name is one folder name inside the storage folder: no ``..``, no ``/``, not absolute."""
    if not RUN_NAME.fullmatch(name):
        raise ConfigError(f"--name: a run name is one folder name (letters, digits, '.', '_', '-', not starting "
                          f"with '.' or '-'), got {name!r}")
    return name


def check_storage(storage: str) -> str:
    """The storage folder is a path on the head: absolute, or from a home folder (``~``)."""
    if not (storage.startswith("~") or Path(storage).is_absolute()):
        raise ConfigError(f"--storage: must be an absolute path on the head (or start with ~), got {storage!r}")
    return storage


def run_dir_in(storage: str, name: str) -> Path:
    """``<storage>/<name>`` on this machine (``~`` expanded); ``ConfigError`` if it leads out of the
    storage folder (a name that is a link elsewhere)."""
    root = Path(check_storage(storage)).expanduser().resolve()
    run_dir = (root / check_name(name)).resolve()
    if run_dir.parent != root:
        raise ConfigError(f"--name: {name!r} leads out of the storage folder {root}")
    return run_dir


# -- the job server ------------------------------------------------------------------------------

def connect_client(address: str) -> JobSubmissionClient:
    """A client of the job server at ``address``, with Ray's token if the server asks for one; a
    one-line ``ConfigError`` if it cannot be reached or refuses this client."""
    if not is_job_server(address):
        raise ConfigError(f"address: the head's job server as http://HOST:PORT (its dashboard port, 8265 "
                          f"unless changed), got {address!r}")
    try:
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ConfigError(f"service mode needs Ray's job client ({exc}): pip install 'pbt-search[service]'") from None
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _client(JobSubmissionClient, address)
    except AuthenticationError:
        if not use_token_if_any():
            raise ConfigError(f"address: the job server at {address} needs a token: {TOKEN_HINT}") from None
    try:
        return _client(JobSubmissionClient, address)
    except AuthenticationError:
        raise ConfigError(f"address: the job server at {address} refused this client's token: {TOKEN_HINT}") from None


def _client(cls: type, address: str) -> JobSubmissionClient:
    try:
        return cls(address)
    except ConnectionError as exc:
        raise ConfigError(f"address: no Ray job server answers at {address} ({first_line(exc)}): is the head "
                          f"up, and is this its dashboard address (or the local end of an SSH tunnel to it)?") from None
    except RuntimeError as exc:  # a version mismatch, a server error
        raise ConfigError(f"address: the job server at {address} refused this client ({first_line(exc)})") from None


@dataclass(frozen=True)
class Submitted:
    """A job ``submit`` or ``resume`` started: its id, and its run directory as the head sees it."""

    job: str
    run_dir: str


def submit(client: JobSubmissionClient, config: RunConfig, *, source: Path, strategy: str, seed: int, name: str,
           storage: str, workers: int | None, stop_grace: int = STOP_GRACE_S) -> Submitted:
    """Submit a search of ``config`` (read from ``source``) as a job that writes ``<storage>/<name>``."""
    metadata = {"run": check_name(name), "storage": check_storage(storage), "strategy": strategy, "seed": str(seed),
                "config": source.name, "objective": config.objective, "stop_grace": str(stop_grace)}
    with tempfile.TemporaryDirectory(prefix="pbt-submit-") as staging:
        _stage_config(Path(staging), config)
        args = ["run", "--config", CONFIG_FILE, "--source", source.name, "--strategy", strategy, "--seed", str(seed)]
        return _submit(client, Path(staging), config, args, metadata, workers)


def resume(client: JobSubmissionClient, target: str, *, workers: int | None) -> Submitted:
    """Continue, as a new job, the run of the job ``target`` (stopped, or failed) or the run directory
    ``target`` (a path on the head, inside a storage folder)."""
    if is_job_id(target):
        details = job_details(client, target)
        state = details.status.value.lower()
        if not details.status.is_terminal():
            raise ConfigError(f"resume: job {target} is still {state}; `pbt stop {target}` first")
        if state == "succeeded":
            raise ConfigError(f"resume: job {target} finished its search; there is nothing to resume")
        metadata = {**_pbt_metadata(details), "resumes": target}
    else:
        storage, name = os.path.split(target.rstrip("/"))
        metadata = {"run": check_name(name), "storage": check_storage(storage), "stop_grace": str(STOP_GRACE_S)}
    with tempfile.TemporaryDirectory(prefix="pbt-submit-") as staging:
        return _submit(client, Path(staging), None, ["resume"], metadata, workers)


def _stage_config(staging: Path, config: RunConfig) -> None:
    """The config as JSON, its ``.npz`` data set beside it in ``inputs/`` (a relative path, as the
    driver on the head reads it from the job's working directory)."""
    raw = json.loads(json.dumps(config.raw))
    dataset = raw["trainable"].get("dataset")
    if isinstance(dataset, str) and dataset.endswith(".npz"):
        (staging / INPUTS_DIR).mkdir()
        shutil.copy2(dataset, staging / INPUTS_DIR / Path(dataset).name)
        raw["trainable"]["dataset"] = f"{INPUTS_DIR}/{Path(dataset).name}"
    (staging / CONFIG_FILE).write_text(json.dumps(raw))


def copy_code(source: Path, folder: Path) -> None:
    """Copy a package's directory (without its ``__pycache__``) or a module's file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, folder / source.name)


def _submit(client: JobSubmissionClient, staging: Path, config: RunConfig | None, args: list[str],
            metadata: Mapping[str, str], workers: int | None) -> Submitted:
    """Copy the project's packages (and a custom trainable's) into ``staging`` and submit the job
    running ``pbt.service_driver ARGS`` from it."""
    shipped = runtime_env(user_modules(config) if config is not None else ())["py_modules"]
    for path in [*shipped, str(OWN_ROOT / "dashboards")]:
        copy_code(Path(path), staging)
    job = f"pbt-{secrets.token_hex(4)}"
    args = [*args, "--storage", metadata["storage"], "--name", metadata["run"], "--job", job]
    if workers is not None:
        args += ["--workers", str(workers)]
    try:
        client.submit_job(
            entrypoint=shlex.join(["python", "-m", "pbt.service_driver", *args]), submission_id=job,
            runtime_env={"working_dir": str(staging), "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": metadata["stop_grace"]}},
            metadata={META + key: value for key, value in metadata.items()})
    except (RuntimeError, ValueError) as exc:  # ValueError: a working directory over Ray's size limit
        raise ConfigError(f"submit: the job server did not take the search ({first_line(exc)})") from None
    return Submitted(job, f"{metadata['storage'].rstrip('/')}/{metadata['run']}")


# -- what the jobs are doing ---------------------------------------------------------------------

@dataclass(frozen=True)
class JobView:
    """A submitted search as ``pbt jobs`` and ``pbt status`` show it. ``status`` is Ray's, in lower
    case, or "waiting for room"; ``run_status`` is the store's, where the store is readable here."""

    job: str
    status: str
    run_dir: str
    strategy: str
    seed: str
    objective: str
    config: str
    progress: Progress | None
    run_status: str | None
    started: float | None
    ended: float | None
    message: str


def job_details(client: JobSubmissionClient, job: str) -> JobDetails:
    """The job server's record of the search ``job``; ``ConfigError`` if it has none."""
    try:
        details = client.get_job_info(job)
    except RuntimeError:
        raise ConfigError(f"job: the cluster has no job {job!r} (`pbt jobs` lists them)") from None
    if META + "run" not in (details.metadata or {}):
        raise ConfigError(f"job: {job} is not a search submitted by pbt submit")
    return details


def list_jobs(client: JobSubmissionClient) -> list[JobView]:
    """Every search submitted to the cluster, oldest first."""
    searches = [d for d in client.list_jobs() if META + "run" in (d.metadata or {})]
    return [describe(client, d) for d in sorted(searches, key=lambda d: d.start_time or 0)]


def describe(client: JobSubmissionClient, details: JobDetails) -> JobView:
    """What a job is doing, from its run's store if readable here, else from its logs."""
    meta = _pbt_metadata(details)
    job = details.submission_id
    status = details.status.value.lower()
    run = _local_run(meta, job)
    run_status = None
    if run is not None:
        progress, run_status = store_progress(run), run.info["status"]
        meta = {"strategy": run.info["strategy"], "seed": str(run.info["seed"]),
                "objective": run.info["objective"], **meta}
    else:
        logs = client.get_job_logs(job)
        progress = logs_progress(logs)
        if status == "running" and progress is None and _last_line(logs).startswith(WAITING):
            status = WAITING
    return JobView(
        job=job, status=status, run_dir=f"{meta['storage'].rstrip('/')}/{meta['run']}",
        strategy=meta.get("strategy", ""), seed=meta.get("seed", ""), objective=meta.get("objective", ""),
        config=meta.get("config", ""), progress=progress, run_status=run_status,
        started=None if details.start_time is None else details.start_time / 1000,
        ended=None if details.end_time is None else details.end_time / 1000,
        message=(details.message or "").strip().split("\n")[0] if status == "failed" else "")


def _pbt_metadata(details: JobDetails) -> dict[str, str]:
    return {key[len(META):]: value for key, value in (details.metadata or {}).items() if key.startswith(META)}


def _local_run(meta: Mapping[str, str], job: str) -> RunData | None:
    """The job's run, if its store is readable here and ``job`` is the latest job that drove it."""
    try:
        run_dir = run_dir_in(meta["storage"], meta["run"])
        jobs = json.loads((run_dir / SERVICE_FILE).read_text())["jobs"]
        return load_run(run_dir) if jobs and jobs[-1] == job else None
    except (ConfigError, KeyError, OSError, StoreError, TypeError, ValueError):  # StoreError: being created
        return None


def store_progress(run: RunData) -> Progress:
    """A run's progress as its store holds it."""
    results, members = run.results, run.members
    best = best_member(run)
    objective = None if best is None else float(members.loc[members["member"] == best, "objective"].iloc[0])
    return Progress(
        population=int(run.info["population"]), members_done=int((members["status"] != "running").sum()),
        steps_done=len(results) * int(run.info["eval_every"]),
        budget_steps=int(run.info["population"]) * int(run.info["steps_per_member"]),
        best_member=best, best_objective=objective,
        exploits=int((run.events["kind"] == "exploit").sum()),
        elapsed_seconds=float(results["wall_time"].max()) if len(results) else 0.0)


def logs_progress(logs: str) -> Progress | None:
    """The progress in the last progress line of a job's logs; ``None`` before the first."""
    for line in reversed(logs.splitlines()):
        progress = parse_progress(line)
        if progress is not None:
            return progress
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def format_jobs(views: list[JobView]) -> str:
    """One row per search: job, status, strategy, progress, best objective, start time, run."""
    if not views:
        return "no searches on this cluster yet (pbt submit starts one)"
    table = pd.DataFrame({
        "job": [v.job for v in views],
        "status": [v.status for v in views],
        "strategy": [v.strategy or "-" for v in views],
        "steps": ["-" if v.progress is None else format_steps(v.progress) for v in views],
        "best": ["-" if v.progress is None or v.progress.best_objective is None
                 else f"{v.objective or 'objective'} {v.progress.best_objective:.4g}" for v in views],
        "started": [_time(v.started) for v in views],
        "run": [v.run_dir for v in views],
    })
    return table.to_string(index=False)


def format_status(view: JobView) -> str:
    """``pbt status``: one ``key: value`` line per fact of the search."""
    search = ", ".join(filter(None, [view.strategy, view.seed and f"seed {view.seed}", view.config]))
    run_status = f" (its store: {view.run_status})" if view.run_status else ""
    lines = [f"job: {view.job}", f"status: {view.status}", f"run: {view.run_dir} (on the head){run_status}"]
    if search:
        lines.append(f"search: {search}")
    progress = "-" if view.progress is None else format_progress(
        view.progress, view.objective, still_running=view.status in ("running", WAITING))
    lines.append(f"progress: {progress}")
    lines.append(f"started: {_time(view.started)}")
    if view.ended is not None:
        lines.append(f"ended: {_time(view.ended)}")
    if view.message:
        lines.append(f"message: {view.message}")
    return "\n".join(lines)


def _time(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


# -- stop and logs -------------------------------------------------------------------------------

def stop(client: JobSubmissionClient, job: str) -> JobView:
    """Ask Ray to stop ``job`` (SIGTERM to its driver, SIGKILL after its grace period) and wait until
    it has ended; the run's last snapshot is durable either way."""
    details = job_details(client, job)
    if details.status.is_terminal():
        raise ConfigError(f"stop: job {job} is not running (it {details.status.value.lower()})")
    client.stop_job(job)
    wait = int(_pbt_metadata(details).get("stop_grace", STOP_GRACE_S)) + STOP_WAIT_S
    deadline = time.monotonic() + wait
    while not (details := client.get_job_info(job)).status.is_terminal():
        if time.monotonic() > deadline:
            raise StoreError(f"stop: job {job} has not ended {wait} s after it was asked to")
        time.sleep(0.5)
    return describe(client, details)


def print_logs(client: JobSubmissionClient, job: str, stream: TextIO, *, follow: bool) -> None:
    """The job's logs so far; with ``follow``, then the lines it writes until it ends."""
    job_details(client, job)
    if not follow:
        stream.write(client.get_job_logs(job))
        stream.flush()
        return

    async def tail() -> None:
        async for lines in client.tail_job_logs(job):
            stream.write(lines)
            stream.flush()

    asyncio.run(tail())
