"""Calibration fit, parameter files, the perf-model stand-in and the sim side of validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import orrery.sim.serving as ssim
from orrery.core.errors import OrreryInputError
from orrery.realbackend.calibrate import (
    PROBE_POINTS,
    calibrate,
    drift_ratio,
    fit,
    profile_engine_load,
    scale_times,
)
from orrery.realbackend.latency import CalibrationFile, EngineLatencyParams, EnginePerfModel
from orrery.realbackend.serving import EngineConfig
from orrery.realbackend.tiny_llm import TinyLLMConfig
from orrery.realbackend.validate import format_table, simulate_with_perf, validate_scenarios
from orrery.sim.serving import ServingScenario

SMALL = TinyLLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128, vocab_size=128, max_len=128)


def test_fit_recovers_known_coefficients():
    b = np.repeat([1, 4, 16, 64], 3)
    c = b * np.tile([20, 100, 400], 4)
    n = np.array([8, 32, 128, 256, 64, 200])
    s = np.array([1, 1, 1, 1, 4, 2])
    samples = {"decode": {"batch": b.tolist(), "context_tokens": c.tolist(), "time_s": (2e-4 + 5e-5 * b + 1e-7 * c).tolist()},
               "prefill": {"tokens": n.tolist(), "seqs": s.tolist(),
                           "time_s": (3e-4 + 2e-5 * s + 5e-6 * n + 3e-8 * n * n / s).tolist()},
               "swap": {"bytes": [1e6, 1e7], "time_s": [1e-4, 1e-3]}}
    p, info = fit(samples, 2048, 4096)
    assert (p.decode_a_s, p.decode_b_s, p.decode_c_s) == pytest.approx((2e-4, 5e-5, 1e-7), rel=1e-6)
    assert (p.prefill_p_s, p.prefill_q_s, p.prefill_r_s, p.prefill_s_s) == pytest.approx((3e-4, 2e-5, 5e-6, 3e-8), rel=1e-5)
    assert p.swap_bw_bytes_per_s == pytest.approx(1e10)
    assert info["decode"]["mape_pct"] < 1e-6


def test_quick_calibration_on_cpu_writes_a_readable_file(tmp_path):
    cal = calibrate(EngineConfig(device="cpu", model=SMALL, kv_capacity_tokens=1024), quick=True)
    assert cal.device == "cpu" and "no GPU energy source" in cal.energy_source
    assert np.isnan(cal.params.busy_power_w)
    p = cal.params
    assert p.decode_s(32, 32 * 100) > p.decode_s(1, 100) > 0
    path = cal.write(tmp_path / "cal.json")
    doc = json.loads(path.read_text())
    assert doc["params"]["busy_power_w"] is None  # NaN written as null
    back = CalibrationFile.read(path)
    assert back.params == p or back.params.to_dict().keys() == p.to_dict().keys()
    assert back.params.decode_a_s == p.decode_a_s and back.fit["host"]
    # the drift probe's baseline and the under-load decode points travel with the file
    assert len(back.samples["probe"]["time_s"]) == len(PROBE_POINTS)
    assert all(t > 0 for t in back.samples["probe"]["time_s"])
    assert back.samples["decode_load"]["batch"]


def test_bad_parameter_files(tmp_path):
    with pytest.raises(OrreryInputError, match="not found"):
        CalibrationFile.read(tmp_path / "missing.json")
    f = tmp_path / "x.json"
    f.write_text('{"kind": "other"}')
    with pytest.raises(OrreryInputError, match="not a real-engine calibration"):
        CalibrationFile.read(f)


def test_perf_model_stand_in_drives_the_simulator_and_is_undone():
    p = EngineLatencyParams(1e-3, 1e-4, 1e-7, 1e-3, 1e-4, 1e-5, 1e-8, 1e10, 2048, 4096)
    perf = EnginePerfModel(p, time_scale=0.01)
    assert perf.decode_time_s(4, 400) == pytest.approx((1e-3 + 4e-4 + 4e-5) / 0.01)
    assert perf.decode_time_s(np.array([1, 2]), np.array([10, 20])).shape == (2,)
    scn = ServingScenario.from_dict({"policy": "vllm_fcfs", "workload": {
        "arrival": "poisson", "rate_rps": 1.0, "n_requests": 20, "max_total_tokens": 256}}, "t")
    original = ssim.build_perf_model
    res = simulate_with_perf(scn, perf)
    assert ssim.build_perf_model is original
    assert res.metrics["n_finished"] == 20
    it = res.series["iterations"]
    dec = it[it.kind == "decode"]
    np.testing.assert_allclose(dec.duration_s, perf.decode_time_s(dec.batch.to_numpy(), dec.context_tokens.to_numpy()))


def test_small_validation_runs_both_sides():
    cal = calibrate(EngineConfig(device="cpu", model=SMALL, kv_capacity_tokens=1024), quick=True)
    scs = [(pol, ServingScenario.from_dict({"policy": pol, "hardware": {"max_num_seqs": 16}, "workload": {
        "arrival": "poisson", "rate_rps": 0.5, "n_requests": 8, "max_total_tokens": 96}}, "t"))
        for pol in ("vllm_fcfs", "andes")]
    long, runs = validate_scenarios(scs, EngineConfig(device="cpu", model=SMALL, kv_capacity_tokens=1024), cal)
    assert set(long.policy) == {"vllm_fcfs", "andes"} and len(long) == 10
    assert (long.drift > 0).all() and all("drift_before" in r.info for r in runs)
    timing = long[long.metric != "energy_per_token_j"]
    assert np.isfinite(timing.sim).all() and np.isfinite(timing.real).all()
    # no GPU energy source on the CPU: energy is NaN on both sides, and its error is n/a
    energy = long[long.metric == "energy_per_token_j"]
    assert len(energy) == 2 and energy.real.isna().all() and energy.rel_err.isna().all()
    assert all(r.info["sim_metrics"]["n_finished"] == 8 for r in runs)
    assert all(r.table.finished.all() for r in runs)
    assert "TTFT" in format_table(long)


def test_fit_uses_the_under_load_points():
    """Load points off the grid's line pull the decode fit towards them."""
    b = np.repeat([1, 4, 16], 2)
    c = b * np.tile([20, 200], 3)
    grid = {"batch": b.tolist(), "context_tokens": c.tolist(), "time_s": (1e-3 + 1e-4 * b).tolist()}
    base = {"decode": grid,
            "prefill": {"tokens": [8, 64, 128], "seqs": [1, 1, 2], "time_s": [1e-3, 2e-3, 3e-3]},
            "swap": {"bytes": [1e6], "time_s": [1e-4]}}
    p0, _ = fit(base, 1024, 2048)
    slow = {"batch": [8, 16], "context_tokens": [800, 1600], "time_s": [3e-3, 5e-3]}  # 1.5x the grid's line
    p1, info = fit({**base, "decode_load": slow}, 1024, 2048)
    assert info["decode"]["n"] == 8
    assert p1.decode_s(16, 1600) > 1.1 * p0.decode_s(16, 1600)


def test_drift_ratio_and_scaling():
    assert drift_ratio([1.0, 2.0, 4.0], [1.1, 2.2, 4.4]) == pytest.approx(1.1)
    assert drift_ratio([1.0, 1.0, 1.0], [0.9, 1.0, 5.0]) == pytest.approx(1.0)  # median: one outlier is ignored
    with pytest.raises(ValueError, match="drift probe"):
        drift_ratio([1.0, 2.0], [1.0])
    p = EngineLatencyParams(1e-3, 1e-4, 1e-7, 1e-3, 1e-4, 1e-5, 1e-8, 1e10, 2048, 4096)
    q = scale_times(p, 1.2)
    assert q.decode_s(8, 800) == pytest.approx(1.2 * p.decode_s(8, 800))
    assert q.prefill_s(100, 2) == pytest.approx(1.2 * p.prefill_s(100, 2))
    assert q.swap_bw_bytes_per_s == p.swap_bw_bytes_per_s and q.kv_capacity_tokens == p.kv_capacity_tokens


def test_engine_load_profile_ramps_the_batch():
    cfg = EngineConfig(device="cpu", model=SMALL, kv_capacity_tokens=1024)
    out = profile_engine_load(cfg, n_requests=24, min_iterations=1)
    # The burst fills the cache (several sequences per step) and drains as requests finish.
    # How far it drains depends on which requests finish in the same step, i.e. on wall-clock
    # timing, so only timing-free facts are asserted: several batch sizes, one well above 4,
    # one point per batch size in increasing order, and each point's context at least one
    # token per sequence.
    b = out["batch"]
    assert len(b) >= 2 and max(b) > 4 and min(b) < max(b)
    assert b == sorted(set(b))
    assert all(c >= k for k, c in zip(b, out["context_tokens"], strict=True))
    assert all(t > 0 for t in out["time_s"]) and sum(out["n"]) > 24
