"""Paired comparison of two strategies over the same seeds: differences, win rate, a bootstrap
interval, a one-sided Wilcoxon signed-rank test and a one-sentence verdict.

Pure (numpy and scipy): ``pbt compare`` and ``bench/quality.py`` share it.

- **Pairing.** ``challenger_scores[i]`` and ``baseline_scores[i]`` come from the same seed. Each
  difference is oriented by ``mode``, so that > 0 always means the challenger did better
  (``challenger - baseline`` for "max", ``baseline - challenger`` for "min").
- **Failed runs.** A NaN or infinite score (a run whose members all failed) counts as the worst
  finite score of the comparison (both strategies, every seed): it loses to every run that did
  better and ties the worst one. Two failed runs of one seed tie; with no finite score at all,
  every difference is 0.
- **Rounding.** Differences are rounded to 12 decimal digits below the largest absolute score, so
  that differences equal in exact arithmetic (accuracies are multiples of 1/n) tie in the test
  instead of being ranked apart by the roundoff of the subtraction.
- **Test.** ``scipy.stats.wilcoxon(differences, alternative="greater", zero_method="pratt")``:
  H1 is "the challenger is better". Tied pairs (difference exactly 0, common with accuracy) keep
  their place in the ranking as the smallest differences and add to neither side (Pratt, 1959),
  rather than being dropped ("wilcox"). A tie is then ranked where a tiny difference would be:
  when a seed's smallest difference shrinks to exactly 0, no other seed's rank moves, where
  dropping it would re-rank every other seed. ("zsplit" adds half of each zero's rank to both
  sides: a constant under the exact test below, so the same p-value as "pratt".)
  The ``method`` is chosen here, not left to scipy's "auto": without tied pairs or tied
  magnitudes, ``"exact"`` (the exact null distribution, any number of seeds); with them, up to
  ``EXACT_MAX_SEEDS`` seeds, every one of the 2**n sign patterns is enumerated
  (``PermutationMethod(n_resamples=2**n)``), which is exact too, so ties never send a small
  comparison to an approximation; beyond that, the normal approximation (``"asymptotic"``, with
  scipy's corrections for tied magnitudes and zeros, no continuity correction). When every
  difference is 0, p = 1.
- **Seeds a verdict needs.** The smallest one-sided p over n seeds is 1/2**n (every seed a win):
  1/32 = 0.031 with 5 seeds, 1/16 = 0.0625 with 4. So at alpha = 0.05 a verdict needs at least 5
  seeds, and a tied seed does not count towards them.
- **Interval.** A percentile bootstrap of the mean difference: seeds resampled with replacement
  ``resamples`` times by a generator seeded with ``seed``, so the same input gives the same interval.
  With few seeds it only describes the seeds seen and is too narrow: the test gives the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from models.errors import ConfigError

EXACT_MAX_SEEDS = 10  # scipy scores 2**n sign patterns one by one: 2**10 take about 0.4 s here


@dataclass(frozen=True)
class PairedComparison:
    """Two strategies run on the same seeds; see the module docstring for every rule."""

    challenger: str
    baseline: str
    differences: tuple[float, ...]  # per seed, oriented: > 0 means the challenger did better
    mean_difference: float
    ci_low: float  # percentile bootstrap interval of the mean difference (level: the ``confidence`` asked)
    ci_high: float
    wins: int
    ties: int
    losses: int
    win_rate: float  # wins / seeds; ties count as no win (they are in ``ties``)
    p_value: float  # one-sided Wilcoxon signed-rank (Pratt zeros), H1: the challenger is better

    @property
    def seeds(self) -> int:
        return len(self.differences)


def paired_comparison(
    challenger_scores: Sequence[float],
    baseline_scores: Sequence[float],
    *,
    mode: str,
    challenger: str,
    baseline: str,
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 10_000,
) -> PairedComparison:
    """Compare two strategies' scores paired by position (the same seed), oriented by ``mode``.

    NaN scores count as the worst finite score of the comparison. ``ConfigError`` if ``mode`` is not
    "max" or "min", the two sequences differ in length or are empty, ``confidence`` is not in (0, 1)
    or ``resamples`` < 1.
    """
    if mode not in ("max", "min"):
        raise ConfigError(f"mode: must be 'max' or 'min', got {mode!r}")
    if len(challenger_scores) != len(baseline_scores) or len(challenger_scores) == 0:
        raise ConfigError(f"scores: {challenger} and {baseline} need one score per seed each, got "
                          f"{len(challenger_scores)} and {len(baseline_scores)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence: must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ConfigError(f"resamples: must be >= 1, got {resamples}")
    differences = _differences(np.asarray(challenger_scores, float), np.asarray(baseline_scores, float), mode)
    ci_low, ci_high = _bootstrap_interval(differences, confidence, resamples, np.random.default_rng(seed))
    wins, ties = int((differences > 0).sum()), int((differences == 0).sum())
    return PairedComparison(
        challenger=challenger,
        baseline=baseline,
        differences=tuple(float(d) for d in differences),
        mean_difference=float(differences.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        wins=wins,
        ties=ties,
        losses=len(differences) - wins - ties,
        win_rate=wins / len(differences),
        p_value=_p_better(differences),
    )


def min_seeds(alpha: float) -> int:
    """The fewest seeds with which a one-sided test can reach p < ``alpha``: the least n with 1/2**n < alpha."""
    return math.floor(-math.log2(alpha)) + 1


def verdict(comparison: PairedComparison, *, alpha: float = 0.05) -> str:
    """One plain sentence: the challenger beat the baseline (p < alpha and mean difference > 0), lost
    to it (the mirror test, p < alpha and mean difference < 0), or the difference is not significant;
    no difference when every seed ties; no verdict with fewer than ``min_seeds(alpha)`` seeds, or when
    the signed ranks and the mean point different ways. ``ConfigError`` if alpha is not in (0, 1)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha: must be in (0, 1), got {alpha}")
    c = comparison
    pair, n, evidence = f"{c.challenger} vs {c.baseline}", c.seeds, _evidence(c)
    if n < min_seeds(alpha):
        return (f"No verdict on {pair} over {n} seed(s): a one-sided test needs at least {min_seeds(alpha)} "
                f"seeds to reach p < {alpha:g} ({evidence}; one-sided Wilcoxon p = {c.p_value:.3g}).")
    if c.ties == n:
        return f"No difference between {c.challenger} and {c.baseline}: equal on all {n} seeds (p = 1)."
    p_worse = _p_better(-np.asarray(c.differences))
    if c.p_value < alpha and c.mean_difference > 0:
        return (f"{c.challenger} beat {c.baseline} at this budget over {n} seeds "
                f"({evidence}; one-sided Wilcoxon p = {c.p_value:.3g}).")
    if p_worse < alpha and c.mean_difference < 0:
        return (f"{c.challenger} lost to {c.baseline} at this budget over {n} seeds "
                f"({evidence}; one-sided Wilcoxon p = {p_worse:.3g} that {c.challenger} is worse).")
    if min(c.p_value, p_worse) < alpha:
        favoured = c.challenger if c.p_value < alpha else c.baseline
        return (f"No verdict on {pair} over {n} seeds: the signed ranks favour {favoured} (one-sided Wilcoxon "
                f"p = {min(c.p_value, p_worse):.3g}) but the mean difference does not ({evidence}).")
    return (f"The difference between {c.challenger} and {c.baseline} is not significant over {n} seeds "
            f"({evidence}; one-sided Wilcoxon p = {c.p_value:.3g}).")


def signed(difference: float, digits: int = 3) -> str:
    """``+0.0028``, ``-0.1``; a zero difference is ``0``, with no sign."""
    return f"{difference:+.{digits}g}" if difference else "0"


def _evidence(c: PairedComparison) -> str:
    ties = f", {c.ties} tie{'s' * (c.ties != 1)}" if c.ties else ""
    return (f"mean difference {signed(c.mean_difference)}, bootstrap interval [{signed(c.ci_low)}, "
            f"{signed(c.ci_high)}]; won {c.wins} of {c.seeds}{ties}, win rate {c.win_rate:.2f}")


def _differences(challenger: np.ndarray, baseline: np.ndarray, mode: str) -> np.ndarray:
    finite = np.concatenate([challenger, baseline])
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.zeros(len(challenger))
    worst = finite.min() if mode == "max" else finite.max()
    challenger = np.where(np.isfinite(challenger), challenger, worst)
    baseline = np.where(np.isfinite(baseline), baseline, worst)
    differences = challenger - baseline if mode == "max" else baseline - challenger
    largest = np.abs(finite).max()
    if largest > 0:
        decimals = 12 - math.ceil(math.log10(largest))
        differences = np.round(differences, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return differences


def _p_better(differences: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value for H1 "differences are shifted above 0"."""
    if not differences.any():
        return 1.0
    result = stats.wilcoxon(differences, zero_method="pratt", alternative="greater", method=_method(differences))
    return float(result.pvalue)


def _method(differences: np.ndarray) -> str | stats.PermutationMethod:
    """Exact whenever it can be: scipy's null distribution without ties or zeros, else every sign pattern."""
    magnitudes = np.abs(differences)
    if magnitudes.all() and np.unique(magnitudes).size == magnitudes.size:
        return "exact"
    if len(differences) <= EXACT_MAX_SEEDS:
        return stats.PermutationMethod(n_resamples=2 ** len(differences))
    return "asymptotic"


def _bootstrap_interval(
    differences: np.ndarray, confidence: float, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    samples = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[samples].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
