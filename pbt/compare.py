"""``pbt compare``: every strategy for every seed at the same budget, then one table, the paired
statistics of every pair of strategies, and one figure."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards.figures import comparison_figure
from models.errors import ConfigError
from pbt.paired import paired_comparison, signed, verdict
from pbt.strategies import COMPARED
from search.store import RunData, best_so_far, load_run


def steps_to_target(run: RunData, target: float) -> float:
    """Optimizer steps the whole population had executed when any member first reached ``target``.

    NaN when the run never reached it. Steps count as in ``search.store.best_so_far``.
    """
    steps, best = best_so_far(run)
    with np.errstate(invalid="ignore"):
        reached = best >= target if run.info["mode"] == "max" else best <= target
    return float(steps[np.argmax(reached)]) if reached.any() else math.nan


def comparison_row(run: RunData) -> dict:
    """One row of ``comparison.csv`` from a finished run's summary (no best member, NaN objective,
    when every member failed before its first evaluation)."""
    summary = run.summary
    best = summary["best"] or {}
    row = {
        "strategy": summary["strategy"],
        "seed": summary["seed"],
        "best_member": best.get("member"),
        "best_objective": best.get("objective", math.nan),
    }
    row.update(sorted(best.get("test", {}).items()))
    row.update(
        budget_steps=summary["budget_steps"],
        wall_seconds=summary["wall_seconds"],
        exploits=summary["exploits"],
        run_dir=str(run.run_dir),
    )
    return row


def default_target(table: pd.DataFrame) -> float:
    """The median of the runs' best objectives: a level some runs reach and some do not."""
    return float(table["best_objective"].median())


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: mean and standard deviation of the outcomes, and how many runs reached the target."""
    outcomes = ["best_objective", *[c for c in table.columns if c.startswith("test_")],
                "steps_to_target", "wall_seconds"]
    grouped = table.groupby("strategy", sort=False)
    summary = grouped[outcomes].agg(["mean", "std"])
    summary[("reached_target", "count")] = grouped["steps_to_target"].count()
    summary[("runs", "count")] = grouped.size()
    return summary


def format_summary(summary: pd.DataFrame) -> str:
    """``mean ± std`` cells, one row per strategy."""
    columns: dict[str, list[str]] = {}
    for name in dict.fromkeys(col for col, _ in summary.columns):
        if (name, "mean") in summary.columns:
            mean, std = summary[(name, "mean")], summary[(name, "std")].fillna(0.0)
            columns[name] = ["never" if math.isnan(m) else f"{_number(m, 4)} ± {_number(s, 2)}" for m, s in zip(mean, std)]
        else:
            columns[name] = [str(int(v)) for v in summary[(name, "count")]]
    return pd.DataFrame(columns, index=summary.index).to_string()


def paired(table: pd.DataFrame, mode: str) -> pd.DataFrame:
    """One row per pair of the strategies in ``table``, paired by seed: pbt vs random, pbt vs grid,
    random vs grid (the challenger is the later one in ``COMPARED`` order).

    Columns: ``challenger``, ``baseline``, ``seeds``, ``difference_seed<N>`` per seed (oriented: > 0
    means the challenger did better), ``wins``, ``ties``, ``losses``, ``win_rate``,
    ``mean_difference``, ``ci_low`` and ``ci_high`` (95% percentile bootstrap), ``p_value``
    (one-sided Wilcoxon, H1: the challenger is better) and the ``verdict`` sentence (alpha 0.05);
    every rule is in ``pbt.paired``.
    """
    scores = table.pivot(index="seed", columns="strategy", values="best_objective")
    ran = [name for name in COMPARED.split(",") if name in scores.columns]
    rows = []
    for position, challenger in reversed(list(enumerate(ran))):
        for baseline in reversed(ran[:position]):
            c = paired_comparison(scores[challenger].tolist(), scores[baseline].tolist(), mode=mode,
                                  challenger=challenger, baseline=baseline)
            rows.append({
                "challenger": c.challenger, "baseline": c.baseline, "seeds": c.seeds,
                **{f"difference_seed{seed}": d for seed, d in zip(scores.index, c.differences)},
                "wins": c.wins, "ties": c.ties, "losses": c.losses, "win_rate": c.win_rate,
                "mean_difference": c.mean_difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                "p_value": c.p_value, "verdict": verdict(c),
            })
    return pd.DataFrame(rows)


def format_paired(pairs: pd.DataFrame) -> str:
    """The table of ``paired`` with signed differences under ``seed N`` headers, then one verdict a line."""
    shown = pairs.drop(columns="verdict").rename(columns=lambda c: c.replace("difference_seed", "seed "))
    differences = [c for c in shown.columns if c.startswith("seed ") or c in ("mean_difference", "ci_low", "ci_high")]
    formatters = {**dict.fromkeys(differences, lambda d: signed(d, 4)), "win_rate": "{:.2f}".format,
                  "p_value": "{:.3g}".format}
    return "\n".join([shown.to_string(index=False, formatters=formatters), *pairs["verdict"]])


def _number(value: float, digits: int) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


RunOne = Callable[[str, int, Path], object]  # writes a finished run into the directory


def compare(
    *,
    strategies: Sequence[str],
    seeds: int,
    out: Path,
    run_one: RunOne,
    target: float | None = None,
    on_run: Callable[[str, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run each strategy for seeds ``0 .. seeds-1`` through ``run_one(strategy, seed, run_dir)``.

    Writes ``comparison.csv``, ``comparison_summary.csv``, ``comparison_paired.csv`` (when two or
    more strategies ran) and ``comparison.png`` into ``out`` and returns ``(table, summary, pairs)``
    (``pairs`` as ``paired`` builds it, empty for one strategy). ``run_one`` runs one search from
    one config, so every run has the same budget, and on the same workers. ``ConfigError`` before
    any run if ``target`` is not finite.
    """
    if target is not None and not math.isfinite(target):
        raise ConfigError(f"--target: must be a finite objective level, got {target}")
    rows, runs = [], []
    for seed in range(seeds):
        for strategy in strategies:
            if on_run is not None:
                on_run(strategy, seed)
            run_dir = out / f"{strategy}-seed{seed}"
            run_one(strategy, seed, run_dir)
            run = load_run(run_dir)
            runs.append(run)
            rows.append(comparison_row(run))
    table = pd.DataFrame(rows)
    target = default_target(table) if target is None else target
    table.insert(table.columns.get_loc("budget_steps") + 1, "target", target)
    table.insert(
        table.columns.get_loc("target") + 1,
        "steps_to_target",
        [steps_to_target(run, target) for run in runs],
    )
    table = table.sort_values(["strategy", "seed"], key=_strategy_order(strategies), kind="stable")
    summary = summarize(table)
    pairs = paired(table, runs[0].info["mode"])
    table.to_csv(out / "comparison.csv", index=False)
    summary.to_csv(out / "comparison_summary.csv")
    if not pairs.empty:
        pairs.to_csv(out / "comparison_paired.csv", index=False)
    comparison_figure(table, runs).savefig(out / "comparison.png", dpi=110)
    return table, summary, pairs


def _strategy_order(strategies: Sequence[str]) -> Callable[[pd.Series], pd.Series]:
    rank = {name: i for i, name in enumerate(strategies)}
    return lambda column: column.map(rank) if column.name == "strategy" else column
