"""Statistics: CIs and tests checked against scipy on known samples; verdict directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from orrery.experiments.stats import compare, mean_ci

SAMPLES = [
    [1.0, 2.0, 3.0, 4.0, 5.0],
    [0.31, 0.29, 0.35, 0.30],
    [10.0, 10.5],
    list(np.random.default_rng(3).normal(5, 2, 30)),
]


@pytest.mark.parametrize("x", SAMPLES)
def test_mean_ci_matches_scipy_t_interval(x):
    got = mean_ci(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert got["n"] == len(x)
    assert got["mean"] == pytest.approx(np.mean(x), rel=1e-12)
    assert got["std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert got["ci95_low"] == pytest.approx(lo, rel=1e-10)
    assert got["ci95_high"] == pytest.approx(hi, rel=1e-10)


def test_known_values_and_small_n():
    # 1..5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451
    got = mean_ci([1, 2, 3, 4, 5])
    assert got["ci95_high"] - 3 == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    one = mean_ci([7.0])
    assert one["mean"] == 7.0 and one["n"] == 1 and math.isnan(one["ci95_low"])
    assert mean_ci([])["n"] == 0


def test_welch_and_mannwhitney_match_scipy_and_verdicts_follow_direction():
    control = [1.0, 1.1, 0.9, 1.05, 0.95]
    better = [0.5, 0.55, 0.45, 0.52, 0.48]
    res = compare(better, control, "lower")
    assert res["p_value"] == pytest.approx(sps.ttest_ind(better, control, equal_var=False).pvalue)
    assert res["verdict"] == "supported"
    assert res["ratio"] == pytest.approx(np.mean(better) / np.mean(control))
    assert res["diff"] == pytest.approx(np.mean(better) - np.mean(control))
    assert compare(better, control, "higher")["verdict"] == "not supported"
    mw = compare(better, control, "lower", test="mannwhitney")
    assert mw["p_value"] == pytest.approx(sps.mannwhitneyu(better, control, alternative="two-sided").pvalue)
    assert mw["test"] == "mannwhitney" and mw["verdict"] == "supported"
    noisy = compare([1.0, 2.0, 0.5], [1.1, 0.4, 2.2], "lower")
    assert noisy["verdict"] == "inconclusive"
    assert compare([2.0, 2.0], [2.0, 2.0], "lower")["verdict"] == "inconclusive"
    assert compare([1.0, 1.0], [2.0, 2.0], "lower")["verdict"] == "supported"


def test_ratio_is_undefined_against_a_zero_control_but_the_difference_is_not():
    res = compare([18.0, 18.5, 18.2], [1e-14, -2e-14, 0.0], "higher")
    assert np.isnan(res["ratio"])
    assert res["diff"] == pytest.approx(18.233333, rel=1e-6)
    assert res["verdict"] == "supported"
    assert compare([2.0, 2.2], [1.0, 1.1], "higher")["ratio"] == pytest.approx(2.0)
