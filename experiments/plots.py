"""Generic study plots (matplotlib, Agg): mean with 95% CI per metric and group.

Every study gets one bar chart per metric (`plots/<metric>.png`); when the study has exactly
one numeric independent variable besides the policy, also a line plot of the metric against
it, one line per policy (and case), with the CI as a band (`plots/<metric>_vs_<var>.png`).
The domain's own `Domain.plots(out_dir, summary, runs)` hook adds domain-specific figures.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from orrery.experiments.description import StudyDescription  # noqa: E402
from orrery.experiments.study import slug  # noqa: E402


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.dropna())


def generic_plots(out_dir: Path, summary: pd.DataFrame, study: StudyDescription) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if summary.empty:
        return written
    for metric, df in summary.groupby("metric", sort=False):
        direction = df["direction"].iloc[0]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(df) + 2), 4))
        means = df["mean"].to_numpy(dtype=float)
        lo = means - df["ci95_low"].to_numpy(dtype=float)
        hi = df["ci95_high"].to_numpy(dtype=float) - means
        err = [[0 if math.isnan(x) else x for x in lo], [0 if math.isnan(x) else x for x in hi]]
        colors = ["#4c72b0" if r == "control" else "#dd8452" for r in df["role"]]
        ax.bar(range(len(df)), means, yerr=err, capsize=3, color=colors)
        ax.set_xticks(range(len(df)))
        ax.set_xticklabels(df["group"], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} ({direction} is better)")
        ax.set_title(f"{study.name}: {metric}, mean and 95% CI (blue: control)")
        fig.tight_layout()
        p = out_dir / f"{slug(metric)}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)

    numeric_vars = [
        v for v in study.variables if v != "policy" and v in summary and _numeric(summary[v])
    ]
    if len(numeric_vars) == 1:
        var = numeric_vars[0]
        line_keys = [k for k in ("policy", "case") if k in summary]
        for metric, df in summary.groupby("metric", sort=False):
            fig, ax = plt.subplots(figsize=(6, 4))
            for key, sub in df.groupby(line_keys, sort=False):
                sub = sub.sort_values(var)
                label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
                x = sub[var].to_numpy(dtype=float)
                ax.plot(x, sub["mean"], marker="o", label=label)
                ax.fill_between(x, sub["ci95_low"], sub["ci95_high"], alpha=0.2)
            ax.set_xlabel(var)
            ax.set_ylabel(metric)
            ax.legend(fontsize=7)
            ax.set_title(f"{study.name}: {metric} vs {var}")
            fig.tight_layout()
            p = out_dir / f"{slug(metric)}_vs_{slug(var)}.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            written.append(p)
    return written


def resolve_plot_hook(domain: Any):
    """The domain's plots function (its `plots` is a callable or a "module:function" name)."""
    hook = getattr(domain, "plots", None)
    if isinstance(hook, str):
        import importlib

        module, _, attr = hook.partition(":")
        hook = getattr(importlib.import_module(module), attr)
    return hook


def domain_plots(domain: Any, out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """The domain's own plots hook, if it has one."""
    hook = resolve_plot_hook(domain)
    if hook is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        written = hook(out_dir, summary, runs) or []
    except Exception as err:  # noqa: BLE001 - a broken figure must not lose a finished study
        warnings.warn(f"the {getattr(domain, 'name', '?')} domain's plots hook failed: {err!r}", stacklevel=2)
        written = []
    finally:
        plt.close("all")
    return [Path(p) for p in written]
