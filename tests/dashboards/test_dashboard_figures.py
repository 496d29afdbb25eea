"""The figures show what the store holds: one line per member, every exploit, the right scales."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from dashboard_runs import write_scripted_run, write_toy_run
from dashboards.figures import (
    FOUNDER_ROWS, MEMBER_LINES_UP_TO, comparison_figure, hparams_figure, lineage_figure, objective_figure,
    objective_quantiles, overlay_figure, png_bytes, save_run_figures, toy_figure,
)
from dashboards.lineages import surviving_lineages
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


# -- large populations: drawn as a whole, not member by member ------------------------------------

def spread(member: int, step: int) -> float:
    """A population whose objectives spread and rise: member m's rank changes with the step."""
    return float((member * 37 + step) % 101) / 100 + step / 10


@pytest.mark.parametrize("population", [MEMBER_LINES_UP_TO, MEMBER_LINES_UP_TO + 1])
def test_figures_draw_members_up_to_the_threshold_and_the_population_above_it(tmp_path, population):
    run = load_run(write_scripted_run(tmp_path / "run", population=population, steps=16, eval_every=4,
                                      objective=spread, exploits=[(8, 0, 1, 8)]))
    objective_ax, hparams_ax, lineage_ax = (make(run).axes[0] for make in (objective_figure, hparams_figure,
                                                                            lineage_figure))
    if population <= MEMBER_LINES_UP_TO:
        for ax in (objective_ax, hparams_ax, lineage_ax):
            assert sorted(member_lines(ax)) == list(range(population))
        assert by_gid(objective_ax, "median") == [] and by_gid(objective_ax, "band-0.25-0.75") == []
        assert by_gid(hparams_ax, "evaluations") == [] and len(by_gid(lineage_ax, "lineage-edges")) == 1
    else:
        for ax in (objective_ax, hparams_ax, lineage_ax):
            assert member_lines(ax) == {}
        assert len(by_gid(objective_ax, "median")) == 1 and len(by_gid(objective_ax, "band-0.05-0.95")) == 1
        assert len(by_gid(hparams_ax, "evaluations")) == 1 and by_gid(lineage_ax, "lineage-edges") == []
        assert len(by_gid(lineage_ax, "founders-other")) == 1


def band_edges(band, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper edge of a ``fill_between`` band drawn without gaps, at each x of ``grid``."""
    [path] = band.get_paths()
    x, y = path.vertices.T
    assert set(x) == set(grid)
    return np.array([y[x == at].min() for at in grid]), np.array([y[x == at].max() for at in grid])


@pytest.mark.parametrize("mode", ["max", "min"])
def test_objective_bands_are_the_populations_quantiles_at_each_step_and_the_best_member_is_on_top(tmp_path, mode):
    population, steps, every = 256, 40, 4
    run = load_run(write_scripted_run(tmp_path / "run", population=population, steps=steps, eval_every=every,
                                      objective=spread, mode=mode,
                                      exploits=[(8, 18, 7, 8), (20, 89, 9, 20), (24, 18, 9, 24)]))
    ax = objective_figure(run).axes[0]
    by_step = run.results.pivot(index="step", columns="member", values="objective")
    grid = by_step.index.to_numpy(dtype=float)
    for (low, high) in [(0.05, 0.95), (0.25, 0.75)]:
        [band] = by_gid(ax, f"band-{low:g}-{high:g}")
        lower, upper = band_edges(band, grid)
        np.testing.assert_allclose(lower, np.quantile(by_step, low, axis=1, method="nearest"))
        np.testing.assert_allclose(upper, np.quantile(by_step, high, axis=1, method="nearest"))
    [median] = by_gid(ax, "median")
    np.testing.assert_allclose(median.get_ydata(), np.quantile(by_step, 0.5, axis=1, method="nearest"))
    final = by_step.loc[steps]
    best = int(final.idxmax() if mode == "max" else final.idxmin())
    [line] = by_gid(ax, "best-member")
    assert line.get_label() == f"best member {best}"
    np.testing.assert_allclose(line.get_ydata(), by_step[best])
    assert best == (18 if mode == "max" else 89)
    [marks] = by_gid(ax, "best-exploits")  # only the best member's own exploits are marked
    np.testing.assert_array_equal(marks.get_offsets()[:, 0], [8, 24] if mode == "max" else [20])


def test_objective_bands_count_a_nan_as_the_worst_and_leave_an_edge_that_is_not_finite_undrawn(tmp_path):
    population = 40  # members 0-2 have NaN at step 8: the 5% quantile there (the third lowest) is -inf
    run = load_run(write_scripted_run(
        tmp_path / "run", population=population, steps=12, eval_every=4,
        objective=lambda m, s: float("nan") if m < 3 and s == 8 else spread(m, s)))
    steps, quantiles = objective_quantiles(run, [0.05, 0.5])
    np.testing.assert_array_equal(steps, [4, 8, 12])
    at_8 = np.array([spread(m, 8) for m in range(3, population)])
    assert quantiles[0, 1] == -np.inf and np.isfinite(quantiles[0, [0, 2]]).all()
    assert quantiles[1, 1] == np.quantile(np.r_[[-np.inf] * 3, at_8], 0.5, method="nearest")
    [band] = by_gid(objective_figure(run).axes[0], "band-0.05-0.95")
    assert len(band.get_paths()) == 2  # the band has a gap at step 8


def test_a_large_populations_hyperparameters_are_dots_coloured_by_objective_best_on_top(tmp_path):
    population, steps, every = 64, 12, 4
    lr = lambda m, s: 10.0 ** (-4 + 4 * ((m * 7 + s) % population) / population)  # noqa: E731
    run = load_run(write_scripted_run(
        tmp_path / "run", population=population, steps=steps, eval_every=every, objective=spread, mode="min",
        hparams=lambda m, s: {"lr": lr(m, s), "act": ["relu", "tanh"][m % 2]},
        space={"lr": {"loguniform": [1e-4, 1.0]}, "act": {"choice": ["relu", "tanh"]}}))
    fig = hparams_figure(run)
    act_ax, lr_ax = fig.axes[:2]
    assert [act_ax.get_ylabel(), lr_ax.get_ylabel()] == ["act", "lr"] and lr_ax.get_yscale() == "log"
    assert member_lines(lr_ax) == {}
    [dots] = by_gid(lr_ax, "evaluations")
    colours = np.asarray(dots.get_array())
    assert len(colours) == len(run.results) == population * steps // every
    assert sorted(colours) == sorted(run.results["objective"])
    assert colours[-1] == run.results["objective"].min()  # mode "min": the best is drawn last, on top
    assert dots.get_cmap().name == "viridis_r"  # bright is better in both modes
    x, y = dots.get_offsets().T
    drawn = {(round(a, 9), round(b, 12)) for a, b in zip(np.ceil(x / every) * every, y)}
    assert drawn == {(float(s), round(lr(m, s), 12)) for m, s in zip(run.results["member"], run.results["step"])}
    [act_dots] = by_gid(act_ax, "evaluations")
    assert set(act_dots.get_offsets()[:, 1]) == {0.0, 1.0}  # choices on the category axis
    best = int(run.members.loc[run.members["objective"].idxmin(), "member"])
    [line] = by_gid(lr_ax, "best-member")
    np.testing.assert_allclose(line.get_ydata()[1:], [lr(best, s) for s in range(every, steps + 1, every)])
    assert any("bright is better" in ax.get_ylabel() for ax in fig.axes[2:])  # the colour bar


def surviving_story(tmp_path):
    """256 members: 128-255 copy member m - 128 at step 4; 1-9 copy 0 at step 8; 200 copies 5 at 12.
    Member 200 is best: its line is 0 (steps 0-8), 5 (8-12), 200 (12-16)."""
    exploits = [(4, m, m - 128, 4) for m in range(128, 256)] + [(8, m, 0, 8) for m in range(1, 10)]
    exploits.append((12, 200, 5, 12))
    return load_run(write_scripted_run(tmp_path / "run", population=256, steps=16, eval_every=4,
                                       exploits=exploits, objective=lambda m, s: s / 100 - abs(m - 200)))


def test_surviving_lineages_count_every_member_once_on_the_best_line_or_under_its_initial_member(tmp_path):
    run = surviving_story(tmp_path)
    lineages = surviving_lineages(run)
    assert lineages.best == 200
    assert [(s.member, s.start, s.end) for s in lineages.line] == [(0, 0, 8), (5, 8, 12), (200, 12, 16)]
    assert lineages.clock == [0, 8, 12, 16]
    # left the line in 0's stretch: 128 (copied 0 at 4), 0 itself and 1-9 but 5 (copied 0 at 8)
    assert sorted(lineages.branches[0]) == [(0, 8), *((m, 8) for m in (1, 2, 3, 4, 6, 7, 8, 9)), (128, 4)]
    assert lineages.branches[1] == [(5, 12)] and lineages.branches[2] == []
    founders = dict(lineages.founders)
    counted = [m for members in founders.values() for m in members] + [m for m, _ in sum(lineages.branches, [])]
    assert sorted(counted + [200]) == list(range(256))
    for member in range(256):  # the store's own ancestry says which initial member each one is from
        root = ancestry(run, member)[0].member
        assert root == 0 if member in {0, 5, 128, 200, *range(1, 10)} else member in founders[root]
    assert founders[72] == [72] and founders[1] == [129] and founders[10] == [10, 138]
    assert [f for f, _ in lineages.founders[:3]] == [10, 11, 12]  # most members first, then lower id
    assert lineages.lineages == 1 + len(founders) == 128


def test_lineage_figure_of_a_large_population_is_the_best_line_its_branches_and_the_other_lines(tmp_path):
    run = surviving_story(tmp_path)
    ax = lineage_figure(run).axes[0]
    assert member_lines(ax) == {} and by_gid(ax, "lineage-edges") == []
    [line] = by_gid(ax, "best-lineage")
    assert list(line.get_xdata()) == [0, 8, 8, 12, 12, 16] and list(line.get_ydata()) == [0, 0, 1, 1, 2, 2]
    [left] = by_gid(ax, "branched-0")
    assert sorted(left.get_offsets()[:, 0]) == [4] + [8] * 9
    assert len(by_gid(ax, "branched-1")[0].get_offsets()) == 1 and by_gid(ax, "branched-2") == []
    founders = [a.get_gid() for a in ax.get_lines() if (a.get_gid() or "").startswith("founder-")]
    assert founders == [f"founder-{m}" for m in range(10, 10 + FOUNDER_ROWS)]
    assert len(by_gid(ax, "founders-other")) == 1
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:3] == ["member 0, steps 0-8", "member 5, steps 8-12", "member 200, steps 12-16"]
    assert labels[-1] == f"{127 - FOUNDER_ROWS} other lines" and len(labels) == 3 + FOUNDER_ROWS + 1
    texts = [t.get_text() for t in ax.texts]
    better_than_128 = sum(abs(m - 200) < abs(128 - 200) for m in range(256))  # 128: the best that left at 0
    assert f"10 left here; best rank {1 + better_than_128}" in texts
    assert f"{256 - 1 - 11 - 2 * FOUNDER_ROWS} members" in texts  # the other lines' members
