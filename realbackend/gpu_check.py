"""The GPU check behind `scripts/gpu_check.sh`: one command that shows what the real backend
measures on an NVIDIA GPU at a realistic model size, and how well orrery predicts it.

It writes one JSON document and one Markdown table (`--out DIR`: `gpu_check.json`,
`gpu_check.md`) with
  1. the GPU: name, driver, NVML readings (power limit and range, clocks, memory, energy
     counter), and the energy counter against integrated sampled power, idle and under load;
  2. the engine: a catalog architecture (default Llama-3.1-8B) at its real shapes with seeded
     random weights, bf16, KV slots sized from free GPU memory, CUDA-graph decode;
  3. its calibration (step-time fit, power against batch size);
  4. sim vs real for vLLM-FCFS and Andes at a light and an overload rate: mean TTFT, mean TBT
     (time between tokens), throughput, energy per token (NVML counter), QoE, with the
     simulator's prediction (calibrated engine model) beside every measurement;
  5. the catalog model's *uncalibrated* prediction (datasheet + fitted family parameters,
     `hwmodels.llm_perf`) of decode ITL and power against what the engine measured.

Read-only: it never changes the power limit, clocks or MIG mode; it reads them before and
after and reports whether they are unchanged (exit status 1 if not). `--cpu-smoke` runs the
same code on the CPU with a shrunk copy of the architecture in about a minute (what the tests
run); without a GPU it says plainly that there is no GPU energy source.

Rates follow the engine, not a fixed number: the simulator, running the calibrated model,
finds the engine's saturation throughput (all requests at once); light is `--light` (0.1) of it
and overload `--overload` (2.0) times it, so the check means the same on an L4 and on a B200.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from orrery.core.errors import OrreryInputError

DEFAULT_MODEL = "Llama-3.1-8B"
MAX_LEN = 1024  # cache slot: longest prompt + output (ShareGPT-like lengths clipped to it)
MAX_NUM_SEQS = 64
# KV capacity the policies see in the sim-vs-real cases: a cap (as gpu_memory_utilization is),
# so that the overload case meets memory pressure within seconds; the capacity that free GPU
# memory allows is reported beside it.
STUDY_KV_TOKENS = 16384
TARGETS = {"ttft_mean_s": 0.10, "tpot_mean_s": 0.10, "energy_per_token_j": 0.15}
METRICS = (("ttft_mean_s", "mean TTFT (s)"), ("tpot_mean_s", "mean TBT (s)"), ("throughput_tok_s", "throughput (tok/s)"),
           ("energy_per_token_j", "energy/token (J)"), ("qoe_mean", "QoE mean"))


def catalog_gpu_for(nvml_name: str, memory_bytes: int = 0) -> str | None:
    """The `hwmodels.gpus` entry for a GPU as NVML names it ("NVIDIA H100 80GB HBM3",
    "NVIDIA A100-SXM4-40GB", "Tesla V100-PCIE-32GB"...), or None when the catalog lacks it."""
    n = nvml_name.lower().replace("nvidia ", "").replace("tesla ", "").replace("-", " ")
    pcie = "pcie" in n or " nvl" in n
    big = memory_bytes > 60 * 2**30
    rules = [
        ("h200", "H200-SXM-141GB"), ("b200", "B200-SXM-180GB"),
        ("h100", "H100-PCIE-80GB" if pcie else "H100-SXM5-80GB"),
        ("a100", ("A100-PCIE-80GB" if big else "A100-PCIE-40GB") if pcie else
         ("A100-SXM4-80GB" if big or "80gb" in n else "A100-SXM4-40GB")),
        ("a10g", "A10G"), ("l40s", "L40S"), ("rtx a6000", "RTX-A6000"), ("a40", "A40"),
        ("v100", "V100-PCIE-32GB" if pcie else "V100-SXM2-32GB"), ("p100", "P100-SXM2-16GB"),
        ("quadro rtx 6000", "Quadro-RTX-6000"), ("mi300x", "MI300X"),
    ]
    for key, name in rules:
        if key in n:
            return name
    words = n.split()
    for key, name in (("l4", "L4"), ("t4", "T4")):
        if key in words:
            return name
    return None


# ----------------------------------------------------------------------------- GPU facts
def read_settings(nvml, index: int) -> dict:
    """Every GPU setting this check promises not to change, read only."""
    from orrery.realbackend.nvml import gpu_info

    g = gpu_info(nvml, index)
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    mig = None
    try:
        mig = list(nvml.nvmlDeviceGetMigMode(h))
    except Exception:  # noqa: BLE001 - not a MIG-capable GPU, or an older driver
        mig = None
    return {"power_limit_w": g.power_limit_w, "sm_clock_max_mhz": g.sm_clock_max_mhz, "mig_mode": mig}


def driver_version(nvml) -> str | None:
    try:
        v = nvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


# ----------------------------------------------------------------------------- the check
def _engine_config(a, device: str):
    from orrery.hwmodels.llm import get_model
    from orrery.realbackend.serving import EngineConfig
    from orrery.realbackend.tiny_llm import ModelConfig

    arch = ModelConfig.from_catalog(get_model(a.model), max_len=a.max_len)
    if a.cpu_smoke:
        arch = arch.shrunk(16, max_len=a.max_len)
        return EngineConfig(device=device, model=arch, kv_capacity_tokens=0, max_slots=a.max_num_seqs,
                            kv_budget_bytes=4 * a.max_num_seqs * a.max_len * arch.kv_bytes_per_token, threads=1)
    return EngineConfig(device=device, model=arch, kv_capacity_tokens=0, max_slots=a.max_num_seqs, threads=None)


def _scenario(a, policy: str, rate: float, n: int, gpu_catalog: str | None):
    from orrery.sim.serving_scenario import ServingScenario

    hw = {"max_num_seqs": a.max_num_seqs, "model": a.model}
    if gpu_catalog:
        hw["gpu"] = gpu_catalog
    return ServingScenario.from_dict({
        "policy": policy, "seed": a.seed, "hardware": hw,
        "workload": {"arrival": "poisson", "rate_rps": rate, "n_requests": n, "max_total_tokens": a.max_len}},
        "gpu_check")


def saturation_rps(a, params, gpu_catalog: str | None) -> float:
    """Requests/s the calibrated engine model serves when every request arrives at once."""
    from orrery.realbackend.latency import EnginePerfModel
    from orrery.realbackend.validate import simulate_with_perf

    scn = _scenario(a, "vllm_fcfs", 1e6, max(a.n_overload, 50), gpu_catalog)
    return float(simulate_with_perf(scn, EnginePerfModel(params, 1.0)).metrics["throughput_rps"])


def uncalibrated(model_name: str, gpu_catalog: str | None, cal) -> dict:
    """The catalog model (datasheet + fitted parameters, never this engine's measurements)
    against what the engine measured: decode ITL on the calibration grid, power per batch."""
    if gpu_catalog is None:
        return {"available": False, "why": "this GPU is not in the catalog (hwmodels.gpus)"}
    from orrery.hwmodels.gpus import get_gpu
    from orrery.hwmodels.llm import get_model
    from orrery.hwmodels.llm_perf import LLMPerfModel

    perf = LLMPerfModel(get_model(model_name), get_gpu(gpu_catalog))
    d = cal.samples["decode"]
    itl = []
    for b, c, t in zip(d["batch"], d["context_tokens"], d["time_s"], strict=True):
        p = float(perf.decode_time_s(int(b), float(c)))
        itl.append({"batch": int(b), "context_tokens": int(c), "measured_s": float(t), "predicted_s": p,
                    "rel_err": (p - t) / t})
    power = []
    pw = cal.samples.get("power")
    if pw:
        for b, c, m in zip(pw["decode"]["batch"], pw["decode"]["context_tokens"], pw["decode"]["power_w"],
                           strict=True):
            p = float(perf.power_w(int(b)))
            power.append({"batch": int(b), "context_tokens": int(c), "measured_w": float(m), "predicted_w": p,
                          "rel_err": (p - m) / m if m else math.nan})
        power.append({"batch": 0, "context_tokens": 0, "measured_w": float(pw["idle_w"]),
                      "predicted_w": float(perf.power_w(0, busy=False)),
                      "rel_err": (perf.power_w(0, busy=False) - pw["idle_w"]) / pw["idle_w"] if pw["idle_w"] else math.nan})
    e_itl = np.abs([r["rel_err"] for r in itl])
    e_pw = np.abs([r["rel_err"] for r in power if r["batch"] > 0])
    return {"available": True, "gpu_catalog": gpu_catalog, "model": model_name, "itl": itl, "power": power,
            "itl_median_abs_err": float(np.median(e_itl)) if e_itl.size else math.nan,
            "itl_p90_abs_err": float(np.percentile(e_itl, 90)) if e_itl.size else math.nan,
            "power_median_abs_err": float(np.median(e_pw)) if e_pw.size else math.nan}


def run_check(a, nvml=None, log=print, checkpoint=None) -> dict:
    """Everything the check measures, as one JSON-ready dict. `nvml`: an injected NVML
    (tests pass the fake one); None loads pynvml when a GPU is present. `checkpoint(doc)` is
    called after every phase and case, so a run cut short still leaves what it measured."""
    import torch

    from orrery.realbackend.calibrate import GPU_GRID, QUICK_GRID, calibrate
    from orrery.realbackend.nvml import (
        GPUMonitor,
        GPUUnavailableError,
        check_energy_agreement,
        discover,
        load_nvml,
    )
    from orrery.realbackend.serving import NO_GPU_ENERGY, build_model, resolve_device
    from orrery.realbackend.validate import validate_scenarios

    t0 = time.time()
    doc: dict = {"kind": "orrery-gpu-check", "mode": "cpu-smoke" if a.cpu_smoke else "gpu",
                 "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "argv": a.argv,
                 "environment": {"python": platform.python_version(), "torch": torch.__version__,
                                 "cuda_available": torch.cuda.is_available(),
                                 "torch_cuda": getattr(torch.version, "cuda", None)}}
    device = "cpu" if a.cpu_smoke else resolve_device(f"cuda:{a.gpu}")
    # ---- 1. NVML
    try:
        nv = load_nvml(nvml)
        gpus = discover(nv)
    except GPUUnavailableError as err:  # timings still mean something; energy is then n/a
        nv, gpus = None, []
        doc["nvml"] = {"available": False, "why": str(err), "energy_source": NO_GPU_ENERGY}
        log(f"NVML: {err}\nenergy: {NO_GPU_ENERGY}")
    mon = None
    gpu_catalog = None
    if nv is not None:
        g = gpus[a.gpu]
        doc["nvml"] = {"available": True, "driver": driver_version(nv), "gpus": [asdict(x) for x in gpus]}
        doc["settings_before"] = read_settings(nv, a.gpu)
        mon = GPUMonitor(a.gpu, nvml=nv)
        gpu_catalog = catalog_gpu_for(g.name, g.memory_bytes)
        doc["gpu"] = {"index": a.gpu, "name": g.name, "catalog": gpu_catalog, "energy_source": mon.source}
        log(f"GPU {a.gpu}: {g.name} ({g.architecture}, {g.memory_bytes / 2**30:.0f} GiB), driver "
            f"{doc['nvml']['driver']}, power {g.power_w} W, limit {g.power_limit_w} W in "
            f"[{g.power_limit_min_w}, {g.power_limit_max_w}] W; catalog entry: {gpu_catalog}; energy: {mon.source}")
    # ---- 2. the engine at the realistic size
    cfg = _engine_config(a, device)
    tb = time.time()
    model = build_model(cfg, a.max_num_seqs)
    model.capture_graphs(a.max_num_seqs)
    doc["engine"] = {"device": device, "device_name": torch.cuda.get_device_name(device) if device != "cpu" else "CPU",
                     "model": model.cfg.describe(), "execution": model.execution(), "build_s": time.time() - tb}
    log(f"engine: {model.cfg.name} on {device}, {model.cfg.n_params / 1e9:.2f} B parameters "
        f"({model.cfg.dtype}), {model.n_slots} KV slots of {model.cfg.max_len} tokens; "
        f"execution {model.execution()}; built in {time.time() - tb:.1f} s")
    # ---- energy counter vs sampled power
    checks = []
    if mon is not None and mon.info.has_energy_counter:
        from orrery.realbackend.calibrate import _decode_work

        work = _decode_work(min(32, model.n_slots), 256 if model.cfg.max_len > 258 else model.cfg.max_len - 2)
        for label, fn in (("idle", None), ("decode batch 32", lambda: model.step(work))):
            r = check_energy_agreement(mon, fn, seconds=a.energy_check_s)
            checks.append({"label": label, **r})
            log(f"energy check {label}: counter {r['counter_j']:.1f} J ({r['counter_avg_w']:.1f} W) vs sampled "
                f"{r['sampled_j']:.1f} J: {100 * r['rel_diff']:.1f}% apart")
    doc["energy_check"] = checks
    save = (lambda: checkpoint({**doc, "targets": targets(doc), "wall_s": time.time() - t0})) if checkpoint else (
        lambda: None)
    save()
    # ---- 3. calibration
    tc = time.time()
    cal = calibrate(cfg, monitor=mon, log=log, grid=QUICK_GRID if a.cpu_smoke else GPU_GRID,
                    load_requests=a.load_requests, power_seconds=a.power_s, include_decision=True)
    kv_from_memory = cal.params.kv_capacity_tokens
    params = replace(cal.params, kv_capacity_tokens=min(a.kv_tokens, kv_from_memory))
    cal.params = params
    doc["calibration"] = {"params": _clean(asdict(params)), "fit": _clean(cal.fit), "wall_s": time.time() - tc,
                          "kv_capacity_from_memory_tokens": kv_from_memory, "kv_capacity_study_tokens":
                          params.kv_capacity_tokens, "power": _clean(cal.samples.get("power"))}
    log(f"calibration: {time.time() - tc:.0f} s; decode = {params.decode_a_s:.3e} + {params.decode_b_s:.3e}*B + "
        f"{params.decode_c_s:.3e}*ctx s (MAPE {cal.fit['decode']['mape_pct']:.1f}%); KV from memory "
        f"{kv_from_memory} tokens, study cap {params.kv_capacity_tokens}")
    # ---- 4. uncalibrated catalog prediction (needs only the calibration's measurements)
    doc["uncalibrated"] = uncalibrated(a.model, gpu_catalog, cal)
    save()
    # ---- 5. sim vs real
    sat = saturation_rps(a, params, gpu_catalog)
    rates = {"saturation_rps": sat, "light_rps": a.light * sat, "overload_rps": a.overload * sat}
    doc["rates"] = rates
    log(f"rates: saturation {sat:.2f} req/s (simulated, calibrated model): light {rates['light_rps']:.2f}, "
        f"overload {rates['overload_rps']:.2f}")
    scenarios = []
    for kind, rate, n in (("light", rates["light_rps"], a.n_light), ("overload", rates["overload_rps"], a.n_overload)):
        # keep each case near --case-budget-s: arrivals span n / rate seconds (and an overload
        # drains for about n / saturation more)
        span_rps = rate if kind == "light" else sat
        n = int(min(n, max(a.min_requests, round(a.case_budget_s * span_rps))))
        for pol in ("vllm_fcfs", "andes"):
            scenarios.append((f"{pol}@{kind}", _scenario(a, pol, rate, n, gpu_catalog)))
    doc["cases"] = []
    for lab, scn in scenarios:
        long, (run,) = validate_scenarios([(lab, scn)], replace(cfg, kv_capacity_tokens=params.kv_capacity_tokens),
                                          cal, time_scale=1.0, log=log, monitor=mon)
        doc["cases"].append(_case(lab, scn, run, long))
        save()
    # ---- read-only promise
    if nv is not None:
        doc["settings_after"] = read_settings(nv, a.gpu)
        doc["settings_unchanged"] = doc["settings_after"] == doc["settings_before"]
    doc["targets"] = targets(doc)
    doc["wall_s"] = time.time() - t0
    return doc


def _case(label: str, scn, run, rows) -> dict:
    sim = run.info.get("sim_metrics", {})
    out = {"label": label, "policy": scn.policy, "rate_rps": scn.workload.rate_rps,
           "n_requests": scn.workload.n_requests, "energy_source": run.info["energy_source"],
           "drift": float(rows.drift.iloc[0]) if len(rows) else math.nan,
           "decode_measured_over_model": run.info.get("decode_measured_over_model", math.nan),
           "wall_s": run.info["wall_s"], "execution": run.info.get("execution"),
           "iterations": float(run.metrics.get("iterations", math.nan)),
           # the policy's own decision time (real seconds, all iterations): the simulator charges none
           "schedule_real_s": run.info.get("schedule_real_s", math.nan),
           "energy_counter_vs_sampled": run.info.get("energy_counter_vs_sampled", math.nan)}
    real = {k: float(run.metrics.get(k, math.nan)) for k, _ in METRICS}
    real.update({k: float(run.metrics.get(k, math.nan)) for k in ("energy_j", "energy_per_request_j", "avg_power_w",
                                                                   "n_finished", "preemptions_per_request")})
    s = {k: float(sim.get(k, math.nan)) for k, _ in METRICS}
    s.update({k: float(sim.get(k, math.nan)) for k in ("energy_j", "n_finished", "preemptions_per_request")})
    s["energy_per_request_j"] = s["energy_j"] / max(s["n_finished"], 1.0)
    s["avg_power_w"] = s["energy_j"] / float(sim.get("sim_time_s", math.nan))
    out["real"], out["sim"] = real, s
    out["rel_err"] = {k: _rel(s[k], real[k]) for k in real if k in s}
    return _clean(out)


def _rel(sim: float, real: float) -> float:
    if not (math.isfinite(sim) and math.isfinite(real)) or real == 0:
        return math.nan
    return abs(sim - real) / abs(real)


def targets(doc: dict) -> dict:
    """The issue's targets, each with the worst case and whether it is met (None: not
    measurable here, e.g. energy without a GPU)."""
    out = {}
    for k, lim in TARGETS.items():
        errs = [c["rel_err"].get(k) for c in doc.get("cases", [])]
        errs = [e for e in errs if e is not None and math.isfinite(e)]
        out[k] = {"limit": lim, "worst": max(errs) if errs else None, "met": (max(errs) <= lim) if errs else None}
    q = {c["label"]: c["real"]["qoe_mean"] for c in doc.get("cases", [])}
    if "andes@overload" in q and "vllm_fcfs@overload" in q:
        out["andes_qoe_above_fcfs_under_overload"] = {"andes": q["andes@overload"], "fcfs": q["vllm_fcfs@overload"],
                                                      "met": q["andes@overload"] > q["vllm_fcfs@overload"]}
    return out


def _clean(x):
    """JSON-safe: NaN/inf -> None, numpy scalars -> floats, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ----------------------------------------------------------------------------- Markdown
def _f(x, spec: str = ".3g", pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else format(x, spec)


def _uncalibrated_md(u: dict | None) -> list[str]:
    if u is None:
        return []
    L: list[str] = []
    L += ["## Uncalibrated catalog prediction (datasheet + fitted family parameters)", ""]
    if not u.get("available"):
        L += [f"Not available: {u.get('why')}.", ""]
    else:
        L += [f"{u['model']} on {u['gpu_catalog']}: decode ITL median |error| {_f(u['itl_median_abs_err'], pct=True)}, "
              f"90th percentile {_f(u['itl_p90_abs_err'], pct=True)}; power median |error| "
              f"{_f(u['power_median_abs_err'], pct=True)}.", "",
              "| batch | context tokens | ITL measured (ms) | ITL predicted (ms) | error |", "|---|---|---|---|---|"]
        for row in u["itl"]:
            L.append(f"| {row['batch']} | {row['context_tokens']} | {1e3 * row['measured_s']:.2f} | "
                     f"{1e3 * row['predicted_s']:.2f} | {_f(row['rel_err'], pct=True)} |")
        if u["power"]:
            L += ["", "| batch (0 = idle) | power measured (W) | predicted (W) | error |", "|---|---|---|---|"]
            for row in u["power"]:
                L.append(f"| {row['batch']} | {_f(row['measured_w'], '.0f')} | {_f(row['predicted_w'], '.0f')} | "
                         f"{_f(row['rel_err'], pct=True)} |")
        L.append("")
    return L


def markdown(doc: dict) -> str:
    L = [f"# orrery GPU check ({doc['mode']})", "",
         f"Started {doc['started_utc']}, {_f(doc.get('wall_s'), '.0f')} s. Command: `{' '.join(doc['argv'])}`", ""]
    if doc.get("complete") is False:
        L += ["**Incomplete: written during the run; the check had not finished.**", ""]
    env = doc["environment"]
    L += [f"torch {env['torch']} (CUDA {env['torch_cuda']}), python {env['python']}.", ""]
    nv = doc.get("nvml", {})
    L += ["## GPU and NVML", ""]
    if not nv.get("available"):
        L += [f"No GPU energy source: {nv.get('why', 'NVML not available')}.", ""]
    else:
        L += [f"Driver {nv.get('driver')}; energy source: {doc['gpu']['energy_source']}; catalog entry: "
              f"{doc['gpu']['catalog'] or 'none'}.", "",
              "| GPU | arch | memory (GiB) | power (W) | limit (W) | limit range (W) | SM max (MHz) | energy counter | temp (C) |",
              "|---|---|---|---|---|---|---|---|---|"]
        for g in nv["gpus"]:
            L.append(f"| {g['index']}: {g['name']} | {g['architecture']} | {g['memory_bytes'] / 2**30:.0f} | "
                     f"{_f(g['power_w'])} | {_f(g['power_limit_w'])} | {_f(g['power_limit_min_w'])}-"
                     f"{_f(g['power_limit_max_w'])} | {_f(g['sm_clock_max_mhz'])} | {g['has_energy_counter']} | "
                     f"{_f(g['temperature_c'])} |")
        L.append("")
        if doc.get("energy_check"):
            L += ["| energy check | counter (J) | sampled (J) | counter avg (W) | apart |", "|---|---|---|---|---|"]
            for r in doc["energy_check"]:
                L.append(f"| {r['label']} | {_f(r['counter_j'], '.1f')} | {_f(r['sampled_j'], '.1f')} | "
                         f"{_f(r['counter_avg_w'], '.1f')} | {_f(r['rel_diff'], pct=True)} |")
            L.append("")
        L += [f"Settings before {doc.get('settings_before')}, after {doc.get('settings_after')}: "
              f"{'unchanged' if doc.get('settings_unchanged') else 'CHANGED'}.", ""]
    if "engine" not in doc:
        return "\n".join(L)
    e = doc["engine"]
    m = e["model"]
    L += ["## Engine", "",
          f"{m['name']}: {m['n_layers']} layers, hidden {m['hidden_size']}, {m['n_heads']} heads / {m['kv_heads']} KV "
          f"heads of {m['head_dim']}, FFN {m['intermediate_size']}, experts {m['n_experts']}, vocab {m['vocab_size']}; "
          f"{m['n_params'] / 1e9:.2f} B parameters in {m['dtype']} on {e['device_name']}; "
          f"attention {e['execution']['attention']}, CUDA graphs {e['execution']['cuda_graphs']} "
          f"({e['execution']['graphs_captured']} captured{'; ' + str(e['execution']['graph_error']) if e['execution']['graph_error'] else ''}); "
          f"{e['execution']['n_slots']} KV slots of {m['max_len']} tokens.", ""]
    if "calibration" not in doc:
        return "\n".join(L + ["(stopped before calibration finished)"])
    c = doc["calibration"]
    p = c["params"]
    L += ["## Calibration", "",
          f"decode(B, C) = {_f(p['decode_a_s'])} + {_f(p['decode_b_s'])}·B + {_f(p['decode_c_s'])}·C s "
          f"(MAPE {_f(c['fit']['decode']['mape_pct'], '.1f')}%); prefill MAPE {_f(c['fit']['prefill']['mape_pct'], '.1f')}%; "
          f"power idle {_f(p['idle_power_w'], '.0f')} W, decode {_f(p['busy_power_w'], '.0f')} W + "
          f"{_f(p['busy_power_per_doubling_w'], '.1f')} W per doubling of the batch, prefill "
          f"{_f(p['prefill_power_w'], '.0f')} W. KV capacity from free memory {c['kv_capacity_from_memory_tokens']} "
          f"tokens; the cases use {c['kv_capacity_study_tokens']}. {_f(c['wall_s'], '.0f')} s.", ""]
    L += _uncalibrated_md(doc.get("uncalibrated"))
    if "rates" not in doc:
        return "\n".join(L)
    r = doc["rates"]
    L += ["## Sim vs real", "",
          f"Saturation {_f(r['saturation_rps'])} req/s (simulated on the calibrated model); light "
          f"{_f(r['light_rps'])} req/s, overload {_f(r['overload_rps'])} req/s.", "",
          "| case | requests | " + " | ".join(f"{n} sim / real (err)" for _, n in METRICS)
          + " | energy/request sim / real (J) | avg power sim / real (W) | counter vs sampled |",
          "|---|---|" + "---|" * len(METRICS) + "---|---|---|"]
    for cs in doc.get("cases", []):
        cells = []
        for k, _ in METRICS:
            cells.append(f"{_f(cs['sim'][k])} / {_f(cs['real'][k])} ({_f(cs['rel_err'].get(k), pct=True)})")
        L.append(f"| {cs['label']} | {cs['n_requests']} | " + " | ".join(cells)
                 + f" | {_f(cs['sim']['energy_per_request_j'])} / {_f(cs['real']['energy_per_request_j'])} | "
                 f"{_f(cs['sim']['avg_power_w'], '.0f')} / {_f(cs['real']['avg_power_w'], '.0f')} | "
                 f"{_f(cs['energy_counter_vs_sampled'], pct=True)} |")
    L.append("")
    t = doc.get("targets") or targets(doc)
    L += ["| target | limit | worst | met |", "|---|---|---|---|"]
    for k in TARGETS:
        L.append(f"| {k} error | {_f(t[k]['limit'], pct=True)} | {_f(t[k]['worst'], pct=True)} | "
                 f"{'n/a' if t[k]['met'] is None else t[k]['met']} |")
    if "andes_qoe_above_fcfs_under_overload" in t:
        q = t["andes_qoe_above_fcfs_under_overload"]
        L.append(f"| Andes QoE > FCFS QoE under overload | - | {_f(q['andes'])} vs {_f(q['fcfs'])} | {q['met']} |")
    L.append("")
    return "\n".join(L)


# ----------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="catalog architecture (default %(default)s)")
    ap.add_argument("--gpu", type=int, default=0, help="GPU index")
    ap.add_argument("--out", default=None, help="output folder (default results/gpu_check)")
    ap.add_argument("--cpu-smoke", action="store_true", help="run on the CPU with a shrunk architecture (minutes)")
    ap.add_argument("--n-light", type=int, default=None, help="requests in each light case")
    ap.add_argument("--n-overload", type=int, default=None, help="requests in each overload case")
    ap.add_argument("--light", type=float, default=0.1, help="light rate as a share of saturation")
    ap.add_argument("--overload", type=float, default=2.0, help="overload rate as a multiple of saturation")
    ap.add_argument("--kv-tokens", type=int, default=STUDY_KV_TOKENS, help="KV capacity of the cases (tokens)")
    ap.add_argument("--case-budget-s", type=float, default=None,
                    help="fewer requests in a case whose arrivals would span longer (default 40 s; smoke 4 s)")
    ap.add_argument("--max-num-seqs", type=int, default=None, help="requests running at once (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    a = parser().parse_args(argv)
    a.argv = ["scripts/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])]
    smoke = a.cpu_smoke
    a.max_len = 64 if smoke else MAX_LEN
    a.max_num_seqs = a.max_num_seqs or (16 if smoke else MAX_NUM_SEQS)
    a.n_light = a.n_light or (8 if smoke else 100)
    a.n_overload = a.n_overload or (16 if smoke else 300)
    a.case_budget_s = a.case_budget_s or (4.0 if smoke else 40.0)
    a.min_requests = 4 if smoke else 30
    a.load_requests = 12 if smoke else 120
    a.power_s = 0.2 if smoke else 1.0
    a.energy_check_s = 0.3 if smoke else 3.0
    if smoke and a.kv_tokens == STUDY_KV_TOKENS:
        a.kv_tokens = 1024
    for k in ("n_light", "n_overload", "kv_tokens", "max_num_seqs"):
        if getattr(a, k) < 1:
            raise OrreryInputError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(a, k)}")
    if not (0 < a.light < 1 and a.overload > 1):
        raise OrreryInputError(f"--light must be in (0, 1) and --overload > 1; got {a.light}, {a.overload}")
    return a


def write(doc: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / "gpu_check.json", out / "gpu_check.md"
    j.write_text(json.dumps(_clean(doc), indent=2) + "\n")
    m.write_text(markdown(_clean(doc)) + "\n")
    return j, m


def main(argv: list[str] | None = None, nvml=None) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        a = parse(argv)
        out = Path(a.out or "results/gpu_check")
        doc = run_check(a, nvml=nvml, log=log, checkpoint=lambda d: write({**d, "complete": False}, out))
    except OrreryInputError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    out = Path(a.out or "results/gpu_check")
    j, m = write({**doc, "complete": True}, out)
    print(markdown(_clean(doc)))
    print(f"wrote {j} and {m}", file=sys.stderr)
    if doc.get("settings_unchanged") is False:
        print("gpu_check: GPU settings CHANGED during the check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
