"""Matplotlib figures of a run (and of a comparison of runs). Each function returns a ``Figure``.

Figures are built with the object-oriented API on the Agg canvas (no ``pyplot``, no global backend),
so the dashboard can render them in request threads. A run of more than ``MEMBER_LINES_UP_TO``
members is drawn as a population (quantile bands, dots coloured by objective, lineages collapsed
onto the best member's), not member by member. Artists a reader (or a test) looks for carry a
``gid``: ``member-<id>`` for a member's line, ``exploits`` / ``exploit-links`` for exploit markers and
donor→receiver connectors, ``lineage-edges`` and ``best-lineage`` in the lineage tree, ``best-<label>``
for best-so-far curves; for a large population ``band-<low>-<high>``, ``median``, ``best-member``
and ``best-exploits`` (objective), ``evaluations`` (hyperparameters), ``branched-<row>``,
``founder-<id>`` and ``founders-other`` (lineages).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from dashboards.lineages import surviving_lineages
from models import ToyQuadratic
from search.store import (
    HP_PREFIX, RunData, ancestry, best_member, best_so_far, exploits, hparam_names, load_run, member_ranking,
)
from search.strategy import oriented_score


def plain(text: object) -> str:
    """``text`` as matplotlib should show it literally: ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def member_color(member: int, population: int) -> tuple[float, float, float, float]:
    """The colour of ``member``, the same in every figure of a run."""
    if population <= 10:
        return matplotlib.colormaps["tab10"](member % 10)
    if population <= 20:
        return matplotlib.colormaps["tab20"](member % 20)
    return matplotlib.colormaps["viridis"](member / max(population - 1, 1))


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` rendered to PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, gid="empty")
    ax.set_xticks([])
    ax.set_yticks([])


def _population(run: RunData) -> int:
    return int(run.info["population"])


def _by_member(results: pd.DataFrame):
    return results.sort_values(["member", "step"], kind="stable").groupby("member", sort=True)


def _title(run: RunData, what: str) -> str:
    return plain(f"{run.run_dir.name} ({run.info.get('strategy', '?')}): {what}")


MEMBER_LINES_UP_TO = 20  # a population this small is drawn member by member; a larger one as a whole
BANDS = ((0.05, 0.95), (0.25, 0.75))  # the objective figure's quantile bands of a large population
LOG_SPAN = 100.0  # a positive objective spanning this factor is drawn on a log axis
FOUNDER_ROWS = 8  # the lineage view's rows for other initial members; the rest share one row


def spans_decades(values: np.ndarray) -> bool:
    """Whether the finite ``values`` are positive and span ``LOG_SPAN``: drawn on a log scale."""
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() >= LOG_SPAN * values.min())


def _best_rows(run: RunData) -> pd.DataFrame | None:
    """The best member's results by step; ``None`` without a best member."""
    best = best_member(run)
    if best is None:
        return None
    return run.results[run.results["member"] == best].sort_values("step")


def objective_figure(run: RunData) -> Figure:
    """The population's objective against each member's steps.

    Up to ``MEMBER_LINES_UP_TO`` members: one line per member, exploits marked (a marker on the
    receiver's line at the step it copied, and a thin dotted connector from the donor's evaluation
    it copied). A larger population: at each step, the median and the 25-75% and 5-95% quantile
    bands of the objectives of the members evaluated at that step (a NaN counts as the worst; a band
    edge that is not finite is not drawn), and the best member's line over them.
    """
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    objective = plain(run.info.get("objective", "objective"))
    many = _population(run) > MEMBER_LINES_UP_TO
    ax.set_title(_title(run, f"{objective} of the population" if many else f"{objective} per member"))
    if run.results.empty:
        _empty(ax, "no results yet")
        return fig
    (_objective_bands if many else _objective_lines)(ax, run)
    if spans_decades(run.results["objective"].to_numpy(dtype=float)):
        ax.set_yscale("log")  # a loss falling by orders of magnitude
    ax.set_xlabel("member step")
    ax.set_ylabel(f"{objective} (validation)")
    ax.grid(alpha=0.3)
    return fig


def _objective_lines(ax, run: RunData) -> None:
    population = _population(run)
    for member, rows in _by_member(run.results):
        ax.plot(
            rows["step"], rows["objective"], color=member_color(int(member), population),
            linewidth=1.2, marker="." if len(rows) < 40 else None, gid=f"member-{member}",
            label=f"member {member}",
        )
    table = exploits(run)
    if not table.empty:
        links = [
            ((row.donor_step, row.donor_objective), (row.step, row.member_objective))
            for row in table.itertuples()
        ]
        ax.add_collection(
            LineCollection(links, colors="0.35", linewidths=0.7, linestyles=":", gid="exploit-links")
        )
        ax.scatter(
            table["step"], table["member_objective"], marker="v", s=36, color="black", zorder=3,
            gid="exploits", label=f"exploit ({len(table)})",
        )
    if population <= 12:
        ax.legend(fontsize="small", ncols=2)


def objective_quantiles(run: RunData, levels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, quantiles)``: each step some member was evaluated at, and the ``levels`` quantiles
    (rows) of the objectives of the members evaluated there, in columns. A NaN objective counts as
    the worst (``-inf`` for ``mode = "max"``, ``+inf`` for ``"min"``); quantiles are values members
    had (numpy's ``nearest`` method), so infinities never turn into NaN."""
    worst = -math.inf if run.info["mode"] == "max" else math.inf
    by_step = run.results.groupby("step", sort=True)["objective"]
    steps = np.array(list(by_step.groups), dtype=float)
    quantiles = np.column_stack([
        np.quantile(np.nan_to_num(values.to_numpy(dtype=float), nan=worst, posinf=math.inf, neginf=-math.inf),
                    levels, method="nearest")
        for _, values in by_step
    ]) if len(steps) else np.empty((len(levels), 0))
    return steps, quantiles


def _objective_bands(ax, run: RunData) -> None:
    levels = [q for band in BANDS for q in band] + [0.5]
    steps, quantiles = objective_quantiles(run, levels)
    drawable = np.where(np.isfinite(quantiles), quantiles, np.nan)
    for i, ((low, high), alpha) in enumerate(zip(BANDS, (0.2, 0.4))):
        ax.fill_between(steps, drawable[2 * i], drawable[2 * i + 1], color="tab:blue", alpha=alpha,
                        linewidth=0, gid=f"band-{low:g}-{high:g}", label=f"{low:.0%}-{high:.0%} of members")
    ax.plot(steps, drawable[-1], color="tab:blue", linewidth=1.5, gid="median", label="median")
    best = _best_rows(run)
    if best is not None:
        member = int(best["member"].iloc[0])
        ax.plot(best["step"], best["objective"], color="crimson", linewidth=1.8, marker=".", zorder=4,
                gid="best-member", label=f"best member {member}")
        marks = exploits(run)
        marks = marks[marks["member"] == member]
        if not marks.empty:
            ax.scatter(marks["step"], marks["member_objective"], marker="v", s=36, color="black", zorder=5,
                       gid="best-exploits", label=f"best member's exploits ({len(marks)})")
    ax.legend(fontsize="small")


def _space(run: RunData) -> dict:
    space = (run.info.get("config") or {}).get("space") or {}
    return space if isinstance(space, dict) else {}


def is_loguniform(run: RunData, name: str) -> bool:
    """Whether the config's ``[space]`` declares ``name`` as ``{ loguniform = [lo, hi] }``."""
    spec = _space(run).get(name)
    return isinstance(spec, dict) and "loguniform" in spec


def _categories(run: RunData, name: str) -> list[str]:
    """The category axis of a choice hyperparameter (the config's order first); ``[]`` if numeric."""
    column = run.results[HP_PREFIX + name].dropna()
    spec = _space(run).get(name)
    declared = [str(c) for c in spec["choice"]] if isinstance(spec, dict) and "choice" in spec else []
    if not declared and pd.to_numeric(column, errors="coerce").notna().all():
        return []
    if declared and all(isinstance(c, (int, float)) for c in spec["choice"]):
        return []
    return list(dict.fromkeys([*declared, *sorted(str(v) for v in column)]))


def _hparam_values(column: pd.Series, categories: list[str]) -> np.ndarray:
    """A hyperparameter's values as drawn: the index on the category axis, or the number."""
    if categories:
        index = {category: i for i, category in enumerate(categories)}
        return np.array([index[str(v)] if str(v) in index else np.nan for v in column], dtype=float)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def hparams_figure(run: RunData) -> Figure:
    """The population's hyperparameters against each member's steps, one panel per hyperparameter.

    Up to ``MEMBER_LINES_UP_TO`` members: one line per member, a value drawn over the segment it
    was in force for (the ``eval_every`` steps before the evaluation that recorded it). A larger
    population: one dot per evaluation, in that segment (each member at its own place across it),
    coloured by the objective it reached (bright is better, for ``mode = "min"`` too; grey: no
    finite objective), best on top, and the best member's line. Log y-axis for loguniform
    dimensions; choices on a category axis.
    """
    names = hparam_names(run.results)
    many = _population(run) > MEMBER_LINES_UP_TO
    fig = _figure(8, 1.0 + 2.2 * max(len(names), 1))
    if run.results.empty or not names:
        _empty(fig.add_subplot(), "no results yet" if run.results.empty else "no hyperparameters")
        return fig
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(_title(run, "hyperparameters of the population" if many else "hyperparameters per member"))
    scatter = None
    for ax, name in zip(axes, names):
        categories = _categories(run, name)
        if many:
            scatter = _hparam_dots(ax, run, name, categories)
        else:
            _hparam_lines(ax, run, name, categories)
        if categories:
            ax.set_yticks(range(len(categories)), [plain(c) for c in categories])
        elif is_loguniform(run, name):
            ax.set_yscale("log")
        if many:
            ax.yaxis.set_minor_locator(NullLocator())  # a quarter of the figure's time at 1,024 members
        ax.set_ylabel(plain(name))
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("member step")
    if scatter is not None:
        objective = plain(run.info.get("objective", "objective"))
        bar = fig.colorbar(scatter, ax=list(axes), shrink=0.9)
        bar.ax.yaxis.set_minor_locator(NullLocator())
        bar.set_label(f"{objective} (validation), {run.info['mode']}: bright is better")
    return fig


def _hparam_lines(ax, run: RunData, name: str, categories: list[str]) -> None:
    population = _population(run)
    for member, rows in _by_member(run.results):
        values = _hparam_values(rows[HP_PREFIX + name], categories)
        ax.plot([0, *rows["step"]], [values[0], *values], drawstyle="steps-pre",
                color=member_color(int(member), population), linewidth=1.2, gid=f"member-{member}")


def _hparam_dots(ax, run: RunData, name: str, categories: list[str]):
    results = run.results
    mode = run.info["mode"]
    objective = results["objective"].to_numpy(dtype=float)
    order = np.argsort([oriented_score(value, mode) for value in objective], kind="stable")  # best drawn last
    every = float(run.info["eval_every"])
    place = 0.1 + 0.8 * results["member"].to_numpy(dtype=float) / max(_population(run) - 1, 1)
    steps = results["step"].to_numpy(dtype=float) - every + place * every
    finite = objective[np.isfinite(objective)]
    norm = (matplotlib.colors.LogNorm if spans_decades(finite) else matplotlib.colors.Normalize)(
        *((finite.min(), finite.max()) if finite.size else (0.0, 1.0)))
    cmap = matplotlib.colormaps["viridis" if mode == "max" else "viridis_r"].with_extremes(bad="0.75")
    values = _hparam_values(results[HP_PREFIX + name], categories)
    dots = ax.scatter(steps[order], values[order], c=np.where(np.isfinite(objective), objective, np.nan)[order],
                      cmap=cmap, norm=norm, s=9, linewidths=0, plotnonfinite=True, gid="evaluations")
    best = _best_rows(run)
    if best is not None:
        best_values = _hparam_values(best[HP_PREFIX + name], categories)
        ax.plot([0, *best["step"]], [best_values[0], *best_values], drawstyle="steps-pre", color="crimson",
                linewidth=1.6, gid="best-member", label=f"best member {int(best['member'].iloc[0])}")
        ax.legend(fontsize="small", loc="upper left")
    return dots


def lineage_figure(run: RunData) -> Figure:
    """Who holds whose weights: up to ``MEMBER_LINES_UP_TO`` members, the lineage tree (one row
    per member across its steps, an edge donor->receiver per exploit, the best member's line back
    through its donors thick, ``gid="best-lineage"``); a larger population, ``surviving_figure``."""
    if _population(run) > MEMBER_LINES_UP_TO:
        return surviving_figure(run)
    fig = _figure(8, min(1.5 + 0.35 * _population(run), 20))
    ax = fig.add_subplot()
    best = best_member(run)
    ax.set_title(_title(run, "lineage" + ("" if best is None else f" (best: member {best})")))
    if run.results.empty:
        _empty(ax, "no results yet")
        return fig
    population = _population(run)
    for member, rows in _by_member(run.results):
        ax.plot(
            [0, rows["step"].max()], [member, member], color=member_color(int(member), population),
            linewidth=2, alpha=0.6, solid_capstyle="butt", gid=f"member-{member}",
        )
    table = exploits(run)
    if not table.empty:
        edges = [((r.donor_step, r.donor), (r.step, r.member)) for r in table.itertuples()]
        ax.add_collection(LineCollection(edges, colors="0.3", linewidths=0.8, gid="lineage-edges"))
        ax.scatter(table["step"], table["member"], marker="v", s=20, color="black", zorder=3)
    if best is not None:
        xs: list[float] = []
        ys: list[float] = []
        for segment in ancestry(run, best):
            xs += [segment.start, segment.end]
            ys += [segment.member, segment.member]
        ax.plot(xs, ys, color="crimson", linewidth=3.5, zorder=4, gid="best-lineage",
                label=f"best member {best} through its donors")
        ax.legend(fontsize="small", loc="upper left")
    ax.set_yticks(range(population), [f"member {m}" for m in range(population)])
    ax.set_ylim(population - 0.5, -0.5)
    ax.set_xlabel("member step")
    ax.grid(axis="x", alpha=0.3)
    return fig


def surviving_figure(run: RunData) -> Figure:
    """The final population's ancestry collapsed onto the best member's line (``surviving_lineages``).

    One row per stretch of the best line, in order (``gid="best-lineage"``: the line, on the clock
    of the weights, hopping a row at each exploit), with a tick where each other member's weights
    left it (``branched-<row>``) and how many; then one row per other initial member that still has
    descendants, most first (``founder-<member>``), the rest on one row (``founders-other``). Every
    member of the population is counted once.
    """
    lineages = surviving_lineages(run)
    rank = {member: i + 1 for i, member in enumerate(member_ranking(run))}
    shown, rest = lineages.founders[:FOUNDER_ROWS], lineages.founders[FOUNDER_ROWS:]
    rows = len(lineages.line) + len(shown) + (1 if rest else 0)
    fig = _figure(8, 1.6 + 0.42 * max(rows, 1))
    ax = fig.add_subplot()
    ax.set_title(_title(run, f"{len(run.members)} members from {lineages.lineages} initial members' lines"))
    if run.results.empty:
        _empty(ax, "no results yet")
        return fig
    clock, labels = lineages.clock, []
    end = max(clock[-1], 1)
    widest = max([len(members) for _, members in lineages.founders] + [1])
    if lineages.line:
        xs = [x for i in range(len(lineages.line)) for x in (clock[i], clock[i + 1])]
        ys = [y for i in range(len(lineages.line)) for y in (i, i)]
        ax.plot(xs, ys, color="crimson", linewidth=3, solid_capstyle="butt", zorder=4, gid="best-lineage",
                label=f"best member {lineages.best} through its donors")
        for i, (segment, left) in enumerate(zip(lineages.line, lineages.branches)):
            labels.append(f"member {segment.member}, steps {segment.start}-{segment.end}")
            if left:
                ax.scatter([x for _, x in left], [i + 0.25] * len(left), marker="|", s=60, color="0.35",
                           linewidths=1, gid=f"branched-{i}")
                ax.annotate(f"{len(left)} left here; best rank {min(rank[m] for m, _ in left)}",
                            (max(x for _, x in left), i + 0.25), xytext=(6, 0), textcoords="offset points",
                            va="center", fontsize="small", color="0.3")
    first = len(lineages.line)
    for row, (founder, members) in enumerate(shown, start=first):
        ax.plot([0, end], [row, row], color="0.55", linewidth=1 + 9 * len(members) / widest,
                solid_capstyle="butt", gid=f"founder-{founder}")
        labels.append(f"member {founder}'s line")
        ax.annotate(f"{_members(len(members))}; best rank {min(rank[m] for m in members)}", (end, row),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize="small")
    if rest:
        row = first + len(shown)
        count = sum(len(members) for _, members in rest)
        ax.plot([0, end], [row, row], color="0.75", linewidth=1, solid_capstyle="butt", gid="founders-other")
        labels.append(f"{len(rest)} other lines")
        ax.annotate(_members(count), (end, row), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize="small")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.set_xlim(0, end * 1.3)  # room for the counts
    ax.set_xlabel("steps the weights trained, through their donors")
    ax.grid(axis="x", alpha=0.3)
    if lineages.line:
        ax.legend(fontsize="small", loc="upper right")
    return fig


def _members(count: int) -> str:
    return f"{count} member{'' if count == 1 else 's'}"


def overlay_figure(runs: Sequence[RunData], labels: Sequence[str] | None = None) -> Figure:
    """Several runs' best objective so far against the population's steps, one line per run."""
    labels = list(labels) if labels is not None else [run.run_dir.name for run in runs]
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    objectives = sorted({str(run.info.get("objective", "objective")) for run in runs})
    ax.set_title(plain(f"best {' / '.join(objectives)} so far"))
    if not runs:
        _empty(ax, "no runs selected")
        return fig
    for i, (run, label) in enumerate(zip(runs, labels)):
        steps, best = best_so_far(run)
        ax.plot(steps, best, drawstyle="steps-post", color=matplotlib.colormaps["tab10"](i % 10),
                linewidth=1.5, gid=f"best-{label}", label=plain(label))
    ax.set_xlabel("optimizer steps over the population")
    ax.set_ylabel(plain(f"best {' / '.join(objectives)}"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _mean_curves(runs: Sequence[RunData]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per strategy: a common step grid, the mean and the std over runs of the best so far."""
    grouped: dict[str, list[RunData]] = {}
    for run in runs:
        if not run.results.empty:
            grouped.setdefault(str(run.info.get("strategy", "?")), []).append(run)
    curves = {}
    for strategy, members in grouped.items():
        series = [best_so_far(run) for run in members]
        step = min(float(run.info["eval_every"]) for run in members)
        grid = np.arange(step, max(s[-1] for s, _ in series) + step / 2, step)
        rows = []
        for steps, best in series:
            index = np.searchsorted(steps, grid, side="right") - 1
            rows.append(np.where(index >= 0, best[np.clip(index, 0, None)], np.nan))
        stacked = np.vstack(rows)
        with np.errstate(invalid="ignore"):
            curves[strategy] = (grid, np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0))
    return curves


def comparison_figure(comparison: pd.DataFrame, runs: Sequence[RunData] | None = None) -> Figure:
    """Strategies compared: best validation objective per strategy (box + one dot per run) and,
    when the runs are known, the mean best-so-far objective against the budget per strategy.

    ``comparison`` has columns ``strategy`` and ``best_objective`` (one row per run, as in
    ``comparison.csv``); a ``target`` column is drawn as a dashed level on the budget curves.
    Without ``runs``, a ``run_dir`` column (if any) says where to load them.
    """
    if runs is None and "run_dir" in comparison.columns:
        runs = [load_run(path) for path in comparison["run_dir"]]
    runs = list(runs or [])
    strategies = list(dict.fromkeys(comparison["strategy"].astype(str)))
    objective = plain(runs[0].info.get("objective", "objective")) if runs else "objective"
    fig = _figure(12 if runs else 6, 4.5)
    axes = fig.subplots(1, 2 if runs else 1, squeeze=False)[0]
    ax = axes[0]
    data = [comparison.loc[comparison["strategy"].astype(str) == s, "best_objective"].astype(float)
            for s in strategies]
    ax.boxplot([d.dropna().to_numpy() for d in data], positions=range(len(strategies)), widths=0.5,
               showfliers=False)
    for i, (strategy, values) in enumerate(zip(strategies, data)):
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(i + offsets, values, s=28, color=matplotlib.colormaps["tab10"](i % 10), zorder=3,
                   gid=f"runs-{strategy}")
    ax.set_xticks(range(len(strategies)), [plain(s) for s in strategies])
    ax.set_ylabel(f"best {objective} (validation)")
    ax.set_title(f"best validation {objective} per run")
    ax.grid(axis="y", alpha=0.3)
    if runs:
        ax = axes[1]
        curves = _mean_curves(runs)
        for i, (strategy, (grid, mean, std)) in enumerate(curves.items()):
            color = matplotlib.colormaps["tab10"](strategies.index(strategy) % 10
                                                  if strategy in strategies else i % 10)
            ax.plot(grid, mean, color=color, linewidth=1.8, gid=f"best-{strategy}", label=plain(strategy))
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        means = np.concatenate([mean for _, mean, _ in curves.values()]) if curves else np.array([])
        if spans_decades(means):
            ax.set_yscale("log")
        if "target" in comparison.columns and comparison["target"].notna().any():
            ax.axhline(float(comparison["target"].dropna().iloc[0]), color="0.4", linestyle="--",
                       linewidth=0.8, gid="target", label="target")
        ax.set_xlabel("optimizer steps over the population (budget)")
        ax.set_ylabel(f"best {objective} so far (mean ± std over seeds)")
        ax.set_title("best objective against budget")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def has_theta(run: RunData) -> bool:
    """Whether the run's results carry the toy's 2-D parameter (``theta0``, ``theta1``)."""
    return {"theta0", "theta1"} <= set(run.results.columns)


def toy_figure(runs: Sequence[RunData], titles: Sequence[str] | None = None) -> Figure:
    """For each run (one row each): the members' θ paths over the contours of the toy's true
    objective Q, and Q against steps beside it. Put a PBT run beside a grid run to see PBT win.
    """
    titles = list(titles) if titles is not None else [
        f"{run.run_dir.name} ({run.info.get('strategy', '?')})" for run in runs
    ]
    fig = _figure(11, 4.5 * max(len(runs), 1))
    axes = fig.subplots(max(len(runs), 1), 2, squeeze=False)
    for (path_ax, q_ax), run, title in zip(axes, runs, titles):
        if not has_theta(run) or run.results.empty:
            _empty(path_ax, "no θ in the results" if not has_theta(run) else "no results yet")
            continue
        theta = run.results[["theta0", "theta1"]].to_numpy(dtype=float)
        lo = min(0.0, float(np.nanmin(theta))) - 0.1
        hi = max(0.9, float(np.nanmax(theta))) + 0.1
        grid = np.linspace(lo, hi, 200)
        t0, t1 = np.meshgrid(grid, grid)
        q = ToyQuadratic.true_objective(t0, t1)
        path_ax.contourf(t0, t1, q, levels=20, cmap="Blues", alpha=0.35)
        lines = path_ax.contour(t0, t1, q, levels=[0.0, 0.4, 0.8, 1.0, 1.1, 1.18], colors="0.4",
                                linewidths=0.6)
        path_ax.clabel(lines, fontsize="x-small", fmt="Q=%.2g")
        population = _population(run)
        q_column = "Q" if "Q" in run.results.columns else "objective"
        for member, rows in _by_member(run.results):
            color = member_color(int(member), population)
            path_ax.plot(rows["theta0"], rows["theta1"], marker=".", markersize=4, linewidth=1,
                         color=color, gid=f"member-{member}", label=f"member {member}")
            q_ax.plot(rows["step"], rows[q_column], color=color, linewidth=1.2, gid=f"member-{member}")
        path_ax.set_xlim(lo, hi)
        path_ax.set_ylim(lo, hi)
        path_ax.set_aspect("equal")
        path_ax.set_xlabel("θ0")
        path_ax.set_ylabel("θ1")
        path_ax.set_title(plain(f"{title}: θ over Q's contours"))
        path_ax.legend(fontsize="small")
        q_ax.axhline(1.2, color="0.5", linestyle="--", linewidth=0.8)
        q_ax.set_xlabel("member step")
        q_ax.set_ylabel(plain(q_column))
        q_ax.set_title(plain(f"{title}: {q_column} per member"))
        q_ax.grid(alpha=0.3)
    return fig


RUN_FIGURES = {
    "objective": objective_figure,
    "hparams": hparams_figure,
    "lineage": lineage_figure,
}


def figure_names(run: RunData) -> list[str]:
    """The figures that apply to ``run``: ``toy`` only when its results carry θ."""
    return [*RUN_FIGURES, *(["toy"] if has_theta(run) else [])]


def render_run_figure(run: RunData, name: str) -> Figure:
    """One named figure of ``run``; ``KeyError`` when ``name`` does not apply to it."""
    if name not in figure_names(run):
        raise KeyError(name)
    return toy_figure([run]) if name == "toy" else RUN_FIGURES[name](run)


def save_run_figures(run_dir: str | Path) -> list[Path]:
    """Write every figure of the run as ``run_dir/figures/<name>.png``; return the paths."""
    run = load_run(run_dir)
    out = Path(run_dir) / "figures"
    out.mkdir(exist_ok=True)
    paths = []
    for name in figure_names(run):
        path = out / f"{name}.png"
        path.write_bytes(png_bytes(render_run_figure(run, name)))
        paths.append(path)
    return paths

