"""The README's reinforcement-learning figures, drawn from a ``pbt compare`` directory of an a2c config.

    python docs/rl_figures.py COMPARE_DIR [--out docs/images] [--name cartpole]

Writes ``<name>_comparison.png``: per strategy, the mean over seeds (± std) of the population's best
validation return so far and of its members' mean validation return (each member's latest), against
the training environment steps of the whole population; and ``<name>_schedule.png``: the learning
rate and the entropy cost of every PBT run's best member through its lineage (``summary.json``'s
``best.schedule``), against that member's environment steps. Same style as ``dashboards.figures``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from search.store import RunData, load_run


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def env_steps_per_update(run: RunData) -> int:
    """Training environment steps of one a2c update of ``run``: n_envs × rollout."""
    trainable = run.info["config"]["trainable"]
    return int(trainable.get("n_envs", 8)) * int(trainable.get("rollout", 8))


def population_curves(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(env steps, best so far, population mean)`` after each evaluation, in the order made.

    Env steps count the population's training steps, each evaluation standing for its member's
    ``eval_every`` updates (exploits cost none); the mean is over every member's latest
    evaluation, NaN until each member has one."""
    results = run.results.sort_values("wall_time", kind="stable")
    steps = np.arange(1, len(results) + 1) * float(run.info["eval_every"]) * env_steps_per_update(run)
    values = results["objective"].to_numpy(dtype=float)
    latest: dict[int, float] = {}
    means = []
    for member, value in zip(results["member"], values):
        latest[int(member)] = value
        means.append(np.mean(list(latest.values())) if len(latest) == int(run.info["population"]) else np.nan)
    return steps, np.maximum.accumulate(values), np.array(means)


def _on_grid(series: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Each ``(x, y)`` step function sampled at ``grid`` (the last value at or before), one row each."""
    rows = []
    for x, y in series:
        index = np.searchsorted(x, grid, side="right") - 1
        rows.append(np.where(index >= 0, y[np.clip(index, 0, None)], np.nan))
    return np.vstack(rows)


def comparison_figure(runs: Sequence[RunData], title: str) -> Figure:
    """Best-so-far and population-mean validation return against the population's env steps, per strategy."""
    fig = _figure(12, 4.5)
    axes = fig.subplots(1, 2)
    strategies = list(dict.fromkeys(str(run.info["strategy"]) for run in runs))
    for i, strategy in enumerate(strategies):
        curves = [population_curves(run) for run in runs if run.info["strategy"] == strategy]
        step = float(runs[0].info["eval_every"]) * env_steps_per_update(runs[0])
        grid = np.arange(step, max(c[0][-1] for c in curves) + step / 2, step)
        color = matplotlib.colormaps["tab10"](i % 10)
        for ax, which in ((axes[0], 1), (axes[1], 2)):
            sampled = _on_grid([(c[0], c[which]) for c in curves], grid)
            with warnings.catch_warnings():  # a step before every member has a score is NaN for all seeds
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(sampled, axis=0), np.nanstd(sampled, axis=0)
            ax.plot(grid, mean, color=color, linewidth=1.8, label=f"{strategy} ({len(curves)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
    for ax, what in ((axes[0], "best validation return so far"), (axes[1], "mean validation return of the population")):
        ax.axhline(475, color="0.4", linestyle="--", linewidth=0.8, label="solved (475)")
        ax.set_xlabel("training environment steps of the whole population")
        ax.set_ylabel(f"{what}\n(mean ± std over seeds)")
        ax.set_title(f"{title}: {what}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return fig


def schedule_figure(runs: Sequence[RunData], title: str) -> Figure:
    """The best member's learning rate and entropy cost through its lineage, one line per PBT run."""
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, 2)
    pbt = sorted((run for run in runs if run.info["strategy"] == "pbt"), key=lambda run: run.info["seed"])
    for i, run in enumerate(pbt):
        best = run.summary["best"]
        per_update = env_steps_per_update(run)
        steps = [step * per_update for step, _ in best["schedule"]] + [run.info["steps_per_member"] * per_update]
        label = (f"seed {run.info['seed']}: validation {best['objective']:.0f}, "
                 f"test {best['test'].get('test_return', float('nan')):.0f}")
        for ax, name in zip(axes, ("lr", "entropy_coef")):
            values = [hparams[name] for _, hparams in best["schedule"]]
            ax.step(steps, values + values[-1:], where="post", color=matplotlib.colormaps["tab10"](i % 10),
                    linewidth=1.6, label=label)
    for ax, name in zip(axes, ("learning rate", "entropy cost")):
        ax.set_yscale("log")
        ax.set_xlabel("the best member's training environment steps (through its donors)")
        ax.set_ylabel(name)
        ax.set_title(f"{title}: the best member's {name}, per PBT run")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize="small")
    return fig


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    parser.add_argument("--name", default="cartpole")
    args = parser.parse_args(argv)
    table = pd.read_csv(args.compare_dir / "comparison.csv")
    runs = [load_run(path) for path in table["run_dir"]]
    title = str(runs[0].info["config"]["trainable"].get("env", args.name))
    comparison_figure(runs, title).savefig(args.out / f"{args.name}_comparison.png", dpi=100)
    schedule_figure(runs, title).savefig(args.out / f"{args.name}_schedule.png", dpi=100)


if __name__ == "__main__":
    main()
