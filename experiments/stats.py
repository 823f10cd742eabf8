"""Statistics over seeds: means with Student-t 95% CIs, treatment-vs-control tests, verdicts.

Per group and metric: mean, standard deviation (ddof=1), the 95% confidence interval of the
mean (Student t with n-1 degrees of freedom) and n. Each treatment is compared with its
control (same other variables, same case): ratio and difference of means, a Welch t-test
(or Mann-Whitney U when the study asks) and a verdict at 95% that uses the metric's direction:
"supported" (significantly better), "not supported" (significantly worse) or "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


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
    treatment: Sequence[float], control: Sequence[float], direction: str, test: str = "welch"
) -> dict[str, Any]:
    """Treatment vs control on one metric: ratio, difference, p-value and verdict."""
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(control, dtype=float)
    t, c = t[~np.isnan(t)], c[~np.isnan(c)]
    mt, mc = (float(t.mean()) if len(t) else math.nan), (float(c.mean()) if len(c) else math.nan)
    diff = mt - mc
    # a control mean of zero (up to float round-off, e.g. a saving measured against itself)
    # leaves the ratio undefined; the difference still says how far apart they are
    ratio = math.nan if abs(mc) <= 1e-9 * abs(mt) or mc == 0 else mt / mc
    p = math.nan
    if len(t) >= 2 and len(c) >= 2:
        if test == "mannwhitney":
            if len(np.unique(np.concatenate([t, c]))) == 1:
                p = 1.0  # every value identical
            else:
                p = float(sps.mannwhitneyu(t, c, alternative="two-sided").pvalue)
        else:
            if t.std(ddof=1) == 0 and c.std(ddof=1) == 0:
                p = 1.0 if mt == mc else 0.0  # no spread: the means differ exactly or not at all
            else:
                p = float(sps.ttest_ind(t, c, equal_var=False).pvalue)
    if math.isnan(p) or p >= ALPHA or diff == 0:
        verdict = INCONCLUSIVE
    else:
        better = diff > 0 if direction == "higher" else diff < 0
        verdict = SUPPORTED if better else NOT_SUPPORTED
    return {"ratio": ratio, "diff": diff, "p_value": p, "test": test, "verdict": verdict}


def summarize(study: dict[str, Any], records: Sequence[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, comparisons) from a study description (`Study.describe()`) and run records.

    summary: one row per group x metric with `group, role, policy, <variables>, [case], metric,
    direction, mean, std, ci95_low, ci95_high, n` and, for treatments, the comparison columns
    `control_group, ratio, diff, p_value, test, verdict`. comparisons: those rows only.
    """
    metrics: dict[str, str] = study["metrics"]
    variables: list[str] = study["variables"]
    has_case = bool(study.get("cases"))
    test = study.get("test", "welch")
    by_group: dict[str, list[Any]] = {}
    for r in records:
        by_group.setdefault(r.group_label, []).append(r)

    rows = []
    values_of: dict[str, dict[str, list[float]]] = {}
    for g in study["groups"]:
        recs = by_group.get(g["label"], [])
        values_of[g["label"]] = {m: [float(r.metrics.get(m, math.nan)) for r in recs] for m in metrics}
        gv = g["values"]
        for m, direction in metrics.items():
            row: dict[str, Any] = {"group": g["label"], "role": g["role"], "policy": gv.get("policy")}
            for v in variables:
                if v != "policy":
                    row[v] = gv.get(v)
            if has_case:
                row["case"] = gv.get("case")
            row.update(metric=m, direction=direction, **mean_ci(values_of[g["label"]][m]))
            rows.append(row)
    summary = pd.DataFrame(rows)

    comp_rows = []
    for g in study["groups"]:
        if g["role"] != "treatment" or not g.get("control"):
            continue
        for m, direction in metrics.items():
            res = compare(values_of[g["label"]][m], values_of[g["control"]][m], direction, test)
            comp_rows.append({"group": g["label"], "metric": m, "control_group": g["control"], **res})
    comparisons = pd.DataFrame(
        comp_rows, columns=["group", "metric", "control_group", "ratio", "diff", "p_value", "test", "verdict"]
    )
    if len(summary):
        summary = summary.merge(comparisons, on=["group", "metric"], how="left")
    return summary, comparisons
