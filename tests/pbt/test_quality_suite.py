"""bench/quality.py, the quality suite: its fast mode on real searches, and how it judges runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_task_parses_and_every_variant_changes_only_pbt_settings(quality):
    for task in quality.TASKS:
        base = quality.variant_config(task, "random")
        for variant in quality.VARIANTS:
            config = quality.variant_config(task, variant)
            assert (config.budget, config.space, config.trainable) == (base.budget, base.space, base.trainable)


def test_fast_mode_runs_equal_budgets_from_paired_seeds(quality, ray_session, tmp_path):
    runs = quality.run_suite(quality.FAST_TASKS, ["random", "pbt"], 2, 2, tmp_path, lambda line: None)
    assert len(runs) == 2 * 2 * 2
    for task, frame in runs.groupby("task"):
        config = quality.variant_config(task, "pbt")
        assert set(frame["budget_steps"]) == {config.budget.total_steps}  # equal budget, exploits cost none
    report = quality.judge(runs)
    toy = report["toy"]
    assert toy["variants"]["random"]["mean"] == pytest.approx(0.3897, abs=1e-4)  # the initial pair, unchanged
    assert toy["variants"]["pbt"]["mean"] > 1.0
    assert toy["vs_random"]["pbt"]["wins"] == 2 and toy["vs_random"]["pbt"]["meets_target"]
    nqm = report["nqm"]  # mode min: lower is better, and the difference is oriented
    assert nqm["vs_random"]["pbt"]["mean_difference"] > 0 and nqm["variants"]["pbt"]["mean"] < nqm["variants"]["random"]["mean"]


def test_the_target_needs_the_mean_four_in_five_seeds_and_the_test_metric(quality):
    def runs(pbt, random, pbt_test=None, random_test=None):
        rows = []
        for variant, scores, tests in (("pbt", pbt, pbt_test), ("random", random, random_test)):
            for seed, score in enumerate(scores):
                rows.append({"task": "t", "variant": variant, "seed": seed, "mode": "max", "objective": score,
                             "test": float("nan") if tests is None else tests[seed]})
        return pd.DataFrame(rows)

    judged = lambda *a: quality.judge(runs(*a))["t"]["vs_random"]["pbt"]  # noqa: E731
    assert judged([0.9] * 5, [0.9] * 5)["meets_target"]  # ties are "at least"
    assert judged([0.81, 0.81, 0.81, 0.81, 0.5], [0.8] * 5)["meets_target"] is False  # 4 of 5, but the mean below
    assert judged([0.91, 0.91, 0.91, 0.7, 0.7], [0.8] * 5)["meets_target"] is False  # 3 of 5
    assert judged([0.91, 0.91, 0.91, 0.91, 0.7], [0.8] * 5)["meets_target"]
    assert judged([0.9] * 5, [0.8] * 5, [0.7] * 5, [0.75] * 5)["meets_target"] is False  # test metric below
    table = quality.tables(quality.judge(runs([0.9] * 5, [0.8] * 5)), ["random", "pbt"], 5)
    assert "| t (max) | 0.8 ± 0 | 0.9 ± 0 |" in table and "5/0/0, p=0.031 ✓" in table
