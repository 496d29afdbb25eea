"""The runner's mirror of what a worker holds (``Holdings``) against the real worker, without Ray.

The runner sends a member's state with a call only when ``Holdings`` says the worker will not hold
it; if the mirror ever claimed a version the worker lacks, that item would fail ``StateUnavailable``.
A seeded fuzz drives the real ``Worker`` class body through calls of several members, trainables
that raise, calls that fail as a whole (a lost argument), and exploits sharing a donor's version.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import pytest

from workers.actor import HELD_MEMBERS, Holdings, TrainableSpec, Worker, WorkItem

MEMBERS = HELD_MEMBERS + 4  # more than a worker keeps


class Counter:
    """A trainable whose state is its step count; hyperparameter ``boom`` makes it raise."""

    def __init__(self, hparams: dict, seed: int) -> None:
        self.set_hparams(hparams)
        self.steps = 0

    def train(self, steps: int) -> None:
        self.steps += steps

    def evaluate(self) -> dict[str, float]:
        return {"steps": float(self.steps)}

    def get_state(self) -> dict:
        return {"steps": self.steps}

    def set_state(self, state: dict) -> None:
        self.steps = state["steps"]

    def set_hparams(self, hparams: dict) -> None:
        if hparams.get("boom"):
            raise ValueError("boom")


def worker_body(worker_id: str):
    worker = object.__new__(Worker.__ray_actor_class__)  # the actor's methods, run in this process
    worker.worker_id, worker.spec, worker.node, worker.held = worker_id, TrainableSpec(Counter), "node", OrderedDict()
    return worker


@dataclass
class Item:
    member: int
    version: int
    worker: str
    discard: bool = False


@dataclass
class World:
    """The runner's side: each member's last completed version and its items in flight."""

    version: dict[int, int | None] = field(default_factory=lambda: dict.fromkeys(range(MEMBERS)))
    calls: dict[int, deque] = field(default_factory=lambda: {m: deque() for m in range(MEMBERS)})
    states: dict[int, object] = field(default_factory=dict)  # version -> state (None: never made)
    next_version: int = 0

    def drop(self, member: int) -> None:
        for item in self.calls[member]:
            item.discard = True
        self.calls[member].clear()


def run_trial(seed: int, workers: int = 2, operations: int = 400, mirror: type[Holdings] = Holdings) -> int:
    """Random operations; returns how many live items found their state neither held nor sent."""
    rng = random.Random(seed)
    bodies = {f"w{i}": worker_body(f"w{i}") for i in range(workers)}
    mirrors = {w: mirror() for w in bodies}
    queues: dict[str, deque] = {w: deque() for w in bodies}
    world = World()
    unavailable = 0
    for _ in range(operations):
        roll = rng.random()
        if roll < 0.45:  # the runner submits a call of 1-4 members on a worker
            w = rng.choice(list(bodies))
            free = [m for m in range(MEMBERS) if not world.calls[m] or world.calls[m][-1].worker == w]
            work, passed, items = [], [], []
            for m in rng.sample(free, min(len(free), rng.randint(1, 4))):
                version_in = world.calls[m][-1].version if world.calls[m] else world.version[m]
                send = version_in is not None and not mirrors[w].holds(version_in)  # the runner's rule
                if send:
                    passed.append(version_in)
                item = Item(m, world.next_version, w)
                work.append(WorkItem(m, 0, {"boom": rng.random() < 0.08}, version_in, item.version, 1, 1, send))
                items.append(item)
                world.calls[m].append(item)
                mirrors[w].ran(m, item.version)
                world.next_version += 1
            queues[w].append((work, passed, items))
        elif roll < 0.9:  # a worker runs its oldest call and the runner takes the results
            w = rng.choice(list(bodies))
            if not queues[w]:
                continue
            work, passed, items = queues[w].popleft()
            sources = [world.states.get(v) for v in passed]
            if any(s is None for s in sources) or rng.random() < 0.04:  # an argument lost: the call fails
                for item in items:
                    world.states[item.version] = None
                    world.drop(item.member)
                continue
            reports, *states = bodies[w].run([tuple(i) for i in work], *sources)
            for item, report, state in zip(items, reports, states, strict=True):
                world.states[item.version] = state
                if item.discard:
                    continue
                if report.error is None:
                    world.calls[item.member].popleft()
                    world.version[item.member] = item.version
                else:
                    unavailable += report.lost
                    world.drop(item.member)
        else:  # an exploit: an idle member takes a trained member's version
            idle = [m for m in range(MEMBERS) if not world.calls[m]]
            trained = [m for m in range(MEMBERS) if world.version[m] is not None]
            if idle and trained:
                world.version[rng.choice(idle)] = world.version[rng.choice(trained)]
    return unavailable


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_mirror_never_claims_a_version_the_worker_lacks(workers: int) -> None:
    assert sum(run_trial(seed, workers) for seed in range(60)) == 0


def test_a_mirror_that_keeps_one_member_too_many_is_caught() -> None:
    class Loose(Holdings):  # the worker keeps HELD_MEMBERS; this claims one more
        def ran(self, member: int, version: int) -> None:
            self._versions.pop(member, None)
            self._versions[member] = version
            while len(self._versions) > HELD_MEMBERS + 1:
                self._versions.popitem(last=False)

    assert sum(run_trial(seed, 2, mirror=Loose) for seed in range(60)) > 0
