"""seqbench.stats against closed forms and hand-computed examples: Wilson intervals, the bootstrap
interval of a mean, Kaplan-Meier with censoring, Fisher's exact test, the rank test, Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from seqbench.errors import ConfigError
from seqbench.stats import (
    bootstrap_mean_ci,
    fisher_exact,
    holm,
    kaplan_meier,
    km_median,
    mcnemar_exact,
    rank_biserial,
    rank_test,
    wilson_interval,
)

Z = 1.959963984540054  # the 97.5% standard normal quantile


def wilson_by_roots(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson interval as the roots in p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    q = k / n
    roots = np.roots([1 + z * z / n, -(2 * q + z * z / n), q * q])
    return float(min(roots.real)), float(max(roots.real))


def test_wilson_known_cases():
    assert wilson_interval(0, 5) == (0.0, pytest.approx(Z * Z / (5 + Z * Z)))
    assert wilson_interval(0, 5)[1] == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(5, 5) == (pytest.approx(5 / (5 + Z * Z)), 1.0)
    assert wilson_interval(5, 5)[0] == pytest.approx(0.5655, abs=1e-4)
    for k, n in ((1, 5), (3, 10), (2, 3), (17, 40), (0, 1), (1, 1)):
        assert wilson_interval(k, n) == pytest.approx(wilson_by_roots(k, n), abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_wilson_properties():
    for n in (1, 3, 10, 50):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0 <= lo <= k / n <= hi <= 1
            lo2, hi2 = wilson_interval(n - k, n)
            assert (lo, hi) == pytest.approx((1 - hi2, 1 - lo2))  # symmetric in k <-> n - k
    narrow, wide = wilson_interval(30, 100), wilson_interval(3, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert wilson_interval(3, 10, conf=0.99)[0] < wilson_interval(3, 10)[0]
    for args in ((6, 5), (-1, 5), (1, -1)):
        with pytest.raises(ConfigError, match="0 <= k <= n"):
            wilson_interval(*args)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        wilson_interval(1, 5, conf=95)


def test_bootstrap_interval():
    x = [0.1, 0.2, 0.3, 0.5, 0.9]
    lo, hi = bootstrap_mean_ci(x)
    assert lo < np.mean(x) < hi and min(x) <= lo and hi <= max(x)
    assert bootstrap_mean_ci(x) == (lo, hi)  # deterministic given the seed
    assert bootstrap_mean_ci(x + [math.nan, math.inf]) == (lo, hi)  # non-finite values dropped
    # the same values 8 times over: same spread, 8 times the runs: about 1 / sqrt(8) as wide
    large = np.tile(x, 8)
    w_small = np.subtract(*bootstrap_mean_ci(x)[::-1])
    w_large = np.subtract(*bootstrap_mean_ci(large)[::-1])
    assert w_small / 3.2 < w_large < w_small / 2.5
    assert bootstrap_mean_ci(large, seed=1) != bootstrap_mean_ci(large)  # the seed is used
    assert bootstrap_mean_ci([0.4, 0.4, 0.4]) == (pytest.approx(0.4), pytest.approx(0.4))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([0.4]))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))
    # blocks of resamples give the same interval as any other number of resamples would, nearly
    assert bootstrap_mean_ci(large, n_resamples=20_000) == pytest.approx(
        bootstrap_mean_ci(large), rel=0.05)


def test_kaplan_meier_with_censoring():
    # six runs: solved at 100, 200, 300; censored (not solved within the budget) at 200, 400, 500
    times = [100, 200, 200, 300, 400, 500]
    events = [True, True, False, True, False, False]
    km = kaplan_meier(times, events)
    assert list(km.steps) == [100, 200, 300, 400, 500]
    assert list(km.at_risk) == [6, 5, 3, 2, 1]  # the run censored at 200 is at risk at 200
    assert list(km.events) == [1, 1, 1, 0, 0]
    assert list(km.censored) == [0, 1, 0, 1, 1]
    # S = 5/6, then * 4/5, then * 2/3; censoring leaves S unchanged
    assert km.survival == pytest.approx([5 / 6, 2 / 3, 4 / 9, 4 / 9, 4 / 9])
    assert km_median(times, events) == 300


def test_km_median():
    assert math.isnan(km_median([100, 3000, 3000, 3000], [True, False, False, False]))
    assert km_median([100, 200, 3000, 3000], [True, True, False, False]) == 200  # exactly half
    assert km_median([300, 100, 200], [True, True, True]) == 200
    # the median over solved runs only would say 100 here; the runs that did not solve count
    assert math.isnan(km_median([100, 100, 3000, 3000, 3000], [True, True, False, False, False]))
    assert math.isnan(km_median([], []))
    with pytest.raises(ConfigError, match="differ in length"):
        kaplan_meier([1, 2], [True])
    with pytest.raises(ConfigError, match="not NaN"):
        kaplan_meier([math.nan], [True])


def test_fisher_exact():
    p, diff = fisher_exact(5, 5, 0, 5)
    assert p == pytest.approx(0.00794, abs=1e-5) and p == pytest.approx(2 / 252) and diff == 1.0
    p, diff = fisher_exact(3, 3, 0, 3)
    assert p == pytest.approx(0.1) and diff == 1.0
    assert fisher_exact(0, 5, 5, 5) == (pytest.approx(2 / 252), -1.0)
    assert fisher_exact(2, 4, 2, 4) == (1.0, 0.0)
    assert all(math.isnan(v) for v in fisher_exact(0, 0, 1, 3))
    with pytest.raises(ConfigError):
        fisher_exact(4, 3, 0, 3)


def test_rank_test():
    effect, p = rank_test([1, 2, 3], [4, 5, 6])
    assert effect == -1.0 and p == pytest.approx(0.1)  # exact: 2 of the C(6, 3) = 20 splits
    assert rank_test([4, 5, 6], [1, 2, 3]) == (1.0, pytest.approx(0.1))
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=4), rng.normal(0.5, size=5)  # no ties: scipy's exact distribution
    effect, p = rank_test(x, y)
    exact = sps.mannwhitneyu(x, y, alternative="two-sided", method="exact")
    assert p == pytest.approx(exact.pvalue)
    assert effect == pytest.approx(2 * exact.statistic / (4 * 5) - 1)  # rank-biserial from U
    # a diverged run (inf) ranks worst, and two of them tie
    assert rank_test([0.1, 0.2], [np.inf, np.inf]) == (-1.0, pytest.approx(1 / 3))
    # pairs: inf = inf (tie), inf > 0.4, 0.5 < inf, 0.5 > 0.4: (2 - 1) / 4
    assert rank_biserial([np.inf, 0.5], [np.inf, 0.4]) == pytest.approx(0.25)
    assert rank_test([0.5, 0.5], [0.5, 0.5, 0.5]) == (0.0, 1.0)  # all tied: no evidence
    assert all(math.isnan(v) for v in rank_test([], [1.0]))
    assert rank_test([1.0, math.nan], [2.0]) == rank_test([1.0], [2.0])  # NaN dropped
    _, p_large = rank_test(rng.normal(size=30), rng.normal(size=30))  # normal approximation
    assert 0 < p_large <= 1


def test_holm():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    nan_in = holm([0.02, math.nan, 0.01])
    assert math.isnan(nan_in[1]) and [nan_in[0], nan_in[2]] == pytest.approx([0.02, 0.02])
    assert list(holm([0.6, 0.7])) == [1.0, 1.0]  # capped at 1
    assert holm([0.3]) == pytest.approx([0.3])
    assert len(holm([])) == 0 and all(np.isnan(holm([math.nan])))


def test_mcnemar_exact_is_the_binomial_on_discordant_pairs():
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # all 5 discordant pairs one way
    assert mcnemar_exact(5, 0) == mcnemar_exact(0, 5)  # two-sided: symmetric
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 1) == 1.0 and mcnemar_exact(0, 0) == 1.0  # no evidence either way
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # P(X <= 1), X ~ Bin(10, 1/2)
    with pytest.raises(ConfigError, match=">= 0"):
        mcnemar_exact(-1, 2)
