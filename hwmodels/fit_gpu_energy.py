"""Fit the training energy models to ../shared/data/gpu and commit the parameters as JSON.

    python -m hwmodels.fit_gpu_energy [--data DIR]

Writes `hwmodels/params/gpu_energy_power_limit.json` and `gpu_energy_stage_profile.json`, each
with the source files' sha256, and for every fit its error on the points it was fitted to and
on held-out points (leave-one-out: each point predicted by a fit made without it).

Only fitted parameters, fit errors, ranges, counts and checksums are written: the measured points
stay in ../shared/data (SOURCES.md: the data are not copied into the repository). To simulate from
the measurements themselves, the simulator reads them at run time (`workload.power_model =
"measured"`, or a `shared:` stage-profile CSV as `workload.profile`).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeWarning

from orrery.core.files import sha256_file
from orrery.hwmodels.gpu_energy import (
    POWER_LIMIT_PARAMS,
    STAGE_PARAMS,
    exp_energy,
    fit_exp_energy,
    fit_freq_time,
    fit_power_limit,
    freq_time,
    global_sweep_points,
    load_global_power_sweep,
    load_power_limit_sweep,
    load_stage_profile,
    mape,
    pareto_mask,
    power_curve,
    sweep_points,
    time_curve,
)
from orrery.hwmodels.gpus import get_gpu

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _pl_fit_record(pl, t, p, unit):
    pw, tm = fit_power_limit(pl, t, p)
    fit_t, fit_p = mape(time_curve(pl, *tm), t), mape(power_curve(pl, *pw), p)
    loo_t, loo_p = [], []
    if len(pl) >= 5:
        for i in range(1, len(pl) - 1):  # interior points: held-out interpolation error
            m = np.arange(len(pl)) != i
            pw_i, tm_i = fit_power_limit(pl[m], t[m], p[m])
            loo_t.append(mape(time_curve(pl[i:i + 1], *tm_i), t[i:i + 1]))
            loo_p.append(mape(power_curve(pl[i:i + 1], *pw_i), p[i:i + 1]))
    return {
        "power": list(pw), "time": list(tm), "pl_min_w": float(pl.min()), "pl_max_w": float(pl.max()),
        "unit": unit, "n_points": int(len(pl)),
        "fit_error": {
            "time_mape_fitted_pct": fit_t, "power_mape_fitted_pct": fit_p,
            "time_mape_heldout_interior_pct": float(np.mean(loo_t)) if loo_t else None,
            "power_mape_heldout_interior_pct": float(np.mean(loo_p)) if loo_p else None,
        },
    }


def fit_power_limits(data: Path) -> dict:
    out = {"model": "P(pl)=softmin(m*pl, p_sat; s); T(pl)=t_inf*(pl_knee/softmin(pl, pl_knee; s_t))^gamma", "sources": {}, "gpus": {}}
    for gpu in ("v100", "a40"):
        path = data / "gpu" / f"zeus_power_limit_sweep_{gpu}.csv"
        points = sweep_points(load_power_limit_sweep(path))
        out["sources"][path.name] = sha256_file(path)
        out["gpus"][gpu] = {key: _pl_fit_record(d["power_limit_w"], d["time_s"], d["power_w"], d["unit"])
                            for key, d in points.items()}
    for gpu in ("A100", "A40"):
        path = data / "gpu" / f"perseus_zeus_global_{gpu}.csv"
        points = global_sweep_points(load_global_power_sweep(path))
        out["sources"][path.name] = sha256_file(path)
        models = out["gpus"].setdefault(gpu.lower(), {})
        for key, d in points.items():
            rec = _pl_fit_record(d["power_limit_w"], d["time_s"], d["power_w"], d["unit"])
            rec["n_gpus"] = d["n_gpus"]
            rec["num_microbatches"] = d["num_microbatches"]
            models[key] = rec
    return out


def fit_stage_profiles(data: Path) -> dict:
    out = {"model": "t(f)=alpha+beta/softmin(f, f_sat; soft); e(t)=a*exp(b*t)+c on Pareto-optimal points",
           "profiles": {}}
    for tag, gpu in (("a100_sxm", "a100"), ("a40", "a40")):
        path = data / "gpu" / f"perseus_stage_profile_bloom+{tag}_bf16.csv"
        df = load_stage_profile(path)
        spec = get_gpu(gpu)
        comps, errs_fit, errs_ho, errs_tf = {}, [], [], []
        for (s, ins), g in df.groupby(["stage", "instruction"]):
            g = g.sort_values("frequency", ascending=False)
            par = g[pareto_mask(g["time"].to_numpy(), g["energy"].to_numpy())].sort_values("time")
            t, e = par["time"].to_numpy(), par["energy"].to_numpy()
            a, b, c = fit_exp_energy(t, e)
            fit_err = mape(exp_energy(t, a, b, c), e)
            ho = []
            for i in range(1, len(t) - 1):  # interior points: held out one at a time
                m = np.arange(len(t)) != i
                ho.append(mape(exp_energy(t[i:i + 1], *fit_exp_energy(t[m], e[m])), e[i:i + 1]))
            alpha, beta, f_sat, soft = fit_freq_time(g["frequency"].to_numpy(), g["time"].to_numpy())
            tf_err = mape(freq_time(g["frequency"].to_numpy(), alpha, beta, f_sat, soft), g["time"].to_numpy())
            errs_fit.append(fit_err)
            errs_ho.append(float(np.mean(ho)))
            errs_tf.append(tf_err)
            comps[f"{int(s)}/{ins}"] = {
                "exp": [a, b, c], "alpha_s": alpha, "beta_s_mhz": beta, "f_sat_mhz": f_sat, "soft_mhz": soft,
                "pareto_freq_range_mhz": [float(par["frequency"].min()), float(par["frequency"].max())],
                "freq_max_mhz": float(g["frequency"].max()),
                "n_pareto": int(len(t)), "n_points": int(len(g)),
                "fit_error": {"energy_mape_fitted_pct": fit_err, "energy_mape_heldout_pct": float(np.mean(ho)),
                              "time_of_freq_mape_pct": tf_err},
            }
        clocks = np.unique(df["frequency"].to_numpy(float))
        out["profiles"][f"bloom-{tag}"] = {
            "gpu": gpu, "blocking_w": spec.blocking_w, "source": path.name, "sha256": sha256_file(path),
            "n_stages": int(df["stage"].max()) + 1,
            "freq_step_mhz": float(np.min(np.diff(clocks))),  # the GPU's clock grid
            "fit_error": {"energy_mape_fitted_pct": float(np.mean(errs_fit)),
                          "energy_mape_heldout_pct": float(np.mean(errs_ho)),
                          "time_of_freq_mape_pct": float(np.mean(errs_tf))},
            "computations": comps,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", OptimizeWarning)
    data = args.data.resolve()
    pl = fit_power_limits(data)
    POWER_LIMIT_PARAMS.write_text(json.dumps(pl, indent=1, sort_keys=True) + "\n")
    st = fit_stage_profiles(data)
    STAGE_PARAMS.write_text(json.dumps(st, indent=1, sort_keys=True) + "\n")
    for gpu, models in pl["gpus"].items():
        fe = [m["fit_error"] for m in models.values()]
        ho = [f["time_mape_heldout_interior_pct"] for f in fe if f["time_mape_heldout_interior_pct"] is not None]
        print(f"power-limit {gpu}: {len(models)} workloads, time MAPE fitted "
              f"{np.mean([f['time_mape_fitted_pct'] for f in fe]):.2f}% held-out {np.mean(ho):.2f}%, "
              f"power MAPE fitted {np.mean([f['power_mape_fitted_pct'] for f in fe]):.2f}%")
    for name, prof in st["profiles"].items():
        print(f"stage profile {name}: {prof['fit_error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
