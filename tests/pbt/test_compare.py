"""``pbt compare`` end to end on the session's Ray, and the post-run subcommands a user runs next.

One comparison of grid, random and PBT on the paper's toy (2 seeds) is shared by the tests below:
the table, the summary, the paired statistics and the figure it writes, then ``pbt report`` and
``pbt replay`` on one of its runs and ``pbt run`` writing its figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from models.errors import ConfigError
from pbt.cli import main
from pbt.compare import compare, comparison_row, format_paired, paired, steps_to_target, summarize
from pbt.strategies import parse_strategies
from search.store import load_run

TOY = Path(__file__).resolve().parents[2] / "examples" / "toy.toml"


@pytest.fixture(scope="module")
def comparison_run(ray_cluster, tmp_path_factory) -> tuple[Path, str]:
    """The shared comparison's directory and what it printed on stdout."""
    out = tmp_path_factory.mktemp("compare") / "toy"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["compare", str(TOY), "--seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def comparison(comparison_run) -> Path:
    return comparison_run[0]


def test_parse_strategies():
    assert parse_strategies("grid,random,pbt") == ("grid", "random", "pbt")
    assert parse_strategies(" pbt , grid") == ("pbt", "grid")
    for bad, message in [("grid,bayes", "unknown strategy 'bayes'"), ("grid,grid", "each strategy once"),
                         ("", "unknown strategy ''")]:
        with pytest.raises(ConfigError, match=message):
            parse_strategies(bad)


def test_comparison_table_has_a_row_per_strategy_and_seed_at_equal_budget(comparison, capsys):
    table = pd.read_csv(comparison / "comparison.csv")
    assert list(zip(table["strategy"], table["seed"])) == [
        ("grid", 0), ("grid", 1), ("random", 0), ("random", 1), ("pbt", 0), ("pbt", 1)]
    assert set(table["budget_steps"]) == {2 * 200}  # population × steps, for every strategy
    for row in table.itertuples():
        summary = load_run(row.run_dir).summary
        assert summary["strategy"] == row.strategy and summary["seed"] == row.seed
        assert row.best_objective == pytest.approx(summary["best"]["objective"])
    grid = table[table["strategy"] == "grid"]
    assert (grid["best_objective"] <= 0.39).all() and (grid["exploits"] == 0).all()
    assert table.loc[table["strategy"] == "pbt", "best_objective"].max() > 0.39
    assert (comparison / "comparison.png").stat().st_size > 10_000
    summary = pd.read_csv(comparison / "comparison_summary.csv", header=[0, 1], index_col=0)
    assert list(summary.index) == ["grid", "random", "pbt"]
    assert summary.loc["grid", ("best_objective", "mean")] == pytest.approx(grid["best_objective"].mean())


def test_paired_statistics_pair_every_strategy_by_seed_and_print_a_verdict_each(comparison_run):
    out, stdout = comparison_run
    table = pd.read_csv(out / "comparison.csv")
    best = table.pivot(index="seed", columns="strategy", values="best_objective")
    pairs = pd.read_csv(out / "comparison_paired.csv")
    assert list(zip(pairs["challenger"], pairs["baseline"])) == [("pbt", "random"), ("pbt", "grid"), ("random", "grid")]
    for row in pairs.itertuples():
        expected = best[row.challenger] - best[row.baseline]  # the toy's Q: higher is better
        assert [row.difference_seed0, row.difference_seed1] == pytest.approx(list(expected), abs=1e-9)
        assert row.wins == (expected > 0).sum() and row.ties == (expected == 0).sum()
        assert row.ci_low <= row.mean_difference <= row.ci_high
        assert row.verdict.startswith(f"No verdict on {row.challenger} vs {row.baseline} over 2 seed(s): "
                                      "a one-sided test needs at least 5 seeds")
    paired_section = stdout[stdout.index("paired by seed"):]
    assert format_paired(pairs) in paired_section
    assert paired_section.index("seed 0") < paired_section.index("No verdict on pbt vs random")
    assert f"paired: {out / 'comparison_paired.csv'}" in stdout


def test_by_default_five_seeds_and_identical_runs_are_no_difference(ray_cluster, tmp_path, capsys):
    # population 2 = the two [[initial]] members: grid and random train the same members the same way
    out = tmp_path / "toy"
    assert main(["compare", str(TOY), "--strategies", "random,grid", "--out", str(out), "--quiet"]) == 0
    pairs = pd.read_csv(out / "comparison_paired.csv")
    assert len(pairs) == 1 and (pairs.loc[0, "challenger"], pairs.loc[0, "baseline"]) == ("random", "grid")
    assert pairs.loc[0, "ties"] == 5 and pairs.loc[0, "p_value"] == 1.0
    assert "No difference between random and grid: equal on all 5 seeds (p = 1)." in capsys.readouterr().out


def test_paired_orients_by_mode_pairs_by_seed_and_skips_a_lone_strategy():
    # seeds out of order, strategies listed challenger first: neither changes the pairing
    table = pd.DataFrame({"strategy": ["pbt", "pbt", "grid", "grid"], "seed": [1, 0, 0, 1],
                          "best_objective": [0.2, 0.5, 0.4, 0.7]})
    pairs = paired(table, "min")
    assert list(zip(pairs["challenger"], pairs["baseline"])) == [("pbt", "grid")]
    assert (pairs.loc[0, "difference_seed0"], pairs.loc[0, "difference_seed1"]) == pytest.approx((-0.1, 0.5))
    assert (pairs.loc[0, "wins"], pairs.loc[0, "losses"]) == (1, 1)
    assert paired(table, "max").loc[0, "difference_seed1"] == pytest.approx(-0.5)
    assert paired(table[table["strategy"] == "pbt"], "max").empty
    text = format_paired(pairs)
    assert text.splitlines()[0].split()[3:5] == ["seed", "0"] and "-0.1" in text and "+0.5" in text
    assert text.splitlines()[-1] == pairs.loc[0, "verdict"]


def test_steps_to_target_is_the_population_budget_when_the_target_is_first_reached(comparison):
    run = load_run(comparison / "pbt-seed0")
    results = run.results.sort_values("wall_time", kind="stable").reset_index(drop=True)
    first = results["objective"].iloc[0]
    assert steps_to_target(run, first) == run.info["eval_every"]  # reached by the first evaluation
    best = results["objective"].max()
    reached_at = int(results.index[results["objective"] >= best][0]) + 1
    assert steps_to_target(run, best) == reached_at * run.info["eval_every"]
    assert math.isnan(steps_to_target(run, best + 1.0))


def test_a_run_without_a_best_member_is_a_row_with_no_objective(comparison):
    run = load_run(comparison / "grid-seed0")
    # what summarize writes when every member failed early
    row = comparison_row(dataclasses.replace(run, summary={**run.summary, "best": None}))
    assert row["best_member"] is None and math.isnan(row["best_objective"])
    assert not any(key.startswith("test_") for key in row)


def test_a_target_that_is_not_finite_is_refused_before_any_run(tmp_path):
    def run_one(strategy: str, seed: int, run_dir: Path) -> dict:
        raise AssertionError("no run may start")

    for target in (math.nan, math.inf):
        with pytest.raises(ConfigError, match="--target: must be a finite objective level"):
            compare(strategies=("grid",), seeds=1, out=tmp_path, run_one=run_one, target=target)


def test_summary_counts_runs_that_reached_the_target():
    table = pd.DataFrame({"strategy": ["a", "a", "b"], "seed": [0, 1, 0], "best_objective": [1.0, 3.0, 2.0],
                          "steps_to_target": [10.0, math.nan, 30.0], "wall_seconds": [1.0, 1.0, 2.0]})
    summary = summarize(table)
    assert summary.loc["a", ("best_objective", "mean")] == 2.0
    assert summary.loc["a", ("reached_target", "count")] == 1
    assert summary.loc["a", ("runs", "count")] == 2
    assert summary.loc["b", ("steps_to_target", "mean")] == 30.0


def test_report_and_replay_on_a_compared_run(comparison, tmp_path, capsys):
    run_dir = tmp_path / "pbt-seed1"
    shutil.copytree(comparison / "pbt-seed1", run_dir)
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report == run_dir / "report.html" and "<img" in report.read_text()
    assert main(["replay", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "original" in out and "replay" in out and "Q" in out


def test_run_writes_its_figures(ray_cluster, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(TOY), "--strategy", "grid", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in (out / "figures").iterdir()} >= {"objective.png", "hparams.png", "lineage.png", "toy.png"}
    assert "rank" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["report", "{missing}"], "pbt: error: "),
    (["replay", "{missing}"], "pbt: error: "),
    (["resume", "{missing}"], "pbt: error: "),
    (["compare", str(TOY), "--strategies", "grid,bayes"], "pbt: error: --strategies: unknown strategy 'bayes'"),
    (["compare", str(TOY), "--seeds", "0"], "pbt: error: argument --seeds"),
])
def test_bad_input_to_the_other_subcommands_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    missing = tmp_path / "no-such-run"
    args = [a.format(missing=missing) for a in args]
    assert main([*args, "--out", str(tmp_path / "out")] if args[0] == "compare" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
