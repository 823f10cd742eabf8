"""Calibration: profile the real engine's step time vs batch size and context, fit
`realbackend.latency.EngineLatencyParams`, and (with NVML) its busy and idle power.

Profiling runs the engine's own `TinyLLM.step` on synthetic sequences: decode over a grid of
batch sizes × context lengths, prefill over prompt lengths × sequence counts, and host↔device
KV copies for the swap bandwidth; then the engine itself serves a short overload burst and
its decode steps join the fit (`profile_engine_load`), and a fixed speed probe is recorded for
drift checks at validation time. Each grid point is the median of a few repeats (robust to a busy
machine). The fit is a non-negative least squares on relative error (rows divided by the
measured time), so short and long steps count alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import fields, replace

import numpy as np
from scipy.optimize import nnls

from orrery.realbackend.latency import CalibrationFile, EngineLatencyParams
from orrery.realbackend.serving import EngineConfig, build_model
from orrery.realbackend.tiny_llm import SeqWork, TinyLLM

FULL_GRID = {
    "decode_batch": (1, 2, 4, 8, 16, 32, 48, 64),
    "decode_ctx": (16, 96, 256, 448),
    "prefill_tokens": (8, 32, 96, 192, 320, 480),
    "prefill_seqs": (1, 2, 4),
    "repeats": 9,
}
# A real-size model on a GPU: batches up to the engine's 64 slots, contexts up to its 1024-token
# slots, and prefills as large as a vLLM prefill iteration (max_num_batched_tokens 2048).
GPU_GRID = {
    "decode_batch": (1, 2, 4, 8, 16, 24, 32, 48, 64),
    "decode_ctx": (32, 128, 384, 768),
    "prefill_tokens": (16, 64, 256, 768, 1536, 2048),
    "prefill_seqs": (1, 2, 4, 8),
    "repeats": 5,
}
QUICK_GRID = {
    "decode_batch": (1, 4, 16, 32),
    "decode_ctx": (32, 256),
    "prefill_tokens": (16, 96, 256),
    "prefill_seqs": (1, 3),
    "repeats": 3,
}


def _decode_work(batch: int, ctx: int) -> list[SeqWork]:
    """`batch` sequences of `ctx` cached tokens, one new token each."""
    return [SeqWork(j, ctx, [3]) for j in range(batch)]


def _prefill_work(seqs: int, per_seq: int) -> list[SeqWork]:
    """`seqs` fresh sequences of `per_seq` prompt tokens each."""
    return [SeqWork(j, 0, [1] * per_seq) for j in range(seqs)]


def _time_warm(model: TinyLLM, work: list[SeqWork]) -> float:
    """Seconds of one step on `work`, timed after an untimed step on the same work: a serving
    engine runs the same sequences back to back, so the timed step should find the caches as
    warm as they are in a real run."""
    model.step(work)
    model.synchronize()
    t = time.perf_counter()
    model.step(work)
    model.synchronize()
    return time.perf_counter() - t


def profile(model: TinyLLM, grid: dict, max_ctx: int, seed: int = 0) -> dict[str, list]:
    """Measured samples: decode (batch, context sum, s), prefill (tokens, seqs, s), swap (bytes, s).

    Every point is measured once per round, the rounds visit the points in a fresh random order
    and the median over rounds is kept: a burst of load from elsewhere on the machine then
    spreads over many points instead of spoiling a few. Each timed step follows an untimed one
    on the same work (warm CPU caches, as in a running engine). KV-cache contents do not change
    the cost of a step (only lengths do), so no KV cache is filled first.
    """
    n_slots = model.n_slots
    points: list[tuple[str, int, int, list[SeqWork]]] = []
    for ctx in grid["decode_ctx"]:
        ctx = min(ctx, max_ctx - 2)
        for b in grid["decode_batch"]:
            if b <= n_slots:
                points.append(("decode", b, b * (ctx + 1), _decode_work(b, ctx)))
    for n in grid["prefill_tokens"]:
        for s in grid["prefill_seqs"]:
            per = max(1, min(n // s, max_ctx - 1))
            if s <= n_slots:
                points.append(("prefill", per * s, s, _prefill_work(s, per)))
    model.step([SeqWork(0, 0, [1] * 8)])  # warm-up
    rng = np.random.default_rng(seed)
    times = np.zeros((grid["repeats"], len(points)))
    for rep in range(grid["repeats"]):
        for i in rng.permutation(len(points)):
            times[rep, i] = _time_warm(model, points[i][3])
    med = np.median(times, axis=0)
    dec: dict[str, list] = {"batch": [], "context_tokens": [], "time_s": []}
    pre: dict[str, list] = {"tokens": [], "seqs": [], "time_s": []}
    for (kind, x, y, _), t in zip(points, med.tolist(), strict=True):
        if kind == "decode":
            dec["batch"].append(x)
            dec["context_tokens"].append(y)
            dec["time_s"].append(t)
        else:
            pre["tokens"].append(x)
            pre["seqs"].append(y)
            pre["time_s"].append(t)
    swp: dict[str, list] = {"bytes": [], "time_s": []}
    per_tok = model.cfg.kv_bytes_per_token
    for length in (64, max_ctx // 2):
        ts = []
        for _ in range(grid["repeats"]):
            t = time.perf_counter()
            kv = model.save_slot(0, length)
            model.load_slot(0, kv)
            model.synchronize()
            ts.append((time.perf_counter() - t) / 2)
        swp["bytes"].append(length * per_tok)
        swp["time_s"].append(float(np.median(ts)))
    return {"decode": dec, "prefill": pre, "swap": swp}


def profile_host_overhead(cfg: EngineConfig, params: EngineLatencyParams, batches=(1, 8, 32, 64),
                          prompt_tokens: int = 24, output_tokens: int = 24,
                          include_decision: bool = False) -> dict[str, list]:
    """Host-side time per engine iteration besides the model step (bookkeeping), measured by
    running the real engine on `b` requests that all arrive at once, for each batch size b.

    `include_decision`: add the scheduling decision itself (view, the vLLM-FCFS call, checks).
    The engine charges that at its real duration; in real time (time_scale 1, a real-size model
    on a GPU) it is part of every iteration, as vLLM's scheduler is, so the model should hold it.
    """
    from orrery.realbackend.serving import RealServingEngine
    from orrery.sim.serving_scenario import ServingScenario
    from orrery.workloads.serving import Requests

    out: dict[str, list] = {"kind": [], "batch": [], "host_s": []}
    for b in batches:
        b = min(b, cfg.max_slots)
        scn = ServingScenario.from_dict({
            "policy": "vllm_fcfs", "hardware": {"max_num_seqs": b},
            "workload": {"arrival": "poisson", "rate_rps": 1.0, "n_requests": b,
                         "max_total_tokens": min(cfg.model.max_len, 4096)}}, "calibration")
        reqs = Requests(np.zeros(b), np.full(b, prompt_tokens, np.int64), np.full(b, output_tokens, np.int64))
        eng = RealServingEngine(scn, replace(cfg, time_scale=1.0), params)
        it = eng.run(requests=reqs).series["iterations"]
        for kind in ("decode", "prefill"):
            rows = it[it.kind == kind]
            if len(rows):
                out["kind"].append(kind)
                out["batch"].append(int(rows.batch.median()))
                host = rows.host_s + rows.schedule_s if include_decision else rows.host_s
                out["host_s"].append(float(host.median()))
    return out


# Drift probe: a few fixed steps, timed at calibration and again around each validation case.
# Their ratio is the machine's current speed against the calibrated one (a shared CPU or a
# GPU at another clock drifts by 5-20% over minutes); the simulator's model is rescaled by it.
PROBE_POINTS = (("decode", 1, 256), ("decode", 8, 256), ("decode", 32, 128), ("prefill", 96, 1),
                ("prefill", 256, 2))
PROBE_REPEATS = 7


def probe(model: TinyLLM, repeats: int = PROBE_REPEATS) -> list[float]:
    """Median step time (s) of each `PROBE_POINTS` entry on `model` (fits any engine size)."""
    works = []
    max_ctx = model.cfg.max_len
    for kind, x, y in PROBE_POINTS:
        if kind == "decode":
            works.append(_decode_work(min(x, model.n_slots), min(y, max_ctx - 2)))
        else:
            s = min(y, model.n_slots)
            works.append(_prefill_work(s, max(1, min(x // s, max_ctx - 1))))
    times = np.array([[_time_warm(model, work) for work in works] for _ in range(repeats)])
    return np.median(times, axis=0).tolist()


def drift_ratio(baseline_s: list[float], now_s: list[float]) -> float:
    """Median of now/baseline over the probe points: > 1 means the machine runs slower now."""
    b = np.asarray(baseline_s, float)
    n = np.asarray(now_s, float)
    if b.shape != n.shape or b.size == 0 or not (b > 0).all():
        raise ValueError("drift probe: baseline and current probe differ in shape or are not positive")
    return float(np.median(n / b))


def scale_times(params: EngineLatencyParams, factor: float) -> EngineLatencyParams:
    """`params` with every step-time coefficient multiplied by `factor` (swap and KV unchanged)."""
    names = [f.name for f in fields(params) if f.name.startswith(("decode_", "prefill_"))]
    return replace(params, **{n: getattr(params, n) * factor for n in names})


def profile_engine_load(cfg: EngineConfig, n_requests: int = 120, rate_rps: float = 1000.0,
                        seed: int = 9001, min_iterations: int = 5) -> dict[str, list]:
    """Decode step times as the serving engine meets them under load, one point per batch size.

    The grid above times uniform batches on the first slots; a running engine decodes ragged
    contexts scattered over the cache, with its own bookkeeping between steps, and on the
    machines tried that runs a few percent slower at large batches. So the engine serves a
    calibration workload of its own (vLLM-FCFS; `n_requests` arriving within a fraction of a
    second fill the KV cache, and the batch then drains as requests finish; how far it drains
    depends on which requests finish together, i.e. on timing; seed and rate unrelated to any
    validation study), and each batch size seen
    at least `min_iterations` times gives a point (batch, mean context, mean step time). Means,
    not medians: the step model is linear, so means keep the least-squares fit exact.
    """
    from orrery.realbackend.serving import RealServingEngine
    from orrery.sim.serving_scenario import ServingScenario

    # requests of up to 1/16 of the KV capacity: a full cache then holds batches of ~16-40
    max_total = int(np.clip(cfg.kv_capacity_tokens // 16, 32, cfg.model.max_len))
    scn = ServingScenario.from_dict({
        "policy": "vllm_fcfs", "seed": seed, "hardware": {"max_num_seqs": min(64, cfg.max_slots)},
        "workload": {"arrival": "poisson", "rate_rps": rate_rps, "n_requests": n_requests,
                     "max_total_tokens": max_total}}, "calibration workload")
    params = EngineLatencyParams(1e-3, 0, 0, 1e-3, 0, 0, 0, 1e9, 1.0, cfg.kv_capacity_tokens)
    it = RealServingEngine(scn, replace(cfg, time_scale=1.0), params).run().series["iterations"]
    dec = it[it.kind == "decode"]
    out: dict[str, list] = {"batch": [], "context_tokens": [], "time_s": [], "n": []}
    for b, g in dec.groupby("batch"):
        if len(g) >= min_iterations:
            out["batch"].append(int(b))
            out["context_tokens"].append(float(g.context_tokens.mean()))
            out["time_s"].append(float(g.step_s.mean()))
            out["n"].append(len(g))
    return out


def _fit_rel(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    w = 1.0 / np.maximum(y, 1e-9)
    coef, _ = nnls(X * w[:, None], y * w)
    pred = X @ coef
    rel = np.abs(pred - y) / y
    ss = float(((y - pred) ** 2).sum())
    tot = float(((y - y.mean()) ** 2).sum()) or 1.0
    return coef, {"mape_pct": float(rel.mean() * 100), "max_rel_err_pct": float(rel.max() * 100),
                  "r2": 1.0 - ss / tot, "n": int(y.size)}


def fit(samples: dict, kv_bytes_per_token: float, kv_capacity_tokens: int,
        idle_power_w: float = math.nan, busy_power_w: float = math.nan) -> tuple[EngineLatencyParams, dict]:
    d = samples["decode"]
    b = np.asarray(d["batch"], float)
    c = np.asarray(d["context_tokens"], float)
    y = np.asarray(d["time_s"], float)
    if samples.get("decode_load"):  # points from the engine under load count alongside the grid
        ld = samples["decode_load"]
        b = np.concatenate([b, np.asarray(ld["batch"], float)])
        c = np.concatenate([c, np.asarray(ld["context_tokens"], float)])
        y = np.concatenate([y, np.asarray(ld["time_s"], float)])
    (da, db, dc), dfit = _fit_rel(np.column_stack([np.ones_like(b), b, c]), y)
    p = samples["prefill"]
    n = np.asarray(p["tokens"], float)
    s = np.asarray(p["seqs"], float)
    y = np.asarray(p["time_s"], float)
    (pp, pq, pr, ps), pfit = _fit_rel(np.column_stack([np.ones_like(n), s, n, n * n / s]), y)
    sw = samples["swap"]
    bw = float(np.sum(sw["bytes"]) / max(np.sum(sw["time_s"]), 1e-12))
    params = EngineLatencyParams(
        decode_a_s=float(da), decode_b_s=float(db), decode_c_s=float(dc), prefill_p_s=float(pp),
        prefill_q_s=float(pq), prefill_r_s=float(pr), prefill_s_s=float(ps), swap_bw_bytes_per_s=bw,
        kv_bytes_per_token=float(kv_bytes_per_token), kv_capacity_tokens=int(kv_capacity_tokens),
        idle_power_w=idle_power_w, busy_power_w=busy_power_w)
    return params, {"decode": dfit, "prefill": pfit}


def add_host_overhead(params: EngineLatencyParams, host: dict) -> tuple[EngineLatencyParams, dict]:
    """Fold the measured host time per iteration (o + o'·batch) into the step model."""
    info = {}
    upd = {}
    for kind, (a, b) in (("decode", ("decode_a_s", "decode_b_s")), ("prefill", ("prefill_p_s", "prefill_q_s"))):
        m = np.asarray(host["kind"]) == kind
        x = np.asarray(host["batch"], float)[m]
        y = np.asarray(host["host_s"], float)[m]
        if y.size >= 2:
            coef, _ = nnls(np.column_stack([np.ones_like(x), x]), y)
        elif y.size == 1:
            coef = np.array([y[0], 0.0])
        else:
            continue
        upd[a] = getattr(params, a) + float(coef[0])
        upd[b] = getattr(params, b) + float(coef[1])
        info[kind] = {"per_iteration_s": float(coef[0]), "per_sequence_s": float(coef[1])}
    return replace(params, **upd), info


POWER_BATCHES = (1, 8, 32, 64)


def measure_power(model: TinyLLM, monitor, seconds: float = 1.0, batches=POWER_BATCHES,
                  ctx: int = 256) -> dict:
    """Power from NVML windows of `seconds` each: idle while sleeping, decoding at each batch
    size (`ctx` tokens of context per sequence) and prefilling 1024-token prompts. Each busy
    window also integrates sampled power (the energy counter's cross-check)."""
    with monitor.window(cross_check=True) as idle:
        time.sleep(seconds)
    ctx = min(ctx, model.cfg.max_len - 2)
    out: dict = {"idle_w": idle.avg_power_w, "source": monitor.source,
                 "decode": {"batch": [], "context_tokens": [], "power_w": [], "sampled_w": [], "step_s": []}}
    for b in sorted({min(b, model.n_slots) for b in batches}):
        work = _decode_work(b, ctx)
        model.step(work)
        n = 0
        with monitor.window(cross_check=True) as w:
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                model.step(work)
                n += 1
            model.synchronize()
        d = out["decode"]
        d["batch"].append(b)
        d["context_tokens"].append(b * (ctx + 1))
        d["power_w"].append(w.avg_power_w)
        d["sampled_w"].append(w.sampled_j / w.time_s if w.time_s > 0 else math.nan)
        d["step_s"].append(w.time_s / max(n, 1))
    per = max(1, min(1024, model.cfg.max_len - 1) // 2)
    work = _prefill_work(min(2, model.n_slots), per)
    model.step(work)
    with monitor.window(cross_check=True) as w:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            model.step(work)
        model.synchronize()
    out["prefill_w"] = w.avg_power_w
    return out


def fit_power(meas: dict) -> dict:
    """Decode power = busy + per_doubling·log2(batch) (least squares), prefill and idle power."""
    d = meas["decode"]
    b = np.log2(np.maximum(np.asarray(d["batch"], float), 1.0))
    p = np.asarray(d["power_w"], float)
    ok = np.isfinite(p)
    if ok.sum() >= 2 and np.ptp(b[ok]) > 0:
        slope, icpt = np.polyfit(b[ok], p[ok], 1)
    elif ok.any():
        slope, icpt = 0.0, float(p[ok].mean())
    else:
        slope, icpt = 0.0, math.nan
    return {"idle_power_w": float(meas["idle_w"]), "busy_power_w": float(icpt),
            "busy_power_per_doubling_w": float(slope), "prefill_power_w": float(meas.get("prefill_w", math.nan))}


def calibrate(cfg: EngineConfig, quick: bool = False, monitor=None, log=None, grid: dict | None = None,
              load_requests: int | None = None, power_seconds: float = 1.0,
              include_decision: bool = False) -> CalibrationFile:
    """Profile and fit the engine built from `cfg`. `monitor`: a `GPUMonitor` (CUDA runs);
    `grid`: the profiling grid (default FULL_GRID, QUICK_GRID with `quick`, GPU_GRID for a
    real-size model); `load_requests`: requests of the under-load profile; `include_decision`:
    the per-iteration overhead holds the scheduling decision too (for real-time runs)."""
    from orrery.realbackend.serving import resolve_kv_capacity

    grid = grid or (QUICK_GRID if quick else FULL_GRID)
    n_slots = min(max(grid["decode_batch"]), cfg.max_slots)
    model = build_model(cfg, n_slots)
    cfg = replace(cfg, kv_capacity_tokens=resolve_kv_capacity(cfg, model))
    max_ctx = model.cfg.max_len
    model.capture_graphs(n_slots)
    samples = profile(model, grid, max_ctx)
    samples["probe"] = {"time_s": probe(model), "n_slots": model.n_slots}
    samples["decode_load"] = profile_engine_load(cfg, n_requests=load_requests or (40 if quick else 120))
    power = {"idle_power_w": math.nan, "busy_power_w": math.nan}
    source = "none (CPU run: no GPU energy source present)"
    if monitor is not None:
        samples["power"] = measure_power(model, monitor, seconds=power_seconds)
        power = fit_power(samples["power"])
        source = monitor.source
    step_params, fitinfo = fit(samples, model.cfg.kv_bytes_per_token, cfg.kv_capacity_tokens)
    step_params = replace(step_params, **power)
    host = profile_host_overhead(cfg, step_params, batches=(1, 8, 32) if quick else (1, 4, 16, 32, 64),
                                 include_decision=include_decision)
    host["include_decision"] = include_decision
    samples["host"] = host
    params, hostfit = add_host_overhead(step_params, host)
    fitinfo["host"] = hostfit
    if log:
        log(f"decode fit: MAPE {fitinfo['decode']['mape_pct']:.1f}% over {fitinfo['decode']['n']} points; "
            f"prefill fit: MAPE {fitinfo['prefill']['mape_pct']:.1f}% over {fitinfo['prefill']['n']} points")
    device = str(model.device)
    import torch

    name = torch.cuda.get_device_name(model.device) if device.startswith("cuda") else "CPU"
    fitinfo["execution"] = model.execution()
    return CalibrationFile(params=params, device=device, device_name=name, model=model.cfg.describe(),
                           threads=torch.get_num_threads() if device == "cpu" else None, fit=fitinfo,
                           samples=samples, energy_source=source)
