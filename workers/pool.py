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
START_TIMEOUT_S = 120.0  # no worker up by then fails the run (the cluster cannot place any)
START_GRACE_S = 10.0  # once one worker is up, how long the others that fit may take before the search starts
UNITS = 10_000  # Ray counts resources in steps of 1/UNITS


def check_workers(size: int | None, field: str = "workers") -> None:
    """``ConfigError`` unless ``size`` is ``None`` (as many as fit) or an integer >= 1."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"{field}: must be an integer >= 1, got {size!r}")


def check_gpus(gpus: float) -> None:
    """``ConfigError`` if ``gpus`` per worker are asked of a Ray cluster that has no GPU: one line
    before anything starts, rather than workers that never come up."""
    if gpus > 0 and not ray.cluster_resources().get("GPU", 0):
        raise ConfigError(f"resources.gpus_per_worker: {gpus:g} GPU per worker asked, but the Ray cluster has "
                          "no GPU (set it to 0, or join a cluster with GPUs: --address)")


def _fit(total_cpus: float, total_gpus: float, cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` and ``gpus`` each the totals hold, in Ray's resource units."""
    counts = [round(total_cpus * UNITS) // round(cpus * UNITS)] if cpus else []
    if gpus:
        counts.append(round(total_gpus * UNITS) // round(gpus * UNITS))
    return min(counts, default=1 << 30)


@dataclass
class PoolWorker:
    """One actor of the pool. ``node`` is known once ``ready`` (its ``where`` call) resolved."""

    id: str
    handle: ray.actor.ActorHandle
    ready: ray.ObjectRef
    node: str | None = None


@dataclass(frozen=True)
class PoolShape:
    """How a ``WorkerPool`` is sized on the connected cluster: ``size`` workers of ``cpus`` CPUs and
    ``gpus`` GPUs each, of which ``fit`` fit the cluster's resources at once."""

    size: int
    cpus: float
    gpus: float
    fit: int

    @classmethod
    def on_cluster(cls, size: int | None, cpus: float | None, gpus: float) -> "PoolShape":
        """``size`` default: as many as fit. ``cpus`` default: 1, or an equal share of the cluster's
        CPUs when ``size`` is more than there are CPUs."""
        check_workers(size)
        resources = ray.cluster_resources()
        total_cpus, total_gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
        if size is None:
            size = max(1, _fit(total_cpus, total_gpus, 1.0 if cpus is None else cpus, gpus))
        if cpus is None:  # more workers than CPUs share them
            cpus = min(1.0, math.floor(total_cpus / size * 100) / 100) if total_cpus > 0 else 0.0
        return cls(size, cpus, gpus, max(1, min(size, _fit(total_cpus, total_gpus, cpus, gpus))))


class WorkerPool:
    """``size`` worker actors asking Ray for ``cpus`` CPUs and ``gpus`` GPUs each.

    ``size`` default: as many as fit the cluster's resources. ``cpus`` default: 1, or an equal share
    of the cluster's CPUs when ``size`` is more than there are CPUs. Workers beyond what fits wait
    for resources and join the search when they are up (``poll``). A worker that died is replaced
    by a new actor with a new id (``replace``); ``shutdown`` kills them all. ``start_timeout``: the
    seconds the first worker may take to come up (default ``START_TIMEOUT_S``).
    """

    def __init__(self, spec: TrainableSpec, size: int | None = None, start_timeout: float | None = None, *,
                 cpus: float | None = None, gpus: float = 0.0) -> None:
        shape = PoolShape.on_cluster(size, cpus, gpus)
        self.spec = spec
        self.size = size = shape.size
        self.cpus, self.gpus = shape.cpus, shape.gpus
        self.fit = shape.fit  # the workers warm_up waits for
        self.start_timeout = START_TIMEOUT_S if start_timeout is None else start_timeout
        self._count = 0
        self._start_failures = 0
        self.workers: dict[str, PoolWorker] = {}
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> PoolWorker:
        worker_id = f"w{self._count}"
        self._count += 1
        handle = Worker.options(num_cpus=self.cpus, num_gpus=self.gpus).remote(worker_id, self.spec)
        worker = PoolWorker(worker_id, handle, handle.where.remote())
        self.workers[worker_id] = worker
        return worker

    def warm_up(self, hparams: Mapping[str, Any], seed: int) -> None:
        """Block until the workers that fit the cluster are up and have each built one trainable (so
        start-up is not search time), or, once one is, at most ``START_GRACE_S`` more for the others;
        ``WorkerStartError`` if none is up within ``start_timeout`` seconds."""
        refs = [w.handle.warm_up.remote(hparams, seed) for w in self.workers.values()]
        done, pending = ray.wait(refs, num_returns=1, timeout=self.start_timeout)
        if not done:
            each = f"{self.cpus:g} CPU" + (f" and {self.gpus:g} GPU" if self.gpus else "")
            raise WorkerStartError(f"{len(refs)} of {len(refs)} workers not up after {self.start_timeout:g} s: "
                                   f"the cluster cannot place them ({each} each)")
        if self.fit > 1:
            ray.wait(pending, num_returns=self.fit - 1, timeout=min(START_GRACE_S, self.start_timeout))
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
