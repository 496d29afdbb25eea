"""Which member is best, and the line of weights that led to it, derived from a loaded run."""

from __future__ import annotations

import math

from search.store import RunData, exploits


def best_member(run: RunData) -> int | None:
    """The member named best by ``summary.json``; while running, the best latest validation objective.

    NaN and infinite objectives never count. ``None`` before any member has an objective.
    """
    if run.summary and isinstance(run.summary.get("best"), dict):
        return int(run.summary["best"]["member"])
    sign = 1.0 if run.info.get("mode", "max") == "max" else -1.0
    best, best_score = None, -math.inf
    for row in run.members.itertuples():
        objective = row.objective
        if objective is None or not math.isfinite(float(objective)):
            continue
        if sign * float(objective) > best_score:
            best, best_score = int(row.member), sign * float(objective)
    return best


def lineage_path(run: RunData, member: int) -> list[tuple[int, int, int]]:
    """The segments ``(member, start_step, end_step)`` whose weights ``member`` ends with, oldest first.

    Walks back from the member's latest step: at its latest exploit (member step ``s``, donor ``d``
    at ``donor_step``), the weights before ``s`` were ``d``'s up to ``donor_step``; then on through
    ``d``'s own exploits recorded before that one. Steps are each member's own clock.
    """
    table = exploits(run).reset_index(drop=True)
    steps = run.results.groupby("member")["step"].max()
    end = int(steps.get(member, 0))
    limit = len(table)
    path: list[tuple[int, int, int]] = []
    while True:
        earlier = table.iloc[:limit]
        mine = earlier[(earlier["member"] == member) & (earlier["step"] <= end)]
        if mine.empty:
            path.append((member, 0, end))
            return path[::-1]
        row = mine.iloc[-1]
        path.append((member, int(row["step"]), end))
        member, end, limit = int(row["donor"]), int(row["donor_step"]), int(mine.index[-1])
