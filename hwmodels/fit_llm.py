"""Fit the LLM latency/power model to measured vLLM serving of Llama-3.1-8B on one H100.

Data: ML.ENERGY leaderboard, Llama-3.1-8B-Instruct, lm-arena chat, vLLM, one H100 per row
and one row per `max_num_seqs`: average running batch, average output length, median
inter-token latency (ITL) and average GPU power. Prompt lengths are not published.

How a row becomes a model iteration (the assumptions, stored with the fit):
- mean prompt `PROMPT_TOKENS` = 400 tokens. With avg_output_len ≈ 400 a running sequence
  holds on average prompt + output/2 ≈ 600 KV tokens; 691 sequences × 600 tokens × 128 KiB
  ≈ 54 GB is about the whole KV cache of an 80 GB H100, which is why the max_num_seqs = 768
  run saturates at an average batch of 691.
- vLLM's engine mixes the prefill of arriving requests into decode steps (chunked prefill).
  In steady state batch/avg_output_len requests finish, and as many start, per step, so a
  step also prefills batch · prompt / output tokens. The median ITL is compared with one
  such mixed step, so the fitted efficiencies describe the hardware and the simulator can
  charge prefill separately without counting it twice.
- Power: the row's average power against the utilisation of that mixed step.

The roofline's memory efficiency, fixed overhead and per-sequence overhead are nearly
collinear on this data (context per sequence hardly changes between rows), so weak priors
(log-normal, σ = 0.15) hold eff_mem near 0.85 and eff_compute near 0.7 (achieved
bandwidth and GEMM efficiency on Hopper) and let the data decide the rest.
Every third row (ascending max_num_seqs) is held out and reported separately.

Run `orrery fit llm [--data PATH] [--out PATH]` to refit. The data default is
`shared:llm/mlenergy_llama3.1-8b_chat.json` (so `ORRERY_SHARED_DATA` moves it); the fitted JSON
goes where `--out` says (default `results/fit/llm_h100_mlenergy.json` under the current
folder), never into the installed package: the shipped parameters stay as committed, and a
scenario that should use a refit names its file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from orrery.core.errors import OrreryInputError, TraceFormatError, require_file
from orrery.core.files import sha256_file
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import DEFAULT_PARAMS_PATH, LatencyPowerParams, LLMPerfModel  # noqa: F401

DEFAULT_DATA = "shared:llm/mlenergy_llama3.1-8b_chat.json"
DEFAULT_OUT = Path("results") / "fit" / "llm_h100_mlenergy.json"
PROMPT_TOKENS = 400.0
GPU_NAME = "H100"
MODEL_NAME = "Llama-3.1-8B"
REQUIRED = ("max_num_seqs", "avg_batch_size", "avg_output_len", "median_itl_ms", "avg_power_watts")
PRIORS = {"eff_mem": (0.85, 0.15), "eff_compute": (0.7, 0.15)}  # (centre, σ of log)
ITL_SIGMA = 0.02  # scale of the data residuals (log ITL) against which the priors are weighed
HOLDOUT_EVERY = 3


def _num(path: Path, i: int, row: dict, key: str) -> float:
    if key not in row:
        raise TraceFormatError(path, f"configuration {i} lacks {key!r}", column=key,
                               expected=f"every configuration to have {', '.join(REQUIRED)}")
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise TraceFormatError(path, f"configuration {i} has {key} = {v!r}", column=key,
                               expected="a finite number > 0")
    return float(v)


def _data_file(data_path: str | Path) -> Path:
    """The measurement file: a path, or `shared:<path>` in the shared data folder."""
    from orrery.traces.paths import data_path as resolve

    return require_file(resolve(data_path), "ML.ENERGY LLM measurement file")


def load_rows(data_path: str | Path) -> list[dict]:
    """The single-GPU H100 rows of the ML.ENERGY file, sorted by max_num_seqs, validated."""
    path = _data_file(data_path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceFormatError(path, f"not valid JSON ({e})", expected="the ML.ENERGY model JSON") from None
    configs = doc.get("configurations") if isinstance(doc, dict) else None
    if not isinstance(configs, list):
        raise TraceFormatError(path, "no 'configurations' list", column="configurations",
                               expected="a list of per-max_num_seqs measurements")
    rows = []
    for i, c in enumerate(configs):
        if not isinstance(c, dict):
            raise TraceFormatError(path, f"configuration {i} is not an object")
        if c.get("gpu_model") != GPU_NAME or int(c.get("num_gpus", 1)) != 1:
            continue
        rows.append({k: _num(path, i, c, k) for k in REQUIRED})
    if len(rows) < 2 * HOLDOUT_EVERY:
        raise TraceFormatError(path, f"only {len(rows)} single-GPU {GPU_NAME} rows", column="gpu_model",
                               expected=f"at least {2 * HOLDOUT_EVERY} to fit and hold out")
    rows.sort(key=lambda r: r["max_num_seqs"])
    return rows


def _arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.array([r[k] for r in rows]) for k in REQUIRED}


def predict(params: LatencyPowerParams, rows: list[dict], prompt_tokens: float = PROMPT_TOKENS):
    """Model ITL (s) and power (W) per row: one mixed decode+prefill step at the row's batch."""
    m = LLMPerfModel(get_model(MODEL_NAME), get_gpu("h100"), params=params)
    itl, pw = [], []
    for r in rows:
        b, out = r["avg_batch_size"], r["avg_output_len"]
        ctx = b * (prompt_tokens + 0.5 * out)
        pre_seqs = b / out
        pre_tok = pre_seqs * prompt_tokens
        t = m.mixed_step_time_s(b, ctx, pre_tok, pre_seqs)
        flops = (m._flops_per_token * (b + pre_tok)
                 + m._flops_per_pair * (ctx + 0.5 * pre_tok * pre_tok / pre_seqs))
        itl.append(t)
        pw.append(m.power_at_utilization_w(m.step_utilization(flops, t)))
    return np.array(itl), np.array(pw)


def _errors(params: LatencyPowerParams, rows: list[dict], held: np.ndarray) -> tuple[dict, list[dict]]:
    a = _arrays(rows)
    itl, pw = predict(params, rows)
    e_itl = itl / (a["median_itl_ms"] / 1e3) - 1.0
    e_pw = pw / a["avg_power_watts"] - 1.0
    med = {}
    for name, e in (("itl", e_itl), ("power", e_pw)):
        med[f"{name}_median_abs_rel_err_fit_rows"] = float(np.median(np.abs(e[~held])))
        med[f"{name}_median_abs_rel_err_heldout_rows"] = float(np.median(np.abs(e[held])))
        med[f"{name}_median_abs_rel_err_all_rows"] = float(np.median(np.abs(e)))
        med[f"{name}_max_abs_rel_err_all_rows"] = float(np.max(np.abs(e)))
    per_row = [
        {"max_num_seqs": int(r["max_num_seqs"]), "avg_batch_size": r["avg_batch_size"], "heldout": bool(h),
         "itl_ms_measured": r["median_itl_ms"], "itl_ms_model": float(t * 1e3), "itl_rel_err": float(ei),
         "power_w_measured": r["avg_power_watts"], "power_w_model": float(p), "power_rel_err": float(ep)}
        for r, h, t, ei, p, ep in zip(rows, held, itl, e_itl, pw, e_pw, strict=True)
    ]
    return med, per_row


def evaluate(params: LatencyPowerParams, data_path: str | Path = DEFAULT_DATA) -> dict:
    """Errors of `params` against the data (same rows, same held-out split as `fit`)."""
    rows = load_rows(data_path)
    held = np.arange(len(rows)) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    med, per_row = _errors(params, rows, held)
    return {"errors": med, "rows": per_row}


def fit(data_path: str | Path = DEFAULT_DATA) -> dict:
    """Fit latency then power parameters on the non-held-out H100 rows."""
    path = _data_file(data_path)
    rows = load_rows(path)
    held = np.arange(len(rows)) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    train = [r for r, h in zip(rows, held, strict=True) if not h]
    a = _arrays(train)
    ctx_default = PROMPT_TOKENS + 0.5 * float(np.mean(_arrays(rows)["avg_output_len"]))
    base = {"power_dyn_frac": 0.8, "power_exp": 0.3, "default_context_tokens": ctx_default}

    def lat_params(x) -> LatencyPowerParams:
        return LatencyPowerParams(eff_compute=x[0], eff_mem=x[1], overhead_s=x[2] * 1e-3,
                                  per_seq_overhead_s=x[3] * 1e-6, **base)

    def lat_res(x):
        itl, _ = predict(lat_params(x), train)
        r = list(np.log(itl / (a["median_itl_ms"] / 1e3)) / ITL_SIGMA)
        for i, (centre, sigma) in enumerate(PRIORS.values()):
            r.append(math.log(x[i] / centre) / sigma)
        return np.array(r)

    lat = least_squares(lat_res, [0.7, 0.85, 1.0, 30.0], bounds=([0.05, 0.05, 0.0, 0.0], [1.0, 1.0, 20.0, 1000.0]))
    lp = lat_params(lat.x)

    def pow_params(y) -> LatencyPowerParams:
        d = lp.to_dict() | {"power_dyn_frac": y[0], "power_exp": y[1]}
        return LatencyPowerParams(**d)

    def pow_res(y):
        _, pw = predict(pow_params(y), train)
        return np.log(pw / a["avg_power_watts"])

    pw_fit = least_squares(pow_res, [0.8, 0.3], bounds=([0.01, 0.01], [2.0, 3.0]))
    params = pow_params(pw_fit.x)
    med, per_row = _errors(params, rows, held)
    return {
        "schema": "orrery.hwmodels.llm_perf/1",
        "params": params.to_dict(),
        "data": {"file": path.name, "sha256": sha256_file(path),
                 "model": MODEL_NAME, "gpu": "H100-SXM5-80GB", "n_rows": len(rows)},
        "assumptions": {
            "prompt_tokens": PROMPT_TOKENS,
            "context_tokens_per_seq": "prompt_tokens + avg_output_len / 2",
            "step": "decode avg_batch_size seqs + chunked prefill of avg_batch_size/avg_output_len new "
                    "requests (prompt_tokens each); compared with median ITL",
            "priors_log_sigma": {k: list(v) for k, v in PRIORS.items()},
            "power": "idle + (TDP - idle) * power_dyn_frac * u^power_exp, u = (FLOPs/peak)/step time",
        },
        "holdout": f"every {HOLDOUT_EVERY}rd row by ascending max_num_seqs",
        "fit_rows_max_num_seqs": [int(r["max_num_seqs"]) for r, h in zip(rows, held, strict=True) if not h],
        "heldout_rows_max_num_seqs": [int(r["max_num_seqs"]) for r, h in zip(rows, held, strict=True) if h],
        "errors": med,
        "rows": per_row,
        "fitted_with": "python -m hwmodels.fit_llm",
    }


def package_dirs() -> list[Path]:
    """The installed orrery package folders (fitting must never write into them)."""
    import importlib.util

    out = []
    for name in ("sim", "hwmodels", "workloads", "traces", "policies", "realbackend", "experiments"):
        spec = importlib.util.find_spec(f"orrery.{name}")
        if spec is not None and spec.submodule_search_locations:
            out += [Path(p).resolve() for p in spec.submodule_search_locations]
    return out


def check_out_path(path: str | Path) -> Path:
    """`path` resolved, or an `OrreryInputError` if it lies inside the installed package
    (e.g. over the shipped `hwmodels/params/llm_h100_mlenergy.json`)."""
    p = Path(path).expanduser().resolve()
    for d in package_dirs():
        if p.is_relative_to(d):
            raise OrreryInputError(
                f"--out {path}: refusing to write inside the installed package ({d}); the shipped "
                "parameter files stay as committed. Write the fit elsewhere (e.g. --out my_fit.json)")
    if p.is_dir():
        raise OrreryInputError(f"--out {path}: is a folder; name the JSON file to write")
    return p


def write_params(result: dict, path: str | Path = DEFAULT_OUT) -> Path:
    """Write the fitted parameters and summary errors; the per-row comparison (which holds
    the measured values) stays out of the repository and is printed by `main` instead.
    Never inside the package (see `check_out_path`); the file is replaced atomically."""
    p = check_out_path(path)
    kept = {k: v for k, v in result.items() if k != "rows"}
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(kept, indent=2, sort_keys=False) + "\n")
        tmp.replace(p)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OrreryInputError(f"--out {path}: cannot write the fitted parameters ({err.strerror or err})") from None
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="orrery fit llm", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help=f"ML.ENERGY Llama-3.1-8B JSON, a path or shared:<path> (default {DEFAULT_DATA})")
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help=f"where to write the fitted JSON (default {DEFAULT_OUT}; never inside the package)")
    args = ap.parse_args(argv)
    try:
        check_out_path(args.out)
        result = fit(args.data)
        out = write_params(result, args.out)
    except OrreryInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "params": result["params"], "errors": result["errors"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
