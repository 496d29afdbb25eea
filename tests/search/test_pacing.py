"""The pacing policy on its own (no Ray): how much one call carries, and that workers finish together."""

from __future__ import annotations

import itertools

import pytest

from search.pacing import CALL_TARGET_S, TAIL_SPLIT, call_periods

EVERY = 100
PACE = 1e-4  # seconds per step: one evaluation period is 10 ms


def periods(left: int, queued_here: int, workers: int = 2) -> int:
    return call_periods(left=left, queued_here=queued_here, workers=workers, seconds_per_step=PACE,
                        eval_every=EVERY)


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_bounds_hold_over_a_grid_of_states(workers: int) -> None:
    target = round(CALL_TARGET_S / (PACE * EVERY))
    for left, here in itertools.product(range(0, 40_001, 100), range(0, 8_001, 100)):
        if here > left:
            continue
        n = periods(left, here, workers)
        assert 0 <= n <= target  # never past the time target
        if here == 0 and left > 0:
            assert n >= 1  # a worker with nothing queued always gets work
        if n and here:
            part = left / workers - here  # of its equal part, what it has not queued
            assert n * EVERY <= part + EVERY / 2  # never past its part
            assert n == 1 or n * EVERY <= part / TAIL_SPLIT + EVERY / 2  # a TAIL_SPLIT-th of it, or one period


def test_long_calls_in_the_middle_short_at_the_end() -> None:
    assert periods(left=160_000, queued_here=2_000) == round(CALL_TARGET_S / (PACE * EVERY))
    assert periods(left=2_000, queued_here=400) == 2  # (2000 / 2 - 400) / 3 = 200 steps
    assert periods(left=1_000, queued_here=500) == 0  # its part (1000 / 2) is queued already
    assert periods(left=1_000, queued_here=0) == 2  # nothing queued: 500 / 3 steps, rounded to periods
    assert call_periods(left=100_000, queued_here=400, workers=2, seconds_per_step=0.1, eval_every=4) == 1  # a
    # period (0.4 s) longer than the target is still one call, so a second call waits behind the running one
    assert call_periods(left=1_000, queued_here=0, workers=2, seconds_per_step=0.0, eval_every=10) == 17  # a
    # trainable too fast to time: only the split applies (500 / 3 steps)


def simulate(workers: int, members: int, steps: int, speeds: list[float]) -> tuple[list[float], int]:
    """Workers (steps per second ``speeds``) each keep two calls queued, asking ``call_periods`` for
    the next; returns when each worker finished and how many calls were made."""
    left_to_queue = members * steps
    done = 0
    queues: list[list[int]] = [[] for _ in range(workers)]
    clock = [0.0] * workers
    calls = 0

    def top_up(w: int) -> None:
        nonlocal left_to_queue, calls
        while len(queues[w]) < 2 and left_to_queue:
            n = periods(members * steps - done, sum(queues[w]), workers)
            if n == 0:
                return
            size = min(n * EVERY, left_to_queue)
            queues[w].append(size)
            left_to_queue -= size
            calls += 1

    for w in range(workers):
        top_up(w)
    while any(queues):
        w = min((w for w in range(workers) if queues[w]), key=lambda w: clock[w] + queues[w][0] / speeds[w])
        size = queues[w].pop(0)
        clock[w] += size / speeds[w]
        done += size
        for other in sorted(range(workers), key=lambda o: clock[o]):  # the idle ones ask first
            top_up(other)
    return clock, calls


@pytest.mark.parametrize("speeds", [[10_000.0, 10_000.0], [10_000.0, 9_000.0], [10_000.0, 12_000.0, 8_000.0]])
def test_workers_finish_together_with_few_calls(speeds: list[float]) -> None:
    finish, calls = simulate(len(speeds), members=8, steps=2_000, speeds=speeds)
    assert max(finish) - min(finish) <= 1.5 * EVERY / min(speeds)  # within one and a half periods
    per_worker = 8 * 2_000 / sum(speeds)  # ~0.8 s of work each
    assert calls <= len(speeds) * (per_worker / CALL_TARGET_S + 8)  # long calls, and a short tail
