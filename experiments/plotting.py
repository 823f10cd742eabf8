"""Domain-specific figures that domains' `plots` hooks delegate to (matplotlib, Agg).

Kept in `experiments` so simulators stay free of plotting; a domain imports these lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from orrery.experiments.stats import mean_ci  # noqa: E402


def save(fig, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _rate(run: Any) -> float | None:
    v = run.values.get("workload.rate_rps")
    if v is None:
        v = (run.scenario.get("workload") or {}).get("rate_rps")
    return None if v is None else float(v)


def serving_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """Average QoE vs request rate per policy (95% CI band) and the QoE CDF per policy.

    One line per policy (and case); the CDF pools every request of every seed at the highest
    request rate of each case, where the policies differ most.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    rows = []
    for r in runs:
        if "qoe_mean" in r.metrics:
            rows.append({"policy": r.values.get("policy", r.scenario.get("policy")),
                         "case": r.values.get("case", ""), "rate": _rate(r),
                         "qoe": r.metrics["qoe_mean"]})  # fmt: skip
    df = pd.DataFrame(rows)
    if df.empty:
        return written
    if df["rate"].notna().any() and df["rate"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (policy, case), sub in df.groupby(["policy", "case"], sort=False):
            pts = []
            for rate, g in sub.groupby("rate"):
                s = mean_ci(g["qoe"].to_numpy())
                pts.append((rate, s["mean"], s["ci95_low"], s["ci95_high"]))
            pts.sort()
            x, m, lo, hi = (np.array(c, dtype=float) for c in zip(*pts, strict=True))
            label = f"{policy}" + (f" / {case}" if case else "")
            ax.plot(x, m, marker="o", label=label)
            ax.fill_between(x, np.where(np.isnan(lo), m, lo), np.where(np.isnan(hi), m, hi), alpha=0.2)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("average QoE")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
        ax.set_title("Average QoE vs request rate (95% CI)")
        p = save(fig, out_dir / "serving_qoe_vs_rate.png")
        written.append(p)

    cases = sorted({r.values.get("case", "") for r in runs})
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        in_case = [r for r in runs if r.values.get("case", "") == case and "qoe" in r.table]
        rates = [x for x in (_rate(r) for r in in_case) if x is not None]
        top = max(rates) if rates else None
        by_policy: dict[str, list[np.ndarray]] = {}
        for r in in_case:
            if top is None or _rate(r) == top:
                by_policy.setdefault(r.values.get("policy", r.scenario.get("policy")), []).append(
                    r.table["qoe"].to_numpy(dtype=float)
                )
        for policy, parts in by_policy.items():
            q = np.sort(np.concatenate(parts))
            q = q[~np.isnan(q)]
            if len(q):
                ax.step(q, np.arange(1, len(q) + 1) / len(q), where="post", label=policy)
        ax.set_xlabel("per-request QoE")
        ax.set_ylabel("CDF")
        ax.set_xlim(0, 1.02)
        ax.set_title(f"QoE CDF at {top:g} req/s" + (f" ({case})" if case else "") if top else "QoE CDF")
        ax.legend(fontsize=7)
    p = save(fig, out_dir / "serving_qoe_cdf.png")
    written.append(p)
    return written


def training_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """Time-energy frontier (Perseus runs) and carbon vs time per policy (all runs)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    fronts = [r for r in runs if "frontier" in (r.series or {}) and len(r.series["frontier"])]
    if fronts:
        fig, ax = plt.subplots(figsize=(6, 4))
        seen = set()
        for r in fronts:
            label = ", ".join(f"{k}={v}" for k, v in sorted(r.values.items()) if k != "policy")
            if label in seen:
                continue
            seen.add(label)
            f = r.series["frontier"]
            ax.plot(f["time_s"], f["energy_j"] / 1e3, lw=1.2, label=label or "frontier")
            ax.plot([r.metrics["iteration_time_s"]], [r.metrics["iteration_energy_j"] / 1e3], "o", ms=4)
        ax.set_xlabel("iteration time (s)")
        ax.set_ylabel("iteration energy (kJ)")
        ax.set_title("Perseus time-energy frontier (dots: chosen plan)")
        if len(seen) <= 12:
            ax.legend(fontsize=6)
        p = save(fig, out_dir / "training_frontier.png")
        paths.append(p)
    pts = [r for r in runs if r.metrics and "carbon_g" in r.metrics and "time_s" in r.metrics]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        by_policy: dict[str, list] = {}
        for r in pts:
            by_policy.setdefault(str(r.values.get("policy", r.scenario.get("policy", "?"))), []).append(r)
        for pol, rs in sorted(by_policy.items()):
            ax.scatter([r.metrics["time_s"] / 3600 for r in rs], [r.metrics["carbon_g"] / 1e3 for r in rs],
                       label=pol, s=14)
        ax.set_xlabel("training time (h)")
        ax.set_ylabel("carbon (kg CO2e)")
        ax.set_title("carbon vs time per policy")
        ax.legend(fontsize=7)
        p = save(fig, out_dir / "training_carbon_vs_time.png")
        paths.append(p)
    return paths


def resilience_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """Throughput over time with failure marks (one figure per case); samples done per strategy."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cases: dict[str, dict[str, object]] = {}
    for r in runs:
        group = dict(getattr(r, "values", {}) or {})
        pol = str(group.pop("policy", (getattr(r, "scenario", {}) or {}).get("policy", "?")))
        key = ", ".join(f"{k}={v}" for k, v in sorted(group.items())) or "all"
        cases.setdefault(key, {}).setdefault(pol, r)  # first seed of each policy
    for i, (key, by_pol) in enumerate(sorted(cases.items())):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        marks_done = False
        for pol, r in sorted(by_pol.items()):
            s = (getattr(r, "series", {}) or {}).get("throughput")
            if s is None or len(s) == 0:
                continue
            ax.step(s["time_s"] / 3600, s["samples_per_s"], where="post", label=pol)
            ev = (r.series or {}).get("events")
            if not marks_done and ev is not None and len(ev):
                for t in ev.loc[ev["kind"] == "remove", "time_s"]:
                    ax.axvline(t / 3600, color="red", alpha=0.35, lw=0.8)
                marks_done = True
        ax.set_xlabel("time (h)")
        ax.set_ylabel("samples/s")
        ax.set_title(f"throughput over time ({key}); red: node losses", fontsize=8)
        ax.legend(fontsize=8)
        p = save(fig, out_dir / f"resilience_throughput_{i:02d}.png")
        written.append(p)
    if summary is not None and len(summary) and "metric" in summary.columns:
        sub = summary[summary["metric"] == "samples_done"]
        if len(sub):
            fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(sub)), 4))
            labels = [str(g) for g in sub["group"]]
            mean = sub["mean"].to_numpy(dtype=float)
            err = np.vstack([mean - sub["ci95_low"].to_numpy(dtype=float),
                             sub["ci95_high"].to_numpy(dtype=float) - mean])
            ax.bar(range(len(sub)), np.nan_to_num(mean), yerr=np.nan_to_num(np.abs(err)), capsize=2)
            ax.set_xticks(range(len(sub)))
            ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
            ax.set_ylabel("samples done")
            ax.set_title("samples done per strategy (NaN = infeasible: plan does not fit)")
            p = save(fig, out_dir / "resilience_samples_done.png")
            written.append(p)
    return written


def fl_feasibility_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """Participation over the day and the round-time CDF."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in runs:
        label = ",".join(f"{k}={v}" for k, v in r.values.items()) or r.scenario.get("name", "run")
        p = r.series.get("participation_by_hour")
        if p is not None and len(p):
            a1.plot(p["hour"], p["assigned"], label=label)
        rd = r.series.get("rounds")
        if rd is not None and len(rd):
            x = np.sort((rd["t_close_s"] - rd["t_req_s"]).to_numpy())
            a2.plot(x, np.arange(1, len(x) + 1) / len(x), label=label)
    a1.set_xlabel("hour of day")
    a1.set_ylabel("devices assigned per hour")
    a2.set_xlabel("round time (s)")
    a2.set_ylabel("CDF")
    a1.legend(fontsize=7)
    path = save(fig, out_dir / "fl_feasibility.png")
    return [path]


def fl_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """JCT CDF per policy; device supply (available devices, check-ins) over the day."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    by_policy: dict[str, list[np.ndarray]] = {}
    for r in runs:
        pol = str(r.values.get("policy", r.scenario.get("policy", "?")))
        jct = np.asarray(r.table["jct_s"], dtype=float) if "jct_s" in r.table else np.empty(0)
        by_policy.setdefault(pol, []).append(jct[np.isfinite(jct)])
    for pol, arrs in sorted(by_policy.items()):
        x = np.sort(np.concatenate(arrs)) / 3600.0
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=pol)
    ax.set_xlabel("job completion time (h)")
    ax.set_ylabel("CDF")
    ax.legend()
    ax.grid(alpha=0.3)
    p = out_dir / "fl_jct_cdf.png"
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    sup = [r.series.get("supply") for r in runs if r.series.get("supply") is not None]
    if sup:
        df = pd.concat(sup)
        if len(df):
            hour = (df["t_s"] % 86400) // 3600
            g = df.groupby(hour)
            fig, ax1 = plt.subplots(figsize=(6, 4))
            ax1.plot(g["available"].mean().index, g["available"].mean().values, label="available devices")
            ax1.set_xlabel("hour of day")
            ax1.set_ylabel("available devices")
            ax2 = ax1.twinx()
            ax2.plot(g["idle_checkins"].mean().index, g["idle_checkins"].mean().values / 3600.0, "C1--",
                     label="idle check-ins /s")
            ax2.set_ylabel("idle check-ins per s")
            fig.legend(loc="upper center")
            p = out_dir / "fl_supply_by_hour.png"
            fig.tight_layout()
            fig.savefig(p, dpi=120)
            plt.close(fig)
            paths.append(p)
    return paths


def fedtrans_plots(out_dir: Path, summary: pd.DataFrame, runs: list) -> list[Path]:
    """Per-client accuracy CDF and accuracy vs cumulative training cost, one panel per dataset."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def dataset(r) -> str:
        return str(r.values.get("data.dataset", (r.scenario.get("data") or {}).get("dataset", "data")))

    sets = sorted({dataset(r) for r in runs}) or ["data"]
    paths = []
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, ds in zip(axes[0], sets, strict=True):
        by: dict[str, list[np.ndarray]] = {}
        for r in runs:
            if dataset(r) == ds and "accuracy" in r.table:
                a = np.asarray(r.table["accuracy"], dtype=float)
                by.setdefault(str(r.values.get("policy", r.scenario.get("policy", "?"))), []).append(a[np.isfinite(a)])
        for pol, arrs in sorted(by.items()):
            x = np.sort(np.concatenate(arrs))
            if len(x):
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=pol)
        ax.set_title(ds)
        ax.set_xlabel("per-client accuracy")
        ax.set_ylabel("CDF of clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    p = save(fig, out_dir / "fedtrans_accuracy_cdf.png")
    paths.append(p)

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, ds in zip(axes[0], sets, strict=True):
        by_pol: dict[str, list[pd.DataFrame]] = {}
        for r in runs:
            ev = r.series.get("eval")
            if dataset(r) == ds and ev is not None and len(ev):
                by_pol.setdefault(str(r.values.get("policy", r.scenario.get("policy", "?"))), []).append(ev)
        for i, (pol, evs) in enumerate(sorted(by_pol.items())):
            for j, ev in enumerate(evs):
                ax.plot(ev["cum_device_s"] / 3600.0, ev["acc_mean"], f"C{i}-", marker="o", ms=3, alpha=0.7,
                        label=pol if j == 0 else None)
        ax.set_title(ds)
        ax.set_xscale("log")
        ax.set_xlabel("cumulative training cost (device-hours)")
        ax.set_ylabel("mean per-client accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    p = save(fig, out_dir / "fedtrans_accuracy_vs_cost.png")
    paths.append(p)
    return paths
