"""Statistics over seeds: means with Student-t 95% CIs, treatment-vs-control claims, verdicts.

Per group and metric: mean, standard deviation (ddof=1), the 95% confidence interval of the
mean (Student t with n-1 degrees of freedom) and n. Each treatment is compared with its
control (same other variables, same case): ratio and difference of means, and a test of what
the study *claims* for that metric (Welch t-tests, or Mann-Whitney U when the study asks):

- `difference` (the default when a study states no claim): two-sided test; "supported" when
  the treatment is significantly better, "not supported" when significantly worse;
- `superiority`: better than the control by at least a margin (one-sided test against the
  control shifted or scaled by the margin);
- `noninferiority`: not worse than the control by more than a margin (one-sided);
- `equivalence`: within a margin either way (two one-sided tests, TOST: p = the larger).

A claim that the data significantly contradict is "not supported"; neither way, "inconclusive".
Every p-value of the study (treatments x metrics) is one family: it is corrected for multiple
comparisons (Benjamini-Hochberg by default, Holm, or none) before it is compared with alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from orrery.experiments.description import DEFAULT_ALPHA, DEFAULT_CORRECTION, StudyDescription

ALPHA = DEFAULT_ALPHA  # one significance level for the whole package (description.py)
CONFIDENCE = 1 - ALPHA  # 0.95: the confidence intervals' level
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
CORRECTIONS = ("none", "bh", "holm")
CLAIM_KINDS = ("difference", "superiority", "noninferiority", "equivalence")


def adjust_pvalues(p: Sequence[float], method: str = DEFAULT_CORRECTION) -> np.ndarray:
    """p-values adjusted for multiple comparisons over one family; NaN stays NaN (not counted).

    "bh": Benjamini-Hochberg (false discovery rate; scipy's `false_discovery_control`),
    "holm": Holm's step-down (family-wise error rate), "none": unchanged.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; known: {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype=float)
    out = p.copy()
    ok = ~np.isnan(p)
    if method == "none" or not ok.any():
        return out
    x = p[ok]
    if method == "bh":
        out[ok] = sps.false_discovery_control(x, method="bh")
        return out
    m = len(x)  # Holm: p_(i) * (m - i + 1), made monotone from the smallest up, capped at 1
    order = np.argsort(x, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * x[order])
    adj = np.empty(m)
    adj[order] = np.minimum(stepped, 1.0)
    out[ok] = adj
    return out


def claim_text(claim: dict[str, Any] | None, direction: str) -> str:
    """A claim in words, e.g. "not worse than control by > 10%"."""
    c = claim or {}
    kind = c.get("kind", "difference")
    if kind == "difference":
        return f"differs ({direction} is better)"
    if c.get("factor") is not None:
        amount = f"{c['factor']:g}x"
    elif c.get("margin") is not None:
        amount = f"{c['margin']:g}"
    else:
        amount = f"{c.get('margin_pct') or 0:g}%"
    if kind == "superiority":
        return f"better than control by >= {amount}"
    if kind == "noninferiority":
        return f"not worse than control by > {amount}"
    return f"equal to control within {amount}"


def _thresholds(claim: dict[str, Any], sign: int) -> list[tuple[float, float]]:
    """(scale, shift) pairs: the control's samples become `scale * c + shift` to form the
    bound(s) the treatment is tested against (one for one-sided claims, (low, high) for TOST)."""
    kind = claim.get("kind", "difference")
    factor, margin, pct = claim.get("factor"), claim.get("margin"), claim.get("margin_pct")
    if kind == "superiority":
        if factor is not None:
            return [(float(factor) if sign > 0 else 1.0 / float(factor), 0.0)]
        if margin is not None:
            return [(1.0, sign * float(margin))]
        return [(1.0 + sign * float(pct or 0.0) / 100.0, 0.0)]
    if kind == "noninferiority":
        if margin is not None:
            return [(1.0, -sign * float(margin))]
        return [(1.0 - sign * float(pct or 0.0) / 100.0, 0.0)]
    # equivalence: (lower bound, upper bound)
    if margin is not None:
        return [(1.0, -float(margin)), (1.0, float(margin))]
    f = float(pct or 0.0) / 100.0
    return [(1.0 - f, 0.0), (1.0 + f, 0.0)]


def _one_sided(t: np.ndarray, bound: np.ndarray, alternative: str, test: str) -> float:
    """p of H1: mean(t) > mean(bound) ("greater") or < ("less")."""
    if test == "mannwhitney":
        if len(np.unique(np.concatenate([t, bound]))) == 1:
            return 1.0
        return float(sps.mannwhitneyu(t, bound, alternative=alternative).pvalue)
    if t.std(ddof=1) == 0 and bound.std(ddof=1) == 0:  # no spread: the claim holds exactly or not
        holds = t.mean() > bound.mean() if alternative == "greater" else t.mean() < bound.mean()
        return 0.0 if holds else 1.0
    return float(sps.ttest_ind(t, bound, equal_var=False, alternative=alternative).pvalue)


def claim_pvalues(
    treatment: Sequence[float],
    control: Sequence[float],
    direction: str,
    claim: dict[str, Any] | None = None,
    test: str = "welch",
) -> tuple[float, float]:
    """(p for the claim, p against it); NaN below n = 2 per side.

    `difference`: both are the two-sided p (the sign of the difference decides the verdict).
    Other claims: one-sided tests (TOST for equivalence). Relative margins scale the
    control's samples, so the test accounts for the control's own spread (H0: mean(t) <=
    k * mean(c)); absolute ones (`margin`, in the metric's unit) shift them.
    """
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(control, dtype=float)
    t, c = t[~np.isnan(t)], c[~np.isnan(c)]
    if len(t) < 2 or len(c) < 2:
        return math.nan, math.nan
    kind = (claim or {}).get("kind", "difference")
    if kind == "difference":
        p = _two_sided(t, c, test)
        return p, p
    sign = 1 if direction == "higher" else -1
    better, worse = ("greater", "less") if sign > 0 else ("less", "greater")
    bounds = [scale * c + shift for scale, shift in _thresholds(claim or {}, sign)]
    if kind == "equivalence":
        lo, hi = bounds
        p_for = max(_one_sided(t, lo, "greater", test), _one_sided(t, hi, "less", test))
        p_against = min(_one_sided(t, lo, "less", test), _one_sided(t, hi, "greater", test))
        return p_for, p_against
    return _one_sided(t, bounds[0], better, test), _one_sided(t, bounds[0], worse, test)


def _two_sided(t: np.ndarray, c: np.ndarray, test: str) -> float:
    if test == "mannwhitney":
        if len(np.unique(np.concatenate([t, c]))) == 1:
            return 1.0  # every value identical
        return float(sps.mannwhitneyu(t, c, alternative="two-sided").pvalue)
    if t.std(ddof=1) == 0 and c.std(ddof=1) == 0:
        return 1.0 if t.mean() == c.mean() else 0.0  # no spread: the means differ exactly or not at all
    return float(sps.ttest_ind(t, c, equal_var=False).pvalue)


def verdict_of(
    kind: str, p_for: float, p_against: float, diff: float, direction: str, alpha: float = ALPHA
) -> str:
    """supported / not supported / inconclusive from (adjusted) p-values at level alpha."""
    if kind == "difference":
        if math.isnan(p_for) or p_for >= alpha or diff == 0 or math.isnan(diff):
            return INCONCLUSIVE
        better = diff > 0 if direction == "higher" else diff < 0
        return SUPPORTED if better else NOT_SUPPORTED
    if not math.isnan(p_for) and p_for < alpha:
        return SUPPORTED
    if not math.isnan(p_against) and p_against < alpha:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """mean, std (ddof=1), Student-t CI of the mean and n; NaN where n is too small."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 1}
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def compare(
    treatment: Sequence[float],
    control: Sequence[float],
    direction: str,
    test: str = "welch",
    claim: dict[str, Any] | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Treatment vs control on one metric: ratio, difference, the claim's p-values and verdict
    (uncorrected; `summarize` corrects the p-values over the study before judging)."""
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(control, dtype=float)
    t, c = t[~np.isnan(t)], c[~np.isnan(c)]
    mt, mc = (float(t.mean()) if len(t) else math.nan), (float(c.mean()) if len(c) else math.nan)
    diff = mt - mc
    # a control mean of zero (up to float round-off, e.g. a saving measured against itself)
    # leaves the ratio undefined; the difference still says how far apart they are
    ratio = math.nan if abs(mc) <= 1e-9 * abs(mt) or mc == 0 else mt / mc
    kind = (claim or {}).get("kind", "difference")
    p_for, p_against = claim_pvalues(t, c, direction, claim, test)
    return {
        "ratio": ratio,
        "diff": diff,
        "claim": claim_text(claim, direction),
        "p_value": p_for,
        "p_against": p_against,
        "test": test,
        "verdict": verdict_of(kind, p_for, p_against, diff, direction, alpha),
    }


COMPARISON_COLUMNS = [
    "group", "metric", "control_group", "ratio", "diff", "claim", "p_value", "p_adjusted",
    "test", "correction", "verdict",
]  # fmt: skip


def summarize(
    study: StudyDescription | dict[str, Any],
    records: Sequence[Any],
    *,
    alpha: float | None = None,
    correction: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, comparisons) from a study description (`Study.describe()`) and run records.

    summary: one row per group x metric with `group, role, policy, <variables>, [case], metric,
    direction, mean, std, ci95_low, ci95_high, n` and, for treatments, the comparison columns
    `control_group, ratio, diff, claim, p_value, p_adjusted, test, correction, verdict`.
    comparisons: those rows only. alpha and correction default to the study's (0.05, "bh").
    """
    if isinstance(study, dict):  # a manifest's JSON
        study = StudyDescription.from_dict(study)
    metrics = study.metrics
    variables = study.variables
    claims = study.claims
    alpha = float(study.alpha if alpha is None else alpha)
    correction = correction or study.correction
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; known: {', '.join(CORRECTIONS)}")
    has_case = bool(study.cases)
    test = study.test
    by_group: dict[str, list[Any]] = {}
    for r in records:
        by_group.setdefault(r.group, []).append(r)

    rows = []
    values_of: dict[str, dict[str, list[float]]] = {}
    for g in study.groups:
        recs = by_group.get(g.label, [])
        values_of[g.label] = {m: [float(r.metrics.get(m, math.nan)) for r in recs] for m in metrics}
        gv = g.values
        for m, direction in metrics.items():
            row: dict[str, Any] = {"group": g.label, "role": g.role, "policy": gv.get("policy")}
            for v in variables:
                if v != "policy":
                    row[v] = gv.get(v)
            if has_case:
                row["case"] = gv.get("case")
            row.update(metric=m, direction=direction, **mean_ci(values_of[g.label][m]))
            rows.append(row)
    summary = pd.DataFrame(rows)

    comp_rows = []
    for g in study.groups:
        if g.role != "treatment" or not g.control:
            continue
        for m, direction in metrics.items():
            res = compare(values_of[g.label][m], values_of[g.control][m], direction, test,
                          claims.get(m), alpha)  # fmt: skip
            comp_rows.append({"group": g.label, "metric": m, "control_group": g.control,
                              "direction": direction, "kind": (claims.get(m) or {}).get("kind", "difference"),
                              **res})  # fmt: skip
    # one family: every treatment x metric of the study
    p_adj = adjust_pvalues([r["p_value"] for r in comp_rows], correction)
    p_against_adj = adjust_pvalues([r["p_against"] for r in comp_rows], correction)
    for r, pa, qa in zip(comp_rows, p_adj, p_against_adj, strict=True):
        r["p_adjusted"] = float(pa)
        r["correction"] = correction
        r["verdict"] = verdict_of(r["kind"], float(pa), float(qa), r["diff"], r["direction"], alpha)
    comparisons = pd.DataFrame(comp_rows, columns=COMPARISON_COLUMNS)
    if len(summary):
        summary = summary.merge(comparisons, on=["group", "metric"], how="left")
    return summary, comparisons
