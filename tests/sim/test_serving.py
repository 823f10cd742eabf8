"""Serving simulator: invariants (hypothesis), dispatch, preemption modes, errors."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.policies.registry import shipped_policies
from orrery.policies.serving.qoe import qoe_of_stream
from orrery.sim.serving import ServingScenario, build_perf_model, run_serving


def scenario(policy="vllm_fcfs", rate=2.0, n=40, **kw):
    base = {
        "policy": policy,
        "workload": {"rate_rps": rate, "n_requests": n, "max_total_tokens": kw.pop("max_total", 4096)},
        "record_tokens": True,
        # a small GPU share makes the KV cache tight, so preemption paths run
        "hardware": {"gpu": "a100", "model": "llama-2-13b",
                     "gpu_memory_utilization": kw.pop("util", 0.9)},
    }
    base.update(kw)
    return ServingScenario.from_dict(base)


def check_invariants(scn, res):
    t = res.table
    toks = res.series["tokens"]
    it = res.series["iterations"]
    # every request finishes exactly once, with exactly its output tokens delivered
    assert t["finished"].all()
    assert (t["generated_tokens"] == t["output_tokens"]).all()
    counts = toks.groupby("request").size().reindex(t["request"], fill_value=0).to_numpy()
    assert np.array_equal(counts, t["output_tokens"].to_numpy())
    assert len(toks) == int(t["output_tokens"].sum())
    # one token per request per iteration: no duplicate (request, time) pairs
    assert not toks.duplicated().any()
    # time never goes backwards: per replica, iterations are back to back in order
    for _, g in it.groupby("replica"):
        s = g["start_s"].to_numpy()
        e = s + g["duration_s"].to_numpy()
        assert np.all(np.diff(s) >= 0) and np.all(s[1:] >= e[:-1] - 1e-9)
        assert (g["duration_s"] > 0).all()
    assert (t["finish_s"] >= t["arrival_s"]).all() and (t["ttft_s"] > 0).all()
    # KV blocks in use never exceed capacity
    perf = build_perf_model(scn.hardware)
    cap = perf.kv_capacity_tokens(scn.hardware.gpu_memory_utilization) // scn.hardware.block_size
    assert it["kv_blocks_used"].max() <= cap
    assert 0 <= t["qoe"].min() and t["qoe"].max() <= 1
    # both QoE metrics are reported; `qoe` is the scenario's chosen one
    assert np.array_equal(t["qoe"], t[f"qoe_{scn.qoe.qoe_metric}"], equal_nan=True)
    assert res.metrics["qoe_mean"] == res.metrics[f"qoe_{scn.qoe.qoe_metric}_mean"]
    # recorded QoE equals the QoE recomputed from the token log, under each metric
    for rid in t["request"].to_numpy()[:5]:
        row = t.iloc[rid]
        times = toks.loc[toks["request"] == rid, "t_s"].to_numpy() - row["arrival_s"]
        for metric in ("andes", "deficit"):
            assert np.isclose(row[f"qoe_{metric}"],
                              qoe_of_stream(times, 1.0, row["tds_exp_tok_s"], metric=metric))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(shipped_policies("serving")),
    rate=st.floats(0.5, 10.0),
    seed=st.integers(0, 10_000),
    util=st.sampled_from([0.42, 0.9]),
    replicas=st.integers(1, 3),
    dispatcher=st.sampled_from(["round_robin", "least_loaded"]),
    metric=st.sampled_from(["andes", "deficit"]),
    fast=st.booleans(),
)
def test_invariants_hold(policy, rate, seed, util, replicas, dispatcher, metric, fast):
    """Besides the run's invariants (`check_invariants`): no array keeps the blocks a request
    holds (`RequestState.held` derives them), so at every decision the replica's count of blocks
    in use must be their sum over its live requests, within the capacity; and the dispatcher's
    live counts must be the live sets' sizes."""
    from orrery.sim.serving import SimReplica

    decide = SimReplica._decide
    seen = []

    def checked(self):
        rs = self.state
        live = np.array(rs.live, dtype=np.int64)
        assert rs.used_blocks == int(rs.r.held(live, rs.block).sum()) <= rs.total_blocks
        assert rs._counts[rs.i] == len(rs.live)
        seen.append(rs.used_blocks)
        decide(self)

    scn = scenario(policy, rate, n=30, seed=seed, util=util, replicas=replicas, dispatcher=dispatcher,
                   qoe={"qoe_metric": metric}, fast_forward=fast)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SimReplica, "_decide", checked)
        res = run_serving(scn)
    check_invariants(scn, res)
    assert len(seen) >= 30 and max(seen) > 0


@pytest.mark.parametrize("policy", ["vllm_fcfs", "andes"])
@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_modes_under_memory_pressure(policy, mode):
    scn = scenario(policy, rate=8.0, n=60, util=0.42, policy_params={"preempt_mode": mode})
    res = run_serving(scn)
    check_invariants(scn, res)
    assert res.metrics["preemptions_per_request"] > 0
    if mode == "swap":
        assert res.metrics["swap_bytes"] > 0
    else:
        assert res.metrics["swap_bytes"] == 0


def test_same_seed_same_result_and_seed_matters():
    a = run_serving(scenario("andes", rate=4.0, n=40, seed=3))
    b = run_serving(scenario("andes", rate=4.0, n=40, seed=3))
    c = run_serving(scenario("andes", rate=4.0, n=40, seed=4))
    assert a.metrics == b.metrics
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.series["iterations"], b.series["iterations"])
    assert not a.table["arrival_s"].equals(c.table["arrival_s"])


def test_dispatchers_spread_load():
    rr = run_serving(scenario(rate=3.0, n=30, replicas=3, dispatcher="round_robin"))
    assert rr.table["replica"].tolist()[:6] == [0, 1, 2, 0, 1, 2]
    ll = run_serving(scenario(rate=3.0, n=30, replicas=3, dispatcher="least_loaded"))
    assert set(ll.table["replica"]) == {0, 1, 2}


def test_light_load_meets_expectations_and_energy_accounts():
    res = run_serving(scenario(rate=0.2, n=10))
    m = res.metrics
    assert m["qoe_mean"] > 0.99 and m["ttft_mean_s"] < 1.0
    it = res.series["iterations"]
    busy_j = float((it["power_w"] * it["duration_s"]).sum())
    assert m["energy_j"] > busy_j  # plus idle power between requests
    tokens = int(res.table["generated_tokens"].sum())
    assert m["energy_per_token_j"] == pytest.approx(m["energy_j"] / tokens, rel=1e-12)


def test_efficient_llm_knobs_change_the_outcome():
    base = run_serving(scenario(rate=1.0, n=20)).metrics
    int4 = run_serving(scenario(rate=1.0, n=20, hardware={"weight_bits": 4})).metrics
    spec = run_serving(scenario(rate=1.0, n=20, hardware={
        "spec_decode": {"acceptance": 0.8, "draft_len": 4, "draft_cost": 0.05}})).metrics
    assert int4["tpot_mean_s"] < base["tpot_mean_s"]
    assert spec["tpot_mean_s"] < base["tpot_mean_s"]


def test_bad_inputs_fail_clearly():
    with pytest.raises(ScenarioError, match="dispatcher"):
        ServingScenario.from_dict({"policy": "andes", "dispatcher": "random"})
    with pytest.raises(ScenarioError, match="replicas"):
        ServingScenario.from_dict({"policy": "andes", "replicas": 0})
    with pytest.raises(OrreryInputError, match="unknown GPU 'b300'"):
        run_serving(ServingScenario.from_dict({"policy": "andes", "hardware": {"gpu": "b300"}}))
    with pytest.raises(OrreryInputError, match="does not fit|fit"):
        run_serving(ServingScenario.from_dict({"policy": "andes", "hardware": {"model": "llama-2-70b"}}))
    with pytest.raises(Exception, match="unknown serving policy"):
        run_serving(ServingScenario.from_dict({"policy": "sjf"}))


def test_azure_trace_replay(shared_data):
    scn = ServingScenario.from_dict({
        "policy": "vllm_fcfs", "replicas": 2,
        "workload": {"arrival": "trace", "trace_path": str(shared_data / "llm/azure_llm_2023_conv.csv"),
                     "lengths": "trace", "duration_s": 20.0},
    })
    res = run_serving(scn)
    assert res.metrics["n_requests"] > 20
    assert res.table["finished"].all()


def _assert_same_run(fast, slow):
    """Bit-identical: the same metrics, per-request table and series (rows of the series may
    interleave differently across replicas; per replica and in time order they are equal)."""
    assert fast.metrics == slow.metrics or all(
        fast.metrics[k] == v or (np.isnan(v) and np.isnan(fast.metrics[k])) for k, v in slow.metrics.items())
    assert fast.metrics.keys() == slow.metrics.keys()
    pd.testing.assert_frame_equal(fast.table, slow.table, check_exact=True)
    itf, its = (f.sort_values(["replica", "start_s"], kind="stable").reset_index(drop=True)
                for f in (fast.series["iterations"], slow.series["iterations"]))
    pd.testing.assert_frame_equal(itf, its, check_exact=True)
    tkf, tks = (f.sort_values(["request", "t_s"], kind="stable").reset_index(drop=True)
                for f in (fast.series["tokens"], slow.series["tokens"]))
    pd.testing.assert_frame_equal(tkf, tks, check_exact=True)


@pytest.mark.parametrize("policy", ["vllm_fcfs", "round_robin", "andes"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_forward_matches_per_iteration_path(policy, seed):
    # several replicas, a tight KV cache (preemptions) and bursts with quiet stretches
    kw = dict(seed=seed, util=0.42 if seed != 1 else 0.9, replicas=1 + seed,
              dispatcher="least_loaded")
    fast = run_serving(scenario(policy, rate=3.0 + 2 * seed, n=50, fast_forward=True, **kw))
    slow = run_serving(scenario(policy, rate=3.0 + 2 * seed, n=50, fast_forward=False, **kw))
    assert fast.metrics["iterations"] > 0
    _assert_same_run(fast, slow)
    if seed == 0:
        check_invariants(scenario(policy, n=50, **kw), fast)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(shipped_policies("serving")),
    rate=st.floats(1.0, 8.0),
    seed=st.integers(0, 10_000),
    util=st.sampled_from([0.42, 0.9]),
    replicas=st.integers(1, 3),
    tds=st.sampled_from([4.8, 40.0]),  # 40 tok/s: decode slower than reading, token by token QoE
)
def test_fast_path_is_bit_identical_to_per_iteration(policy, rate, seed, util, replicas, tds):
    kw = dict(seed=seed, util=util, replicas=replicas, dispatcher="least_loaded",
              qoe={"tds_exp_tok_s": tds})
    fast = run_serving(scenario(policy, rate=rate, n=16, fast_forward=True, **kw))
    slow = run_serving(scenario(policy, rate=rate, n=16, fast_forward=False, **kw))
    _assert_same_run(fast, slow)


def test_macro_plan_kv_blocks_equal_the_per_request_sum():
    from orrery.sim.serving import _blocks_walk, _residues

    rng = np.random.default_rng(0)
    for _ in range(50):
        block, k = int(rng.choice([1, 7, 16])), int(rng.integers(1, 200))
        ctx = rng.integers(0, 3000, int(rng.integers(1, 100)))  # both sides of _residues' size switch
        used0 = int((-(-ctx // block)).sum()) + int(rng.integers(0, 50))  # + blocks of other requests
        want = used0 - (-(-ctx // block)).sum() + (-(-(ctx[:, None] + np.arange(1, k + 1)) // block)).sum(axis=0)
        assert _blocks_walk(used0, _residues(ctx, block), block, k) == want.tolist()


@pytest.mark.parametrize("flush_rows", [1, 2, 3, 1 << 13])
def test_iteration_log_frame_equals_the_recorders_rows(monkeypatch, flush_rows):
    from orrery.sim.recorder import Table
    from orrery.sim.serving import IterationLog

    monkeypatch.setattr(IterationLog, "FLUSH_RUNS", flush_rows)  # pending rows moved at any point
    log = IterationLog()
    log.row(0, 0.0, 0.5, 1, 2, 100, 7, 300.0)
    log.decode_rows(1, [0.5, 0.6], [0.1, 0.2], 3, 40, [8, 9], 250.0)
    log.row(2, 0.6, 0.3, 0, 0, 0, 9, 90.0)
    log.decode_rows(0, [0.7, 0.8, 0.9], [0.1, 0.1, 0.1], 2, 11, [9, 10, 10], 200.0)
    ref = Table("iterations", IterationLog.columns)
    ref.append(0, 0.0, 0.5, "prefill", 2, 100, 7, 300.0)
    ref.append(1, 0.5, 0.1, "decode", 3, 40, 8, 250.0)
    ref.append(1, 0.6, 0.2, "decode", 3, 43, 9, 250.0)
    ref.append(2, 0.6, 0.3, "decode", 0, 0, 9, 90.0)
    for j, (t, u) in enumerate(zip([0.7, 0.8, 0.9], [9, 10, 10], strict=True)):
        ref.append(0, t, 0.1, "decode", 2, 11 + 2 * j, u, 200.0)
    assert len(log) == 7
    pd.testing.assert_frame_equal(log.to_frame(), ref.to_frame(), check_exact=True)
    assert len(log) == 7  # (after the flush)


@pytest.mark.parametrize("horizon", [3.0, 7.5])
def test_fast_forward_matches_at_the_horizon(horizon):
    kw = dict(seed=5, replicas=2, horizon_s=horizon)
    fast = run_serving(scenario("andes", rate=2.0, n=40, fast_forward=True, **kw))
    slow = run_serving(scenario("andes", rate=2.0, n=40, fast_forward=False, **kw))
    assert not fast.table["finished"].all()
    _assert_same_run(fast, slow)


def test_policy_can_opt_out_of_fast_forward(monkeypatch):
    from orrery.policies.serving.vllm_fcfs import VLLMFCFS

    calls = {"n": 0}
    orig = VLLMFCFS.schedule

    def counting(self, view):
        calls["n"] += 1
        return orig(self, view)

    monkeypatch.setattr(VLLMFCFS, "schedule", counting)
    res = run_serving(scenario("vllm_fcfs", rate=1.0, n=10, seed=0))
    fast_calls = calls["n"]
    assert fast_calls < res.metrics["iterations"]  # decode stretches ran without asking
    calls["n"] = 0
    monkeypatch.setattr(VLLMFCFS, "fast_forward", False, raising=False)
    res2 = run_serving(scenario("vllm_fcfs", rate=1.0, n=10, seed=0))
    assert calls["n"] == res2.metrics["iterations"]  # asked at every iteration boundary
    _assert_same_run(res, res2)


def test_swap_in_next_to_a_prefill_is_counted_before_a_macro_step():
    # regression: a request swapped in during a prefill iteration holds no KV blocks in the
    # accounting until its next decode step; a macro step started then never counted them (the
    # iteration log's kv_blocks_used fell 251 blocks short of the per-iteration path's for good)
    kw = dict(seed=1033, util=0.9, replicas=1, dispatcher="least_loaded", qoe={"tds_exp_tok_s": 60.0})
    fast = run_serving(scenario("andes", rate=7.2612426230443345, n=40, fast_forward=True, **kw))
    slow = run_serving(scenario("andes", rate=7.2612426230443345, n=40, fast_forward=False, **kw))
    assert fast.metrics["swap_bytes"] > 0
    _assert_same_run(fast, slow)


@pytest.mark.parametrize("spec", [None, {"acceptance": 0.7, "draft_len": 3, "draft_cost": 0.05}])
def test_token_latency_scalar_calls_equal_the_model_over_tokens_per_step(spec):
    """TokenLatency answers integer calls from the model's per-batch-size series terms: the same
    floats as the model's scalar call (and numpy or float arguments take that call itself)."""
    from orrery.sim.serving import TokenLatency
    from orrery.sim.serving_scenario import ServingHardware, build_perf_model

    hw = ServingHardware.model_validate({"gpu": "h100", "model": "llama-3.1-8b",
                                         **({"spec_decode": spec} if spec else {})})
    perf = build_perf_model(hw, None)
    lat = TokenLatency(perf)
    for b, c in ((1, 1), (7, 3000), (64, 64 * 2048), (256, 10**6)):
        want = perf.decode_time_s(b, c) / float(perf.tokens_per_step)
        assert lat.decode_time_s(b, c) == want and type(lat.decode_time_s(b, c)) is float
        assert lat.decode_time_s(np.int64(b), float(c)) == want
    assert np.array_equal(lat.decode_time_s(np.array([3, 5]), np.array([300.0, 500.0])),
                          perf.decode_time_s(np.array([3, 5]), np.array([300.0, 500.0])) / float(perf.tokens_per_step))
