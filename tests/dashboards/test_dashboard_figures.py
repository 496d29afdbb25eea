"""The figures show what the store holds: one line per member, every exploit, the right scales."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from dashboard_runs import write_scripted_run, write_toy_run
from dashboards.figures import (
    comparison_figure, hparams_figure, lineage_figure, objective_figure, overlay_figure, png_bytes,
    save_run_figures, toy_figure,
)
from search.store import RunStore, ancestry, best_member, best_so_far, exploits, load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def by_gid(ax, gid: str):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def member_lines(ax) -> dict[int, object]:
    return {int(a.get_gid().split("-")[1]): a for a in ax.get_lines() if (a.get_gid() or "").startswith("member-")}


def test_objective_figure_draws_each_member_and_marks_every_exploit(pbt_run):
    run = load_run(pbt_run)
    table = exploits(run)
    assert len(table) >= 2
    ax = objective_figure(run).axes[0]
    lines = member_lines(ax)
    assert sorted(lines) == [0, 1, 2]
    for member, line in lines.items():
        rows = run.results[run.results["member"] == member].sort_values("step")
        np.testing.assert_array_equal(line.get_xdata(), rows["step"])
        np.testing.assert_allclose(line.get_ydata(), rows["Q"])
    [markers] = by_gid(ax, "exploits")
    assert isinstance(markers, PathCollection)
    np.testing.assert_allclose(markers.get_offsets(), table[["step", "member_objective"]].to_numpy(float))
    [links] = by_gid(ax, "exploit-links")
    assert isinstance(links, LineCollection)
    segments = links.get_segments()
    assert len(segments) == len(table)
    np.testing.assert_allclose(segments[0], [[table.donor_step[0], table.donor_objective[0]],
                                             [table.step[0], table.member_objective[0]]])


def test_objective_figure_of_grid_run_has_no_exploit_marks(grid_run):
    ax = objective_figure(load_run(grid_run)).axes[0]
    assert len(member_lines(ax)) == 3
    assert by_gid(ax, "exploits") == [] and by_gid(ax, "exploit-links") == []


def test_hparams_figure_one_panel_per_hparam_log_axis_for_loguniform(pbt_run):
    run = load_run(pbt_run)
    fig = hparams_figure(run)
    assert [ax.get_ylabel() for ax in fig.axes] == ["h0", "h1"]
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"]  # h0 is loguniform in [space]
    for ax, name in zip(fig.axes, ["h0", "h1"]):
        lines = member_lines(ax)
        assert sorted(lines) == [0, 1, 2]
        for member, line in lines.items():
            rows = run.results[run.results["member"] == member].sort_values("step")
            assert line.get_drawstyle() == "steps-pre"
            np.testing.assert_allclose(line.get_ydata()[1:], rows[f"hp.{name}"])
            assert line.get_xdata()[0] == 0


def test_hparams_figure_puts_choices_on_a_category_axis_and_shows_dollars_literally(tmp_path):
    run_dir = write_scripted_run(
        tmp_path / "run", population=2, steps=8, eval_every=4,
        hparams={"act$": "$\\frac{", "lr": 0.1},
        space={"act$": {"choice": ["$\\frac{", "relu"]}, "lr": {"uniform": [0.0, 1.0]}},
    )
    run = load_run(run_dir)
    fig = hparams_figure(run)
    assert png_bytes(fig).startswith(PNG_MAGIC)  # mathtext would raise on "$\frac{"
    choice_ax = fig.axes[0]
    assert all(list(line.get_ydata()) == [0, 0, 0] for line in member_lines(choice_ax).values())
    assert [t.get_text() for t in choice_ax.get_yticklabels()] == [r"\$\frac{", "relu"]  # config order
    assert choice_ax.get_yscale() == "linear"


def lineage_path(run, member: int) -> list[tuple[int, int, int]]:
    return [(s.member, s.start, s.end) for s in ancestry(run, member)]


def test_ancestry_follows_donors_back_in_the_order_exploits_happened(tmp_path):
    # 0 copies 1 at step 4; 2 copies 0 at step 8; right after, 0 copies 1 at its step 8 too: that
    # must not rewrite 2's history.
    run_dir = write_scripted_run(tmp_path / "run", population=3, steps=16, eval_every=4,
                                 exploits=[(4, 0, 1, 4), (8, 2, 0, 8), (8, 0, 1, 8)])
    run = load_run(run_dir)
    assert lineage_path(run, 2) == [(1, 0, 4), (0, 4, 8), (2, 8, 16)]
    assert lineage_path(run, 0) == [(1, 0, 8), (0, 8, 16)]
    assert lineage_path(run, 1) == [(1, 0, 16)]


def test_lineage_figure_draws_an_edge_per_exploit_and_highlights_the_best_line(tmp_path):
    run_dir = write_scripted_run(tmp_path / "run", population=3, steps=16, eval_every=4,
                                 exploits=[(4, 0, 1, 4), (8, 2, 0, 8), (8, 0, 1, 8)])
    run = load_run(run_dir)
    assert best_member(run) == 2  # objective(member, step) = member + step/100
    ax = lineage_figure(run).axes[0]
    assert sorted(member_lines(ax)) == [0, 1, 2]
    [edges] = by_gid(ax, "lineage-edges")
    np.testing.assert_allclose(edges.get_segments(),
                               [[[4, 1], [4, 0]], [[8, 0], [8, 2]], [[8, 1], [8, 0]]])
    [best] = by_gid(ax, "best-lineage")
    assert list(best.get_ydata()) == [1, 1, 0, 0, 2, 2]
    assert list(best.get_xdata()) == [0, 4, 4, 8, 8, 16]
    assert "best: member 2" in ax.get_title()


def test_best_member_agrees_with_the_summary_and_skips_nan(tmp_path, pbt_run):
    run = load_run(pbt_run)
    assert best_member(run) == run.summary["best"]["member"]
    nan_dir = write_scripted_run(tmp_path / "nan", population=3, steps=4, eval_every=4,
                                 objective=lambda m, s: float("nan") if m == 2 else m)
    assert best_member(load_run(nan_dir)) == 1


def test_best_so_far_counts_population_steps_and_ignores_nan(tmp_path):
    values = {(0, 4): 0.5, (1, 4): float("nan"), (0, 8): 0.2, (1, 8): 0.7}
    run_dir = write_scripted_run(tmp_path / "run", population=2, steps=8, eval_every=4,
                                 objective=lambda m, s: values[(m, s)])
    steps, best = best_so_far(load_run(run_dir))
    np.testing.assert_array_equal(steps, [4, 8, 12, 16])
    np.testing.assert_array_equal(best, [0.5, 0.5, 0.5, 0.7])


def test_comparison_figure_boxes_per_strategy_and_mean_budget_curves(tmp_path):
    rows, runs = [], []
    for strategy in ("grid", "pbt"):
        for seed in (0, 1):
            run_dir = tmp_path / f"{strategy}-seed{seed}"
            write_toy_run(run_dir, strategy=strategy, seed=seed, steps=16)
            run = load_run(run_dir)
            runs.append(run)
            rows.append({"strategy": strategy, "seed": seed, "best_objective": run.summary["best"]["objective"],
                         "test_Q": 0.0, "budget_steps": 48, "wall_seconds": 0.1, "target": 1.0,
                         "steps_to_target": 8.0,
                         "run_dir": str(run_dir)})
    table = pd.DataFrame(rows)
    for fig in (comparison_figure(table, runs), comparison_figure(table)):  # runs found via run_dir
        box_ax, curve_ax = fig.axes
        assert [t.get_text() for t in box_ax.get_xticklabels()] == ["grid", "pbt"]
        for strategy in ("grid", "pbt"):
            [dots] = by_gid(box_ax, f"runs-{strategy}")
            np.testing.assert_allclose(sorted(dots.get_offsets()[:, 1]),
                                       sorted(table.loc[table.strategy == strategy, "best_objective"]))
            [curve] = by_gid(curve_ax, f"best-{strategy}")
            best_ever = [r.results["objective"].max() for r in runs if r.info["strategy"] == strategy]
            assert curve.get_ydata()[-1] == pytest.approx(np.mean(best_ever))
            assert curve.get_xdata()[-1] == 48  # 3 members x 16 steps
        [target] = by_gid(curve_ax, "target")
        assert list(target.get_ydata()) == [1.0, 1.0]
        assert curve_ax.get_yscale() == "linear"  # Q from 0.39 to 1.2
    only_boxes = comparison_figure(table.drop(columns="run_dir"))
    assert len(only_boxes.axes) == 1


def test_toy_figure_paths_over_contours_beside_q(pbt_run, grid_run):
    runs = [load_run(pbt_run), load_run(grid_run)]
    fig = toy_figure(runs, titles=["PBT", "grid"])
    assert len(fig.axes) == 4
    for row, run in enumerate(runs):
        path_ax, q_ax = fig.axes[2 * row], fig.axes[2 * row + 1]
        assert path_ax.get_xlabel() == "θ0" and path_ax.get_ylabel() == "θ1"
        assert any(getattr(c, "levels", None) is not None for c in path_ax.collections)  # contours
        for member, line in member_lines(path_ax).items():
            rows = run.results[run.results["member"] == member].sort_values("step")
            np.testing.assert_allclose(line.get_xdata(), rows["theta0"])
            np.testing.assert_allclose(line.get_ydata(), rows["theta1"])
        assert sorted(member_lines(q_ax)) == [0, 1, 2]
    assert fig.axes[0].get_title().startswith("PBT") and fig.axes[2].get_title().startswith("grid")


def test_overlay_figure_one_best_curve_per_run(pbt_run, grid_run):
    runs = [load_run(pbt_run), load_run(grid_run)]
    ax = overlay_figure(runs, ["a", "b"]).axes[0]
    for label, run in zip("ab", runs):
        [line] = by_gid(ax, f"best-{label}")
        np.testing.assert_allclose(line.get_ydata(), best_so_far(run)[1])


def test_save_run_figures_writes_pngs_including_the_toy_only_when_theta_exists(pbt_run, tmp_path):
    paths = save_run_figures(pbt_run)
    assert [p.name for p in paths] == ["objective.png", "hparams.png", "lineage.png", "toy.png"]
    for path in paths:
        assert path.parent == pbt_run / "figures" and path.read_bytes().startswith(PNG_MAGIC)
    other = write_scripted_run(tmp_path / "mlp", population=2, steps=8, eval_every=4)
    assert [p.name for p in save_run_figures(other)] == ["objective.png", "hparams.png", "lineage.png"]


def test_figures_of_a_run_without_results_say_so(tmp_path):
    store = RunStore.create(tmp_path / "new", config={"space": {}}, strategy="random", seed=0,
                            population=2, steps_per_member=8, eval_every=4, objective="Q", mode="max")
    run = load_run(tmp_path / "new")
    for make in (objective_figure, hparams_figure, lineage_figure):
        fig = make(run)
        assert [t.get_text() for t in fig.axes[0].texts] == ["no results yet"]
        assert png_bytes(fig).startswith(PNG_MAGIC)
    store.close()


def test_comparison_curves_of_an_objective_spanning_decades_are_on_a_log_axis(tmp_path):
    run_dir = write_scripted_run(tmp_path / "run", population=2, steps=16, eval_every=4,
                                 objective=lambda member, step: 10.0 ** (step / 4 - 3 + member))
    table = pd.DataFrame([{"strategy": "pbt", "seed": 0, "best_objective": 10.0, "run_dir": str(run_dir)}])
    _, curve_ax = comparison_figure(table).axes
    assert curve_ax.get_yscale() == "log"
