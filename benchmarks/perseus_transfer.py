"""Check: Perseus plans made on *predicted* stage profiles, replayed on the measured ones (#14).

    python benchmarks/perseus_transfer.py [--microbatches 12]

A new model's stages are measured only at the maximum SM clock; the GPU family's clock shape
(`orrery.hwmodels.gpu_energy_transfer.ClockCurve`) predicts every other clock. Perseus plans on
that predicted profile; the plan's frequencies are then run on the real profile. Compared with
the same plan (fastest, minimum-energy) made on the real profile: energy savings vs all-max-clock
(target: within 1.5 points) and plan iteration time (target: within 2 %). Cases:
  - leave-one-stage-out within each bloom profile (clock shape fitted without that computation,
    whose prediction is anchored at its own max-clock point; the others keep their real points)
  - A100 -> A40: the shape fitted on the A100 profile predicts every A40 computation from its
    max-clock point, and the reverse.
Prints one line per case and a final JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from orrery.hwmodels.gpu_energy import computation_models_from_profile, load_stage_profile
from orrery.hwmodels.gpu_energy_transfer import _clock_curves, fit_clock_curve
from orrery.policies.energy.base import ComputationOption, PipelineView
from orrery.policies.energy.perseus import compute_frontier
from orrery.traces.paths import resolve_data_path
from orrery.workloads.training import pipeline_1f1b

PROFILES = {"a100": ("shared:gpu/perseus_stage_profile_bloom+a100_sxm_bf16.csv", 84.0),
            "a40": ("shared:gpu/perseus_stage_profile_bloom+a40_bf16.csv", 70.0)}  # blocking W (gpus.py)
TARGET_SAVING_POINTS, TARGET_TIME = 1.5, 0.02


def predicted_profile(df: pd.DataFrame, curve, only: tuple[int, str] | None = None) -> pd.DataFrame:
    """`df` with time and energy replaced by the curve's prediction from each computation's
    max-clock point (only for computation `only` when given)."""
    out = df.copy()
    for (s, ins), g in df.groupby(["stage", "instruction"]):
        if only is not None and (int(s), str(ins)) != only:
            continue
        top = g.loc[g["frequency"].idxmax()]
        t, e = curve.predict(g["frequency"].to_numpy(float), float(top["frequency"]), float(top["time"]),
                             float(top["energy"]))
        out.loc[g.index, "time"] = t
        out.loc[g.index, "energy"] = e
    return out


def _view(comps, n_micro: int, blocking_w: float):
    keys = sorted(comps)
    n_stages = max(s for s, _ in keys) + 1
    ops, preds = pipeline_1f1b(n_stages, n_micro)
    options = tuple(ComputationOption(s, k, comps[(s, k)].freqs_mhz, comps[(s, k)].times_s,
                                      comps[(s, k)].energies_j, comps[(s, k)].exp) for s, k in keys)
    fmax = max(max(c.all_freqs_mhz) for c in comps.values())
    return PipelineView(n_stages, n_micro, tuple(preds), tuple(keys.index((c.stage, c.kind)) for c in ops),
                        options, blocking_w, fmax), ops


def _run(comps, pv, ops, freqs):
    """Iteration (time, energy) of the frequencies on `comps` (the real profile)."""
    from orrery.policies.energy.frontier import earliest_starts, topological_order

    t = np.empty(len(ops))
    e = np.empty(len(ops))
    for i, (c, f) in enumerate(zip(ops, freqs, strict=True)):
        t[i], e[i] = comps[(c.stage, c.kind)].at_frequency(f)
    _, T = earliest_starts(topological_order(pv.preds), pv.preds, t.tolist())
    return float(T), float(e.sum()) + pv.blocking_w * (pv.n_stages * T - float(t.sum()))


def plans(comps_plan, comps_real, n_micro, blocking_w) -> dict:
    """Fastest and minimum-energy plans made on `comps_plan`, run on `comps_real`."""
    pv, ops = _view(comps_plan, n_micro, blocking_w)
    pv_real, _ = _view(comps_real, n_micro, blocking_w)
    fr = compute_frontier(pv, 1e-3)
    Tb, Eb = _run(comps_real, pv_real, ops, tuple(pv_real.max_freq_mhz for _ in ops))
    out = {}
    for name, k in (("fastest", 0), ("min_energy", int(np.argmin(fr.energies_j)))):
        T, E = _run(comps_real, pv_real, ops, tuple(fr.freqs_mhz[k]))
        out[name] = {"time_s": T, "saving_pct": (1 - E / Eb) * 100}
    return out


def compare(pred: dict, real: dict) -> dict:
    r = {}
    for name in ("fastest", "min_energy"):
        ds = pred[name]["saving_pct"] - real[name]["saving_pct"]
        dt = pred[name]["time_s"] / real[name]["time_s"] - 1
        r[name] = {"saving_pct_real_plan": round(real[name]["saving_pct"], 2),
                   "saving_pct_predicted_plan": round(pred[name]["saving_pct"], 2),
                   "saving_diff_points": round(ds, 2), "time_diff_pct": round(dt * 100, 2),
                   "met": bool(abs(ds) <= TARGET_SAVING_POINTS and abs(dt) <= TARGET_TIME)}
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--microbatches", type=int, default=12)
    args = ap.parse_args()
    dfs = {g: load_stage_profile(resolve_data_path(p)) for g, (p, _) in PROFILES.items()}
    real = {g: computation_models_from_profile(df) for g, df in dfs.items()}
    base = {g: plans(real[g], real[g], args.microbatches, PROFILES[g][1]) for g in dfs}
    cases = {}
    for g, df in dfs.items():  # leave-one-stage-out: the held-out computation predicted
        curves = _clock_curves(df)
        for i, (key, *_rest) in enumerate(curves):
            if key[0] not in (0, max(k[0] for k, *_ in curves)):
                continue  # stages 1..n-2 repeat stage 0's profile in these files: same case
            cur = fit_clock_curve("ampere", curves[:i] + curves[i + 1:])
            comps = computation_models_from_profile(predicted_profile(df, cur, only=key))
            c = compare(plans(comps, real[g], args.microbatches, PROFILES[g][1]), base[g])
            cases[f"{g} leave-out {key[0]}/{key[1]}"] = c
    for src, dst in (("a100", "a40"), ("a40", "a100")):
        cur = fit_clock_curve("ampere", _clock_curves(dfs[src]))
        comps = computation_models_from_profile(predicted_profile(dfs[dst], cur))
        cases[f"{src} -> {dst} (anchored at max clock)"] = compare(
            plans(comps, real[dst], args.microbatches, PROFILES[dst][1]), base[dst])
    for name, c in cases.items():
        print(f"{name:40s} " + "; ".join(
            f"{k}: saving {v['saving_pct_predicted_plan']:.2f}% vs {v['saving_pct_real_plan']:.2f}% "
            f"({v['saving_diff_points']:+.2f} pt), time {v['time_diff_pct']:+.2f}%" for k, v in c.items()))
    met = all(v["met"] for c in cases.values() for v in c.values())
    print(json.dumps({"benchmark": "perseus_transfer", "microbatches": args.microbatches,
                      "target_saving_points": TARGET_SAVING_POINTS, "target_time_pct": TARGET_TIME * 100,
                      "cases": cases, "met": met}))


if __name__ == "__main__":
    main()
