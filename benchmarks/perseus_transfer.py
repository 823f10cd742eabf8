"""Check: Perseus plans made on *predicted* stage profiles, replayed on the measured ones (#14).

    python benchmarks/perseus_transfer.py [--microbatches 12] [--a100 CSV --a40 CSV]

A new model's stages are measured only at the maximum SM clock; the GPU family's clock shape
(`orrery.hwmodels.gpu_energy_transfer.ClockCurve`) predicts every other clock. Perseus plans on
that predicted profile; the plan's frequencies are then run on the real profile. Compared with
the same plan (fastest, minimum-energy) made on the real profile: energy savings vs all-max-clock
(target: within 1.5 points) and plan iteration time (target: within 2 %). Cases:
  - leave-one-stage-out within each bloom profile (clock shape fitted without that computation,
    whose prediction is anchored at its own max-clock point; the others keep their real points)
  - A100 -> A40: the shape fitted on the A100 profile predicts every A40 computation from its
    max-clock point, and the reverse: (1) with no cap model (the source's shape as fitted, its
    own power cap included); (2) with the cap model (`ClockCurve.predict_capped`: the source's
    points below CAP_FRAC x its per-GPU limit give the uncapped shape, the target's limit holds
    every clock above an effective x_cap), max clock only, where a capped anchor cannot locate
    x_cap (= (1) up to the fit); (3) the same plus one measured clock (SECOND_CLOCK_X x max),
    which locates x_cap and rescales the shape's depth through it; (4) option: the physical clock
    model (`predict_physical`: static + C V(f)^2 f power with the source's V/f curve, memory +
    compute time), anchored at the maximum clock plus the clocks `PHYSICAL_CLOCKS_X` x max.
  Ceiling (reported, not a case of `met`): each GPU's plans made on each computation's own smooth
  physical fit (its V/f curve, S, k, t_mem, t_comp from all its own points), replayed on the real
  profile: what a smooth model of the right form reaches with every point measured. The real
  profile's bumps (e.g. the A40 forward passes' time jumps up ~10 % from 1035 to 1080 MHz) are
  what the plans on it exploit and no smooth curve has.
  Per-GPU limits: A40 300 W, A100 SXM 500 W (`profile_power_limit_w`, the HGX 500 W board).
Prints one line per case and a final JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from orrery.hwmodels.gpu_energy import computation_models_from_profile, load_stage_profile
from orrery.hwmodels.gpu_energy_transfer import (
    FAMILY_REF_CLOCK_MHZ,
    PHYSICAL_CLOCKS_X,
    SECOND_CLOCK_X,
    _clock_curves,
    clock_curves_uncapped,
    fit_clock_curve,
    fit_vf_curve,
    predict_physical,
    profile_power_limit_w,
)
from orrery.policies.energy.base import ComputationOption, PipelineView
from orrery.policies.energy.perseus import compute_frontier
from orrery.traces.paths import resolve_data_path
from orrery.workloads.training import pipeline_1f1b

PROFILES = {"a100": ("shared:gpu/perseus_stage_profile_bloom+a100_sxm_bf16.csv", 84.0),
            "a40": ("shared:gpu/perseus_stage_profile_bloom+a40_bf16.csv", 70.0)}  # blocking W (gpus.py)
GPU = {"a100": "A100-SXM4-80GB", "a40": "A40"}  # per-GPU power limits: gpu_energy_transfer.profile_power_limit_w
TARGET_SAVING_POINTS, TARGET_TIME = 1.5, 0.02


def predicted_profile(df: pd.DataFrame, curve, only: tuple[int, str] | None = None,
                      power_limit_w: float | None = None, second: bool = False) -> pd.DataFrame:
    """`df` with time and energy replaced by the curve's prediction from each computation's
    max-clock point (only for computation `only` when given). With `power_limit_w`, the
    cap-aware prediction (`ClockCurve.predict_capped`); with `second`, the point nearest
    `SECOND_CLOCK_X` x max clock is measured too (it locates the cap)."""
    out = df.copy()
    for (s, ins), g in df.groupby(["stage", "instruction"]):
        if only is not None and (int(s), str(ins)) != only:
            continue
        f = g["frequency"].to_numpy(float)
        top = g.loc[g["frequency"].idxmax()]
        args = (f, float(top["frequency"]), float(top["time"]), float(top["energy"]))
        if power_limit_w is None:
            t, e = curve.predict(*args)
        else:
            sec = None
            if second:
                r = g.iloc[int(np.argmin(np.abs(f - SECOND_CLOCK_X * f.max())))]
                sec = (float(r["frequency"]), float(r["time"]), float(r["energy"]))
            t, e, _ = curve.predict_capped(*args, power_limit_w, second=sec)
        out.loc[g.index, "time"] = t
        out.loc[g.index, "energy"] = e
    return out


def physical_profile(df: pd.DataFrame, vf, power_limit_w: float, xs, depth: bool = True) -> pd.DataFrame:
    """`df` with every computation predicted by the physical clock model (`predict_physical`)
    from its max-clock point and the points nearest `xs` x max clock (all its points: xs=None)."""
    out = df.copy()
    for (_s, _ins), g in df.groupby(["stage", "instruction"]):
        f, t, e = (g[c].to_numpy(float) for c in ("frequency", "time", "energy"))
        top = int(np.argmax(f))
        idx = (range(len(f)) if xs is None
               else sorted({top} | {int(np.argmin(np.abs(f - x * f[top]))) for x in xs}))
        tp, ep, _ = predict_physical(vf, f, [(f[i], t[i], e[i]) for i in idx], power_limit_w, depth)
        out.loc[g.index, "time"] = tp
        out.loc[g.index, "energy"] = ep
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
    ap.add_argument("--a100", metavar="CSV", default=PROFILES["a100"][0],
                    help="A100 SXM stage profile (default: the bloom one); e.g. another model's profile of the "
                         "Perseus artifact (ml-energy/zeus branch kronos, sosp24_data/emulation/stage_profile/)")
    ap.add_argument("--a40", metavar="CSV", default=PROFILES["a40"][0], help="A40 stage profile (default: bloom)")
    args = ap.parse_args()
    dfs = {g: load_stage_profile(resolve_data_path(getattr(args, g))) for g in PROFILES}
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
    limit_w = {g: profile_power_limit_w(df, GPU[g], g) for g, df in dfs.items()}  # A100 SXM 500 W, A40 300 W
    for src, dst in (("a100", "a40"), ("a40", "a100")):
        cur = fit_clock_curve("ampere", _clock_curves(dfs[src]))  # shape incl. the source's cap
        comps = computation_models_from_profile(predicted_profile(dfs[dst], cur))
        cases[f"{src} -> {dst} (max clock, no cap model)"] = compare(
            plans(comps, real[dst], args.microbatches, PROFILES[dst][1]), base[dst])
        # cap-aware: the uncapped shape (source points below its limit), the target's limit;
        # x relative to each GPU's max clock, or (option) on the family's absolute clock scale
        for fref, tag in ((0.0, ""), (FAMILY_REF_CLOCK_MHZ["ampere"], ", absolute clock")):
            cur = fit_clock_curve("ampere", clock_curves_uncapped(dfs[src], limit_w[src], fref), f_ref_mhz=fref)
            for second, label in ((False, "max clock, cap model"), (True, f"max + {SECOND_CLOCK_X} clock, cap model")):
                comps = computation_models_from_profile(
                    predicted_profile(dfs[dst], cur, power_limit_w=limit_w[dst], second=second))
                cases[f"{src} -> {dst} ({label}{tag})"] = compare(
                    plans(comps, real[dst], args.microbatches, PROFILES[dst][1]), base[dst])
        vf = fit_vf_curve("ampere", dfs[src], limit_w[src])  # option (4): physical clock model
        for depth, tag in ((False, ""), (True, ", V/f depth through the max clock")):
            comps = computation_models_from_profile(
                physical_profile(dfs[dst], vf, limit_w[dst], PHYSICAL_CLOCKS_X, depth))
            cases[f"{src} -> {dst} (max + {'/'.join(map(str, PHYSICAL_CLOCKS_X))} clocks, physical{tag})"] = compare(
                plans(comps, real[dst], args.microbatches, PROFILES[dst][1]), base[dst])
    ceiling = {}
    for g, df in dfs.items():  # each computation's own smooth physical fit, every point measured
        comps = computation_models_from_profile(physical_profile(df, fit_vf_curve("ampere", df, limit_w[g]),
                                                                 limit_w[g], None))
        ceiling[f"{g} own smooth fit (all points)"] = compare(
            plans(comps, real[g], args.microbatches, PROFILES[g][1]), base[g])
    for name, c in list(cases.items()) + [(f"ceiling: {k}", v) for k, v in ceiling.items()]:
        print(f"{name:62s} " + "; ".join(
            f"{k}: saving {v['saving_pct_predicted_plan']:.2f}% vs {v['saving_pct_real_plan']:.2f}% "
            f"({v['saving_diff_points']:+.2f} pt), time {v['time_diff_pct']:+.2f}%" for k, v in c.items()))
    met = all(v["met"] for c in cases.values() for v in c.values())
    print(json.dumps({"benchmark": "perseus_transfer", "microbatches": args.microbatches,
                      "profiles": {"a100": str(args.a100), "a40": str(args.a40)},
                      "target_saving_points": TARGET_SAVING_POINTS, "target_time_pct": TARGET_TIME * 100,
                      "cases": cases, "ceiling_smooth_fit": ceiling, "met": met}))


if __name__ == "__main__":
    main()
