"""The ancestry of a run's final population, collapsed onto the best member's line of weights.

Every member's weights now went through a chain of stretches of training (``search.store.Lineage``):
the best member's chain is its *line*; any other member's chain shares a first part of it (the same
initial member and the same exploits) and leaves it at one point, or begins from another initial
member altogether. So the whole final population reads as: the best line, who left it where, and
which other initial members still have descendants, and how many.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from search.store import Lineage, RunData, Segment, best_member


@dataclass(frozen=True)
class SurvivingLineages:
    """``line``: the best member's ancestry, oldest first (``[]`` without a best member); ``clock``:
    where each of its segments starts on the clock of the weights, then where the last ends;
    ``branches``: per segment of ``line``, ``(member, clock)`` of each other member whose weights
    left the line during it; ``founders``: every other initial member with descendants now, and
    those descendants, most first (ties to the lower id)."""

    best: int | None
    line: list[Segment]
    clock: list[int]
    branches: list[list[tuple[int, int]]]
    founders: list[tuple[int, list[int]]]

    @property
    def lineages(self) -> int:
        """How many initial members have descendants in the final population."""
        return len(self.founders) + (1 if self.line else 0)


def surviving_lineages(run: RunData) -> SurvivingLineages:
    """The final population's ancestry: every member counted once, on the best line or under its
    initial member."""
    lineage = Lineage(run)
    best = best_member(run)
    line = [] if best is None else lineage.ancestry(best)
    clock = [0]
    for segment in line:
        clock.append(clock[-1] + segment.end - segment.start)
    branches: list[list[tuple[int, int]]] = [[] for _ in line]
    descendants: dict[int, list[int]] = defaultdict(list)
    for member in sorted(int(m) for m in run.members["member"]):
        if member == best:
            continue
        chain = lineage.ancestry(member)
        shared = _shared(chain, line)
        if shared == 0:
            descendants[chain[0].member].append(member)
            continue
        host, own = line[shared - 1], chain[shared - 1]  # the stretch both hold, to different ends
        branches[shared - 1].append((member, clock[shared - 1] + min(own.end, host.end) - host.start))
    founders = sorted(descendants.items(), key=lambda item: (-len(item[1]), item[0]))
    return SurvivingLineages(best, line, clock, branches, founders)


def _shared(chain: list[Segment], line: list[Segment]) -> int:
    """How many stretches (a member's training from one start) ``chain`` and ``line`` begin with in
    common. Two chains that hold the same stretch next held the same one before it, up to the same
    step (the exploit that started it copied one donor at one step), so only the last shared
    stretch can end differently."""
    shared = 0
    for mine, theirs in zip(chain, line):
        if (mine.member, mine.start) != (theirs.member, theirs.start):
            break
        shared += 1
    return shared
