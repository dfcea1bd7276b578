"""Statistics that let a leaderboard row carry a claim: intervals, time to solve, tests.

Pure numpy / scipy (no torch), small inputs (one number per seed):

- ``wilson_interval``: confidence interval of a solve rate k / n. Unlike the normal approximation
  it stays inside [0, 1] and is not empty at 0 / n or n / n, where most benchmark rows sit.
- ``bootstrap_mean_ci``: percentile bootstrap interval of a mean (loss ratios are skewed and few,
  so no normal approximation), deterministic given its seed.
- ``kaplan_meier`` / ``km_median``: the fraction of runs not yet solved against the training step.
  An unsolved run is *censored* at its budget: it says "not solved within B steps", not "never".
  The median over solved runs only ignores those and flatters an arm that rarely solves.
- ``fisher_exact``: two solve rates compared (exact, for a handful of seeds).
- ``mcnemar_exact``: two outcomes of the same seeds compared (paired: the runs that differ only in
  a stopping rule), exact binomial on the discordant pairs.
- ``rank_test``: Mann-Whitney U on two samples (e.g. test loss ratios), exact for small samples
  (ties included: every split of the pooled runs enumerated), with the rank-biserial correlation
  as effect size.
- ``holm``: Holm's step-down adjustment of p-values for several comparisons.

Bad arguments (k > n, a confidence outside (0, 1), ...) raise ``ConfigError`` (a ValueError).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from seqbench.errors import ConfigError

NAN = float("nan")
#: at most this many splits of two samples are enumerated for an exact rank test
EXACT_SPLITS = 20_000


def _check_conf(conf: float) -> float:
    if not 0 < conf < 1:
        raise ConfigError(f"confidence level must be between 0 and 1 (exclusive), got {conf!r}")
    return float(conf)


def _z(conf: float) -> float:
    """The two-sided standard normal quantile of ``conf`` (1.95996... for 0.95)."""
    return float(sps.norm.ppf(0.5 + _check_conf(conf) / 2))


def wilson_interval(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k`` / ``n``; (nan, nan) when ``n`` is 0."""
    if n < 0 or k < 0 or k > n:
        raise ConfigError(f"a proportion needs 0 <= k <= n, got k={k}, n={n}")
    z = _z(conf)
    if n == 0:
        return NAN, NAN
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is 0 (1) exactly; clip the rounding error
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def bootstrap_mean_ci(values: Sequence[float], conf: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the finite ``values``; (nan, nan) for fewer
    than 2 of them. The same values, ``n_resamples`` and ``seed`` give the same interval."""
    alpha = 1 - _check_conf(conf)
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    x = _finite(values)
    if len(x) < 2:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    # resample in blocks: memory stays bounded for long inputs
    block = max(1, 1_000_000 // len(x))
    means = np.concatenate([
        x[rng.integers(0, len(x), size=(min(block, n_resamples - start), len(x)))].mean(axis=1)
        for start in range(0, n_resamples, block)])
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


class KMTable(NamedTuple):
    """Kaplan-Meier estimate at every distinct time (an event's or a censoring's), in order.

    ``survival[i]`` is S just after ``steps[i]``: the estimated fraction of runs not yet solved.
    """

    steps: np.ndarray
    at_risk: np.ndarray  # runs with time >= steps[i]
    events: np.ndarray  # runs solved at steps[i]
    censored: np.ndarray  # runs censored at steps[i] (unsolved within their budget)
    survival: np.ndarray


def _times_events(times, events) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=float).ravel()
    e = np.asarray(events, dtype=bool).ravel()
    if t.shape != e.shape:
        raise ConfigError(f"times and events differ in length ({len(t)} and {len(e)})")
    if np.isnan(t).any() or (t < 0).any():
        raise ConfigError("times must be numbers >= 0 (a step), not NaN or negative")
    return t, e


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> KMTable:
    """Kaplan-Meier survival of "not yet solved": ``times[i]`` is run i's solving step when
    ``events[i]`` is true, else the step it was censored at (its budget)."""
    t, e = _times_events(times, events)
    steps = np.unique(t)
    at_risk = np.array([(t >= s).sum() for s in steps], dtype=int)
    solved = np.array([(e & (t == s)).sum() for s in steps], dtype=int)
    censored = np.array([(~e & (t == s)).sum() for s in steps], dtype=int)
    # a run censored at the step of an event still counts as at risk there (the usual convention)
    survival = np.cumprod(1 - solved / np.maximum(at_risk, 1))
    return KMTable(steps, at_risk, solved, censored, survival)


def km_median(times: Sequence[float], events: Sequence[bool]) -> float:
    """The first step at which the Kaplan-Meier survival is <= 0.5 (half the runs solved);
    NaN when the estimate never falls to one half (with runs censored early, it can fall there
    with fewer than half of the runs solved)."""
    km = kaplan_meier(times, events)
    reached = np.flatnonzero((km.survival <= 0.5 + 1e-12) & (km.events > 0))
    return float(km.steps[reached[0]]) if len(reached) else NAN


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Fisher's exact test of k1 / n1 against k2 / n2: (two-sided p, k1/n1 - k2/n2).
    (nan, nan) when either sample is empty."""
    for k, n in ((k1, n1), (k2, n2)):
        if n < 0 or k < 0 or k > n:
            raise ConfigError(f"a proportion needs 0 <= k <= n, got k={k}, n={n}")
    if n1 == 0 or n2 == 0:
        return NAN, NAN
    p = sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided").pvalue
    return min(1.0, float(p)), k1 / n1 - k2 / n2


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """McNemar's exact test for paired binary outcomes: two-sided p of ``only_a`` pairs solved
    under A alone against ``only_b`` solved under B alone (the concordant pairs carry no
    information). Under the null each discordant pair goes either way with probability 1/2."""
    if only_a < 0 or only_b < 0:
        raise ConfigError(f"discordant pair counts must be >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, float(2 * sps.binom.cdf(min(only_a, only_b), n, 0.5)))


def rank_biserial(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) - P(X < Y) over all pairs (ties count half each way): the rank-biserial
    correlation, in [-1, 1]; +1 when every x exceeds every y. NaN when a sample is empty."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(a) or not len(b):
        return NAN
    # compared, not subtracted: inf against inf (two diverged runs) is a tie, without a warning
    greater = int((a[:, None] > b[None, :]).sum())
    less = int((a[:, None] < b[None, :]).sum())
    return (greater - less) / (len(a) * len(b))


def rank_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test of ``x`` against ``y``: (rank-biserial correlation of x
    against y, p). +inf is allowed (e.g. a diverged run: worse than any finite loss); NaN is
    dropped. Exact (all splits enumerated, ties included) when there are at most EXACT_SPLITS
    splits, else the normal approximation. (nan, nan) when a sample is empty."""
    a, b = (np.asarray(v, dtype=float).ravel() for v in (x, y))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return NAN, NAN
    effect = rank_biserial(a, b)
    pooled = np.concatenate([a, b])
    if (pooled == pooled[0]).all():
        return effect, 1.0  # all tied: no evidence either way (scipy would divide by zero)
    if math.comb(len(pooled), len(a)) <= EXACT_SPLITS:
        return effect, _exact_rank_p(pooled, len(a))
    p = sps.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    return effect, min(1.0, float(p))


def _exact_rank_p(pooled: np.ndarray, n1: int) -> float:
    """Two-sided p of the rank sum of the first ``n1`` values: the fraction of all splits of
    ``pooled`` into n1 and the rest whose rank sum is at least as far from its mean. Midranks
    for ties, so tied samples (two diverged runs) keep an exact p, even with one run a side."""
    ranks = sps.rankdata(pooled)
    center = n1 * (len(pooled) + 1) / 2
    observed = abs(ranks[:n1].sum() - center)
    splits = np.array(list(itertools.combinations(range(len(pooled)), n1)))
    sums = ranks[splits].sum(axis=1)
    return float(np.mean(np.abs(sums - center) >= observed - 1e-9))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): the i-th smallest of m times
    (m - i + 1), made monotone and capped at 1. NaNs stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if not len(valid):
        return out
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out
