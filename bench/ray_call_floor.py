"""The ceiling Ray itself puts on utilisation for the PBT search's shape; prints ONE JSON line.

No runner, store, strategy or network: two actors (one per CPU) run items that busy-loop exactly
``ITEM_S`` (one 100-step segment of the digits MLP, ~10 ms) and then ``EVAL_S`` (its validation
pass, ~0.2-0.3 ms on busy cores), returning an ~85 KB state per item as the real worker does.

* ``pipelined``: asynchronous PBT's shape. Each actor serves 4 members, 2 per call, 2 calls in
  flight; a member's next call is sent once its result is back (its decision needs the result).
* ``barrier``: synchronous PBT's shape. Each round, one call of 4 items per actor; the next round
  is sent when both actors' calls are back.

utilisation = busy seconds in items (without the evaluation) / (wall seconds x 2), as in
``pbt_overhead.py``. The gap to 1 is Ray's per-call cost plus the evaluation: what any runner built
on Ray actor calls pays for this shape on this machine.

    python bench/ray_call_floor.py
"""

from __future__ import annotations

import json
import time

import numpy as np

ITEM_S = 0.010
EVAL_S = 0.0003
ROUNDS = 20  # segments per member, as in the digits search (2,000 steps, interval 100)
MEMBERS_PER_ACTOR = 4
STATE_SIZES = (8192, 128, 1280, 10, 8192, 128, 1280, 10, 2, 2156, 2, 2, 12, 12)  # the digits MLP's, in floats


def busy(seconds: float) -> None:
    start = time.perf_counter()
    a = np.ones((64, 64))
    while time.perf_counter() - start < seconds:
        a @ a


def main() -> None:
    import ray

    from workers.cluster import connect, disconnect

    @ray.remote(num_cpus=1)
    class Busy:
        def __init__(self) -> None:
            self.state = {f"k{i}": np.ones(n, np.float32) for i, n in enumerate(STATE_SIZES)}
            self.busy = 0.0

        def run(self, items: list) -> tuple:
            for _ in items:
                start = time.perf_counter()
                busy(ITEM_S)
                self.busy += time.perf_counter() - start
                busy(EVAL_S)
            return (tuple(items), *[self.state] * len(items))

        def take_busy(self) -> float:
            seconds, self.busy = self.busy, 0.0
            return seconds

    connect(num_cpus=2)  # an embedded Ray of its own, on loopback
    try:
        actors = [Busy.remote() for _ in range(2)]
        ray.get([a.take_busy.remote() for a in actors])

        def utilisation(wall: float) -> float:
            return round(sum(ray.get([a.take_busy.remote() for a in actors])) / (wall * len(actors)), 3)

        def pipelined() -> float:
            inflight, sent = {}, {}
            start = time.perf_counter()
            for a, actor in enumerate(actors):
                for group in range(MEMBERS_PER_ACTOR // 2):
                    ref = actor.run.options(num_returns=3).remote([(a, group)] * 2)[0]
                    inflight[ref], sent[(a, group)] = (a, group), 1
            while inflight:
                (ready,), _ = ray.wait(list(inflight), num_returns=1)
                a, group = inflight.pop(ready)
                ray.get(ready)
                if sent[(a, group)] < ROUNDS:
                    sent[(a, group)] += 1
                    inflight[actors[a].run.options(num_returns=3).remote([(a, group)] * 2)[0]] = (a, group)
            return utilisation(time.perf_counter() - start)

        def barrier() -> float:
            start = time.perf_counter()
            for round_ in range(ROUNDS):
                refs = [actor.run.options(num_returns=MEMBERS_PER_ACTOR + 1).remote([round_] * MEMBERS_PER_ACTOR)[0]
                        for actor in actors]
                ray.get(refs)
            return utilisation(time.perf_counter() - start)

        runs = {"pipelined": [pipelined() for _ in range(3)], "barrier": [barrier() for _ in range(3)]}
    finally:
        disconnect()
    line = {"bench": "ray_call_floor", "item_ms": ITEM_S * 1000, "eval_ms": EVAL_S * 1000,
            **{f"{shape}_utilisation": sorted(values)[1] for shape, values in runs.items()},
            **{f"{shape}_runs": values for shape, values in runs.items()}}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
