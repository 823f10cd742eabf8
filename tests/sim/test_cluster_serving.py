"""Cluster serving: every request routed once, none lost, QoE in [0, 1], same seed same result;
power limits, carbon and cost follow their models; bad input names the field."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orrery.core.errors import ScenarioError
from orrery.policies.registry import shipped_policies
from orrery.sim.cluster_serving import ClusterServingScenario, run_cluster, simulate_cluster


def scenario(router="round_robin", groups=None, rate=6.0, n=60, seed=0, **kw):
    groups = groups or [{"count": 2, "gpu": "a100"}, {"count": 1, "gpu": "h100", "scheduler": "andes"}]
    return ClusterServingScenario.from_dict({
        "policy": router, "seed": seed, "replicas": groups,
        "workload": {"rate_rps": rate, "n_requests": n, "max_total_tokens": 2048}, **kw})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(router=st.sampled_from(shipped_policies("routing")),
       sched=st.sampled_from(shipped_policies("serving")), count=st.integers(1, 4),
       rate=st.floats(1.0, 30.0), seed=st.integers(0, 1000))
def test_invariants(router, sched, count, rate, seed):
    scn = scenario(router, [{"count": count, "gpu": "a100", "scheduler": sched, "max_num_seqs": 16}],
                   rate=rate, n=40, seed=seed)
    res = run_cluster(scn)
    t = res.table
    assert len(t) == 40 and t["request"].is_unique  # none lost
    assert ((t["replica"] >= 0) & (t["replica"] < count)).all()  # routed to a real replica
    assert res.series["replicas"]["requests"].sum() == 40  # ... exactly once
    assert t["finished"].all() and res.metrics["n_finished"] == 40
    assert ((t["qoe"] >= 0) & (t["qoe"] <= 1)).all()
    m = res.metrics
    assert 0 <= m["slo_attainment"] <= 1 and 0 <= m["gpu_utilization"] <= 1 + 1e-9
    assert m["energy_j"] > 0 and m["carbon_g"] > 0 and m["cost_usd_per_h"] == pytest.approx(count * 1.79)
    again = run_cluster(scn)
    assert again.metrics == m and again.table.equals(t)


def test_power_limit_saves_energy():
    free = run_cluster(scenario(groups=[{"count": 2, "gpu": "h100"}], rate=10))
    capped = run_cluster(scenario(groups=[{"count": 2, "gpu": "h100", "power_limit_w": 250}], rate=10))
    clocked = run_cluster(scenario(groups=[{"count": 2, "gpu": "h100", "sm_clock_mhz": 900}], rate=10))
    assert capped.metrics["energy_j"] < free.metrics["energy_j"]
    assert clocked.metrics["energy_j"] < free.metrics["energy_j"]
    assert capped.metrics["ttft_p50_s"] >= free.metrics["ttft_p50_s"]  # prefill is compute-bound


def test_carbon_follows_intensity_and_prices_override():
    a = run_cluster(scenario(carbon_intensity_g_per_kwh=100))
    b = run_cluster(scenario(carbon_trace="constant:200", prices_usd_per_gpu_h={"a100": 1.0, "h100": 2.0}))
    assert b.metrics["carbon_g"] == pytest.approx(2 * a.metrics["carbon_g"], rel=1e-9)
    assert a.metrics["carbon_g"] == pytest.approx(a.metrics["energy_j"] * 100 / 3.6e6, rel=1e-9)
    assert b.metrics["cost_usd_per_h"] == pytest.approx(2 * 1.0 + 2.0)


def test_monitor_stops_early():
    scn = scenario(groups=[{"count": 1, "gpu": "a100", "max_num_seqs": 4}], rate=20, n=200)
    res, why = simulate_cluster(scn, monitor=lambda p: "enough" if p.now_s > 5 else None, check_every_s=2)
    assert why == "enough" and res.metrics["stopped_early"] == 1.0
    assert res.metrics["n_finished"] < 200


@pytest.mark.parametrize("patch, field", [
    ({"replicas": [{"gpu": "z9000"}]}, "replicas.0"),
    ({"replicas": [{"model": "llama-2-13b", "tp": 3}]}, "tp=3 does not divide"),
    ({"replicas": [{"model": "llama-2-70b", "gpu": "l4"}]}, "weights do not fit"),
    ({"prices_usd_per_gpu_h": {"h100": -1.0}}, "prices_usd_per_gpu_h"),
    ({"policy": "nope"}, "unknown routing policy"),
    ({"replicas": [{"scheduler": "nope"}]}, "unknown serving policy"),
    ({"replicas": [{"gpu": "h100", "power_limit_w": 50}]}, "power_limit_w"),
    ({"replicas": [{"model": "llama-3.1-8b", "ep": 2}]}, r"replicas\.0[\s\S]*ep=2: .* dense model"),
    ({"replicas": [{"model": "qwen3-30b-a3b", "tp": 2, "ep": 4}]}, "tp=2 with ep=4"),
])
def test_bad_input_names_the_field(patch, field):
    base = {"policy": "round_robin", "workload": {"rate_rps": 1, "n_requests": 5}}
    base.update(patch)
    with pytest.raises(ScenarioError, match=field):
        ClusterServingScenario.from_dict(base)


def test_domain_registered():
    from orrery.sim.domains import get_domain

    d = get_domain("cluster_serving")
    assert d.policies == "routing" and "qoe_mean" in d.metrics
    assert np.isfinite(run_cluster(scenario(n=10)).metrics["ttft_p99_s"])


def test_expert_parallel_replicas_of_a_moe_model():
    """EP shares the tensor-parallel GPUs (vLLM): ep = 2 with tp = 1 is a 2-GPU replica whose
    cost, GPU count and energy count both GPUs; it serves every request."""
    one = {"count": 1, "gpu": "h100", "model": "qwen3-30b-a3b", "max_num_seqs": 16}
    r1 = run_cluster(scenario(groups=[one], n=20, rate=4.0))
    r2 = run_cluster(scenario(groups=[{**one, "ep": 2}], n=20, rate=4.0))
    assert r1.metrics["n_gpus"] == 1 and r2.metrics["n_gpus"] == 2
    assert r2.metrics["cost_usd_per_h"] == pytest.approx(2 * r1.metrics["cost_usd_per_h"])
    assert r2.metrics["n_finished"] == 20 and r1.metrics["n_finished"] == 20
    assert r2.metrics["energy_j"] > r1.metrics["energy_j"]  # two GPUs draw (at least idle) power
