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


# ----------------------------------------------------------------------------- multiple comparisons

from orrery.experiments.stats import adjust_pvalues, claim_pvalues, summarize  # noqa: E402


def test_bh_matches_scipy_false_discovery_control():
    rng = np.random.default_rng(7)
    for p in ([0.01, 0.04, 0.03, 0.005], list(rng.uniform(0, 0.2, 25)), [0.5], [1e-6, 0.9, 0.049, 0.051]):
        got = adjust_pvalues(p, "bh")
        np.testing.assert_allclose(got, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    # NaN (a comparison without enough seeds) is left out of the family, not counted in m
    got = adjust_pvalues([0.01, math.nan, 0.04], "bh")
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2]], sps.false_discovery_control([0.01, 0.04]))


def test_holm_on_a_known_example():
    # Holm (1979) step-down: p sorted 0.01, 0.02, 0.03, 0.04 (m = 4) -> 0.04, 0.06, 0.06, 0.06
    got = adjust_pvalues([0.04, 0.01, 0.03, 0.02], "holm")
    np.testing.assert_allclose(got, [0.06, 0.04, 0.06, 0.06])
    # capped at 1, monotone in p
    np.testing.assert_allclose(adjust_pvalues([0.3, 0.6, 0.001], "holm"), [0.6, 0.6, 0.003])
    assert list(adjust_pvalues([0.2, 0.03], "none")) == [0.2, 0.03]
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_pvalues([0.1], "bonferonni")


def _study(metrics, groups, claims=None, **kw):
    return {"name": "t", "domain": "toy", "metrics": metrics, "variables": ["policy"], "groups": groups,
            "claims": claims or {}, **kw}


class _Rec:
    def __init__(self, label, metrics):
        self.group, self.metrics = label, metrics


def test_a_large_grid_of_null_treatments_is_not_declared_supported_after_correction():
    """20 treatments x 1 metric drawn from the control's distribution: uncorrected, about one is
    'significant' at 0.05 by chance; BH and Holm leave none (this seed gives 2 uncorrected)."""
    rng = np.random.default_rng(11)
    groups = [{"label": "c", "values": {"policy": "c"}, "role": "control", "control": None}]
    recs = [_Rec("c", {"x": v}) for v in rng.normal(10, 1, 5)]
    for i in range(20):
        groups.append({"label": f"t{i}", "values": {"policy": f"t{i}"}, "role": "treatment", "control": "c"})
        recs += [_Rec(f"t{i}", {"x": v}) for v in rng.normal(10, 1, 5)]
    study = _study({"x": "higher"}, groups)
    _, raw = summarize(study, recs, correction="none")
    n_raw = int((raw["verdict"] != "inconclusive").sum())
    assert n_raw >= 1 and (raw["p_adjusted"] == raw["p_value"]).all()
    for method in ("bh", "holm"):
        _, comp = summarize(study, recs, correction=method)
        assert (comp["verdict"] == "inconclusive").all(), method
        assert (comp["p_adjusted"] >= comp["p_value"]).all() and (comp["correction"] == method).all()
    _, loose = summarize(study, recs, correction="none", alpha=0.5)
    assert (loose["verdict"] != "inconclusive").sum() > n_raw


# ----------------------------------------------------------------------------- claims


def test_noninferiority_within_margin_is_supported_where_a_bare_difference_is_not():
    # andes_qoe's case: throughput at ~0.92x the control, claim "within 10%"
    control = [410.0, 412.0, 409.0]
    treat = [378.0, 380.0, 377.5]
    diff = compare(treat, control, "higher")
    assert diff["verdict"] == "not supported"  # significantly lower
    ni = compare(treat, control, "higher", claim={"kind": "noninferiority", "margin_pct": 10.0})
    assert ni["verdict"] == "supported" and ni["p_value"] < 0.01
    # the same as a one-sided Welch test against the control scaled by 0.9
    ref = sps.ttest_ind(treat, 0.9 * np.asarray(control), equal_var=False, alternative="greater").pvalue
    assert ni["p_value"] == pytest.approx(ref)
    # a 5% margin is not met: 0.92x is significantly worse than 0.95x
    assert compare(treat, control, "higher", claim={"kind": "noninferiority", "margin_pct": 5.0})["verdict"] == "not supported"
    # lower-is-better: not more than 10% slower
    t_s = [105.0, 106.0, 104.5]
    assert compare(t_s, [100.0, 101.0, 99.0], "lower", claim={"kind": "noninferiority", "margin_pct": 10.0})["verdict"] == "supported"


def test_superiority_by_factor_margin_and_absolute_margin():
    control = [1.0, 1.1, 0.9, 1.05]
    twice = [2.3, 2.4, 2.2, 2.35]
    assert compare(twice, control, "higher", claim={"kind": "superiority", "factor": 2.0})["verdict"] == "supported"
    assert compare(twice, control, "higher", claim={"kind": "superiority", "factor": 3.0})["verdict"] == "not supported"
    # 1.5x better but the claim is 2x: the data are unclear (inconclusive) or refute it
    mid = [1.9, 2.2, 1.7, 2.1]
    assert compare(mid, control, "higher", claim={"kind": "superiority", "factor": 2.0})["verdict"] != "supported"
    # lower is better: 2x lower JCT
    assert compare([0.35, 0.38, 0.36, 0.37], control, "lower", claim={"kind": "superiority", "factor": 2.0})["verdict"] == "supported"
    # absolute margin in the metric's unit
    p_for, _ = claim_pvalues(twice, control, "higher", {"kind": "superiority", "margin": 1.0})
    ref = sps.ttest_ind(twice, np.asarray(control) + 1.0, equal_var=False, alternative="greater").pvalue
    assert p_for == pytest.approx(ref)
    sup = compare(twice, control, "higher", claim={"kind": "superiority"})
    assert sup["claim"] == "better than control by >= 0%" and sup["verdict"] == "supported"


def test_equivalence_by_two_one_sided_tests():
    control = [100.0, 101.0, 99.0, 100.5, 99.5]
    same = [100.2, 100.8, 99.4, 100.1, 99.9]
    claim = {"kind": "equivalence", "margin_pct": 5.0}
    res = compare(same, control, "higher", claim=claim)
    c = np.asarray(control)
    p_lo = sps.ttest_ind(same, 0.95 * c, equal_var=False, alternative="greater").pvalue
    p_hi = sps.ttest_ind(same, 1.05 * c, equal_var=False, alternative="less").pvalue
    assert res["p_value"] == pytest.approx(max(p_lo, p_hi))
    assert res["verdict"] == "supported"
    far = [120.0, 121.0, 119.0, 120.5, 119.5]
    assert compare(far, control, "higher", claim=claim)["verdict"] == "not supported"
    assert compare([90.0, 110.0, 100.0], control, "higher", claim=claim)["verdict"] == "inconclusive"


def test_claims_flow_through_summarize_and_the_study_schema():
    from pydantic import ValidationError

    from orrery.experiments.study import ClaimSpec, StudySection

    groups = [
        {"label": "c", "values": {"policy": "c"}, "role": "control", "control": None},
        {"label": "t", "values": {"policy": "t"}, "role": "treatment", "control": "c"},
    ]
    recs = [_Rec("c", {"tput": v}) for v in (410.0, 412.0, 409.0)]
    recs += [_Rec("t", {"tput": v}) for v in (378.0, 380.0, 377.5)]
    claims = {"tput": {"kind": "noninferiority", "margin_pct": 10.0}}
    summary, comp = summarize(_study({"tput": "higher"}, groups, claims), recs)
    assert comp["verdict"].tolist() == ["supported"]
    assert {"claim", "p_value", "p_adjusted", "correction"} <= set(summary.columns)
    assert summary.loc[summary["group"] == "t", "claim"].item() == "not worse than control by > 10%"

    with pytest.raises(ValidationError, match="needs margin_pct or margin"):
        ClaimSpec(kind="noninferiority")
    with pytest.raises(ValidationError, match="one of margin_pct"):
        ClaimSpec(kind="superiority", factor=2.0, margin_pct=3.0)
    base = dict(name="s", domain="d", hypothesis="h", metrics=["a"], control={"policy": "x"})
    with pytest.raises(ValidationError, match="name no metric"):
        StudySection(**base, claims={"b": {"kind": "superiority"}})
    with pytest.raises(ValidationError):
        StudySection(**base, correction="bonferroni")
