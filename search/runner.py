"""The runner: drives any ``Strategy`` over a ``WorkerPool`` and records everything in the ``RunStore``.

It asks the strategy, carries out ``Start`` / ``Train`` / ``Exploit`` in the order given, cuts each
``Train`` into work items of whole ``eval_every`` periods (how long a call trains: ``search.pacing``),
and dispatches them to free workers (least advanced member first, then the worker that ran it last;
up to ``max_inflight`` calls queued per worker so dispatch latency hides behind training). One call
carries several members' items when many are waiting (Ray's per-call cost is paid once for them);
each item still returns its own state, and the
strategy is told each member's finished segment as its call returns. The runner writes a result row
per evaluation and the events (one transaction per call), reports ``Progress``, snapshots the run
for resume (states written by a ``CheckpointWriter`` thread), and writes ``summary.json`` at the end.

Weights move as object references owned by this driver: a call's state output is the member's new
state, an exploit hands the receiver the donor's reference. Each state has a version number; a
worker that still holds that version is not sent it (only the states it must load travel with a call).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import ray

from models.errors import (
    CheckpointError, PBTError, RunFailed, RunStopped, StoreError, StrategyError, WorkerStartError,
)
from search.budget import Budget
from search.checkpoints import CheckpointWriter, checkpoint_name, load_checkpoint
from search.pacing import call_periods
from search.progress import Progress
from search.store import CHECKPOINTS_DIR, RunStore, load_run
from search.summary import summarize
from search.strategy import (
    Exploit, Mode, MemberView, PopulationView, SegmentResult, Start, Strategy, Train, oriented_score,
)
from workers.actor import Holdings, Report, WorkItem
from workers.pool import PoolWorker, WorkerPool

MAX_WORKER_DEATHS = 3  # a member that kills this many workers is failed, not retried forever
PROGRESS_EVERY_S = 0.25
SNAPSHOT_SHARE = 0.05  # snapshots are spaced so that taking them costs at most this share of the driver's time


def strategy_rng(seed: int) -> np.random.Generator:
    """The strategy's generator: branch 0 of the run seed's tree."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))


def member_seed(seed: int, member: int) -> int:
    """Member ``member``'s trainable seed: branch (1, member) of the run seed's tree, so it does not
    depend on scheduling."""
    return int(np.random.SeedSequence(seed, spawn_key=(1, member)).generate_state(1)[0])


@dataclass
class _Segment:
    start: int
    end: int
    hparams: dict[str, Any]
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)


@dataclass
class _Item:
    """One member's part of a call: ``steps`` from ``start``, producing state ``version`` (``state``)."""

    member: int
    worker: str
    start: int
    steps: int
    version: int
    state: ray.ObjectRef
    passed: bool  # its incoming state travelled with the call (else the worker held it)
    discard: bool = False


@dataclass
class _Call:
    """One Ray call on ``worker``: its items run in order; ``report`` resolves to their reports."""

    worker: str
    report: ray.ObjectRef
    items: list[_Item]


@dataclass(eq=False)  # one object per member: compared by identity
class _Member:
    member: int
    seed: int
    hparams: dict[str, Any]
    status: str = "running"
    error: str | None = None
    step: int = 0
    metrics: dict[str, float] | None = None
    ref: ray.ObjectRef | None = None  # the state after `step` steps (None: not trained yet)
    version: int | None = None
    origin: int | None = None  # the member whose training produced `version`
    node: str | None = None  # the node holding `ref`'s primary copy
    segment: _Segment | None = None
    calls: deque[_Item] = field(default_factory=deque)
    last_worker: str | None = None
    deaths: int = 0

    def planned(self) -> int:
        return self.calls[-1].start + self.calls[-1].steps if self.calls else self.step

    def home(self) -> tuple[bool, str | None]:
        """Where its next item belongs: ``(True, w)`` behind its calls queued on worker ``w``, else
        ``(False, w)``, ``w`` the worker that ran it last (``None``: none yet)."""
        return (True, self.calls[-1].worker) if self.calls else (False, self.last_worker)


class _Waiting:
    """The members waiting for a call during one dispatch, in a heap per home (``_Member.home``)
    ordered by planned steps, then id. A member queued for part of its segment is ``add``ed again;
    its old entry goes stale (its planned steps or home moved) and is dropped when reached."""

    def __init__(self, members: list[_Member]) -> None:
        self.count = len(members)
        self._heaps: dict[tuple[bool, str | None], list[tuple[int, int, _Member]]] = {}
        for m in members:
            self.add(m)

    def add(self, m: _Member) -> None:
        heapq.heappush(self._heaps.setdefault(m.home(), []), (m.planned(), m.member, m))

    def homes(self) -> list[tuple[bool, str | None]]:
        return list(self._heaps)

    def head(self, home: tuple[bool, str | None]) -> tuple[int, int, _Member] | None:
        """The least advanced member still waiting at ``home``, or ``None``."""
        heap = self._heaps[home]
        while heap:
            planned, _, m = heap[0]
            if planned == m.planned() < m.segment.end and m.home() == home:
                return heap[0]
            heapq.heappop(heap)
        return None

    def take(self, home: tuple[bool, str | None]) -> _Member:
        return heapq.heappop(self._heaps[home])[2]


class Runner:
    """Runs one search to the end; ``run()`` returns the summary (also written to ``summary.json``)."""

    def __init__(
        self, strategy: Strategy, store: RunStore, pool: WorkerPool, *, budget: Budget, objective: str,
        mode: Mode, seed: int, on_progress: Callable[[Progress], None] | None = None,
        checkpoint_every_s: float = 1.0, max_inflight: int = 2, stop: threading.Event | None = None,
    ) -> None:
        self.strategy = strategy
        self.store = store
        self.pool = pool
        self.budget = budget
        self.objective = objective
        self.mode = mode
        self.seed = seed
        self.on_progress = on_progress
        self.checkpoint_every_s = checkpoint_every_s
        self.max_inflight = max_inflight
        self.stop = stop if stop is not None else threading.Event()  # set (by any thread): stop at the next turn
        self.members: dict[int, _Member] = {}
        self._views: dict[int, MemberView] = {}  # each member's latest view, rebuilt once it changed
        self._stale: set[int] = set()
        self._population: PopulationView | None = None  # the whole view, until a member changes
        self.queues: dict[str, list[_Call]] = {}
        self._seconds_per_step: float | None = None
        self._holds: dict[str, Holdings] = {}  # what each worker will hold once its queue has run
        self._here = ray.get_runtime_context().get_node_id()
        self.writer = CheckpointWriter(store.run_dir / CHECKPOINTS_DIR)
        self.budget_steps = 0
        self.train_seconds = 0.0
        self.train_calls = 0  # work items (a member's steps in one call), over the whole run
        self.ray_calls = 0  # Ray calls made by this driver (one carries one or more items)
        self.exploits = 0
        self._next_version = 0
        self._elapsed_base = 0.0
        self._t0 = time.monotonic()
        self._last_event = store.last_event()
        self._snapshot_job: tuple[int, dict, int] | None = None
        self._jobs = 0
        self._snapshot_at = 0.0
        self._snapshot_cost = 0.0  # the driver's seconds for the last snapshot (its state, commit and prune)
        self._progress_at = -math.inf

    # -- the loop ----------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Drive the strategy until it is finished; with ``resume``, first roll the store back to
        its last snapshot and continue from there. ``RunFailed`` (from the ``PBTError`` that
        stopped it) when the run cannot go on: the store marks it failed. Once ``stop`` is set, the
        run snapshots where it is (the calls in flight are dropped), the store says ``stopped`` and
        ``RunStopped`` is raised: a resume continues from that snapshot."""
        try:
            if resume:
                self._restore()
            decisions = self.strategy.ask(self._view())
            starts = [d for d in decisions if isinstance(d, Start)]
            warm = starts[0].hparams if starts else next(iter(self.members.values())).hparams
            self.pool.warm_up(warm, member_seed(self.seed, 0))
            self._t0 = time.monotonic()
            self._apply(decisions)
            stopped = self._loop(changed=False)
            self._final_snapshot()
            if stopped:
                self.store.finish("stopped")
                raise RunStopped(self.store.run_dir)
            self.store.finish("finished")
            summary = self._summary()
            self.store.write_summary(summary)
            self._progress(force=True)
            return summary
        except RunStopped:
            raise
        except PBTError as exc:
            raise RunFailed(self.store.run_dir, str(exc), resumable=self._mark_failed()) from exc
        except BaseException:
            self._mark_failed()
            raise
        finally:
            self.writer.close()

    def _mark_failed(self) -> bool:
        """Mark the run failed in the store; returns whether a resume can continue it. A store that
        cannot take this write or answer stays as it is (a run left ``running`` resumes the same
        way): the error that stopped the run is the one to report."""
        try:
            self.store.finish("failed")
            return self.store.resumable()
        except StoreError:
            return False

    def _loop(self, changed: bool) -> bool:
        """Run until the strategy is finished (returns False) or ``stop`` is set (returns True)."""
        idle_since = time.monotonic()
        while True:
            if self.stop.is_set():
                return True
            if changed:
                self._apply(self.strategy.ask(self._view()))
            if self.strategy.is_finished(self._view()) and not any(m.segment for m in self.members.values()):
                return False
            ready = self.pool.poll()  # once a turn: what dispatch saw is what the checks below see
            self._dispatch(ready)
            if any(self.queues.values()):
                changed, idle_since = self._collect(timeout=0.1), time.monotonic()
            elif ready:  # workers were free and no member waits
                raise StrategyError("the strategy asked for nothing while no member is training")
            elif time.monotonic() - idle_since > self.pool.start_timeout:
                raise WorkerStartError(f"no worker came up for {self.pool.start_timeout:g} s")
            else:
                changed = False
                time.sleep(0.05)  # every worker is starting or being replaced
            self._checkpoint()
            self._progress()

    def _clock(self) -> float:
        return self._elapsed_base + time.monotonic() - self._t0

    def _view(self) -> PopulationView:
        """The strategy's frozen view of the population; only the members changed since the last
        view are built anew (at 1,024 members, building them all each turn was the driver's largest cost)."""
        if self._population is None:
            for member in self._stale:
                m = self.members[member]
                self._views[member] = MemberView(m.member, MappingProxyType(dict(m.hparams)), m.step, self._score(m),
                                                 busy=m.segment is not None, failed=m.status == "failed")
            self._stale.clear()
            self._population = PopulationView(tuple(self._views[member] for member in sorted(self._views)))
        return self._population

    def _changed(self, m: _Member) -> None:
        """``m``'s hyperparameters, step, score, segment or status changed: its view is rebuilt."""
        self._stale.add(m.member)
        self._population = None

    def _score(self, m: _Member) -> float | None:
        return None if m.metrics is None else oriented_score(self._objective_of(m.metrics), self.mode)

    def _objective_of(self, metrics: Mapping[str, float]) -> float:
        return float(metrics.get(self.objective, math.nan))

    # -- decisions ---------------------------------------------------------------------------
    def _apply(self, decisions: list) -> None:
        for decision in decisions:
            if isinstance(decision, Start):
                self._start(decision)
            elif isinstance(decision, Train):
                self._train(decision)
            elif isinstance(decision, Exploit):
                self._exploit(decision)
            else:
                raise StrategyError(f"unknown decision {decision!r}")

    def _start(self, d: Start) -> None:
        if d.member in self.members:
            raise StrategyError(f"member {d.member} started twice")
        m = _Member(d.member, member_seed(self.seed, d.member), dict(d.hparams))
        self.members[d.member] = m
        self._event("start", m.member, 0, {"hparams": m.hparams})
        self._put_member(m)

    def _train(self, d: Train) -> None:
        m = self.members[d.member]
        if m.segment is not None or m.status != "running":
            raise StrategyError(f"Train for member {d.member}, which is busy or {m.status}")
        if d.steps < 1 or d.steps % self.budget.eval_every or m.step + d.steps > self.budget.steps:
            raise StrategyError(f"Train({d.member}, {d.steps}) at step {m.step} breaks the budget {self.budget}")
        m.segment = _Segment(m.step, m.step + d.steps, dict(m.hparams))
        self._changed(m)

    def _exploit(self, d: Exploit) -> None:
        m, donor = self.members[d.member], self.members[d.donor]
        if m.segment is not None or m.calls or donor.ref is None:
            raise StrategyError(f"Exploit({d.member} <- {d.donor}): receiver busy or donor untrained")
        old = m.hparams
        self._event("exploit", m.member, m.step, {
            "donor": donor.member, "donor_step": donor.step,
            "member_objective": self._objective_of(m.metrics or {}),
            "donor_objective": self._objective_of(donor.metrics or {}),
            "old_hparams": old, "new_hparams": dict(d.hparams)})
        self._event("explore", m.member, m.step,
                    {"ops": dict(d.ops), "old_hparams": dict(donor.hparams), "new_hparams": dict(d.hparams)})
        m.ref, m.version, m.origin, m.node = donor.ref, donor.version, donor.origin, donor.node
        m.hparams = dict(d.hparams)
        self.exploits += 1
        self._put_member(m)

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, ready: list[PoolWorker]) -> None:
        """Fill the ``ready`` workers' queues level by level, so an idle worker gets work before a
        busy one gets a second call. The waiting members are shared out over the idle workers when
        all are idle, else over the free queue slots; a call takes its share, or fewer when that
        would exceed its training time (``_call_periods``), split evenly over the members it takes."""
        ready_ids = {w.id for w in ready}
        free = sum(max(0, self.max_inflight - len(self.queues.get(w.id, ()))) for w in ready)
        training = [m for m in self.members.values() if m.segment is not None and m.status == "running"]
        waiting = _Waiting([m for m in training if m.planned() < m.segment.end])
        if not free or not waiting.count:
            return
        limit = self.strategy.lead_limit
        ahead_of = None if limit is None else min(m.step for m in training) + limit
        queued = {w.id: sum(i.steps for c in self.queues.get(w.id, ()) for i in c.items if not i.discard)
                  for w in ready}
        barrier = all(not self.queues.get(w.id) for w in ready)  # all idle (a barrier, the start)
        if barrier:  # one call each, however short: the population waits for all of them
            share = math.ceil(waiting.count / len(ready))
        else:  # keep a call queued behind the running one, so the next results' turnaround hides
            share = math.ceil(waiting.count / free)
        for depth in range(self.max_inflight):
            for worker in ready:
                if len(self.queues.setdefault(worker.id, [])) != depth:
                    continue
                periods = self._call_periods(queued[worker.id])  # None: one period each until the pace is known
                if periods == 0:
                    continue  # it has its part of the work queued already
                chosen: list[_Member] = []
                while len(chosen) < (share if periods is None or barrier else min(share, periods)):
                    m = self._pick(waiting, worker.id, ready_ids, idle=depth == 0, ahead_of=ahead_of)
                    if m is None:
                        break
                    chosen.append(m)
                if chosen:
                    each = 1 if periods is None else max(1, periods // len(chosen))
                    queued[worker.id] += self._submit(chosen, worker, each * self.budget.eval_every)
                    for m in chosen:
                        if m.planned() < m.segment.end:  # queued for part of its segment: it waits behind that
                            waiting.add(m)

    def _pick(self, waiting: _Waiting, worker_id: str, ready_ids: set[str], idle: bool,
              ahead_of: int | None) -> _Member | None:
        """Take from ``waiting`` the member ``worker_id`` should train next: the least advanced (so
        the population moves together, as asynchronous PBT compares members at about the same step,
        the way Ray Tune runs the trial with the fewest iterations first); among equals, the one it
        is already training, then the ones it ran last, then those whose worker is gone, then those
        of busy workers (if ``worker_id`` is idle, or their worker is full); then the lowest id.
        None planned beyond ``ahead_of`` (the strategy's ``lead_limit`` past the least advanced
        member in training): a faster worker waits for the slower one's members to come free and
        takes them, instead of running its own members ever further ahead (members stay with their
        worker otherwise, and their queued calls keep them there). So asynchronous PBT's members stay
        within about two intervals of each other, as in synchronous mode, without a barrier.
        Only the head of each home is read, so a pick costs the number of workers, not members."""
        best, best_key = None, None
        for home in waiting.homes():
            queued_calls, worker = home
            if queued_calls:
                rank = 0 if worker == worker_id else None  # a member's calls stay on one worker
            elif worker == worker_id:
                rank = 1
            elif worker not in ready_ids:
                rank = 2
            elif (queued := len(self.queues.get(worker, ()))) and (idle or queued >= self.max_inflight):
                rank = 3
            else:
                rank = None  # its own worker is idle, or has room and no more need: it takes it
            head = None if rank is None else waiting.head(home)
            if head is not None and ahead_of is not None and head[0] > ahead_of:
                continue  # this home's least advanced is too far ahead
            if head is not None and (best_key is None or (head[0], rank, head[1]) < best_key):
                best, best_key = home, (head[0], rank, head[1])
        return None if best is None else waiting.take(best)

    def _submit(self, members: list[_Member], worker: PoolWorker, steps_each: int) -> int:
        """One call on ``worker`` carrying the next item of each of ``members`` (up to ``steps_each``
        steps, within its segment), in order; returns the steps it queued."""
        holds = self._holds.setdefault(worker.id, Holdings())
        items, passed, planned = [], [], []
        for m in members:
            assert m.segment is not None
            if m.calls:
                source, version_in, start = m.calls[-1].state, m.calls[-1].version, m.planned()
            else:
                source, version_in, start = m.ref, m.version, m.step
            steps = min(steps_each, m.segment.end - start)
            version = self._next_version
            self._next_version += 1
            send = version_in is not None and not holds.holds(version_in)
            if send:
                passed.append(source)  # Ray resolves it before the call (waiting for the call that makes it)
            items.append(WorkItem(m.member, m.seed, m.segment.hparams, version_in, version, steps,
                                  self.budget.eval_every, send, start + steps == self.budget.steps))
            planned.append((m, start, steps, version, send))
            holds.ran(m.member, version)
        out = worker.handle.run.options(num_returns=len(items) + 1).remote(items, *passed)
        self.ray_calls += 1
        call = _Call(worker.id, out[0], [])
        for (m, start, steps, version, send), state in zip(planned, out[1:]):
            item = _Item(m.member, worker.id, start, steps, version, state, send)
            call.items.append(item)
            m.calls.append(item)
        self.queues[worker.id].append(call)
        return sum(item.steps for item in call.items)

    def _call_periods(self, queued_here: int) -> int | None:
        """``pacing.call_periods`` for a worker with ``queued_here`` steps queued, over the steps the
        live members have left, shared by as many workers as there are such members (a member runs
        on one worker at a time); ``None`` while the pace is unknown."""
        if self._seconds_per_step is None:
            return None
        live = sum(m.status == "running" for m in self.members.values())
        lost = sum(self.budget.steps - m.step for m in self.members.values() if m.status == "failed")
        return call_periods(left=self.budget.total_steps - self.budget_steps - lost, queued_here=queued_here,
                            workers=min(len(self.pool.workers), live),
                            seconds_per_step=self._seconds_per_step, eval_every=self.budget.eval_every)

    # -- results -----------------------------------------------------------------------------
    def _collect(self, timeout: float) -> bool:
        """Process finished calls, waiting up to ``timeout`` for the first. A worker runs its calls
        in order, so only the head of each queue is watched."""
        heads = {q[0].report: worker_id for worker_id, q in self.queues.items() if q}
        ready, _ = ray.wait(list(heads), num_returns=1, timeout=timeout) if heads else ([], [])
        processed = False
        while ready:
            for ref in ready:
                self._finish_head(heads[ref])
            processed = True
            heads = {q[0].report: worker_id for worker_id, q in self.queues.items() if q}
            ready, _ = ray.wait(list(heads), num_returns=len(heads), timeout=0) if heads else ([], [])
        return processed

    def _finish_head(self, worker_id: str) -> None:
        call = self.queues[worker_id].pop(0)
        if all(item.discard for item in call.items):
            return
        try:
            reports = ray.get(call.report)
        except (ray.exceptions.ObjectLostError, ray.exceptions.RayTaskError) as exc:  # an input state lost
            with self.store.batch():
                for item in call.items:
                    if not item.discard:
                        self._call_failed(item, exc)
        except ray.exceptions.RayError as exc:  # the actor (or its node) died
            self._worker_died(worker_id, call, exc)
        else:
            with self.store.batch():  # one transaction for the whole call
                for item, report in zip(call.items, reports, strict=True):
                    if item.discard:
                        continue
                    if report.error is None:
                        self._complete_item(item, report)
                    else:
                        self._item_failed(item, report)

    def _complete_item(self, item: _Item, report: Report) -> None:
        m = self.members[item.member]
        assert m.calls and m.calls[0] is item and m.segment is not None
        m.calls.popleft()
        hparams = dict(m.segment.hparams)
        now = self._clock()
        rows = []
        for offset, metrics, seconds, at in report.evaluations:
            step = item.start + offset
            rows.append({"member": m.member, "step": step, "objective": self._objective_of(metrics),
                         "metrics": metrics, "hparams": hparams, "worker": report.worker, "node": report.node,
                         "wall_time": max(0.0, now - (report.finished_at - at)), "train_seconds": seconds})
            m.segment.evaluations.append((step, metrics))
        self.store.add_results(rows)
        m.step = item.start + item.steps
        m.metrics = dict(report.evaluations[-1][1])
        m.ref, m.version, m.origin, m.node = item.state, item.version, m.member, report.node
        m.last_worker = report.worker
        self._seconds_per_step = report.train_seconds / item.steps  # the latest item's pace sizes the next
        if report.node != self._here:  # a copy on the driver's node outlives the node that made it
            self.writer.track(item.version, item.state)
        self.budget_steps += item.steps
        self.train_seconds += report.train_seconds
        self.train_calls += 1
        if m.step == m.segment.end:
            segment, m.segment = m.segment, None
            self.strategy.tell(SegmentResult(
                m.member, segment.start, segment.end, segment.hparams, tuple(segment.evaluations),
                oriented_score(self._objective_of(m.metrics), self.mode)))
            if m.step >= self.budget.steps:
                m.status = "finished"  # its last state goes to disk now, ahead of the final snapshot
                self.writer.persist(None, {checkpoint_name(m.origin, item.version): (item.version, item.state)})
                self._event("finish", m.member, m.step, {"objective": self._objective_of(m.metrics)})
        self._put_member(m)

    def _item_failed(self, item: _Item, report: Report) -> None:
        """The item's trainable raised (the member fails), or its state could not be fetched."""
        assert report.error is not None
        self._lost_or_failed(item, report.error, lost=report.lost)

    def _call_failed(self, item: _Item, exc: ray.exceptions.RayError) -> None:
        cause = getattr(exc, "cause", None)
        cause = cause if isinstance(cause, BaseException) else exc
        lost = isinstance(cause, ray.exceptions.ObjectLostError)  # a passed state, lost with its node
        m = self.members[item.member]
        if lost and not item.passed:  # the worker held its state: another item's was lost; it goes again
            self._drop_calls(m)
            return
        if lost and m.deaths < MAX_WORKER_DEATHS and self._node_alive(m.node):
            m.deaths += 1  # its own state is intact (another item's input was lost): it goes again
            self._drop_calls(m)
            return
        self._lost_or_failed(item, _one_line(cause), lost)

    @staticmethod
    def _node_alive(node: str | None) -> bool:
        return node is not None and any(n["NodeID"] == node and n["Alive"] for n in ray.nodes())

    def _lost_or_failed(self, item: _Item, error: str, lost: bool) -> None:
        m = self.members[item.member]
        worker = self.pool.workers.get(item.worker)
        if lost and self._recover_state(m):
            self._event("failure", m.member, m.step, {"error": error, "worker": item.worker,
                                                      "node": worker and worker.node, "recovered": True})
            self._drop_calls(m)
            return
        self._fail(m, error, item.worker, worker and worker.node)

    def _worker_died(self, worker_id: str, call: _Call, exc: Exception) -> None:
        """Only the members of ``call`` (the one running) are charged a death; the members of the
        calls queued behind it are re-sent."""
        worker = self.pool.workers[worker_id]
        charged = sorted({i.member for i in call.items if not i.discard})
        for queued in self.queues.pop(worker_id, []):
            for item in queued.items:
                if not item.discard:
                    self._drop_calls(self.members[item.member])
        self._holds.pop(worker_id, None)
        self.pool.replace(worker_id)
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        for member in charged:
            m = self.members[member]
            self._drop_calls(m)
            m.deaths += 1
            recovered = m.deaths <= MAX_WORKER_DEATHS
            self._event("failure", m.member, m.step, {"error": _one_line(exc), "worker": worker_id,
                                                      "node": worker.node, "recovered": recovered})
            if not recovered:
                self._fail(m, f"killed {m.deaths} workers; last: {_one_line(exc)}", worker_id, worker.node,
                           event=False)
        for m in self.members.values():  # states whose primary copy went down with a node
            if m.ref is not None and m.node not in alive and m.status == "running":
                if not self._recover_state(m):
                    self._fail(m, f"state v{m.version} lost with node {m.node}", worker_id, worker.node)

    def _recover_state(self, m: _Member) -> bool:
        """Rebuild ``m``'s state reference from the driver's copy; False if there is none."""
        copy = None if m.version is None else self.writer.copy(m.version)
        if copy is None:
            return False
        m.ref, m.node = ray.put(dict(copy)), ray.get_runtime_context().get_node_id()
        for other in self.members.values():
            if other.version == m.version:
                other.ref, other.node = m.ref, m.node
        return True

    def _drop_calls(self, m: _Member) -> None:
        for c in m.calls:
            c.discard = True
        m.calls.clear()

    def _fail(self, m: _Member, error: str, worker: str | None, node: str | None, event: bool = True) -> None:
        self._drop_calls(m)
        m.status, m.error, m.segment = "failed", error, None
        if event:
            self._event("failure", m.member, m.step, {"error": error, "worker": worker, "node": node,
                                                      "recovered": False})
        self.strategy.on_failure(m.member, error)
        self._put_member(m)

    # -- the store ---------------------------------------------------------------------------
    def _event(self, kind: str, member: int | None, step: int | None, data: Mapping[str, Any]) -> None:
        self._last_event = self.store.add_event(self._clock(), kind, member, step, data)

    def _put_member(self, m: _Member) -> None:
        """Mirror ``m`` in the store (and in the strategy's next view)."""
        self._changed(m)
        objective = None if m.metrics is None else self._objective_of(m.metrics)
        self.store.put_member(m.member, status=m.status, step=m.step, objective=objective,
                              hparams=m.hparams, error=m.error)

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self._progress_at < PROGRESS_EVERY_S):
            return
        self._progress_at = now
        best = self._best()
        self.on_progress(Progress(
            population=self.budget.population,
            members_done=sum(m.status != "running" for m in self.members.values()),
            steps_done=self.budget_steps, budget_steps=self.budget.total_steps,
            best_member=None if best is None else best.member,
            best_objective=None if best is None else self._objective_of(best.metrics or {}),
            exploits=self.exploits, elapsed_seconds=self._clock()))

    def _best(self) -> _Member | None:
        scored = [m for m in self.members.values() if m.metrics is not None]
        if not scored:
            return None
        return max(scored, key=lambda m: (m.status != "failed", self._score(m), -m.member))

    # -- snapshots and resume ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.state_dict(),
            "members": {str(i): {
                "status": m.status, "error": m.error, "step": m.step, "hparams": m.hparams,
                "objective": None if m.metrics is None else self._objective_of(m.metrics),
                "metrics": m.metrics, "version": m.version, "origin": m.origin, "deaths": m.deaths,
                "file": None if m.version is None else checkpoint_name(m.origin, m.version),
                "segment": None if m.segment is None else {
                    "start": m.segment.start, "end": m.segment.end, "hparams": m.segment.hparams,
                    "evaluations": [[s, e] for s, e in m.segment.evaluations]},
                "last_worker": m.last_worker,
            } for i, m in sorted(self.members.items())},
            "budget_steps": self.budget_steps, "train_seconds": self.train_seconds,
            "train_calls": self.train_calls, "exploits": self.exploits,
            "next_version": self._next_version, "elapsed": self._clock(),
        }

    def _checkpoint(self) -> None:
        self._take_snapshots()
        spacing = max(self.checkpoint_every_s, self._snapshot_cost / SNAPSHOT_SHARE)
        if self._snapshot_job is None and time.monotonic() - self._snapshot_at >= spacing:
            self._request_snapshot()
        self.writer.retain({m.version for m in self.members.values() if m.version is not None})

    def _take_snapshots(self, required: bool = False, wait: float = 0.0) -> None:
        """Commit the snapshot whose files the writer finished (``required``: it must succeed;
        ``wait``: seconds to wait for the writer)."""
        for job, ok in self.writer.finished(wait):
            assert self._snapshot_job is not None and self._snapshot_job[0] == job
            _, state, last_event = self._snapshot_job
            self._snapshot_job = None
            if ok:
                started = time.perf_counter()
                self.store.commit_snapshot(state, last_event)
                self._prune(state)
                self._snapshot_cost += time.perf_counter() - started
            elif required:
                raise CheckpointError(f"the final checkpoint could not be written: {self.writer.error}")

    def _request_snapshot(self) -> None:
        self._snapshot_at = time.monotonic()
        started = time.perf_counter()
        state = self._state()
        files = {checkpoint_name(m.origin, m.version): (m.version, m.ref)
                 for m in self.members.values() if m.version is not None}
        self._jobs += 1
        self._snapshot_job = (self._jobs, state, self._last_event)
        self.writer.persist(self._jobs, files)
        self._snapshot_cost = time.perf_counter() - started

    def _final_snapshot(self) -> None:
        """Wait for any snapshot in flight, then write and commit one of the finished run."""
        self._await_snapshot(required=False)
        self._request_snapshot()
        self._await_snapshot(required=True)

    def _await_snapshot(self, required: bool) -> None:
        while self._snapshot_job is not None:
            if not self.writer.alive:
                raise CheckpointError("the checkpoint writer stopped")
            self._take_snapshots(required=required, wait=1.0)

    def _prune(self, state: Mapping[str, Any], partial: bool = False) -> None:
        """Delete every checkpoint file that neither the committed snapshot nor a member's current
        state names: no member needs it (a finished member's state, written ahead, is kept for the
        next snapshot). ``partial``: also the half-written files a killed driver left (never while
        writing)."""
        keep = {m["file"] for m in state["members"].values() if m["file"]}
        keep |= {checkpoint_name(m.origin, m.version) for m in self.members.values() if m.version is not None}
        for path in (self.store.run_dir / CHECKPOINTS_DIR).glob("member-*.npz"):
            if path.name not in keep and (partial or not path.name.endswith(".tmp.npz")):
                path.unlink(missing_ok=True)

    def _restore(self) -> None:
        state = self.store.rollback()
        self._last_event = self.store.last_event()
        if state is None:  # nothing durable yet: the run starts over (the store was emptied)
            self._prune({"members": {}}, partial=True)
            return
        self.strategy.load_state_dict(state["strategy"])
        directory = self.store.run_dir / CHECKPOINTS_DIR
        refs: dict[int, ray.ObjectRef] = {}
        for key, s in state["members"].items():
            m = _Member(int(key), member_seed(self.seed, int(key)), dict(s["hparams"]), s["status"], s["error"],
                        s["step"], s["metrics"], version=s["version"], origin=s["origin"],
                        last_worker=None, deaths=s["deaths"])
            if m.version is not None:
                if m.version not in refs:
                    refs[m.version] = ray.put(load_checkpoint(directory / s["file"]))
                m.ref, m.node = refs[m.version], self._here
            if s["segment"] is not None:
                seg = s["segment"]
                m.segment = _Segment(seg["start"], seg["end"], dict(seg["hparams"]),
                                     [(int(st), dict(e)) for st, e in seg["evaluations"]])
            self.members[m.member] = m
            self._changed(m)
        self.budget_steps, self.train_seconds = state["budget_steps"], state["train_seconds"]
        self.train_calls, self.exploits = state["train_calls"], state["exploits"]
        self._next_version, self._elapsed_base = state["next_version"], state["elapsed"]
        self._prune(state, partial=True)

    # -- the end -----------------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        return summarize(load_run(self.store.run_dir), budget_steps=self.budget_steps,
                         wall_seconds=self._clock(), train_seconds=self.train_seconds)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__
