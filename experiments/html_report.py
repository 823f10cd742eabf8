"""`report.html`: one self-contained, offline page per study (plotly, its JavaScript embedded once).

The page holds the hypothesis, the setup, the statistics used, the verdict table and
interactive figures: per metric, the mean and 95% CI of every group with its seeds as points
(hover: group, seed, CI; click a legend entry to hide a policy), and the domain's own figures
(CDFs and time series) from `DOMAIN_FIGURES`. No CDN, no server: open it from disk.

Figures are plain plotly JSON (`{"data": [...], "layout": {...}}`), built here from the run
records; a domain (or a plug-in) adds its own with `register_html_figures(domain, fn)`, where
`fn(records, summary, study) -> [(title, figure), ...]`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from orrery.experiments.description import StudyDescription

REPORT_NAME = "report.html"
MAX_POINTS = 1500  # per line: long series are thinned evenly (the tables keep every point)
PLOT_CLASS = "orrery-plot"
CONFIG = {"displaylogo": False, "responsive": True}

Figure = dict[str, Any]
FigureFn = Callable[[Sequence[Any], pd.DataFrame, dict[str, Any]], list[tuple[str, Figure]]]
DOMAIN_FIGURES: dict[str, FigureFn] = {}


def register_html_figures(domain: str, fn: FigureFn) -> FigureFn:
    """Add a domain's interactive figures to its studies' report.html."""
    DOMAIN_FIGURES[domain] = fn
    return fn


# ----------------------------------------------------------------------------- helpers


def _thin(*cols: Sequence[float]) -> list[list[float]]:
    n = len(cols[0]) if cols else 0
    if n <= MAX_POINTS:
        return [list(np.asarray(c, dtype=float)) for c in cols]
    idx = np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))
    return [list(np.asarray(c, dtype=float)[idx]) for c in cols]


def _policy(r: Any) -> str:
    return str(r.values.get("policy", r.scenario.get("policy", "?")))


def _case(r: Any) -> str:
    return str(r.values.get("case", "") or "")


def _others(r: Any, skip: Sequence[str] = ("policy",)) -> str:
    return ", ".join(f"{k}={v}" for k, v in r.values.items() if k not in skip)


def _cdf_trace(values: np.ndarray, name: str, group: str = "", **kw: Any) -> dict[str, Any]:
    x = np.sort(values[np.isfinite(values)])
    y = np.arange(1, len(x) + 1) / max(len(x), 1)
    x, y = _thin(x, y)
    return {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, "legendgroup": group or name,
            "line": {"shape": "hv"}, "hovertemplate": f"{html.escape(name)}<br>%{{x:.4g}}: %{{y:.3f}}<extra></extra>",
            **kw}  # fmt: skip


def _layout(title: str, xtitle: str, ytitle: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "xaxis": {"title": {"text": xtitle}}, "yaxis": {"title": {"text": ytitle}},
            "hovermode": "closest", "legend": {"font": {"size": 10}}, "margin": {"t": 50, "l": 60, "r": 20, "b": 50},
            "height": 420, **kw}  # fmt: skip


def _at_top(records: Sequence[Any], key: str = "workload.rate_rps") -> list[Any]:
    """Per case, the runs at the highest value of `key` (where policies differ most), or all."""
    out = []
    for case in sorted({_case(r) for r in records}):
        rs = [r for r in records if _case(r) == case]
        vals = [r.values.get(key) for r in rs if isinstance(r.values.get(key), int | float)]
        top = max(vals) if vals else None
        out += [r for r in rs if top is None or r.values.get(key) == top]
    return out


# ----------------------------------------------------------------------------- generic figures


def metric_figures(summary: pd.DataFrame, records: Sequence[Any], study: StudyDescription) -> list[tuple[str, Figure]]:
    """Per metric: group means with 95% CI and every seed as a point; one legend entry per policy
    (and case), so a click hides it. With one numeric variable besides the policy, it is the x axis."""
    figs: list[tuple[str, Figure]] = []
    if summary.empty:
        return figs
    variables = [v for v in study.variables if v != "policy"]
    numeric = [v for v in variables if v in summary and pd.api.types.is_numeric_dtype(summary[v])]
    xvar = numeric[0] if len(numeric) == 1 and len(variables) == 1 else None
    by_label = {}
    for r in records:
        by_label.setdefault(r.group, []).append(r)
    keys = [k for k in ("policy", "case") if k in summary]
    for metric, df in summary.groupby("metric", sort=False):
        direction = df["direction"].iloc[0]
        data = []
        for i, (key, sub) in enumerate(df.groupby(keys, sort=False)):
            name = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            color = f"hsl({(i * 67) % 360},60%,45%)"
            if xvar:
                sub = sub.sort_values(xvar)
                x = [float(v) for v in sub[xvar]]
            else:
                x = list(sub["group"])
            mean = sub["mean"].to_numpy(dtype=float)
            lo = np.nan_to_num(mean - sub["ci95_low"].to_numpy(dtype=float))
            hi = np.nan_to_num(sub["ci95_high"].to_numpy(dtype=float) - mean)
            text = []
            for _, row in sub.iterrows():
                verdict = row.get("verdict")
                extra = f"<br>vs control: {verdict} (p_adj {row['p_adjusted']:.3g})" if isinstance(verdict, str) else ""
                text.append(f"{html.escape(str(row['group']))}<br>mean {row['mean']:.4g}, 95% CI "
                            f"[{row['ci95_low']:.4g}, {row['ci95_high']:.4g}], n={row['n']}{extra}")  # fmt: skip
            data.append({"type": "scatter", "mode": "lines+markers" if xvar else "markers", "x": x,
                         "y": list(mean), "name": name, "legendgroup": name, "marker": {"size": 10, "color": color,
                         "symbol": ["diamond" if r == "control" else "circle" for r in sub["role"]]},
                         "line": {"color": color}, "error_y": {"type": "data", "symmetric": False,
                         "array": list(hi), "arrayminus": list(lo), "color": color},
                         "text": text, "hovertemplate": "%{text}<extra></extra>"})  # fmt: skip
            px, py, pt = [], [], []
            for _, row in sub.iterrows():
                for r in by_label.get(row["group"], []):
                    v = float(r.metrics.get(metric, math.nan))
                    px.append(float(row[xvar]) if xvar else row["group"])
                    py.append(v)
                    pt.append(f"{html.escape(str(row['group']))}<br>seed {r.seed}: {v:.4g}")
            if px:
                data.append({"type": "scatter", "mode": "markers", "x": px, "y": py, "name": f"{name} seeds",
                             "legendgroup": name, "showlegend": False, "opacity": 0.5,
                             "marker": {"size": 6, "color": color}, "text": pt,
                             "hovertemplate": "%{text}<extra></extra>"})  # fmt: skip
        layout = _layout(f"{metric}: mean and 95% CI per group, seeds as points (diamond: control)",
                         xvar or "group", f"{metric} ({direction} is better)")  # fmt: skip
        if not xvar:
            layout["xaxis"]["tickangle"] = -30
            layout["height"] = 480
        figs.append((metric, {"data": data, "layout": layout}))
    return figs


# ----------------------------------------------------------------------------- domain figures


def serving_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """QoE CDF per policy at the highest rate, and cumulative tokens delivered over time."""
    figs = []
    top = _at_top(records)
    data = []
    for (pol, case), rs in _by(top, lambda r: (_policy(r), _case(r))).items():
        q = np.concatenate([np.asarray(r.table["qoe"], dtype=float) for r in rs if "qoe" in r.table] or [np.empty(0)])
        if len(q):
            name = pol + (f" / {case}" if case else "")
            data.append(_cdf_trace(q, name))
    if data:
        rate = top[0].values.get("workload.rate_rps") if top else None
        at = f" at {rate:g} req/s" if isinstance(rate, int | float) else ""
        figs.append(("QoE CDF", {"data": data, "layout": _layout(f"per-request QoE CDF{at} (all seeds)",
                                                                 "QoE", "fraction of requests")}))  # fmt: skip
    data = []
    for (pol, case), rs in _by(top, lambda r: (_policy(r), _case(r))).items():
        r = min(rs, key=lambda r: r.seed)
        it = (r.series or {}).get("iterations")
        if it is None or not len(it) or "batch" not in it:
            continue
        it = it.sort_values("start_s")
        t = (it["start_s"] + it["duration_s"]).to_numpy(dtype=float)
        tokens = np.cumsum(it["batch"].to_numpy(dtype=float))
        x, y = _thin(t, tokens)
        name = pol + (f" / {case}" if case else "")
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name,
                     "hovertemplate": f"{html.escape(name)} (seed {r.seed})<br>t=%{{x:.1f}} s: %{{y:.0f}} tokens"
                                      "<extra></extra>"})  # fmt: skip
    if data:
        figs.append(("token timeline", {"data": data, "layout": _layout(
            "tokens delivered over time (first seed, highest rate)", "time (s)", "tokens delivered")}))
    return figs


def fl_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """JCT CDF per policy (all seeds)."""
    data = []
    for pol, rs in _by(records, _policy).items():
        jct = [np.asarray(r.table["jct_s"], dtype=float) / 3600.0 for r in rs if "jct_s" in r.table]
        if jct:
            data.append(_cdf_trace(np.concatenate(jct), pol))
    if not data:
        return []
    return [("JCT CDF", {"data": data, "layout": _layout("job completion time CDF (all seeds)",
                                                         "JCT (h)", "fraction of jobs")})]  # fmt: skip


def training_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """Perseus: time-energy frontier per group with the chosen plan; Chase: carbon intensity with
    each policy's power-limit schedule (first seed per group, per case)."""
    figs = []
    data = []
    seen = set()
    for r in sorted(records, key=lambda r: r.seed):
        f = (r.series or {}).get("frontier")
        if f is None or not len(f) or r.group in seen:
            continue
        seen.add(r.group)
        name = _others(r) or r.group
        x, y = _thin(f["time_s"], f["energy_j"] / 1e3)
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, "legendgroup": name,
                     "hovertemplate": f"{html.escape(name)}<br>%{{x:.4g}} s, %{{y:.4g}} kJ<extra></extra>"})  # fmt: skip
        t, e = r.metrics.get("iteration_time_s"), r.metrics.get("iteration_energy_j")
        if t is not None and e is not None:
            data.append({"type": "scatter", "mode": "markers", "x": [t], "y": [e / 1e3], "legendgroup": name,
                         "name": f"{name}: {_policy(r)}", "showlegend": False, "marker": {"size": 9},
                         "hovertemplate": f"{html.escape(_policy(r))} plan ({html.escape(name)})<br>"
                                          "%{x:.4g} s, %{y:.4g} kJ<extra></extra>"})  # fmt: skip
    if data:
        figs.append(("energy-time frontier", {"data": data, "layout": _layout(
            "Perseus iteration time-energy frontier (markers: chosen plans)", "iteration time (s)",
            "iteration energy (kJ)")}))
    for case, rs in _by([r for r in records if "forecast" in (r.series or {})], _case).items():
        data = []
        first = min(rs, key=lambda r: r.seed)
        fc = first.series["forecast"]
        x, y = _thin(fc["t_s"] / 3600, fc["actual_g_per_kwh"])
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": "carbon intensity",
                     "line": {"color": "gray"}, "hovertemplate": "t=%{x:.2f} h: %{y:.0f} g/kWh<extra></extra>"})
        if "forecast_g_per_kwh" in fc:
            x, y = _thin(fc["t_s"] / 3600, fc["forecast_g_per_kwh"])
            data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": "forecast",
                         "line": {"color": "gray", "dash": "dot"},
                         "hovertemplate": "forecast t=%{x:.2f} h: %{y:.0f} g/kWh<extra></extra>"})  # fmt: skip
        for label, grs in _by(rs, lambda r: r.group).items():
            r = min(grs, key=lambda r: r.seed)
            tab = r.table
            if "t_start_s" not in tab or "power_limit_w" not in tab:
                continue
            x = list(np.asarray(tab["t_start_s"], dtype=float) / 3600)
            name = _others(r, ("case",)) or label
            data.append({"type": "scatter", "mode": "lines", "x": x, "y": list(tab["power_limit_w"].astype(float)),
                         "yaxis": "y2", "name": name, "line": {"shape": "hv"},
                         "hovertemplate": f"{html.escape(name)}<br>t=%{{x:.2f}} h: %{{y:.0f}} W<extra></extra>"})  # fmt: skip
        layout = _layout(f"carbon intensity and training schedule{f' ({case})' if case else ''}", "time (h)",
                         "carbon intensity (g/kWh)")  # fmt: skip
        layout["yaxis2"] = {"title": {"text": "power limit (W)"}, "overlaying": "y", "side": "right"}
        figs.append((f"carbon schedule {case}", {"data": data, "layout": layout}))
    return figs


def resilience_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """Throughput over time per policy with node losses marked, one figure per setting (first seed)."""
    figs = []
    settings = _by(records, lambda r: _others(r) or "all")
    for key, rs in list(sorted(settings.items()))[:8]:
        data, shapes = [], []
        for pol, prs in sorted(_by(rs, _policy).items()):
            r = min(prs, key=lambda r: r.seed)
            s = (r.series or {}).get("throughput")
            if s is None or not len(s):
                continue
            x, y = _thin(s.time_s / 3600, s.samples_per_s)
            data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": pol, "line": {"shape": "hv"},
                         "hovertemplate": f"{html.escape(pol)}<br>t=%{{x:.2f}} h: %{{y:.4g}} samples/s"
                                          "<extra></extra>"})  # fmt: skip
            ev = (r.series or {}).get("events")
            if not shapes and ev is not None and len(ev) and "kind" in ev:
                for t in ev.loc[ev["kind"] == "remove", "time_s"].to_numpy(dtype=float)[:200]:
                    shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": t / 3600, "x1": t / 3600,
                                   "y0": 0, "y1": 1, "line": {"color": "red", "width": 1}, "opacity": 0.35})  # fmt: skip
        if data:
            layout = _layout(f"throughput over time ({key}); red: node losses", "time (h)", "samples/s")
            layout["shapes"] = shapes
            figs.append((f"throughput {key}", {"data": data, "layout": layout}))
    return figs


def fedtrans_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """Per-client accuracy CDF per policy, one figure per case."""
    figs = []
    for case, rs in _by(records, _case).items():
        data = []
        for pol, prs in sorted(_by(rs, _policy).items()):
            acc = [np.asarray(r.table["accuracy"], dtype=float) for r in prs if "accuracy" in r.table]
            if acc:
                data.append(_cdf_trace(np.concatenate(acc), pol))
        if data:
            figs.append((f"accuracy CDF {case}", {"data": data, "layout": _layout(
                f"per-client accuracy CDF{f' ({case})' if case else ''}", "accuracy", "fraction of clients")}))
    return figs


def fl_feasibility_figures(records: Sequence[Any], summary: pd.DataFrame, study: StudyDescription) -> list[tuple[str, Figure]]:
    """Devices assigned per hour of day and the round-time CDF, per group (first seed)."""
    part, rounds = [], []
    for label, rs in _by(records, lambda r: r.group).items():
        r = min(rs, key=lambda r: r.seed)
        p = (r.series or {}).get("participation_by_hour")
        if p is not None and len(p):
            part.append({"type": "scatter", "mode": "lines+markers", "x": list(p["hour"].astype(float)),
                         "y": list(p["assigned"].astype(float)), "name": label})  # fmt: skip
        rd = (r.series or {}).get("rounds")
        if rd is not None and len(rd) and "t_close_s" in rd:
            rounds.append(_cdf_trace((rd["t_close_s"] - rd["t_req_s"]).to_numpy(dtype=float), label))
    figs = []
    if part:
        figs.append(("participation", {"data": part, "layout": _layout("devices assigned per hour of day",
                                                                         "hour of day", "devices")}))  # fmt: skip
    if rounds:
        figs.append(("round time CDF", {"data": rounds, "layout": _layout("round time CDF", "round time (s)",
                                                                            "fraction of rounds")}))  # fmt: skip
    return figs


def _by(items: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out


register_html_figures("serving", serving_figures)
register_html_figures("fl", fl_figures)
register_html_figures("training", training_figures)
register_html_figures("resilience", resilience_figures)
register_html_figures("fedtrans", fedtrans_figures)
register_html_figures("fl_feasibility", fl_feasibility_figures)


# ----------------------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1150px;padding:1em 2em;
color:#222;background:#fff}
h1{margin-bottom:.2em} blockquote{border-left:4px solid #4c72b0;margin:0;padding:.4em 1em;background:#f4f6fa}
table{border-collapse:collapse;font-size:13px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.supported{color:#1a7f37;font-weight:600} .not-supported{color:#c62828;font-weight:600} .inconclusive{color:#777}
.orrery-plot{width:100%;min-height:420px;margin:1em 0} .muted{color:#777;font-size:13px}
details summary{cursor:pointer;margin:.5em 0}
"""


def _fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        if math.isnan(x):
            return "–"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return html.escape(str(x))


def _table(df: pd.DataFrame, verdict_col: str | None = "verdict") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            if c == verdict_col and isinstance(v, str):
                cells.append(f'<td class="{v.replace(" ", "-")}">{html.escape(v)}</td>')
            elif isinstance(v, int | float | np.number) and not isinstance(v, bool):
                cells.append(f'<td class="num">{_fmt(v)}</td>')
            else:
                cells.append(f"<td>{_fmt(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _json(obj: Any) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(obj, cls=PlotlyJSONEncoder).replace("</", "<\\/")


def render_html(
    study: StudyDescription,
    manifest: dict[str, Any],
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    records: Sequence[Any],
    stats_sentence: str = "",
) -> str:
    """The whole page as one string (plotly.js inline, once)."""
    from plotly.offline import get_plotlyjs

    s = study
    e = html.escape
    parts = [f"<h1>Study <code>{e(s.name)}</code></h1>"]
    if s.description:
        parts.append(f"<p>{e(s.description)}</p>")
    parts.append(f"<h2>Hypothesis</h2><blockquote>{e(s.hypothesis)}</blockquote>")
    counts = manifest.get("counts", {})
    repro = manifest.get("reproducibility", {})
    setup = [
        f"Domain <code>{e(s.domain)}</code>" + (f", scale <code>{e(str(s.scale))}</code>" if s.scale else ""),
        "Independent variables: " + ", ".join(f"<code>{e(v)}</code>" for v in s.variables),
        "Control: " + ", ".join(f"<code>{e(k)}</code> = {e(repr(v))}" for k, v in s.control.items()),
        f"Seeds: {e(str(s.seeds))}" + (f"; cases: {e(', '.join(s.cases))}" if s.cases else ""),
        f"Runs: {counts.get('total', '?')} ({counts.get('executed', '?')} executed, {counts.get('resumed', '?')} "
        f"resumed); reproducibility: {'OK' if repro.get('ok') else 'FAILED'}",
        f"Statistics: {e(stats_sentence)}",
    ]
    parts.append("<h2>Setup</h2><ul>" + "".join(f"<li>{x}</li>" for x in setup) + "</ul>")

    if len(comparisons):
        parts.append(f"<h2>Verdicts (alpha {float(s.alpha):g}, after correction)</h2>")
        tally = []
        for metric, sub in comparisons.groupby("metric", sort=False):
            c = sub["verdict"].value_counts()
            tally.append({"metric": metric, "claim": sub["claim"].iloc[0], "supported": int(c.get("supported", 0)),
                          "inconclusive": int(c.get("inconclusive", 0)),
                          "not supported": int(c.get("not supported", 0))})  # fmt: skip
        parts.append(_table(pd.DataFrame(tally), verdict_col=None))
        cols = [c for c in ("group", "metric", "claim", "ratio", "diff", "p_value", "p_adjusted", "verdict")
                if c in comparisons]  # fmt: skip
        parts.append("<details><summary>every treatment x metric</summary>" + _table(comparisons[cols]) + "</details>")

    figures: list[tuple[str, Figure]] = []
    parts.append("<h2>Results</h2><p class='muted'>Hover for group, seed and CI; click a legend entry to hide "
                 "it, double-click to show only it; drag to zoom.</p>")  # fmt: skip
    for title, fig in metric_figures(summary, records, s):
        parts.append(f"<h3>{e(title)}</h3>{{{{plot:{len(figures)}}}}}")
        figures.append((title, fig))
    fn = DOMAIN_FIGURES.get(s.domain)
    if fn is not None:
        try:
            dom = fn(records, summary, s)
        except Exception as err:  # noqa: BLE001 - a broken figure must not lose the report
            dom = []
            parts.append(f"<p class='muted'>the {e(s.domain)} figures failed: {e(repr(err))}</p>")
        if dom:
            parts.append(f"<h2>{e(s.domain)}: distributions and time series</h2>")
            for title, fig in dom:
                parts.append(f"<h3>{e(title)}</h3>{{{{plot:{len(figures)}}}}}")
                figures.append((title, fig))
    body = "\n".join(parts)
    for i in range(len(figures)):
        body = body.replace(f"{{{{plot:{i}}}}}", f'<div id="plot-{i}" class="{PLOT_CLASS}"></div>', 1)
    code = manifest.get("code", {})
    footer = (f"<p class='muted'>orrery {e(str(code.get('package_version') or ''))}, commit "
              f"{e(str(code.get('git_commit') or '?'))}; started {e(str(manifest.get('started_at')))}, finished "
              f"{e(str(manifest.get('finished_at')))}. Tables: summary.csv, metrics.csv, metrics.parquet, "
              "series/*.parquet.</p>")  # fmt: skip
    figs_json = _json([{"data": f["data"], "layout": f["layout"]} for _, f in figures])
    script = (
        f"const FIGS = {figs_json};\nconst CONFIG = {_json(CONFIG)};\n"
        "Promise.all(FIGS.map((f, i) => Plotly.newPlot('plot-' + i, f.data, f.layout, CONFIG)))"
        ".then(() => { document.body.dataset.plotsRendered = String(FIGS.length); });"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>orrery: {e(s.name)}</title><style>{CSS}</style>\n"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n"
        f"<body>\n{body}\n{footer}\n<script type='text/javascript'>{script}</script>\n</body></html>\n"
    )
