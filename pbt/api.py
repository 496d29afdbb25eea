"""The Python API: ``run`` a search into a run directory, ``resume`` one whose driver died or stopped.

One RNG tree from the seed: ``np.random.SeedSequence(seed)`` branches into the strategy's
generator and each member's trainable seed (``search.runner.strategy_rng`` / ``member_seed``), so
a run does not depend on how members are scheduled onto workers.
"""

from __future__ import annotations

import fcntl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from models.errors import StoreError
from pbt.config import RunConfig, parse_config
from pbt.strategies import make_strategy
from search.progress import Progress
from search.runner import Runner, strategy_rng
from search.store import DB_NAME, SUMMARY_NAME, RunStore, load_run
from search.strategy import Strategy
from workers.actor import TrainableSpec
from workers.cluster import PACKAGES, connect, disconnect
from workers.pool import WorkerPool, check_gpus, check_workers
from workers.trainable import resolve_trainable, settings_for_workers

ProgressCallback = Callable[[Progress], None]
LOCK_NAME = "driver.lock"


def run(
    config: RunConfig, *, strategy: str = "pbt", seed: int = 0, out: Path, address: str | None = None,
    workers: int | None = None, on_progress: ProgressCallback | None = None, stop: threading.Event | None = None,
) -> dict:
    """Run a search with ``strategy`` into the new directory ``out``; returns the summary. ``workers``
    overrides the config's ``resources.workers``. Setting ``stop`` (from any thread) stops it
    resumably: ``RunStopped``."""
    search = make_strategy(strategy, config, strategy_rng(seed))
    check_workers(workers)
    spec = _spec(config)
    started = connect_for(config, address)
    try:
        store = RunStore.create(
            Path(out), config=config.raw, strategy=strategy, seed=seed, population=config.budget.population,
            steps_per_member=config.budget.steps, eval_every=config.budget.eval_every,
            objective=config.objective, mode=config.mode,
        )
        return _drive(search, store, spec, config, seed, workers, on_progress, stop, resume=False)
    finally:
        if started:
            disconnect()


def resume(
    run_dir: Path, *, address: str | None = None, workers: int | None = None,
    on_progress: ProgressCallback | None = None, stop: threading.Event | None = None,
) -> dict:
    """Continue the run in ``run_dir`` from its last durable snapshot; returns the summary (``stop``: as for ``run``).

    A run that already finished is not run again: its summary is returned.
    """
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    info = store.info()
    if info["status"] == "finished" and (run_dir / SUMMARY_NAME).is_file():
        store.close()
        summary = load_run(run_dir).summary
        assert summary is not None
        return summary
    try:
        check_workers(workers)
        config = parse_config(info["config"], source=str(run_dir / DB_NAME))
        search = make_strategy(info["strategy"], config, strategy_rng(info["seed"]))
        spec = _spec(config)
        started = connect_for(config, address)
    except BaseException:
        store.close()  # _drive closes it once it runs
        raise
    try:
        return _drive(search, store, spec, config, info["seed"], workers, on_progress, stop, resume=True)
    finally:
        if started:
            disconnect()


def connect_for(config: RunConfig, address: str | None) -> bool:
    """``workers.cluster.connect`` for searches of ``config``: a cluster also gets the trainable's own
    module, and must have GPUs if the config asks for them (else ``ConfigError``, and no Ray left
    started). True if this call started Ray (the caller then calls ``disconnect`` when done)."""
    started = connect(address, extra_modules=user_modules(config))
    try:
        check_gpus(config.resources.gpus_per_worker)
    except BaseException:
        if started:
            disconnect()
        raise
    return started


def _spec(config: RunConfig) -> TrainableSpec:
    cls = resolve_trainable(config.trainable.name)
    return TrainableSpec(cls, settings_for_workers(cls, config.trainable.settings))


def user_modules(config: RunConfig) -> tuple[ModuleType, ...]:
    """The custom trainable's top-level package (or module), shipped to a cluster with the project's
    packages; none for a built-in."""
    top = resolve_trainable(config.trainable.name).__module__.partition(".")[0]
    module = sys.modules.get(top)
    return () if top in PACKAGES or module is None or not getattr(module, "__file__", None) else (module,)


@contextmanager
def _sole_driver(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s driver lock: a second ``resume`` while a driver still runs would roll back
    and write the same store. The operating system releases it when the driver dies, even by SIGKILL."""
    with open(run_dir / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{run_dir}: another driver is still running this run") from None
        yield


def _drive(
    search: Strategy, store: RunStore, spec: TrainableSpec, config: RunConfig, seed: int,
    workers: int | None, on_progress: ProgressCallback | None, stop: threading.Event | None, *, resume: bool,
) -> dict:
    pool = None
    try:
        with _sole_driver(store.run_dir):
            resources = config.resources
            pool = WorkerPool(spec, resources.workers if workers is None else workers,
                              cpus=resources.cpus_per_worker, gpus=resources.gpus_per_worker)
            runner = Runner(search, store, pool, budget=config.budget, objective=config.objective,
                            mode=config.mode, seed=seed, on_progress=on_progress, stop=stop)
            return runner.run(resume=resume)
    finally:
        if pool is not None:
            pool.shutdown()
        store.close()
