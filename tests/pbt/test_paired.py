"""Paired statistics of ``pbt compare``: differences, exact one-sided Wilcoxon p-values, the
bootstrap interval and the verdict sentence. Pure, no Ray.

Every p-value below is counted by hand: under H0 each of the 2**n sign patterns of the nonzero
differences is equally likely, and p is the share of patterns whose positive rank sum is at least
the observed one.
"""

from __future__ import annotations

import math

import pytest

from models.errors import ConfigError
from pbt.paired import EXACT_MAX_SEEDS, PairedComparison, min_seeds, paired_comparison, verdict

NAN = math.nan


def compare(challenger, baseline, mode="max", **kwargs) -> PairedComparison:
    return paired_comparison(challenger, baseline, mode=mode, challenger="pbt", baseline="random", **kwargs)


def test_five_wins_give_the_smallest_one_sided_p_1_over_32():
    c = compare([0.9, 0.8, 0.7, 0.95, 0.99], [0.8, 0.7, 0.6, 0.9, 0.9])
    assert c.differences == pytest.approx((0.1, 0.1, 0.1, 0.05, 0.09))
    assert c.p_value == 1 / 32
    assert (c.wins, c.ties, c.losses, c.seeds) == (5, 0, 0, 5)
    assert c.win_rate == 1.0
    assert c.mean_difference == pytest.approx(0.088)


@pytest.mark.parametrize("differences, p", [
    ((-1, 2, 3, 4, 5), 2 / 32),   # rank sum 14 of 15: all positive, or all but rank 1
    ((1, -2, 3, 4, 5), 3 / 32),   # 13: negatives summing to 0, 1 or 2
    ((-1, -2, 3, 4, 5), 5 / 32),  # 12: negatives {}, {1}, {2}, {3}, {1, 2}
    ((-5, 1, 2, 3, 4), 10 / 32),  # 10: negatives {}, 5 singletons, {1, 2}, {1, 3}, {1, 4}, {2, 3}
])
def test_p_values_of_mixed_signs_are_exact(differences, p):
    c = compare([d / 100 for d in differences], [0.0] * 5)
    assert c.p_value == pytest.approx(p, abs=1e-12)


def test_tied_pairs_are_ranked_as_the_smallest_differences_and_count_for_neither_side():
    # Pratt: ranks 0→1, 0.01→2, 0.02→3, 0.03→4, 0.04→5; W+ = 2 + 3 = 5 over the 16 patterns of ranks
    # {2, 3, 4, 5}; sums >= 5: 12 of 16. Dropping the zero ("wilcox") would give 13/16.
    c = compare([0.51, 0.52, 0.47, 0.46, 0.5], [0.5] * 5)
    assert (c.wins, c.ties, c.losses) == (2, 1, 2)
    assert c.p_value == pytest.approx(12 / 16, abs=1e-12)
    assert c.win_rate == 2 / 5


def test_a_tie_costs_a_seed_five_seeds_with_one_tie_cannot_reach_1_over_32():
    c = compare([0.6, 0.5, 0.7, 0.8, 0.9], [0.5] * 5)
    assert (c.wins, c.ties) == (4, 1)
    assert c.p_value == pytest.approx(1 / 16, abs=1e-12)


def test_every_difference_zero_is_p_1_and_no_difference():
    c = compare([0.98, 0.97, 0.99, 0.98, 0.96], [0.98, 0.97, 0.99, 0.98, 0.96])
    assert c.differences == (0.0,) * 5 and c.p_value == 1.0
    assert (c.ci_low, c.ci_high, c.mean_difference) == (0.0, 0.0, 0.0)
    assert verdict(c) == "No difference between pbt and random: equal on all 5 seeds (p = 1)."


def test_differences_equal_in_exact_arithmetic_tie_despite_roundoff():
    challenger, baseline = [355 / 360, 353 / 360], [354 / 360, 354 / 360]
    raw = [c - b for c, b in zip(challenger, baseline)]
    assert abs(raw[0]) != abs(raw[1])  # the subtraction's roundoff tells them apart
    c = compare(challenger, baseline)
    assert c.differences[0] == -c.differences[1] == pytest.approx(1 / 360)


def test_mode_min_orients_differences_so_positive_means_the_challenger_is_better():
    losses_pbt, losses_random = [0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.5, 0.6, 0.9]
    lower = compare(losses_pbt, losses_random, mode="min")
    assert lower.differences == pytest.approx((0.1, 0.1, 0.2, 0.2, 0.4))
    assert lower.p_value == 1 / 32 and lower.wins == 5
    higher = compare(losses_pbt, losses_random, mode="max")
    assert higher.differences == pytest.approx((-0.1, -0.1, -0.2, -0.2, -0.4))
    assert higher.p_value == 1.0 and higher.losses == 5
    assert verdict(lower).startswith("pbt beat random")
    assert verdict(higher).startswith("pbt lost to random")


@pytest.mark.parametrize("mode, challenger, baseline, expected", [
    # worst finite score of the comparison is 0.6 (max) / 0.9 (min)
    ("max", [NAN, 0.9, 0.8, 0.7, 0.95], [0.8, 0.7, 0.6, 0.9, 0.9], (-0.2, 0.2, 0.2, -0.2, 0.05)),
    ("max", [0.7, NAN, NAN, 0.7, 0.7], [0.8, 0.6, NAN, 0.6, math.inf], (-0.1, 0.0, 0.0, 0.1, 0.1)),
    ("min", [NAN, 0.5, 0.8, 0.7, 0.9], [0.8, 0.7, 0.6, 0.9, NAN], (-0.1, 0.2, -0.2, 0.2, 0.0)),
])
def test_a_failed_run_counts_as_the_worst_finite_score_of_the_comparison(mode, challenger, baseline, expected):
    c = compare(challenger, baseline, mode=mode)
    assert c.differences == pytest.approx(expected)
    assert all(math.isfinite(v) for v in (c.mean_difference, c.ci_low, c.ci_high, c.p_value))


def test_when_every_run_failed_every_difference_is_zero():
    c = compare([NAN] * 5, [NAN] * 5)
    assert c.differences == (0.0,) * 5 and c.p_value == 1.0 and c.ties == 5


def test_exact_without_ties_and_with_ties_up_to_the_limit_then_the_normal_approximation():
    n = EXACT_MAX_SEEDS + 1
    distinct = compare([0.5 + (i + 1) / 100 for i in range(n)], [0.5] * n)
    assert distinct.p_value == 0.5**n  # exact for any number of seeds
    tied = compare([0.6] * EXACT_MAX_SEEDS, [0.5] * EXACT_MAX_SEEDS)
    assert tied.p_value == 0.5**EXACT_MAX_SEEDS  # every sign pattern enumerated
    approximate = compare([0.6] * n, [0.5] * n)
    # n tied ranks (n+1)/2: W+ = n(n+1)/2, mean n(n+1)/4, variance (n(n+1)(2n+1) - (n^3 - n)/2) / 24,
    # no continuity correction
    variance = (n * (n + 1) * (2 * n + 1) - (n**3 - n) / 2) / 24
    z = (n * (n + 1) / 4) / math.sqrt(variance)
    assert approximate.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert approximate.p_value != pytest.approx(0.5**n)  # not the exact 1/2**n


def test_bootstrap_is_reproducible_for_a_seed_and_contains_the_mean():
    challenger = [0.91, 0.85, 0.97, 0.80, 0.88, 0.93]
    baseline = [0.90, 0.88, 0.90, 0.82, 0.80, 0.90]
    first, again = compare(challenger, baseline, seed=3), compare(challenger, baseline, seed=3)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    other = compare(challenger, baseline, seed=4)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    for c in (first, other):
        assert min(c.differences) <= c.ci_low < c.mean_difference < c.ci_high <= max(c.differences)
    narrow = compare(challenger, baseline, seed=3, confidence=0.5)
    assert first.ci_low < narrow.ci_low < narrow.ci_high < first.ci_high


def test_verdict_writes_a_zero_difference_without_a_sign():
    c = compare([0.6, 0.5, 0.5, 0.5, 0.5], [0.5] * 5)
    assert c.ci_low == 0.0 and "bootstrap interval [0, +0.06]" in verdict(c)


def test_one_seed_has_a_point_interval():
    c = compare([0.9], [0.8])
    assert c.ci_low == c.ci_high == c.mean_difference == pytest.approx(0.1)


@pytest.mark.parametrize("alpha, seeds", [(0.05, 5), (0.0625, 5), (0.01, 7), (0.25, 3), (0.3, 2)])
def test_min_seeds_is_the_fewest_whose_smallest_p_is_below_alpha(alpha, seeds):
    assert min_seeds(alpha) == seeds
    assert 0.5**seeds < alpha <= 0.5 ** (seeds - 1)


def test_verdict_win_names_both_strategies_the_mean_its_interval_the_win_rate_and_p():
    c = compare([0.9, 0.8, 0.7, 0.95, 0.99], [0.8, 0.7, 0.6, 0.9, 0.9])
    text = verdict(c)
    assert text.startswith("pbt beat random at this budget over 5 seeds")
    assert "mean difference +0.088" in text
    assert f"bootstrap interval [{c.ci_low:+.3g}, {c.ci_high:+.3g}]" in text
    assert "won 5 of 5, win rate 1.00; one-sided Wilcoxon p = 0.0312)." in text
    assert text.count(".") >= 1 and "\n" not in text
    # at alpha 0.01, 5 seeds can never be enough: 1/32 > 0.01
    assert verdict(c, alpha=0.01).startswith("No verdict on pbt vs random over 5 seed(s): "
                                             "a one-sided test needs at least 7 seeds to reach p < 0.01")


def test_verdict_loss_reports_the_mirror_test():
    c = compare([0.8, 0.7, 0.6, 0.9, 0.9], [0.9, 0.8, 0.7, 0.95, 0.99])
    assert c.p_value == 1.0
    text = verdict(c)
    assert text.startswith("pbt lost to random at this budget over 5 seeds")
    assert "won 0 of 5" in text and "p = 0.0312 that pbt is worse" in text


def test_verdict_not_significant_over_n_seeds():
    c = compare([0.6, 0.5, 0.7, 0.8, 0.4, 0.9], [0.5] * 6)
    text = verdict(c)
    assert text.startswith("The difference between pbt and random is not significant over 6 seeds")
    assert "won 4 of 6, 1 tie, win rate 0.67" in text and f"p = {c.p_value:.3g}" in text


@pytest.mark.parametrize("seeds", [1, 3, 4])
def test_fewer_than_five_seeds_is_no_verdict_however_clear(seeds):
    c = compare([0.9] * seeds, [0.1] * seeds)
    text = verdict(c)
    assert text.startswith(f"No verdict on pbt vs random over {seeds} seed(s): "
                           "a one-sided test needs at least 5 seeds to reach p < 0.05")
    assert "beat" not in text and "lost" not in text
    assert verdict(compare([0.5] * seeds, [0.5] * seeds)).startswith("No verdict")


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_an_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(ConfigError, match=r"alpha: must be in \(0, 1\)"):
        verdict(compare([0.9] * 5, [0.1] * 5), alpha=alpha)


def test_verdict_when_the_ranks_and_the_mean_disagree_declares_nothing():
    # nine small wins and one large loss: the signed-rank test favours pbt, the mean favours random
    c = compare([0.51] * 9 + [0.0], [0.5] * 10)
    assert c.p_value < 0.05 and c.mean_difference < 0
    assert verdict(c).startswith("No verdict on pbt vs random over 10 seeds: the signed ranks favour pbt "
                                 f"(one-sided Wilcoxon p = {c.p_value:.3g}) but the mean difference does not")
    mirrored = compare([0.5] * 10, [0.51] * 9 + [0.0])
    assert verdict(mirrored).startswith("No verdict on pbt vs random over 10 seeds: the signed ranks favour random")


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "avg"}, "mode: must be 'max' or 'min', got 'avg'"),
    ({"baseline_scores": [0.5]}, "scores: pbt and random need one score per seed each, got 2 and 1"),
    ({"challenger_scores": [], "baseline_scores": []}, "got 0 and 0"),
    ({"confidence": 1.0}, r"confidence: must be in \(0, 1\), got 1.0"),
    ({"resamples": 0}, "resamples: must be >= 1, got 0"),
])
def test_bad_arguments_name_the_field(kwargs, message):
    arguments = {"challenger_scores": [0.6, 0.7], "baseline_scores": [0.5, 0.5], "mode": "max",
                 "challenger": "pbt", "baseline": "random", **kwargs}
    with pytest.raises(ConfigError, match=message):
        paired_comparison(**arguments)
