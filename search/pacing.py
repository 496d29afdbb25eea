"""How much training one Ray call carries: the runner's pacing policy, pure arithmetic on steps.

A call should be long, so that Ray's per-call cost (~1-3 ms on busy cores) stays small, and the
last calls short, so that the workers finish together. Results never depend on it: a worker
evaluates every ``eval_every`` steps inside a call, and states round-trip exactly.
"""

from __future__ import annotations

CALL_TARGET_S = 0.2  # a call trains this long when the work left allows
TAIL_SPLIT = 3  # a call takes at most this fraction of what its worker has left to queue


def call_periods(*, left: int, queued_here: int, workers: int, seconds_per_step: float, eval_every: int) -> int:
    """Evaluation periods the next call on one of ``workers`` should train, over all its members.

    ``left``: steps of the budget not yet run; ``queued_here``: steps queued on this worker. A
    worker's part is an equal share of ``left``; a call takes about ``CALL_TARGET_S`` of training,
    and at most a ``TAIL_SPLIT``-th of the part its worker has not queued yet, so calls shrink
    towards the end and the last ones, short, even out the workers' finish. 0 when the worker has
    its part queued already; else at least 1 (a period longer than the target is one call).
    """
    part = left / max(1, workers) - queued_here
    if part < eval_every / 2:  # its part is queued already
        return 0 if queued_here else 1  # a worker with nothing queued always gets work
    steps = min(CALL_TARGET_S / max(seconds_per_step, 1e-9), part / TAIL_SPLIT)  # a pace of 0: no time cap
    return max(1, round(steps / eval_every))
