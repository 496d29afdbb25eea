"""The Ray actor that hosts trainables (DESIGN §3).

The runner hands a worker a batch of work items, each *(member, hparams, state version, steps)*;
the worker runs them in order and returns ``1 + len(items)`` objects: the reports, then each item's
state as its own object reference, owned by the driver, so it outlives the worker and can be handed
to any other member (exploit) without a trip through the driver. One call carrying several members'
segments pays Ray's per-call cost (~1.5-2 ms on 2 busy cores) once for all of them.

A worker keeps the trainables of the last ``HELD_MEMBERS`` members it ran, each with the state
version it holds, so a member that continues here (or takes the state of one held here) needs no
state. The runner mirrors that rule: only the states a worker does not hold travel with the call,
as arguments that Ray resolves before the call starts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ray

from workers.trainable import held_out_metrics

HELD_MEMBERS = 8  # trainables a worker keeps (least recently run dropped first)


class StateUnavailable(RuntimeError):
    """The item's incoming state is neither held by this worker nor passed with the call."""


@dataclass(frozen=True)
class TrainableSpec:
    """What a worker builds: the trainable class and the config's ``[trainable]`` settings."""

    cls: type
    settings: Mapping[str, Any] = field(default_factory=dict)


class WorkItem(NamedTuple):
    """Advance ``member`` by ``steps`` from state ``version_in`` (``None``: a fresh trainable seeded
    ``seed``) with ``hparams``, evaluating every ``eval_every`` steps; its new state is ``version_out``.
    ``passed``: the state at ``version_in`` is among the call's state arguments (else this worker
    holds it). ``last``: the item ends the member's training, so its last evaluation also carries
    the trainable's optional ``test()`` metrics.

    A plain tuple on the wire: Ray packs it with msgpack instead of pickling a class (cheaper for
    the driver, which shares the cores with the workers)."""

    member: int
    seed: int
    hparams: Mapping[str, Any]
    version_in: int | None
    version_out: int
    steps: int
    eval_every: int
    passed: bool = False
    last: bool = False


@dataclass(frozen=True)
class Report:
    """One item's outcome: evaluations as ``(steps since the item started, metrics, train seconds
    since the previous evaluation, time.time() of the evaluation)``, and where and when it ran
    (``time.time()`` on the worker). ``error``: the trainable raised (one line; no state returned);
    ``lost``: the incoming state was not there (``StateUnavailable``)."""

    member: int
    version: int
    evaluations: tuple[tuple[int, dict[str, float], float, float], ...]
    train_seconds: float
    worker: str
    node: str
    started_at: float
    finished_at: float
    reloaded: bool
    error: str | None = None
    lost: bool = False


class Holdings:
    """The state version each of the last ``HELD_MEMBERS`` members run on one worker holds: the
    worker's rule (``Worker`` keeps their trainables by it), which the runner mirrors call by call
    to know which states a worker must be sent."""

    def __init__(self) -> None:
        self._versions: OrderedDict[int, int] = OrderedDict()

    def holds(self, version: int) -> bool:
        """Some member run here last holds ``version``."""
        return version in self._versions.values()

    def ran(self, member: int, version: int) -> None:
        """``member`` ran here and now holds ``version``; the least recently run beyond
        ``HELD_MEMBERS`` is dropped."""
        self._versions.pop(member, None)
        self._versions[member] = version
        while len(self._versions) > HELD_MEMBERS:
            self._versions.popitem(last=False)


@dataclass
class _Held:
    version: int
    trainable: Any
    hparams: dict[str, Any]


@ray.remote(max_restarts=0, max_task_retries=0)
class Worker:
    """Hosts the trainables of the members it ran last, keyed by member and state version (versions
    are unique in a run, and an exploit shares the donor's version)."""

    def __init__(self, worker_id: str, spec: TrainableSpec) -> None:
        self.worker_id = worker_id
        self.spec = spec
        self.node = ray.get_runtime_context().get_node_id()
        self.held: OrderedDict[int, _Held] = OrderedDict()

    def where(self) -> tuple[str, str]:
        """``(worker id, node id)``; resolves once the actor is up."""
        return self.worker_id, self.node

    def warm_up(self, hparams: Mapping[str, Any], seed: int) -> None:
        """Build one trainable and drop it: imports and data-set caches load before the clock starts."""
        self.spec.cls(dict(hparams), seed, **self.spec.settings)

    def run(self, items: Sequence[Sequence[Any]], *passed: Mapping[str, Any]) -> tuple:
        """Run ``items`` (``WorkItem`` fields) in order; returns ``(reports, state, state, ...)`` (call
        it with ``num_returns=len(items) + 1``). A state is ``None`` for an item that failed.
        ``passed``: the incoming states of the items marked ``passed``, in item order.
        """
        reports, states = [], []
        incoming = iter(passed)
        for fields in items:
            item = WorkItem(*fields)
            source = next(incoming) if item.passed else None
            started = time.time()
            try:
                report, state = self._run_item(item, source, started)
            except StateUnavailable as exc:
                report, state = self._failed(item, started, f"StateUnavailable: {exc}", lost=True), None
            except Exception as exc:  # the trainable raised: this member fails, the others go on
                report, state = self._failed(item, started, _one_line(exc)), None
            reports.append(report)
            states.append(state)
        return (tuple(reports), *states)

    def _run_item(self, item: WorkItem, source: Any, started: float) -> tuple[Report, dict]:
        held = self.held.pop(item.member, None)
        reloaded = held is None or held.version != item.version_in or item.version_in is None
        if item.version_in is None:
            held = _Held(-1, self.spec.cls(dict(item.hparams), item.seed, **self.spec.settings), dict(item.hparams))
        elif reloaded:
            state = self._state(item, source)
            if held is None:
                held = _Held(-1, self.spec.cls(dict(item.hparams), item.seed, **self.spec.settings),
                             dict(item.hparams))
            held.trainable.set_state(state)
        assert held is not None
        if held.hparams != dict(item.hparams):
            held.trainable.set_hparams(dict(item.hparams))
            held.hparams = dict(item.hparams)
        evaluations = []
        total = 0.0
        for done in range(item.eval_every, item.steps + 1, item.eval_every):
            t0 = time.perf_counter()
            held.trainable.train(item.eval_every)
            seconds = time.perf_counter() - t0
            total += seconds
            metrics = {k: float(v) for k, v in held.trainable.evaluate().items()}
            evaluations.append((done, metrics, seconds, time.time()))
        if item.last and evaluations:
            evaluations[-1][1].update(held_out_metrics(held.trainable))
        state = held.trainable.get_state()
        held.version = item.version_out
        self.held[item.member] = held
        while len(self.held) > HELD_MEMBERS:
            self.held.popitem(last=False)
        report = Report(item.member, item.version_out, tuple(evaluations), total, self.worker_id, self.node,
                        started, time.time(), reloaded)
        return report, state

    def _state(self, item: WorkItem, source: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """Item's incoming state: from a trainable held here at that version, else ``source``."""
        for other in self.held.values():
            if other.version == item.version_in:
                return other.trainable.get_state()
        if source is None:
            raise StateUnavailable(f"state of member {item.member} v{item.version_in}: not held here, not passed")
        return source

    def _failed(self, item: WorkItem, started: float, error: str, lost: bool = False) -> Report:
        self.held.pop(item.member, None)
        return Report(item.member, item.version_out, (), 0.0, self.worker_id, self.node, started, time.time(),
                      True, error=error, lost=lost)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__
