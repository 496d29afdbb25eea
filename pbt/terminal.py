"""What ``pbt run`` shows: a live progress line on stderr, and the ranked members on stdout at the end."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import TextIO

import pandas as pd

from search.progress import Progress
from search.store import HP_PREFIX, RunData, hparam_names, member_ranking


def format_duration(seconds: float) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1:02:05``."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def parse_duration(text: str) -> float:
    """``format_duration`` read back: ``1:15`` → ``75``; ``1:02:05`` → ``3725``."""
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(seconds)


_PROGRESS_LINE = re.compile(
    r"members (?P<done>\d+)/(?P<population>\d+) done \| steps (?P<steps>[\d,]+)/(?P<budget>[\d,]+) \(\d+%\)"
    r"(?: \| best .+ (?P<best>\S+) \(member (?P<member>\d+)\))?(?: \| exploits (?P<exploits>\d+))?"
    r" \| (?P<elapsed>[\d:]+) elapsed")


def format_steps(progress: Progress) -> str:
    """Steps done of the budget, with the share: ``12,000/16,000 (75%)``."""
    fraction = progress.steps_done / progress.budget_steps if progress.budget_steps else 0.0
    return f"{progress.steps_done:,}/{progress.budget_steps:,} ({fraction:.0%})"


def format_progress(progress: Progress, objective: str, *, still_running: bool = True) -> str:
    """One line: members done, steps of the budget, best so far, exploits, elapsed and (while
    ``still_running``) time left."""
    p = progress
    parts = [f"members {p.members_done}/{p.population} done", f"steps {format_steps(p)}"]
    if p.best_objective is not None:
        parts.append(f"best {objective} {p.best_objective:.4g} (member {p.best_member})")
    if p.exploits:
        parts.append(f"exploits {p.exploits}")
    timing = f"{format_duration(p.elapsed_seconds)} elapsed"
    if still_running and 0 < p.steps_done < p.budget_steps:
        left = p.elapsed_seconds * (p.budget_steps - p.steps_done) / p.steps_done
        timing += f", ~{format_duration(left)} left"
    parts.append(timing)
    return " | ".join(parts)


def parse_progress(line: str) -> Progress | None:
    """A line of ``format_progress`` read back (the best objective to its 4 shown digits); ``None``
    for any other line."""
    match = _PROGRESS_LINE.search(line)
    if match is None:
        return None
    best, member = match["best"], match["member"]
    return Progress(
        population=int(match["population"]), members_done=int(match["done"]),
        steps_done=int(match["steps"].replace(",", "")), budget_steps=int(match["budget"].replace(",", "")),
        best_member=None if member is None else int(member), best_objective=None if best is None else float(best),
        exploits=int(match["exploits"] or 0), elapsed_seconds=parse_duration(match["elapsed"]))


class ProgressDisplay:
    """A ``Progress`` callback drawing on ``stream``: redrawn in place on a TTY, else a line every ``every`` s.

    ``quiet`` draws nothing. Call ``close()`` at the end to finish the line.
    """

    def __init__(
        self,
        stream: TextIO,
        objective: str,
        *,
        quiet: bool = False,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.objective = objective
        self.quiet = quiet
        self.every = every
        self.clock = clock
        self.tty = stream.isatty()
        self._last_time = -math.inf
        self._width = 0
        self._pending: str | None = None
        self._shown: str | None = None

    def __call__(self, progress: Progress) -> None:
        if self.quiet:
            return
        line = format_progress(progress, self.objective)
        now = self.clock()
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif line == self._shown:
            return
        elif now - self._last_time >= self.every or progress.steps_done >= progress.budget_steps:
            self.stream.write(line + "\n")
            self._last_time, self._pending, self._shown = now, None, line
        else:
            self._pending = line
            return
        self.stream.flush()

    def close(self) -> None:
        """End the in-place line on a TTY, or write the last line not yet shown."""
        if self.quiet:
            return
        if self.tty and self._width:
            self.stream.write("\n")
        elif self._pending is not None:
            self.stream.write(self._pending + "\n")
            self._pending = None
        self.stream.flush()


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def results_table(run: RunData) -> str:
    """The members ranked by objective, then the best member, its test metrics and its schedule."""
    objective = run.info["objective"]
    ranked = run.members.set_index("member").loc[member_ranking(run)].reset_index()  # best first
    table = pd.DataFrame({
        "rank": range(1, len(ranked) + 1),
        "member": ranked["member"],
        "status": ranked["status"],
        "step": ranked["step"],
        objective: [_number(v) for v in ranked["objective"]],
        **{name: [_number(v) for v in ranked[HP_PREFIX + name]] for name in hparam_names(ranked)},
    })
    lines = [table.to_string(index=False)]
    for row in ranked.itertuples():
        if row.status == "failed":
            lines.append(f"member {row.member} failed: {row.error}")
    best = (run.summary or {}).get("best")
    if best:
        lines.append("")
        lines.append(f"best: member {best['member']}, {objective} {_number(best['objective'])} (validation)")
        if best.get("test"):
            lines.append("test: " + ", ".join(f"{k} {_number(v)}" for k, v in best["test"].items()))
        lines.append("hparams: " + ", ".join(f"{k}={_number(v)}" for k, v in best["hparams"].items()))
        schedule = best.get("schedule") or []
        if len(schedule) > 1:
            lines.append("schedule (step: hparams, through its lineage):")
            lines.extend(
                f"  {step:>7}: " + ", ".join(f"{k}={_number(v)}" for k, v in hparams.items())
                for step, hparams in schedule
            )
    return "\n".join(lines)
