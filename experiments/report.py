"""Study outputs: `summary.csv`, the open tables (`metrics.parquet|csv`, `series/`),
`plots/*.png`, the Markdown report (`report.md`) and the interactive one (`report.html`).

`orrery report DIR` rebuilds them all from `DIR/manifest.json` and `DIR/runs/*.parquet`
alone, so a results folder copied to another machine can still be reported on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from orrery.core.errors import OrreryInputError
from orrery.experiments import html_report, plots, stats, tables
from orrery.experiments.description import StudyDescription
from orrery.experiments.store import ResultsStore, RunRecord


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def render_report(
    study: StudyDescription,
    manifest: dict[str, Any],
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    plot_paths: list[Path],
    root: Path,
) -> str:
    s = study
    out = [f"# Study `{s.name}`", ""]
    if s.description:
        out += [s.description, ""]
    out += ["## Hypothesis", "", f"> {s.hypothesis}", ""]
    out += ["## Setup", ""]
    out.append(f"- Domain: `{s.domain}`; source: `{s.source}`" + (f"; scale `{s.scale}`" if s.scale else ""))
    out.append(f"- Independent variables: {', '.join(f'`{v}`' for v in s.variables)}")
    out.append(f"- Control: {', '.join(f'`{k}` = {v!r}' for k, v in s.control.items())}")
    treatments = [g.label for g in s.groups if g.role == "treatment"]
    out.append(f"- Treatment groups: {len(treatments)}; control groups: {sum(g.role == 'control' for g in s.groups)}")
    if s.cases:
        out.append(f"- Cases: {', '.join(s.cases)}")
    out.append(f"- Dependent metrics: {', '.join(f'`{m}` ({d} is better)' for m, d in s.metrics.items())}")
    out.append(f"- Seeds: {s.seeds} ({len(s.seeds)} per group)")
    out.append("- Statistics: " + stats_words(s, comparisons))
    counts = manifest.get("counts", {})
    out.append(
        f"- Runs: {counts.get('total', '?')} ({counts.get('executed', '?')} executed, "
        f"{counts.get('resumed', '?')} resumed, {counts.get('failed', 0)} failed)"
    )
    repro = manifest.get("reproducibility", {})
    n_ok = sum(1 for c in repro.get("checks", []) if c.get("identical"))
    out.append(
        f"- Reproducibility: {'OK' if repro.get('ok') else 'FAILED'} — {n_ok}/{len(repro.get('checks', []))} "
        "groups re-ran one seed bit-identically"
    )
    code = manifest.get("code", {})
    out.append(
        f"- Code: {code.get('git_commit') or code.get('package_version')}"
        + (" (with local changes)" if code.get("dirty") else "")
        + f"; started {manifest.get('started_at')}, finished {manifest.get('finished_at')}"
    )
    out.append("")

    if not comparisons.empty:
        out += [f"## Verdicts (treatment vs control; claims tested at alpha {s.alpha:g} "
                "after correction)", ""]
        cols = ["group", "control_group", "metric", "claim", "ratio", "diff", "p_value", "p_adjusted", "verdict"]
        table = comparisons[[c for c in cols if c in comparisons]]
        out += [_md_table(table), ""]
        tally = comparisons.groupby("metric")["verdict"].value_counts().unstack(fill_value=0)
        out.append("Per metric: " + "; ".join(
            f"`{m}`: " + ", ".join(f"{int(n)} {v}" for v, n in row.items() if n) for m, row in tally.iterrows()
        ))
        out.append("")

    out += ["## Results (mean and 95% CI over seeds)", ""]
    base_cols = ["group", "role", "mean", "std", "ci95_low", "ci95_high", "n"]
    for metric, df in summary.groupby("metric", sort=False):
        out += [f"### `{metric}` ({df['direction'].iloc[0]} is better)", "", _md_table(df[base_cols]), ""]

    if plot_paths:
        out += ["## Plots", ""]
        for p in plot_paths:
            rel = p.relative_to(root) if p.is_relative_to(root) else p
            out += [f"![{p.stem}]({rel.as_posix()})", ""]
    return "\n".join(out)


def stats_words(study: StudyDescription, comparisons: pd.DataFrame) -> str:
    """One sentence: the test, the claims, alpha and the multiple-comparison correction."""
    test = {"welch": "Welch t-tests", "mannwhitney": "Mann-Whitney U tests"}.get(study.test, "tests")
    corr = comparisons["correction"].iloc[0] if len(comparisons) and "correction" in comparisons else study.correction
    n = int(comparisons["p_value"].notna().sum()) if len(comparisons) else 0
    words = {"bh": "Benjamini-Hochberg (false discovery rate)", "holm": "Holm (family-wise error rate)",
             "none": "no correction"}.get(corr, corr)  # fmt: skip
    claims = study.claims
    claimed = "; ".join(
        f"`{m}`: {stats.claim_text(c, study.metrics.get(m, 'higher'))}" for m, c in claims.items()
    )
    return (
        f"{test}; p-values adjusted for multiple comparisons by {words} over the {n} "
        f"treatment x metric comparisons; alpha {study.alpha:g}. "
        + (f"Claims: {claimed}; other metrics: a two-sided difference." if claims else
           "Every metric: a two-sided difference (no claims stated).")
    )


def write_outputs(
    store: ResultsStore,
    study: StudyDescription,
    manifest: dict[str, Any],
    records: list[RunRecord],
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    domain: Any = None,
    *,
    png: bool = True,
) -> list[Path]:
    """summary.csv, open tables, plots/*.png (unless `png` is False), report.md and report.html;
    returns the PNG paths."""
    store.root.mkdir(parents=True, exist_ok=True)
    summary.to_csv(store.summary_path, index=False)
    tables.write_tables(store.root, study, records)
    paths = plots.generic_plots(store.plots_dir, summary, study) if png else []
    if domain is not None and png:
        paths += plots.domain_plots(domain, store.plots_dir, summary, records)
    store.report_path.write_text(render_report(study, manifest, summary, comparisons, paths, store.root))
    html = html_report.render_html(study, manifest, summary, comparisons, records, stats_words(study, comparisons))
    (store.root / html_report.REPORT_NAME).write_text(html, encoding="utf-8")
    return paths


def write_result(result: Any, *, png: bool = True) -> list[Path]:
    """summary.csv, open tables, plots, report.md and report.html of a finished
    `runner.StudyResult` (`png` False: no matplotlib PNGs)."""
    study = result.study
    return write_outputs(ResultsStore(result.out), study.describe(), result.manifest, result.records,
                         result.summary, result.comparisons, study.domain, png=png)


def report_dir(
    root: str | Path,
    plugins: list[str] | None = None,
    skipped: list[str] | None = None,
    *,
    alpha: float | None = None,
    correction: str | None = None,
) -> Path:
    """Rebuild summary, tables, plots, report.md and report.html of a results folder from its
    manifest and runs (alpha and correction: override the study's).

    Run files that do not read back whole (checksum mismatch, truncated) are left out and
    listed in `skipped` (`path: why`), not fatal: re-run the study to redo them."""
    store = ResultsStore(root)
    manifest = store.load_manifest()
    if not manifest or "study" not in manifest:
        raise OrreryInputError(f"{store.root}: no study results here (missing or unreadable manifest.json)")
    study = StudyDescription.from_dict(manifest["study"]).with_stats(alpha, correction)
    wanted = set(manifest.get("runs", {}))
    skipped = skipped if skipped is not None else []
    records = [r for r in store.records(skipped) if r.run_id in wanted]
    if not records:
        raise OrreryInputError(f"{store.root}: no finished runs in {store.runs_dir}")
    summary, comparisons = stats.summarize(study, records)
    domain = None
    try:
        from orrery.experiments.plugins import load_plugins, plugin_modules
        from orrery.sim.domains import get_domain

        load_plugins(plugin_modules(plugins or []))
        domain = get_domain(study.domain)
    except Exception:  # noqa: BLE001 - a report still works without the domain's own plots
        domain = None
    write_outputs(store, study, manifest, records, summary, comparisons, domain)
    return store.report_path
