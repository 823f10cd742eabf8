"""Sim-vs-real validation: the same workload through the real engine and through the serving
simulator running on the engine's calibrated latency model; per policy, the simulated and
measured TTFT, token latency, throughput and QoE with their relative errors.

Time scale. The tiny engine is far faster per token than the scenario's GPU+model, so a
scenario's workload (arrivals, expected TTFT, expected token delivery speed) would never load
it. Everything runs in *workload seconds*; one workload second lasts `time_scale` real
seconds. `time_scale="auto"` makes the engine's single-stream decode step (one sequence,
`AUTO_REF_CONTEXT` tokens of context) last as many workload seconds as the scenario's GPU+model
takes in the simulator's own perf model: one stream then meets or misses the reading speed the
same way, which is what QoE measures. The simulator side uses the calibrated model divided by
the same factor, so both sides see identical arrivals and expectations.

Calibration and drift. The calibrated model (grid points plus the engine's own steps under
load, see `realbackend.calibrate`) is rescaled per case by a speed probe timed before and after
the real run against the probe recorded at calibration: on a shared machine the same steps run
5-15% faster or slower from one minute to the next, and under overload the queueing doubles
such an error in TTFT. `drift=False` (`--no-drift-probe`) simulates with the calibration as is.

The simulator takes the engine model through `simulate_with_perf`, which calls the serving
simulator named by `SIMULATOR` (`run_serving(scn, perf_model=...)`): named, not imported, so the
real backend stays a sibling of the simulator (docs/ARCHITECTURE.md); both share the scenario
and the replica state machine.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from orrery.core.errors import OrreryInputError
from orrery.realbackend.latency import CalibrationFile, EngineLatencyParams, EnginePerfModel
from orrery.realbackend.serving import EngineConfig, RealServingRun, run_real_serving

AUTO_REF_CONTEXT = 256
COMPARED = (("ttft_mean_s", "TTFT mean (s)"), ("tpot_mean_s", "token latency (s/tok)"),
            ("throughput_tok_s", "throughput (tok/s)"), ("qoe_mean", "QoE mean"),
            ("energy_per_token_j", "energy per token (J)"))  # NaN on both sides without a GPU
SHIPPED_STUDY = Path(__file__).resolve().parent / "studies" / "validate_cpu.toml"
SIMULATOR = "orrery.sim.serving:run_serving"  # the simulator this validates against (by name)


def auto_time_scale(scn, params: EngineLatencyParams) -> float:
    """Real seconds per workload second that make the engine's single-stream decode step as
    long (in workload seconds) as the scenario hardware's, per the simulator's perf model."""
    from orrery.sim.serving_scenario import build_perf_model

    ref = float(build_perf_model(scn.hardware).decode_time_s(1, AUTO_REF_CONTEXT))
    eng = float(params.decode_s(1, AUTO_REF_CONTEXT))
    return eng / ref


def simulate_with_perf(scn, perf):
    """The serving simulator's run of `scn` with `perf` as the replica's latency/power model."""
    module, _, name = SIMULATOR.partition(":")
    return getattr(importlib.import_module(module), name)(scn, perf_model=perf)


def rel_err(sim: float, real: float) -> float:
    if not (math.isfinite(sim) and math.isfinite(real)) or real == 0:
        return math.nan
    return abs(sim - real) / abs(real)


def validate_scenarios(scenarios: list[tuple[str, object]], cfg: EngineConfig, calib: CalibrationFile,
                       time_scale: float | None = None,
                       log: Callable[[str], None] | None = None,
                       drift: bool = True, monitor=None) -> tuple[pd.DataFrame, list[RealServingRun]]:
    """Run each (label, ServingScenario) on the real engine and in the simulator.

    `drift`: bracket each real run with the calibration's drift probe (before and after) and
    simulate with the calibrated model rescaled by the mean of the two ratios, as a lab
    instrument is calibrated around a measurement; needs a calibration that recorded the probe
    (ratio 1 otherwise). Returns a long table (label, policy, metric, sim, real, rel_err,
    drift) and the real runs, each with the simulator's metrics for the same case in
    `info["sim_metrics"]`. `monitor`: an NVML `GPUMonitor`; each real run's energy then comes
    from the GPU (energy counter, cross-checked by sampled power) and is compared with the
    simulator's prediction (the calibrated power model)."""
    from orrery.realbackend.calibrate import PROBE_POINTS, drift_ratio, probe, scale_times
    from orrery.realbackend.serving import build_model

    rows = []
    runs = []
    recorded = calib.samples.get("probe", {}) if drift else {}
    baseline = recorded.get("time_s")
    if baseline is not None and len(baseline) != len(PROBE_POINTS):
        baseline = None
    # the probe runs on a model built as at calibration (same cache slots)
    n_slots = int(recorded.get("n_slots", min(64, cfg.max_slots)))
    probe_model = build_model(cfg, n_slots) if baseline is not None else None
    if drift and baseline is None and log:
        log("drift probe: the calibration has no probe baseline; simulating with it unscaled")
    for label, scn in scenarios:
        if getattr(scn, "domain", None) != "serving":
            raise OrreryInputError(f"{label}: validate-real compares serving scenarios; this one is "
                                   f"domain {getattr(scn, 'domain', '?')!r}")
        ts = time_scale if time_scale is not None else auto_time_scale(scn, calib.params)
        run_cfg = replace(cfg, time_scale=ts)
        before = drift_ratio(baseline, probe(probe_model)) if probe_model is not None else 1.0
        real = run_real_serving(scn, run_cfg, calib.params, monitor=monitor)
        after = drift_ratio(baseline, probe(probe_model)) if probe_model is not None else 1.0
        factor = 0.5 * (before + after)
        perf = EnginePerfModel(scale_times(calib.params, factor), ts)
        simr = simulate_with_perf(scn, perf)
        runs.append(real)
        real.info["drift_before"], real.info["drift_after"] = before, after
        real.info["sim_metrics"] = dict(simr.metrics)
        for key, _ in COMPARED:
            s, m = float(simr.metrics[key]), float(real.metrics[key])
            rows.append({"label": label, "policy": scn.policy, "time_scale": ts, "metric": key, "sim": s,
                         "real": m, "rel_err": rel_err(s, m), "drift": factor,
                         "decode_measured_over_model": real.info.get("decode_measured_over_model", math.nan)})
        if log:
            log(f"{label}: real {real.info['wall_s']:.1f}s wall on {real.info['device_name']}, "
                f"{int(real.metrics['n_finished'])}/{int(real.metrics['n_requests'])} finished, decode steps took "
                f"{real.info.get('decode_measured_over_model', math.nan):.2f}x the calibrated model; "
                + (f"drift probe {before:.2f}x before, {after:.2f}x after; " if probe_model is not None
                   else "no drift probe; ")
                + f"energy: {real.info['energy_source']}")
    return pd.DataFrame(rows), runs


def scenarios_from_study(study) -> list[tuple[str, object]]:
    """One scenario per study group (its first seed)."""
    out = []
    for g in study.groups:
        if g.runs:
            out.append((g.label, g.runs[0].scenario))
    if not out:
        raise OrreryInputError(f"study {study.name} has no runs")
    return out


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario: sim, real and relative error of each compared metric."""
    rows = []
    for (label, policy), g in long.groupby(["label", "policy"], sort=False):
        row = {"label": label, "policy": policy, "time_scale": float(g.time_scale.iloc[0])}
        for _, r in g.iterrows():
            row[f"{r.metric}:sim"] = r.sim
            row[f"{r.metric}:real"] = r.real
            row[f"{r.metric}:err"] = r.rel_err
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(long: pd.DataFrame) -> str:
    """Plain-text error table (what the CLI and the GPU check print)."""
    lines = []
    head = f"{'scenario':<44} {'metric':<22} {'sim':>11} {'real':>11} {'rel.err':>8}"
    lines.append(head)
    lines.append("-" * len(head))
    for _, r in long.iterrows():
        err = "n/a" if not math.isfinite(r.rel_err) else f"{100 * r.rel_err:.1f}%"
        name = dict(COMPARED)[r.metric]
        lines.append(f"{r.label[:44]:<44} {name:<22} {r.sim:>11.4g} {r.real:>11.4g} {err:>8}")
    return "\n".join(lines)
