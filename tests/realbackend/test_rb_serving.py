"""The real engine runs the simulator's policy classes and really serves every token."""

from __future__ import annotations

import numpy as np
import pytest

import orrery.policies.serving.base as sbase
import orrery.realbackend.serving as rserving
from orrery.policies.registry import make_policy
from orrery.realbackend.latency import EngineLatencyParams, EnginePerfModel
from orrery.realbackend.serving import (
    NO_GPU_ENERGY,
    EngineConfig,
    RealServingEngine,
    run_real_serving,
)
from orrery.realbackend.tiny_llm import TinyLLMConfig
from orrery.sim.serving import ServingScenario

SMALL = TinyLLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128, vocab_size=128, max_len=128)
PARAMS = EngineLatencyParams(decode_a_s=3e-4, decode_b_s=6e-5, decode_c_s=2e-7, prefill_p_s=5e-4, prefill_q_s=6e-5,
                             prefill_r_s=6e-6, prefill_s_s=4e-8, swap_bw_bytes_per_s=2e10,
                             kv_bytes_per_token=SMALL.kv_bytes_per_token, kv_capacity_tokens=2048)


def scenario(policy: str, n: int = 12, rate: float = 2.0, **params) -> ServingScenario:
    return ServingScenario.from_dict({
        "policy": policy, "policy_params": params, "hardware": {"max_num_seqs": 16},
        "workload": {"arrival": "poisson", "rate_rps": rate, "n_requests": n, "max_total_tokens": 96}}, "test")


def cfg(**kw) -> EngineConfig:
    return EngineConfig(device="cpu", model=SMALL, time_scale=0.01, **kw)


def test_same_policy_classes_and_contract_as_the_simulator():
    for name in ("vllm_fcfs", "round_robin", "andes"):
        eng = RealServingEngine(scenario(name), cfg(), PARAMS)
        assert type(eng.policy) is type(make_policy("serving", name, {}))
    # the engine uses the contract objects themselves and the simulator's replica state machine
    assert rserving.validate_decision is sbase.validate_decision
    import orrery.sim.serving as ssim
    import orrery.sim.serving_replica as replica

    assert rserving.ReplicaState is replica.ReplicaState is ssim.ReplicaState
    assert rserving.summarize_requests is ssim.summarize_requests
    assert rserving.make_policy is ssim.make_policy
    eng = RealServingEngine(scenario("vllm_fcfs"), cfg(), PARAMS)
    rs = replica.ReplicaState(replica.RequestState(scenario("vllm_fcfs").workload.generate(
        np.random.default_rng(0), np.random.default_rng(1)), scenario("vllm_fcfs").qoe, np.random.default_rng(2)),
        block_size=16, total_blocks=64, max_num_seqs=8, max_num_batched_tokens=2048, swap_cap_bytes=0.0,
        kv_bytes_per_token=1.0, latency=eng.latency)
    rs.add(0)
    assert isinstance(rs.view(0.0), sbase.ServingView)  # the contract type (gathered lazily)


@pytest.mark.parametrize("policy", ["vllm_fcfs", "andes"])
def test_serves_every_token_and_reports_no_gpu_energy(policy):
    run = run_real_serving(scenario(policy), cfg(), PARAMS)
    t = run.table
    assert t.finished.all()
    assert (t.generated_tokens == t.output_tokens).all()
    assert ((t.qoe > 0) & (t.qoe <= 1)).all()
    assert (t.ttft_s > 0).all()
    toks = run.series["tokens"]
    assert len(toks) == int(t.output_tokens.sum())  # one measured delivery per token (+ recomputes none)
    assert np.isnan(run.metrics["energy_j"]) and run.info["energy_source"] == NO_GPU_ENERGY
    assert run.info["policy_class"].startswith("orrery.policies.serving.")


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_under_tight_kv(mode):
    p = EngineLatencyParams(**{**PARAMS.to_dict(), "kv_capacity_tokens": 192})
    run = run_real_serving(scenario("vllm_fcfs", n=10, rate=50.0, preempt_mode=mode), cfg(), p)
    t = run.table
    assert t.finished.all() and (t.generated_tokens == t.output_tokens).all()
    assert run.metrics["preemptions_per_request"] > 0
    assert (run.metrics["swap_bytes"] > 0) == (mode == "swap")


def test_view_latency_is_the_calibrated_model_in_workload_time():
    seen = []

    class Spy:
        policy_name = "spy"
        fast_forward = True

        def __init__(self):
            self.inner = make_policy("serving", "vllm_fcfs", {})

        def schedule(self, view):
            seen.append(view)
            return self.inner.schedule(view)

        def on_finish(self, rid, now):
            pass

    scn = scenario("vllm_fcfs", n=4)
    run = RealServingEngine(scn, cfg(), PARAMS, policy=Spy()).run()
    assert run.table.finished.all() and seen
    v = seen[-1]
    assert isinstance(v, sbase.ServingView)
    expect = EnginePerfModel(PARAMS, 0.01).decode_time_s(4, 400)
    assert v.latency.decode_time_s(4, 400) == pytest.approx(expect)
    assert v.kv_blocks_total == PARAMS.kv_capacity_tokens // scn.hardware.block_size


def test_bad_setups_are_input_errors():
    from orrery.core.errors import OrreryInputError

    with pytest.raises(OrreryInputError, match="one replica"):
        RealServingEngine(scenario("vllm_fcfs").with_updates({"replicas": 2}), cfg(), PARAMS)
    with pytest.raises(OrreryInputError, match="max_len"):
        RealServingEngine(scenario("vllm_fcfs").with_updates({"workload.max_total_tokens": 4096}), cfg(), PARAMS)
    with pytest.raises(OrreryInputError, match="no CUDA GPU|cuda"):
        if not __import__("torch").cuda.is_available():
            rserving.resolve_device("cuda")
        else:
            raise OrreryInputError("cuda present")
