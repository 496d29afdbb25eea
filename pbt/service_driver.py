"""What a service job runs on the head (issue 14): ``python -m pbt.service_driver run|resume ...``.

``pbt.service`` submits it with the project, the config and its data set in the job's working
directory. It joins the cluster it runs in, waits for room for its workers (saying so in its logs),
writes its run to ``<storage>/<name>`` and nowhere else (with the data set and a custom trainable's
code it was given, in ``inputs/`` and ``code/``, so a resume needs nothing else), and turns Ray's stop (SIGTERM) into a
resumable one: the run's last snapshot durable, its store saying "stopped", exit status 143. If Ray
kills it first (its grace period over), the last committed snapshot still is durable, so the run
resumes all the same.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from models.errors import ConfigError, RunStopped
from pbt import api
from pbt.cli import Parser, dispatch, print_results
from pbt.config import Resources, RunConfig, parse_config
from pbt.service import INPUTS_DIR, SERVICE_FILE, WAITING, copy_code, run_dir_in
from pbt.strategies import STRATEGIES
from pbt.terminal import ProgressDisplay
from search.progress import Progress
from search.store import DB_NAME, load_run
from workers.cluster import code_path, disconnect
from workers.pool import PoolShape

STOPPED = 128 + signal.SIGTERM  # the exit status of a driver that stopped on SIGTERM
CODE_DIR = "code"  # in a run directory: the custom trainable's top-level package or module
ADMISSION_LOCK = ".pbt-admission.lock"  # in the storage folder: one search at a time counts free CPUs
ROOM_POLL_S = 1.0
SAY_AGAIN_S = 30.0

Start = Callable[[Callable[[Progress], None], threading.Event], object]


def build_parser() -> argparse.ArgumentParser:
    """``run`` a new search, or ``resume`` the run in ``<storage>/<name>``."""
    parser = Parser(prog="python -m pbt.service_driver", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    run = subparsers.add_parser("run")
    run.add_argument("--config", type=Path, required=True, help="the config as JSON, in the working directory")
    run.add_argument("--source", required=True, help="the config file's name, for messages")
    run.add_argument("--strategy", choices=STRATEGIES, required=True)
    run.add_argument("--seed", type=int, required=True)
    run.set_defaults(handler=_run)
    resume = subparsers.add_parser("resume")
    resume.set_defaults(handler=_resume)
    for sub in (run, resume):
        sub.add_argument("--storage", required=True, help="the storage folder on the head")
        sub.add_argument("--name", required=True, help="the run's folder in it")
        sub.add_argument("--job", required=True, help="this job's id")
        sub.add_argument("--workers", type=int)
    return parser


def _run(args: argparse.Namespace) -> int:
    run_dir = run_dir_in(args.storage, args.name)
    if run_dir.exists():
        raise ConfigError(f"--name: {run_dir} already exists; submit with another name")
    raw = json.loads(args.config.read_text())
    config = parse_config(raw, args.source)  # what the config needs is on the head, before anything is written

    def start(on_progress: Callable[[Progress], None], stop: threading.Event) -> None:
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            raise ConfigError(f"--name: {run_dir} already exists; submit with another name") from None
        final = parse_config(_with_inputs_in(raw, run_dir), args.source)
        _keep_code(final, run_dir)
        _record_job(run_dir, args.job)
        api.run(final, strategy=args.strategy, seed=args.seed, out=run_dir, address="auto", workers=args.workers,
                on_progress=on_progress, stop=stop)

    return _serve(config, run_dir, args, start)


def _resume(args: argparse.Namespace) -> int:
    run_dir = run_dir_in(args.storage, args.name)
    info = load_run(run_dir).info
    if (run_dir / CODE_DIR).is_dir():
        sys.path.insert(0, str(run_dir / CODE_DIR))
    config = parse_config(info["config"], str(run_dir / DB_NAME))

    def start(on_progress: Callable[[Progress], None], stop: threading.Event) -> None:
        _record_job(run_dir, args.job)
        api.resume(run_dir, address="auto", workers=args.workers, on_progress=on_progress, stop=stop)

    return _serve(config, run_dir, args, start)


def _with_inputs_in(raw: dict, run_dir: Path) -> dict:
    """``raw`` with its ``.npz`` data set (in the working directory, which Ray deletes) copied into
    ``run_dir/inputs``, so that a resume finds it."""
    dataset = raw["trainable"].get("dataset")
    if not (isinstance(dataset, str) and dataset.startswith(f"{INPUTS_DIR}/")):
        return raw
    kept = run_dir / dataset
    kept.parent.mkdir()
    shutil.copy2(dataset, kept)
    return {**raw, "trainable": {**raw["trainable"], "dataset": str(kept)}}


def _keep_code(config: RunConfig, run_dir: Path) -> None:
    """Copy the custom trainable's top-level package or module (from the working directory) into
    ``run_dir/code``, so that a resume imports it from there."""
    for module in api.user_modules(config):
        copy_code(Path(code_path(module)), run_dir / CODE_DIR)


def _record_job(run_dir: Path, job: str) -> None:
    """Append ``job`` to the jobs that drove the run (``service.json``), so a client reads the run's
    store for its latest job only."""
    path = run_dir / SERVICE_FILE
    jobs = json.loads(path.read_text())["jobs"] if path.exists() else []
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"jobs": [*jobs, job]}) + "\n")
    tmp.replace(path)


def _serve(config: RunConfig, run_dir: Path, args: argparse.Namespace, start: Start) -> int:
    """Join the cluster, wait for room, ``start`` the search, and print its results; Ray's SIGTERM
    stops it resumably."""
    print(f"run directory: {run_dir}", file=sys.stderr, flush=True)
    started = api.connect_for(config, "auto")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which sets its own
    display = ProgressDisplay(sys.stderr, config.objective, every=2.0)
    try:
        with _admitted(Path(args.storage).expanduser(), config.resources, args.workers, stop, sys.stderr) as release:
            if stop.is_set():
                print(f"pbt: stopped while {WAITING}: nothing ran (submit it again)", file=sys.stderr)
                return STOPPED

            def on_progress(progress: Progress) -> None:
                release()  # the runner reports progress once its workers are up
                display(progress)

            start(on_progress, stop)
    except RunStopped as exc:
        display.close()
        print(f"pbt: {exc}; `pbt resume {args.job}` continues it", file=sys.stderr)
        return STOPPED
    finally:
        display.close()
        if started:
            disconnect()
    return print_results(run_dir)


@contextmanager
def _admitted(storage: Path, resources: Resources, workers: int | None, stop: threading.Event,
              log: TextIO) -> Iterator[Callable[[], None]]:
    """Wait until the cluster has room for the search's workers, saying so on ``log``, and yield
    ``release``. Searches queue on the storage folder's admission lock: one at a time waits for room,
    then holds the lock until ``release`` (its workers are up), so that two searches never count the
    same free CPUs. Returns early, with the lock released, once ``stop`` is set."""
    storage.mkdir(parents=True, exist_ok=True)
    lock = open(storage / ADMISSION_LOCK, "a")
    say = _Announcer(log)

    def release() -> None:
        lock.close()  # closing the file drops its lock

    try:
        while not _locked(lock):
            if stop.wait(ROOM_POLL_S):
                release()
                break
            say(f"{WAITING}: another search on this cluster is waiting for room or starting its workers")
        else:
            _wait_for_room(resources, workers, stop, say)
        say.done()
        yield release
    finally:
        release()


def _locked(handle: TextIO) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_room(resources: Resources, workers: int | None, stop: threading.Event,
                   say: Callable[[str], None]) -> None:
    """Block until the cluster could place the search's workers that fit it at once, sized as its
    ``WorkerPool`` will size them (``workers.pool.PoolShape``; ``workers`` overrides
    ``resources.workers``), asked of Ray's scheduler with a placement group that is removed once it
    could be placed."""
    shape = PoolShape.on_cluster(resources.workers if workers is None else workers, resources.cpus_per_worker,
                                 resources.gpus_per_worker)
    bundle = {name: amount for name, amount in (("CPU", shape.cpus), ("GPU", shape.gpus)) if amount}
    if not bundle:
        return
    total = float(ray.cluster_resources().get("CPU", 0.0))
    group = placement_group([bundle] * shape.fit)
    try:
        while not group.wait(timeout_seconds=ROOM_POLL_S):
            if stop.is_set():
                return
            free = float(ray.available_resources().get("CPU", 0.0))
            gpus = f" and {shape.fit * shape.gpus:g} GPUs" if shape.gpus else ""
            say(f"{WAITING}: this search's {shape.fit} workers need {shape.fit * shape.cpus:g} CPUs{gpus}; {free:g} "
                f"of the cluster's {total:g} CPUs are free (other searches hold the rest)")
    finally:
        remove_placement_group(group)


class _Announcer:
    """Says a waiting message when it changes, and again every ``SAY_AGAIN_S`` seconds."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.since: float | None = None
        self._last: tuple[str, float] | None = None

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        if self._last is None or self._last[0] != message or now - self._last[1] >= SAY_AGAIN_S:
            print(message, file=self.log, flush=True)
            self._last = (message, now)

    def done(self) -> None:
        if self.since is not None:
            print(f"room found after {time.monotonic() - self.since:.0f} s: starting", file=self.log, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The job's entry point; errors as the ``pbt`` command line reports them."""
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
