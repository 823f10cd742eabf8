"""Fit the LLM serving model (`hwmodels/llm_perf.py`) to ML.ENERGY-format measurements.

Input: one or more JSON files (or folders of them) in the ML.ENERGY leaderboard format
(docs/formats.md): a model id, a task, a weight precision and `configurations`, each one
measured vLLM deployment (GPU, number of GPUs, tensor/expert/data parallelism, max_num_seqs)
with its average running batch, output lengths, median inter-token latency (ITL), average
power (total over its GPUs) and output throughput.

How a row becomes a model step (the assumptions, stored with the fit):
- Each running sequence holds prompt + its generated tokens; sequences are in the batch in
  proportion to their length, so the batch's mean context is prompt + E[o²] / (2 E[o]) over
  the output-length histogram (prompt + avg_output_len when there is none).
- In steady state B / E[o] requests finish per step and as many are admitted, so a step also
  prefills B · prompt / E[o] tokens (vLLM's chunked prefill): the median ITL is compared with
  one such mixed step, the row's power with that step's power.
- The median ITL is the *median* step: it prefills the median of the Poisson number of
  requests admitted per step (0 while e^-a > 1/2, a = B / E[o]), smoothed as a² / (a +
  median_arrival_offset) prompts; the power and the throughput follow the *mean* step (a
  prompts). Output throughput = B / mean step, mean step = that step · (1 + mean_step_factor +
  mean_step_per_arrival · a).
- Prompt lengths are not published: one mean prompt length per task is fitted with the rest.
- The batch's resident context is at most what the KV cache holds (`Problem.resident_context`:
  vLLM's default gpu_memory_utilization 0.9, weights and activations off the top; a full cache
  preempts the newest sequences), which binds at the largest batches on B200.
- `orrery fit llm --report` also prints how steady and self-consistent the measurements are
  (`consistency`: the runs' p90/median ITL, adjacent measurements no step model can reproduce,
  and the held-out errors over the steady rows); the targets are over all rows regardless.

One fit: shared physical parameters plus per-GPU-family ones (`llm_perf.FamilyParams`), by
robust least squares on log errors of ITL, power per GPU and throughput, with weak priors.
The test of record is leave-one-model-out cross-validation (`cross_validate`).

    orrery fit llm [DIR|FILE ...] [--report] [--out PARAMS.json]   (default out: results/fit/, never the package)
    orrery fit llm --check FILE ... [--params PARAMS.json] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.optimize import least_squares

from orrery.core.errors import OrreryInputError, TraceFormatError, UnknownNameError
from orrery.core.files import sha256_file
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model, split_precision
from orrery.hwmodels.llm_perf import (
    DEFAULT_PARAMS_PATH,
    SCHEMA,
    FamilyParams,
    ServingParams,
    SharedParams,
    deployment_constants,
    load_default_params,
    power_from_terms,
    step_terms,
)
from orrery.traces.paths import data_path

DEFAULT_DATA = "shared:llm/mlenergy"  # resolved like every `shared:` name ($ORRERY_DATA, ../shared/data, cache)
DEFAULT_OUT = Path("results") / "fit" / "llm_serving_mlenergy.json"  # under the current folder, never the package
REQUIRED = ("gpu_model", "num_gpus", "avg_batch_size", "avg_output_len", "median_itl_ms", "avg_power_watts",
            "output_throughput_tokens_per_sec")
METRICS = ("itl", "power", "throughput")
TARGETS = {"median": 0.10, "p90": 0.20}  # issue #14: leave-one-model-out, every metric
STEADY_ITL_RATIO = 1.2  # a run whose p90 ITL is at most this x its median ran steady steps (diagnostic)
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default (EngineArgs.gpu_memory_utilization); the configs keep it
GPU_NAMES = {"H100": "H100-SXM5-80GB", "B200": "B200-SXM-180GB"}  # names the ML.ENERGY files use

# (name, lower, upper, initial, prior centre or None, prior σ of log)
SHARED_SPEC = [
    ("per_layer_s", 0.0, 3e-4, 2e-5, None, 0),
    ("moe_mem_eff", 0.05, 1.5, 0.6, 0.6, 1.0),
    ("attn_eff", 0.02, 2.0, 0.5, 0.5, 1.0),
    # a physical prior: TP all-reduces reach ~70 % of the one-direction link rate. Loose (σ 0.7),
    # the fit used this term to absorb other per-token costs (0.12-0.29), and the held-out
    # Llama-3.1-405B (the one TP-8 model) came out 97 % slow at p90
    ("eff_interconnect", 0.05, 1.0, 0.7, 0.7, 0.15),
    ("ep_lat_factor", 0.0, 30.0, 2.0, None, 0),
    ("ep_bytes_factor", 0.0, 10.0, 1.0, None, 0),
    ("moe_layer_s", 0.0, 5e-4, 1e-6, None, 0),
    ("fp8_gemm_s", 0.0, 2e-4, 1e-6, None, 0),
    ("fp8_eff", 0.2, 2.0, 1.0, 1.0, 0.5),
    ("power_comm", 0.0, 20.0, 0.5, None, 0),
    ("mean_step_factor", 0.0, 2.0, 0.05, None, 0),
    ("mean_step_per_arrival", 0.0, 5.0, 0.05, None, 0),
    ("median_arrival_offset", 0.05, 5.0, 0.7, 0.7, 1.0),
]
FAMILY_SPEC = [
    ("eff_mem", 0.15, 1.0, 0.8, 0.8, 0.4),
    ("eff_compute", 0.05, 1.0, 0.5, 0.5, 0.7),
    ("overhead_s", 0.0, 0.03, 2e-3, None, 0),
    ("per_seq_s", 0.0, 5e-4, 5e-5, None, 0),
    ("attn_seq_s", 0.0, 2e-6, 1e-9, None, 0),
    ("coll_latency_s", 0.0, 2e-4, 1e-5, None, 0),
    # weak priors (σ 1 in log): floor and memory coefficient trade off in memory-bound decode, and
    # unconstrained one family drove each to ~1e-9, so the geometric-mean fallback of a GPU
    # family without data (A100, L40S...) had neither and drew almost idle power
    ("power_floor", 0.0, 0.95, 0.3, 0.3, 1.0),
    ("power_mem", 0.0, 30.0, 1.0, 1.0, 1.0),
    ("power_compute", 0.0, 30.0, 3.0, 3.0, 1.0),
    ("power_kv", 0.0, 30.0, 0.3, None, 0),  # extra power per KV byte over a weight byte (>= 0)
]
FAMILY_FIELDS = [f.name for f in fields(FamilyParams)]
PROMPT_SPEC = (20.0, 8000.0, 500.0, 500.0, 1.0)  # per task
SIGMA = {"itl": 0.1, "power": 0.1, "throughput": 0.1}  # residual scale (log) against the priors
LOSS_SCALE = 1.0  # soft-L1 switches to linear beyond this many σ (robust to outlier rows)


# ---- loading -------------------------------------------------------------------------------------
def _num(path: Path, i: int, row: dict, key: str, positive: bool = True) -> float:
    if key not in row:
        raise TraceFormatError(path, f"configuration {i} lacks {key!r}", line=i, column=key,
                               expected="every configuration to have " + ", ".join(REQUIRED))
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (positive and v <= 0):
        raise TraceFormatError(path, f"configuration {i} has {key} = {v!r}", line=i, column=key,
                               expected="a finite number > 0")
    return float(v)


def _opt(c: dict, key: str) -> float:
    """An optional positive number of a configuration (NaN when absent or not a number)."""
    v = c.get(key)
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return float(v) if ok else float("nan")


def _length_moments(path: Path, i: int, c: dict, avg_out: float) -> tuple[float, float]:
    """E[o] and E[o²] / (2 E[o]) from the output-length histogram (or the average)."""
    dist = c.get("output_length_distribution")
    if isinstance(dist, dict) and isinstance(dist.get("bins"), list) and isinstance(dist.get("counts"), list):
        edges, counts = np.asarray(dist["bins"], float), np.asarray(dist["counts"], float)
        if len(edges) == len(counts) + 1 and counts.sum() > 0 and np.all(np.isfinite(edges)):
            mid = 0.5 * (edges[1:] + edges[:-1])
            m1 = float((mid * counts).sum() / counts.sum())
            m2 = float((mid * mid * counts).sum() / counts.sum())
            return avg_out, 0.5 * m2 / max(m1, 1.0)
        raise TraceFormatError(path, f"configuration {i} has a malformed output_length_distribution", line=i,
                               column="output_length_distribution", expected="bins (n+1 edges) and counts (n)")
    return avg_out, avg_out  # exponential-like lengths: E[o²]/(2E[o]) = E[o]


def _files(sources) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        p = data_path(s)
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise OrreryInputError(f"{p}: no *.json measurement files in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise OrreryInputError(f"measurement file or folder not found: {p}")
    return out


def load_rows(sources) -> list[dict]:
    """Every configuration of the ML.ENERGY-format files (folders are expanded), validated."""
    rows: list[dict] = []
    for path in _files(sources if isinstance(sources, list | tuple) else [sources]):
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            line = getattr(e, "lineno", None)
            raise TraceFormatError(path, f"not valid JSON ({e})", line=line,
                                   expected="the ML.ENERGY model JSON (docs/formats.md)") from None
        if not isinstance(doc, dict):
            raise TraceFormatError(path, "top level is not an object", expected="the ML.ENERGY model JSON")
        configs = doc.get("configurations")
        if not isinstance(configs, list) or not configs:
            raise TraceFormatError(path, "no 'configurations' list", column="configurations",
                                   expected="a non-empty list of measured deployments")
        model_id = doc.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise TraceFormatError(path, "no 'model_id'", column="model_id", expected="e.g. 'Qwen/Qwen3-8B'")
        try:
            model = get_model(model_id)
        except UnknownNameError as e:
            raise OrreryInputError(
                f"{path}: model {model_id!r} is not in the model catalog, so its architecture is unknown; "
                f"add it to orrery/hwmodels/llm.py (known: {', '.join(e.known)})") from None
        base, suffix_prec = split_precision(model_id)
        prec = str(doc.get("weight_precision") or suffix_prec or model.weight_precision).lower()
        prec = {"bfloat16": "bf16", "float16": "fp16"}.get(prec, prec)
        if model.name == "Llama-3.1-405B" and prec == "fp8":
            prec_scope = "fp8-mlp"  # Meta's FP8 checkpoint leaves attention in bf16 (quantization_config)
        else:
            prec_scope = prec
        task = str(doc.get("task") or "unknown")
        for i, c in enumerate(configs):
            if not isinstance(c, dict):
                raise TraceFormatError(path, f"configuration {i} is not an object", line=i)
            vals = {k: _num(path, i, c, k) for k in REQUIRED if k != "gpu_model"}
            gname = c.get("gpu_model")
            try:
                gpu = get_gpu(GPU_NAMES.get(str(gname), str(gname)))
            except UnknownNameError as e:
                raise TraceFormatError(path, f"configuration {i}: {e}", line=i, column="gpu_model") from None
            par = c.get("parallelization") or {}
            tp, ep, dp = (int(par.get(k, 1) or 1) for k in ("tensor_parallel", "expert_parallel", "data_parallel"))
            n = int(vals["num_gpus"])
            if max(tp, ep) * dp != n:
                raise TraceFormatError(path, f"configuration {i}: num_gpus = {n} but tensor_parallel={tp}, "
                                       f"expert_parallel={ep}, data_parallel={dp}", line=i, column="num_gpus",
                                       expected="num_gpus = max(tp, ep) x dp")
            mean_out, biased = _length_moments(path, i, c, vals["avg_output_len"])
            rows.append({
                "file": path.name, "line": i, "model_id": model_id, "model": model.name, "task": task,
                "precision": prec, "precision_scope": prec_scope, "gpu": gpu.name, "family": gpu.fit_family,
                "tp": tp, "ep": ep, "dp": dp, "num_gpus": n, "max_num_seqs": int(c.get("max_num_seqs", 0) or 0),
                "batch": vals["avg_batch_size"] / dp, "mean_out": mean_out, "biased_out": biased,
                "itl_s": vals["median_itl_ms"] / 1e3, "itl_p90_s": _opt(c, "p90_itl_ms") / 1e3, "power_w": vals["avg_power_watts"] / n,
                "throughput": vals["output_throughput_tokens_per_sec"],
                "key": f"{model_id}|{task}|{gpu.name}|tp{tp}|ep{ep}|dp{dp}|seqs{c.get('max_num_seqs')}",
            })
    if not rows:
        raise OrreryInputError("no measurement rows found")
    return rows


def data_checksum(sources) -> list[dict]:
    return [{"file": p.name, "sha256": sha256_file(p)} for p in _files(sources)]


# ---- vectorised prediction -----------------------------------------------------------------------
def _constants(rows: list[dict]) -> SimpleNamespace:
    """Per-row deployment constants stacked into arrays (cached per distinct deployment)."""
    from orrery.hwmodels.llm import PRECISIONS, Precision

    cache: dict[tuple, SimpleNamespace] = {}
    per_row = []
    for r in rows:
        k = (r["model"], r["gpu"], r["tp"], r["ep"], r["precision_scope"])
        if k not in cache:
            prec = (Precision("fp8", 8.0, scope="mlp", act_bits=8) if r["precision_scope"] == "fp8-mlp"
                    else PRECISIONS.get(r["precision"], r["precision"]))
            cache[k] = deployment_constants(get_model(r["model"]), get_gpu(r["gpu"]), r["tp"], r["ep"], prec)
        per_row.append(cache[k])
    names = [n for n, v in vars(per_row[0]).items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return SimpleNamespace(**{n: np.array([float(getattr(c, n)) for c in per_row]) for n in names})


class Problem:
    """Rows, their constants and the parameter layout of one fit."""

    def __init__(self, rows: list[dict], families: list[str] | None = None, tasks: list[str] | None = None):
        self.rows = rows
        self.c = _constants(rows)
        self.families = families or sorted({r["family"] for r in rows})
        self.tasks = tasks or sorted({r["task"] for r in rows})
        self.fam_idx = np.array([self.families.index(r["family"]) if r["family"] in self.families else -1
                                 for r in rows])
        self.task_idx = np.array([self.tasks.index(r["task"]) if r["task"] in self.tasks else -1 for r in rows])
        self.meas = {"itl": np.array([r["itl_s"] for r in rows]), "power": np.array([r["power_w"] for r in rows]),
                     "throughput": np.array([r["throughput"] for r in rows])}
        self.batch = np.array([r["batch"] for r in rows])
        self.mean_out = np.array([r["mean_out"] for r in rows])
        self.biased_out = np.array([r["biased_out"] for r in rows])
        self.dp = np.array([r["dp"] for r in rows], float)
        nf = len(FAMILY_SPEC)
        self.spec = list(SHARED_SPEC) + [(f"{f}.{s[0]}", *s[1:]) for f in self.families for s in FAMILY_SPEC] + \
            [(f"prompt.{t}", *PROMPT_SPEC) for t in self.tasks]
        self.n_shared, self.nf = len(SHARED_SPEC), nf

    # parameters <-> vector
    def x0(self) -> np.ndarray:
        return np.array([s[3] for s in self.spec])

    def bounds(self):
        return np.array([s[1] for s in self.spec]), np.array([s[2] for s in self.spec])

    def to_params(self, x: np.ndarray) -> ServingParams:
        sh = SharedParams(**{s[0]: float(v) for s, v in zip(SHARED_SPEC, x[: self.n_shared], strict=True)})
        fams = {}
        for j, f in enumerate(self.families):
            seg = x[self.n_shared + j * self.nf: self.n_shared + (j + 1) * self.nf]
            fams[f] = FamilyParams(**{s[0]: float(v) for s, v in zip(FAMILY_SPEC, seg, strict=True)})
        off = self.n_shared + len(self.families) * self.nf
        prompts = {t: float(x[off + k]) for k, t in enumerate(self.tasks)}
        return ServingParams(sh, fams, prompts, float(np.exp(np.mean(np.log(list(prompts.values()))))))

    def from_params(self, p: ServingParams) -> np.ndarray:
        x = [getattr(p.shared, s[0]) for s in SHARED_SPEC]
        for f in self.families:
            fam = p.families.get(f) or p.unknown_family()
            x += [getattr(fam, s[0]) for s in FAMILY_SPEC]
        x += [p.prompt_tokens.get(t, p.default_prompt_tokens) for t in self.tasks]
        return np.array(x, float)

    def resident_context(self, ctx: np.ndarray, b: np.ndarray, sh: SharedParams) -> np.ndarray:
        """The KV tokens a step attends over: the length-biased estimate, but no more than the
        KV cache holds. vLLM admits up to max_num_seqs and, when the cache is full, preempts the
        newest sequences (recomputed later), so the resident context of a full batch is bounded
        by the cache: (memory x gpu_memory_utilization - weights - activations) / KV bytes per
        token, per GPU. gpu_memory_utilization is vLLM's default 0.9 (the ML.ENERGY text-task
        configs do not set it: ml-energy/benchmark configs/vllm/{lm-arena-chat,gpqa}/*/*/
        monolithic.config.yaml). Sliding-window layers hold at most the window per sequence."""
        c = self.c
        free = c.mem_bytes * VLLM_GPU_MEMORY_UTILIZATION - c.weight_bytes_per_gpu - sh.activation_reserve_bytes
        per_tok = np.maximum(free, 0.0) / (c.kv_bytes_per_token_layer * b)  # layer-tokens per sequence
        x = per_tok / c.n_layers  # every layer holds the whole context
        w = np.where(c.window > 0, c.window, np.inf)
        x_long = (per_tok - c.n_slide_layers * np.minimum(w, 1e30)) / np.maximum(c.n_full_layers, 1.0)
        cap = np.where(x <= w, x, x_long) * b
        return np.minimum(ctx, np.maximum(cap, b))

    def predict(self, p: ServingParams) -> dict[str, np.ndarray]:
        """Predicted median ITL (s), power per GPU (W) and output throughput (tok/s) per row."""
        unknown = p.unknown_family()
        table = np.array([[getattr(p.families.get(f) or unknown, n) for n in FAMILY_FIELDS]
                          for f in self.families] + [[getattr(unknown, n) for n in FAMILY_FIELDS]])
        sel = table[self.fam_idx]  # -1 picks the last row: the unknown-family mean
        famv = SimpleNamespace(**{n: sel[:, j] for j, n in enumerate(FAMILY_FIELDS)})
        ptab = np.array([p.prompt_tokens.get(t, p.default_prompt_tokens) for t in self.tasks]
                        + [p.default_prompt_tokens])
        prompt = ptab[self.task_idx]
        b = self.batch
        arrivals = b / self.mean_out
        ctx = self.resident_context(b * (prompt + self.biased_out), b, p.shared)
        # the mean step prefills the mean number of admitted requests; the median step the
        # median of that Poisson count (0 while e^-a > 1/2), smoothed: a^2 / (a + offset)
        t, m, cp, x = step_terms(self.c, famv, p.shared, b + arrivals * prompt, b + arrivals, ctx)
        power = power_from_terms(self.c, famv, p.shared, t, m, cp, x)
        med = arrivals * arrivals / (arrivals + p.shared.median_arrival_offset)
        t_med = step_terms(self.c, famv, p.shared, b + med * prompt, b + med, ctx)[0]
        mean_step = t * (1.0 + p.shared.mean_step_factor + p.shared.mean_step_per_arrival * arrivals)
        return {"itl": t_med, "power": power, "throughput": self.dp * b / mean_step}

    def residuals(self, x: np.ndarray) -> np.ndarray:
        pred = self.predict(self.to_params(x))
        res = [np.log(pred[k] / self.meas[k]) / SIGMA[k] for k in METRICS]
        pri = [math.log(max(v, 1e-12) / s[4]) / s[5] for s, v in zip(self.spec, x, strict=True) if s[4]]
        return np.concatenate(res + [np.array(pri) * math.sqrt(len(self.rows)) / 10.0])


def fit_rows(rows: list[dict], x0: np.ndarray | None = None) -> tuple[ServingParams, Problem]:
    prob = Problem(rows)
    lo, hi = prob.bounds()
    start = np.clip(prob.x0() if x0 is None else x0, lo, hi)
    scale = np.maximum(np.abs(start), 1e-6)
    # ftol 1e-6: the default 1e-8 spends ~2.5x the Jacobians for a cost 0.004 % lower
    res = least_squares(prob.residuals, start, bounds=(lo, hi), x_scale=scale, loss="soft_l1",
                        f_scale=LOSS_SCALE, max_nfev=400, method="trf", ftol=1e-6)
    return prob.to_params(res.x), prob


def errors(pred: dict, meas: dict) -> dict[str, np.ndarray]:
    return {k: pred[k] / meas[k] - 1.0 for k in METRICS}


def summarise(err: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for k in METRICS:
        a = np.abs(err[k])
        out[f"{k}_median_abs_err"] = float(np.median(a)) if a.size else float("nan")
        out[f"{k}_p90_abs_err"] = float(np.quantile(a, 0.9)) if a.size else float("nan")
    return out


def cross_validate(rows: list[dict]) -> dict:
    """Leave-one-model-out: fit without model M (its every file and GPU), predict M's rows."""
    models = sorted({r["model_id"] for r in rows})
    held_err = {k: np.full(len(rows), np.nan) for k in METRICS}
    held_pred = {k: np.full(len(rows), np.nan) for k in METRICS}
    for m in models:
        train = [r for r in rows if r["model_id"] != m]
        idx = [i for i, r in enumerate(rows) if r["model_id"] == m]
        params, _ = fit_rows(train)
        test = Problem([rows[i] for i in idx], families=None, tasks=None)
        pred = test.predict(params)
        e = errors(pred, test.meas)
        for k in METRICS:
            held_err[k][idx] = e[k]
            held_pred[k][idx] = pred[k]
    return {"errors": held_err, "pred": held_pred, **_tables(rows, held_err)}


def _tables(rows: list[dict], err: dict[str, np.ndarray]) -> dict:
    def group(key):
        out = {}
        for g in sorted({r[key] for r in rows}):
            idx = np.array([r[key] == g for r in rows])
            out[g] = {"n": int(idx.sum()), **summarise({k: err[k][idx] for k in METRICS})}
        return out

    overall = summarise(err)
    met = all(overall[f"{k}_{s}_abs_err"] <= v for k in METRICS for s, v in TARGETS.items())
    return {"per_model": group("model_id"), "per_gpu": group("gpu"), "overall": overall,
            "targets": TARGETS, "met": met, "n_rows": len(rows), "consistency": consistency(rows, err)}


def series_flags(rows: list[dict]) -> list[dict]:
    """Adjacent measurements of one series (model, task, GPU, tp, ep, dp; batch grown >= 1.2x)
    that no step model of the configuration can reproduce: the mean step (batch / throughput) or
    the median ITL falls by more than 5 % although every sequence of the smaller batch is still
    in the larger one, or the power per GPU falls by more than 10 % while the mean step grows by
    more than 30 % (the GPU idles: the time went somewhere other than the GPU's work)."""
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault((r["model_id"], r["task"], r["gpu"], r["tp"], r["ep"], r["dp"]), []).append(r)
    out = []
    for key, rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["batch"])
        for a, b in zip(rs, rs[1:], strict=False):
            if b["batch"] < 1.2 * a["batch"]:
                continue
            sa, sb = a["batch"] / a["throughput"], b["batch"] / b["throughput"]
            why = []
            if sb < 0.95 * sa:
                why.append(f"mean step {sa * 1e3:.1f} -> {sb * 1e3:.1f} ms")
            if b["itl_s"] < 0.95 * a["itl_s"]:
                why.append(f"median ITL {a['itl_s'] * 1e3:.1f} -> {b['itl_s'] * 1e3:.1f} ms")
            if b["power_w"] < 0.9 * a["power_w"] and sb > 1.3 * sa:
                why.append(f"power {a['power_w']:.0f} -> {b['power_w']:.0f} W/GPU while the mean step grows x{sb / sa:.1f}")
            if why:
                out.append({"series": "|".join(map(str, key)), "gpu": key[2], "num_gpus": a["num_gpus"], "batch": [round(a["batch"], 1),
                            round(b["batch"], 1)], "why": "; ".join(why)})
    return out


def consistency(rows: list[dict], err: dict[str, np.ndarray]) -> dict:
    """How steady and self-consistent the measurements are, per GPU (not part of the targets):
    the runs' p90 / median ITL (one configuration's steps should take about the same time), the
    adjacent-pair flags of `series_flags`, and the held-out errors over the steady rows (p90 /
    median ITL <= STEADY_ITL_RATIO), to tell model error from run-to-run behaviour. (In the
    ML.ENERGY folder the unsteady runs are single-GPU B200 ones; the benchmark's job generator
    packs gpus_per_node // num_gpus jobs onto a node, ml-energy/benchmark scripts/generate_jobs.py
    `generate_pegasus_hosts`, so a 1-GPU job may share its host CPUs with seven others.)"""
    ratio = np.array([r.get("itl_p90_s", float("nan")) / r["itl_s"] for r in rows])
    flags = series_flags(rows)
    per_gpu = {}

    def size(r):
        return "1 GPU" if r["num_gpus"] == 1 else "2+ GPUs"

    for g, k in sorted({(r["gpu"], size(r)) for r in rows}):
        idx = np.array([r["gpu"] == g and size(r) == k for r in rows])
        known = ratio[idx & np.isfinite(ratio)]
        pairs = sum(1 for f in flags if f["gpu"] == g and (f["num_gpus"] == 1) == (k == "1 GPU"))
        per_gpu[f"{g}, {k}"] = {"n": int(idx.sum()), "itl_p90_over_median": float(np.median(known)) if known.size else None,
                      "flagged_pairs": pairs}
    steady = np.isfinite(ratio) & (ratio <= STEADY_ITL_RATIO)
    return {"per_gpu": per_gpu, "flags": flags, "steady_itl_ratio": STEADY_ITL_RATIO,
            "steady_rows": int(steady.sum()), "steady": summarise({k: err[k][steady] for k in METRICS})}


def fit(sources=None, cv: bool = True) -> dict:
    """Fit on every row of `sources` (default: the shared ML.ENERGY folder) and, with `cv`,
    run the leave-one-model-out cross-validation. Returns the parameter document."""
    sources = sources or [DEFAULT_DATA]
    t0 = time.perf_counter()
    rows = load_rows(sources)
    params, prob = fit_rows(rows)
    fit_err = errors(prob.predict(params), prob.meas)
    doc = {
        "schema": SCHEMA,
        "params": params.to_dict(),
        "data": {"files": data_checksum(sources), "n_rows": len(rows),
                 "models": sorted({r["model_id"] for r in rows}), "gpus": sorted({r["gpu"] for r in rows})},
        "fit_rows": sorted(r["key"] for r in rows),
        "assumptions": {
            "context_tokens_per_seq": "prompt + E[o^2] / (2 E[o]) over the output-length histogram",
            "step": "decode avg_batch_size seqs + chunked prefill of the requests admitted that step",
            "median_itl": "step prefilling a^2/(a + median_arrival_offset) prompts, a = batch/E[o]",
            "throughput": "batch / (mean step * (1 + mean_step_factor + mean_step_per_arrival * a)); mean step "
                          "prefills a prompts",
            "power": "per GPU = avg_power_watts / num_gpus",
            "expert_parallel": "EP shares the TP GPUs (vLLM: EP = TP x DP): n = max(tp, ep) x dp",
            "llama-3.1-405b-fp8": "fp8 on MLP weights only (Meta's checkpoint leaves attention in bf16)",
            "unknown_gpu_family": "geometric mean of the fitted families' parameters",
        },
        "fit_error": summarise(fit_err),
        "fitted_with": "orrery fit llm",
    }
    if cv:
        res = cross_validate(rows)
        doc["cross_validation"] = {k: res[k] for k in ("per_model", "per_gpu", "overall", "targets", "met", "n_rows",
                                                       "consistency")}
        doc["cross_validation"]["scheme"] = "leave-one-model-out (model_id), all held-out rows"
    doc["fit_seconds"] = round(time.perf_counter() - t0, 1)
    return doc


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
    (e.g. over the shipped `hwmodels/params/llm_serving_mlenergy.json`)."""
    p = Path(path).expanduser().resolve()
    if not getattr(write_params, "allow_shipped", False):
        for d in package_dirs():
            if p.is_relative_to(d):
                raise OrreryInputError(
                    f"--out {path}: refusing to write inside the installed package ({d}); the shipped "
                    "parameter files stay as committed. Write the fit elsewhere (e.g. --out my_fit.json)")
    if p.is_dir():
        raise OrreryInputError(f"--out {path}: is a folder; name the JSON file to write")
    return p


def write_params(doc: dict, path: str | Path = DEFAULT_OUT) -> Path:
    """Write the parameter document atomically; never inside the package (`check_out_path`)."""
    p = check_out_path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(p)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OrreryInputError(f"--out {path}: cannot write the fitted parameters ({err.strerror or err})") from None
    return p


# ---- trust: how far a deployment lies from the fitted points --------------------------------------
def _fit_domain(doc: dict) -> list[dict]:
    """The fitted deployments (model, GPU, tp, ep, precision) of a parameter document."""
    out = []
    for key in doc.get("fit_rows", []):
        mid, _task, gpu, tp, ep, _dp, _seqs = key.split("|")
        m = get_model(mid)
        out.append({"model": m.name, "moe": m.n_experts > 0, "active": m.flop_params_per_token,
                    "gpu": gpu, "family": get_gpu(gpu).fit_family, "tp": int(tp[2:]), "ep": int(ep[2:]),
                    "precision": split_precision(mid)[1] or m.weight_precision})
    return out


def deployment_trust(model: str, gpu: str, tp: int = 1, ep: int = 1, precision: str | None = None,
                     params_path: str | Path | None = None) -> dict:
    """How far to trust the serving model's answer for one deployment.

    level 'measured': this (model, GPU, tp, ep, precision) was fitted (in-sample error applies);
    'interpolated': every property lies inside what the fit saw (GPU family fitted, dense/MoE
    kind, active parameters within the fitted range, GPUs per replica and precision seen): the
    leave-one-model-out figures are the honest error estimate; 'extrapolated': at least one
    property lies outside (each listed in `reasons`): no measured error bound applies."""
    path = Path(params_path or DEFAULT_PARAMS_PATH)
    doc = json.loads(path.read_text())
    dom = _fit_domain(doc)
    m, g = get_model(model), get_gpu(gpu)
    prec = precision or split_precision(model)[1] or m.weight_precision
    n = max(tp, ep)
    same = [d for d in dom if d["model"] == m.name and d["gpu"] == g.name and d["tp"] == tp and d["ep"] == ep
            and d["precision"] == prec]
    reasons = []
    if g.fit_family not in {d["family"] for d in dom}:
        reasons.append(f"GPU family {g.fit_family!r} has no data (fitted: {sorted({d['family'] for d in dom})}); "
                       "it borrows the fitted families' geometric mean")
    kind = [d for d in dom if d["moe"] == (m.n_experts > 0)]
    if not kind:
        reasons.append(f"no {'MoE' if m.n_experts else 'dense'} model was fitted")
    else:
        lo, hi = min(d["active"] for d in kind), max(d["active"] for d in kind)
        if not lo * 0.999 <= m.flop_params_per_token <= hi * 1.001:
            reasons.append(f"{m.flop_params_per_token / 1e9:.1f}B active parameters outside the fitted "
                           f"{lo / 1e9:.1f}-{hi / 1e9:.1f}B of {'MoE' if m.n_experts else 'dense'} models")
    if n > max(max(d["tp"], d["ep"]) for d in dom):
        reasons.append(f"{n} GPUs per replica: more than any fitted deployment")
    if ep > 1 and not any(d["ep"] > 1 for d in dom):
        reasons.append("expert parallelism was never fitted")
    if prec not in {d["precision"] for d in dom}:
        reasons.append(f"precision {prec!r} never fitted (fitted: {sorted({d['precision'] for d in dom})})")
    level = "measured" if same else ("extrapolated" if reasons else "interpolated")
    cv = doc.get("cross_validation", {}).get("overall", {})
    err = doc.get("fit_error", {}) if same else (cv if level == "interpolated" else {})
    return {"level": level, "reasons": reasons, "expected_error": err,
            "error_source": {"measured": "in-sample fit error", "interpolated": "leave-one-model-out CV",
                             "extrapolated": "none: outside the fitted domain"}[level]}


# ---- check ---------------------------------------------------------------------------------------
def check(files, params_path: str | Path | None = None) -> dict:
    """Predict every configuration of `files` that the parameter file's fit did not use."""
    path = Path(params_path or DEFAULT_PARAMS_PATH)
    params = load_default_params(path)
    used = set(json.loads(path.read_text()).get("fit_rows", []))
    rows = [r for r in load_rows(files) if r["key"] not in used]
    if not rows:
        return {"rows": [], "overall": {}, "n_rows": 0, "skipped_fit_rows": True}
    prob = Problem(rows, families=sorted(params.families), tasks=sorted(params.prompt_tokens))
    pred = prob.predict(params)
    err = errors(pred, prob.meas)
    out_rows = []
    for i, r in enumerate(rows):
        out_rows.append({
            "file": r["file"], "config": r["line"], "model": r["model_id"], "gpu": r["gpu"], "tp": r["tp"],
            "ep": r["ep"], "precision": r["precision"], "max_num_seqs": r["max_num_seqs"],
            "batch": round(r["batch"], 1),
            "itl_ms_measured": r["itl_s"] * 1e3, "itl_ms_predicted": float(pred["itl"][i] * 1e3),
            "itl_err": float(err["itl"][i]),
            "power_w_measured": r["power_w"], "power_w_predicted": float(pred["power"][i]),
            "power_err": float(err["power"][i]),
            "throughput_measured": r["throughput"], "throughput_predicted": float(pred["throughput"][i]),
            "throughput_err": float(err["throughput"][i]),
        })
    return {"rows": out_rows, "overall": summarise(err), "n_rows": len(rows)}


# ---- CLI -----------------------------------------------------------------------------------------
def _pct(v: float) -> str:
    return f"{100 * v:5.1f}%"


def print_tables(cvd: dict, out=sys.stdout) -> None:
    hdr = f"{'':44s} {'n':>4s} | {'ITL med':>7s} {'p90':>7s} | {'power med':>9s} {'p90':>7s} | {'thr med':>7s} {'p90':>7s}"
    for title, key in (("model (held out)", "per_model"), ("GPU", "per_gpu")):
        print(f"\n{title}\n{hdr}", file=out)
        for name, s in cvd[key].items():
            print(f"{name[:44]:44s} {s['n']:4d} | {_pct(s['itl_median_abs_err']):>7s} {_pct(s['itl_p90_abs_err']):>7s} | "
                  f"{_pct(s['power_median_abs_err']):>9s} {_pct(s['power_p90_abs_err']):>7s} | "
                  f"{_pct(s['throughput_median_abs_err']):>7s} {_pct(s['throughput_p90_abs_err']):>7s}", file=out)
    o = cvd["overall"]
    print(f"\n{'all held-out rows':44s} {cvd['n_rows']:4d} | {_pct(o['itl_median_abs_err']):>7s} "
          f"{_pct(o['itl_p90_abs_err']):>7s} | {_pct(o['power_median_abs_err']):>9s} {_pct(o['power_p90_abs_err']):>7s} | "
          f"{_pct(o['throughput_median_abs_err']):>7s} {_pct(o['throughput_p90_abs_err']):>7s}", file=out)
    print(f"targets: median <= {_pct(TARGETS['median'])}, p90 <= {_pct(TARGETS['p90'])} for every metric: "
          f"{'met' if cvd['met'] else 'NOT met'}", file=out)
    cons = cvd.get("consistency")
    if cons:
        print("\ndata consistency (not part of the targets): per GPU, median of the runs' p90/median ITL and the "
              "adjacent measurements no step model can reproduce", file=out)
        for g, v in cons["per_gpu"].items():
            r = v["itl_p90_over_median"]
            print(f"  {g:28s} {v['n']:4d} rows | p90/median ITL {'n/a' if r is None else f'{r:.2f}'} | "
                  f"flagged pairs {v['flagged_pairs']}", file=out)
        for f in cons["flags"]:
            print(f"    {f['series']} batch {f['batch'][0]:g} -> {f['batch'][1]:g}: {f['why']}", file=out)
        s = cons["steady"]
        print(f"{'steady rows (p90/median ITL <= ' + format(cons['steady_itl_ratio'], 'g') + ')':44s} "
              f"{cons['steady_rows']:4d} | {_pct(s['itl_median_abs_err']):>7s} {_pct(s['itl_p90_abs_err']):>7s} | "
              f"{_pct(s['power_median_abs_err']):>9s} {_pct(s['power_p90_abs_err']):>7s} | "
              f"{_pct(s['throughput_median_abs_err']):>7s} {_pct(s['throughput_p90_abs_err']):>7s}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="orrery fit llm", description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="*", help="ML.ENERGY-format JSON files or folders (default: the shared data)")
    ap.add_argument("--report", action="store_true", help="print the leave-one-model-out tables")
    ap.add_argument("--out", metavar="FILE", default=str(DEFAULT_OUT),
                    help=f"where to write the fitted parameter file (default {DEFAULT_OUT}; never inside the package)")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="predict these files' configurations not fitted")
    ap.add_argument("--params", metavar="FILE", help="parameter file for --check (default: the shipped one)")
    ap.add_argument("--csv", metavar="OUT", help="with --check: write the per-row comparison as CSV")
    ap.add_argument("--trust", nargs=2, metavar=("MODEL", "GPU"),
                    help="how far to trust the model for this deployment (with --tp, --ep, --precision)")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--ep", type=int, default=1)
    ap.add_argument("--precision")
    ap.add_argument("--update-shipped", action="store_true", help=argparse.SUPPRESS)  # maintainers only
    args = ap.parse_args(argv)
    write_params.allow_shipped = args.update_shipped
    try:
        if args.trust:
            t = deployment_trust(*args.trust, tp=args.tp, ep=args.ep, precision=args.precision,
                                 params_path=args.params)
            print(json.dumps(t, indent=1))
            return 0
        if args.check:
            res = check(args.check, args.params)
            if args.csv and res["rows"]:
                with open(args.csv, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=list(res["rows"][0]))
                    w.writeheader()
                    w.writerows(res["rows"])
            print(f"{'model':36s} {'gpu':15s} tp ep {'batch':>6s} | {'ITL ms':>7s} {'pred':>7s} {'err':>6s} | "
                  f"{'W/GPU':>6s} {'pred':>6s} {'err':>6s} | {'tok/s':>7s} {'pred':>7s} {'err':>6s}")
            for r in res["rows"]:
                print(f"{r['model'][:36]:36s} {r['gpu'][:15]:15s} {r['tp']:2d} {r['ep']:2d} {r['batch']:6.0f} | "
                      f"{r['itl_ms_measured']:7.2f} {r['itl_ms_predicted']:7.2f} {_pct(r['itl_err']):>6s} | "
                      f"{r['power_w_measured']:6.0f} {r['power_w_predicted']:6.0f} {_pct(r['power_err']):>6s} | "
                      f"{r['throughput_measured']:7.0f} {r['throughput_predicted']:7.0f} {_pct(r['throughput_err']):>6s}")
            if res["rows"]:
                o = res["overall"]
                print(f"{res['n_rows']} rows: " + ", ".join(
                    f"{k} median {_pct(o[f'{k}_median_abs_err']).strip()} p90 {_pct(o[f'{k}_p90_abs_err']).strip()}"
                    for k in METRICS))
            else:
                print("every configuration in these files was used by the fit; nothing to check")
            return 0
        check_out_path(args.out)
        doc = fit(args.data or None, cv=args.report)
        if args.report:
            print(f"fit on {doc['data']['n_rows']} rows of {len(doc['data']['models'])} models "
                  f"({', '.join(doc['data']['gpus'])}) in {doc['fit_seconds']} s (incl. cross-validation)")
            print_tables(doc["cross_validation"])
        out = write_params(doc, args.out)
        if args.report:
            print(f"wrote {out}")
        else:
            print(json.dumps({"out": str(out), "params": doc["params"], "fit_error": doc["fit_error"]}, indent=1))
    except OrreryInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
