"""The Ray actor that hosts one trainable at a time (DESIGN §3).

The runner hands a worker *(member, hparams, state reference, steps)*; the worker returns two
objects, ``(report, state)``: the state comes back as its own object reference, owned by the driver,
so it outlives the worker and can be handed to any other member (exploit) without a trip through
the driver. The incoming state reference is passed nested in a list so that Ray does not fetch it
when the worker already holds that member at that version (it keeps the trainable it ran last).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray


class StateUnavailable(RuntimeError):
    """The incoming state could not be fetched (its copies were lost with a node)."""


@dataclass(frozen=True)
class TrainableSpec:
    """What a worker builds: the trainable class and the config's ``[trainable]`` settings."""

    cls: type
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """One call's outcome: evaluations as ``(steps since the call started, metrics, train seconds
    since the previous evaluation, time.time() of the evaluation)``, and where and when it ran
    (``time.time()`` on the worker)."""

    member: int
    version: int
    evaluations: tuple[tuple[int, dict[str, float], float, float], ...]
    train_seconds: float
    worker: str
    node: str
    started_at: float
    finished_at: float
    reloaded: bool


@ray.remote(max_restarts=0, max_task_retries=0)
class Worker:
    """Hosts one trainable; keeps the one it ran last, keyed by its state version (versions are unique
    in a run, and an exploit shares the donor's version, so a receiver can continue in place)."""

    def __init__(self, worker_id: str, spec: TrainableSpec) -> None:
        self.worker_id = worker_id
        self.spec = spec
        self.node = ray.get_runtime_context().get_node_id()
        self.trainable: Any = None
        self.held: int | None = None  # the state version the trainable holds now
        self.hparams: dict[str, Any] | None = None

    def where(self) -> tuple[str, str]:
        """``(worker id, node id)``; resolves once the actor is up."""
        return self.worker_id, self.node

    def warm_up(self, hparams: Mapping[str, Any], seed: int) -> None:
        """Build one trainable and drop it: imports and data-set caches load before the clock starts."""
        self.spec.cls(dict(hparams), seed, **self.spec.settings)

    @ray.method(num_returns=2)
    def run(
        self, member: int, seed: int, hparams: Mapping[str, Any], source: list | Mapping[str, Any],
        version_in: int | None, version_out: int, steps: int, eval_every: int,
    ) -> tuple[Report, dict]:
        """Advance ``member`` by ``steps`` from state version ``version_in`` (``None``: a fresh
        trainable), evaluating every ``eval_every`` steps; returns ``(report, state)``.

        ``source`` is ``[state ref]``, nested so that Ray does not fetch it: the worker fetches it only
        if it does not hold ``version_in`` already; or the state itself, when the runner knew a
        reload was due and let Ray resolve the reference before the call started.
        """
        started = time.time()
        self.held, held = None, self.held
        reloaded = held != version_in or version_in is None
        if version_in is None:
            self.trainable = self.spec.cls(dict(hparams), seed, **self.spec.settings)
            self.hparams = dict(hparams)
        elif reloaded:
            state = source if not isinstance(source, list) else self._fetch(source[0], member, version_in)
            if self.trainable is None:
                self.trainable = self.spec.cls(dict(hparams), seed, **self.spec.settings)
            self.trainable.set_state(state)
        if self.hparams != dict(hparams):
            self.trainable.set_hparams(dict(hparams))
            self.hparams = dict(hparams)
        evaluations = []
        total = 0.0
        for done in range(eval_every, steps + 1, eval_every):
            t0 = time.perf_counter()
            self.trainable.train(eval_every)
            seconds = time.perf_counter() - t0
            total += seconds
            metrics = {k: float(v) for k, v in self.trainable.evaluate().items()}
            evaluations.append((done, metrics, seconds, time.time()))
        state = self.trainable.get_state()
        self.held = version_out
        report = Report(member, version_out, tuple(evaluations), total, self.worker_id, self.node,
                        started, time.time(), reloaded)
        return report, state

    @staticmethod
    def _fetch(ref: ray.ObjectRef, member: int, version: int) -> Mapping[str, Any]:
        try:
            return ray.get(ref)
        except Exception as exc:  # lost with its node: the driver falls back to its own copy
            raise StateUnavailable(f"state of member {member} v{version}: {exc}") from None
