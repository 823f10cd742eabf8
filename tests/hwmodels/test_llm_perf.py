"""LLM latency/power model: roofline properties, efficient-LLM knobs, and the committed fit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import (
    LLMPerfModel,
    SpecDecode,
    load_default_params,
)

A100, H100, B200 = get_gpu("a100"), get_gpu("h100"), get_gpu("b200")
L13 = get_model("llama-2-13b")


def perf(model="llama-2-13b", gpu=A100, **kw) -> LLMPerfModel:
    return LLMPerfModel(get_model(model), gpu, **kw)


def test_kv_bytes_and_gqa():
    m = perf()
    assert m.kv_bytes_per_token == 2 * 40 * 40 * 128 * 2
    # Llama-3.1-8B: same layers/heads as Llama-2-7B but 8 of 32 KV heads
    assert perf("llama-3.1-8b").kv_bytes_per_token == pytest.approx(perf("llama-2-7b").kv_bytes_per_token * 8 / 32)
    assert perf(kv_bits=8).kv_bytes_per_token == m.kv_bytes_per_token / 2


def test_weight_bits_reduce_bytes_and_small_batch_decode():
    t = {bits: perf(weight_bits=bits) for bits in (16, 8, 4)}
    assert t[16].weight_bytes_per_gpu == pytest.approx(L13.weight_params * 2)
    assert t[4].weight_bytes_per_gpu < t[8].weight_bytes_per_gpu < t[16].weight_bytes_per_gpu
    d = [t[bits].decode_time_s(1, 500) for bits in (16, 8, 4)]
    assert d[0] > d[1] > d[2]


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 1024), db=st.integers(0, 512), ctx=st.floats(0, 4000), dctx=st.floats(0, 1e5),
       tp=st.sampled_from([1, 2, 4]), spec=st.booleans())
def test_decode_monotone(b, db, ctx, dctx, tp, spec):
    sd = SpecDecode(0.7, 3, 0.05) if spec else None
    m = perf(tp=tp, spec_decode=sd)
    c = b * ctx
    t = m.decode_time_s(b, c)
    assert t > 0
    assert m.decode_time_s(b + db, c) >= t
    assert m.decode_time_s(b, c + dctx) >= t
    arr = m.decode_time_s(np.array([b, b + db]), np.array([c, c]))
    assert arr.shape == (2,) and arr[0] == pytest.approx(t) and arr[1] >= arr[0]


def test_vectorised_decode_and_power_match_scalar():
    m = perf()
    bs = np.arange(1, 65)
    ctx = bs * 700.0
    vec = m.decode_time_s(bs, ctx)
    assert np.allclose(vec, [m.decode_time_s(int(b), float(c)) for b, c in zip(bs, ctx, strict=True)])
    pw = m.power_w(bs)
    assert np.allclose(pw, [m.power_w(int(b)) for b in bs])
    assert np.all(np.diff(pw) >= 0) and pw.max() <= A100.tdp_w and pw.min() > A100.idle_w
    assert m.power_w(8, busy=False) == A100.idle_w
    assert np.all(m.power_w(bs, busy=False) == A100.idle_w)


def test_speculative_decoding():
    sd = SpecDecode(acceptance=0.8, draft_len=4, draft_cost=0.05)
    assert sd.tokens_per_step == pytest.approx((1 - 0.8**5) / (1 - 0.8))
    assert SpecDecode(1.0, 3, 0.1).tokens_per_step == 4.0
    assert SpecDecode(0.0, 3, 0.1).tokens_per_step == 1.0
    base, spec = perf(), perf(spec_decode=sd)
    assert base.tokens_per_step == 1.0 and spec.tokens_per_step == sd.tokens_per_step
    # a step costs more, but per token it is cheaper at small batch (memory-bound)
    t0, t1 = base.decode_time_s(1, 500), spec.decode_time_s(1, 500)
    assert t1 >= t0 * (1 + 4 * 0.05) * 0.999
    assert t1 / spec.tokens_per_step < t0
    with pytest.raises(OrreryInputError):
        SpecDecode(1.5, 3, 0.1)


def test_tensor_parallel():
    one, two = perf("llama-2-13b", tp=1), perf("llama-2-13b", tp=2)
    assert two.weight_bytes_per_gpu == pytest.approx(one.weight_bytes_per_gpu / 2)
    assert two.kv_bytes_per_token == pytest.approx(one.kv_bytes_per_token / 2)
    # the all-reduce term: 2 per layer, latency + ring transfer; absent with free communication
    p = load_default_params()
    fam = p.family(A100)
    free = replace(p, shared=replace(p.shared, eff_interconnect=1e12),
                   families={k: replace(v, coll_latency_s=0.0) for k, v in p.families.items()})
    ideal = perf("llama-2-13b", tp=2, params=free)
    gap = two.decode_time_s(64, 64000) - ideal.decode_time_s(64, 64000)
    ring = 2 * (2 - 1) / 2 * 64 * 5120 * 2 / (A100.interconnect_bw_bytes_per_s * p.shared.eff_interconnect)
    assert gap == pytest.approx(2 * 40 * (fam.coll_latency_s + ring), rel=1e-3)
    assert two.decode_time_s(1, 100) < one.decode_time_s(1, 100)
    assert two.kv_capacity_tokens() > one.kv_capacity_tokens()
    with pytest.raises(OrreryInputError):
        perf(tp=3)


def test_moe_expert_parallel_and_touched_experts():
    q = get_model("qwen3-30b-a3b")
    m = LLMPerfModel(q, H100)
    # small batches read a fraction of the expert weights, large ones all of them
    t1, t8, t512 = (m.decode_time_s(b, b * 1000) for b in (1, 8, 512))
    assert t1 < t8 < t512
    dense_like = LLMPerfModel(get_model("qwen3-32b"), H100)
    assert m.decode_time_s(8, 8000) < dense_like.decode_time_s(8, 8000)  # 3B active vs 32B
    ep2 = LLMPerfModel(q, H100, ep=2)
    assert ep2.n_gpus == 2 and ep2.weight_bytes_per_gpu == pytest.approx(m.weight_bytes_per_gpu / 2)
    with pytest.raises(OrreryInputError, match="dense model"):
        LLMPerfModel(get_model("qwen3-8b"), H100, ep=2)
    with pytest.raises(OrreryInputError, match="ep = tp"):
        LLMPerfModel(q, H100, tp=2, ep=4)
    with pytest.raises(OrreryInputError, match="experts"):
        LLMPerfModel(get_model("mixtral-8x7b"), H100, ep=16)


def test_precisions():
    q = get_model("qwen3-235b-a22b")
    bf16 = LLMPerfModel(q, B200, ep=4)
    fp8 = LLMPerfModel(q, B200, ep=4, precision="fp8")
    assert fp8.weight_bytes_per_gpu < 0.55 * bf16.weight_bytes_per_gpu
    dense = get_model("llama-3.1-70b")
    d8, d16 = LLMPerfModel(dense, H100, tp=4, precision="fp8"), LLMPerfModel(dense, H100, tp=4)
    # compute-bound decode: fp8 tensor cores are faster. At batch 1 the W8A8 GEMMs' fixed cost
    # (fp8_gemm_s, fitted from either ML.ENERGY fp8 model alone at 25-28 us) may outweigh the
    # halved weight bytes, as the measured Qwen3-235B FP8 vs bf16 runs show on H100
    assert d8.decode_time_s(512, 512 * 900) < d16.decode_time_s(512, 512 * 900)
    assert d8.c.n_fp8_gemms == 4 * dense.n_layers and d16.c.n_fp8_gemms == 0
    assert d8.c.dense_bytes < 0.55 * d16.c.dense_bytes
    g = LLMPerfModel(get_model("gpt-oss-20b"), H100)  # mxfp4 experts, bf16 attention
    assert g.precision == "mxfp4" and 10e9 < g.weight_bytes_per_gpu < 15e9
    assert LLMPerfModel(q, A100, tp=8, precision="fp8").c.peak_q == A100.flops_fp16  # no fp8 cores
    with pytest.raises(OrreryInputError, match="precision"):
        LLMPerfModel(q, B200, ep=4, precision="fp3")


def test_impossible_deployments_are_rejected():
    with pytest.raises(OrreryInputError, match="does not fit"):
        LLMPerfModel(get_model("llama-3.1-405b"), H100, tp=8).kv_capacity_tokens()
    assert LLMPerfModel(get_model("llama-3.1-405b"), H100, tp=8, precision="fp8").kv_capacity_tokens() > 0
    with pytest.raises(OrreryInputError, match="does not fit"):
        LLMPerfModel(get_model("deepseek-v3"), get_gpu("mi300x"), tp=2).kv_capacity_tokens()
    assert LLMPerfModel(get_model("deepseek-v3"), get_gpu("mi300x"), tp=8).kv_capacity_tokens() > 0


@pytest.mark.parametrize("gpu", ["t4", "l4", "a10g", "l40s", "a100", "h100", "h200", "b200", "mi300x"])
def test_power_follows_utilisation_below_tdp(gpu):
    g = get_gpu(gpu)
    m = LLMPerfModel(get_model("llama-3.1-8b"), g, precision="int4" if g.mem_bytes < 20e9 else None)
    bs = np.array([1, 8, 64, 256])
    pw = m.power_w(bs)
    # never lower with a larger batch beyond 0.1 % of TDP: the fitted B200 power is flat in batch at
    # this context (weight streaming sets it; the per-sequence time adds no GPU load)
    assert np.all(np.diff(pw) >= -1e-3 * g.tdp_w) and np.all(pw < g.tdp_w) and np.all(pw > g.idle_w)
    assert m.prefill_power_w(8192) < g.tdp_w


def test_kv_capacity():
    m = perf()  # 13B fp16 on A100-80GB: ~26 GB weights
    cap = m.kv_capacity_tokens()
    assert 10_000 < cap < 100_000
    assert m.kv_capacity_tokens(0.5) < cap
    assert m.kv_capacity_tokens(activation_reserve_bytes=0) > cap
    with pytest.raises(OrreryInputError, match="does not fit"):
        perf("llama-2-70b", A100).kv_capacity_tokens()
    assert perf("llama-2-70b", A100, tp=2).kv_capacity_tokens() > 0
    assert perf("llama-2-70b", A100, weight_bits=4).kv_capacity_tokens() > 0


def test_a100_13b_sanity():
    m = perf()
    assert 0.008 < m.decode_time_s(1, 500) < 0.04
    assert 0.01 < m.decode_time_s(16, 16 * 1000) < 0.05
    assert m.prefill_time_s(1000) > m.decode_time_s(1, 1000)
    assert m.prefill_time_s(2048, 4) < m.prefill_time_s(2048, 1)  # less causal attention
    assert m.swap_time_s(25e9) == pytest.approx(1.0)


@pytest.mark.parametrize("name,gpu,kw", [("gemma-3-12b", "h100", {}), ("qwen3-235b-a22b", "b200", {"ep": 4}),
                                         ("llama-3.1-405b", "h100", {"tp": 8, "precision": "fp8"}),
                                         ("gpt-oss-20b", "l40s", {}), ("deepseek-v3", "mi300x", {"tp": 8})])
def test_scalar_fast_path_equals_the_vectorised_model(name, gpu, kw):
    m = LLMPerfModel(get_model(name), get_gpu(gpu), **kw)
    for tokens, seqs, ctx in ((1.0, 1.0, 100.0), (64.0, 64.0, 64 * 3000.0), (2048.0, 2.0, 500.0), (300.0, 256.0, 1e5)):
        assert m._t_scalar(tokens, seqs, ctx) == pytest.approx(float(m.step_time_s(tokens, seqs, ctx)), rel=1e-9)
        p = m._p_scalar(tokens, seqs, ctx)
        assert p == pytest.approx(float(m.step_power_w(tokens, seqs, ctx)), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-2-13b", "Qwen3-30B-A3B", "gpt-oss-20b"]),
       spec=st.sampled_from([None, SpecDecode(0.7, 3, 0.0), SpecDecode(0.6, 4, 0.05)]),
       batch=st.integers(1, 256), ctx_per_seq=st.integers(1, 8192), n=st.integers(0, 16))
def test_decode_series_equals_decode_time_bit_for_bit(model, spec, batch, ctx_per_seq, n):
    """A macro step's latencies (batch-size terms hoisted) are decode_time_s's floats exactly,
    on the hoisted path and on the generic one (draft cost, sliding windows)."""
    m = perf(model, H100, spec_decode=spec)
    c0 = batch * ctx_per_seq
    got = m.decode_series_s(batch, c0, n)
    want = [m.decode_time_s(batch, c0 + batch * i) for i in range(n)]
    assert len(got) == n
    assert np.array_equal(np.array(got, dtype=float), np.array(want, dtype=float))
    assert all(type(x) is float for x in got)
