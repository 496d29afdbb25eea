"""A pool of worker actors sized to the cluster, replacing the ones that die."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from models.errors import ConfigError, WorkerStartError
from workers.actor import TrainableSpec, Worker

START_RETRIES = 3  # per pool slot: more workers that die before they are up fail the pool
START_TIMEOUT_S = 120.0  # a worker not up by then fails the run (the cluster cannot place it)

def check_workers(size: int | None) -> None:
    """``ConfigError`` unless ``size`` is ``None`` (one worker per CPU) or an integer >= 1."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"workers: must be an integer >= 1, got {size!r}")


@dataclass
class PoolWorker:
    """One actor of the pool. ``node`` is known once ``ready`` (its ``where`` call) resolved."""

    id: str
    handle: ray.actor.ActorHandle
    ready: ray.ObjectRef
    node: str | None = None


class WorkerPool:
    """``size`` worker actors (default: the CPUs the cluster reports), ``cpus`` CPUs each.

    With more workers than CPUs each actor asks for a fraction of a CPU. A worker that died is
    replaced by a new actor with a new id (``replace``); ``shutdown`` kills them all.
    ``start_timeout``: the seconds a worker may take to come up (default ``START_TIMEOUT_S``).
    """

    def __init__(self, spec: TrainableSpec, size: int | None = None, start_timeout: float | None = None) -> None:
        total = float(ray.cluster_resources().get("CPU", 1.0))
        check_workers(size)
        if size is None:
            size = max(1, int(total))
        self.spec = spec
        self.size = size
        self.start_timeout = START_TIMEOUT_S if start_timeout is None else start_timeout
        self.cpus = min(1.0, math.floor(total / size * 100) / 100) if total > 0 else 0.0
        self._count = 0
        self._start_failures = 0
        self.workers: dict[str, PoolWorker] = {}
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> PoolWorker:
        worker_id = f"w{self._count}"
        self._count += 1
        handle = Worker.options(num_cpus=self.cpus).remote(worker_id, self.spec)
        worker = PoolWorker(worker_id, handle, handle.where.remote())
        self.workers[worker_id] = worker
        return worker

    def warm_up(self, hparams: Mapping[str, Any], seed: int) -> None:
        """Block until every worker is up and has built one trainable (so start-up is not search time);
        ``WorkerStartError`` if some are not within ``start_timeout`` seconds."""
        refs = [w.handle.warm_up.remote(hparams, seed) for w in self.workers.values()]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout)
        if len(done) < len(refs):
            raise WorkerStartError(f"{len(refs) - len(done)} of {len(refs)} workers not up after "
                                   f"{self.start_timeout:g} s: the cluster cannot place them ({self.cpus:g} CPU each)")
        self.poll()

    def poll(self) -> list[PoolWorker]:
        """The workers that are up (their node known); checks pending ones without blocking. One
        that died before it was up is replaced; ``WorkerStartError`` (naming the cause) once more than
        ``START_RETRIES`` per pool slot have."""
        pending = {w.ready: w for w in self.workers.values() if w.node is None}
        if pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in done:
                try:
                    pending[ref].node = ray.get(ref)[1]
                except ray.exceptions.RayActorError as exc:
                    self._start_failures += 1
                    if self._start_failures > START_RETRIES * self.size:
                        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                        cause = lines[-1] if lines else type(exc).__name__
                        raise WorkerStartError(f"{self._start_failures} workers died before they were up; "
                                               f"the last ({pending[ref].id}): {cause}") from exc
                    self.replace(pending[ref].id)
        return [w for w in self.workers.values() if w.node is not None]

    def replace(self, worker_id: str) -> PoolWorker:
        """Forget a dead worker and start another in its place."""
        old = self.workers.pop(worker_id)
        ray.kill(old.handle, no_restart=True)
        return self._spawn()

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        for worker in self.workers.values():
            ray.kill(worker.handle, no_restart=True)
        self.workers.clear()
