"""LLM latency/power model: roofline properties, efficient-LLM knobs, and the committed fit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError
from orrery.hwmodels import fit_llm
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import (
    DEFAULT_PARAMS_PATH,
    LLMPerfModel,
    SpecDecode,
    load_default_params,
)

A100, H100 = get_gpu("a100"), get_gpu("h100")
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
    assert t[16].weight_bytes_per_gpu == pytest.approx(L13.n_params * 2)
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
    # all-reduce term: 2 per layer, latency + ring transfer, absent with free communication
    p = load_default_params()
    free = replace(p, allreduce_latency_s=0.0, eff_interconnect=1e12)
    ideal = perf("llama-2-13b", tp=2, params=free)
    gap = two.decode_time_s(64, 64000) - ideal.decode_time_s(64, 64000)
    ring = 2 * (2 - 1) / 2 * 64 * 5120 * 2 / (A100.interconnect_bw_bytes_per_s * p.eff_interconnect)
    assert gap == pytest.approx(2 * 40 * (p.allreduce_latency_s + ring), rel=1e-6)
    assert perf(tp=1, params=free).decode_time_s(64, 64000) == one.decode_time_s(64, 64000)
    assert two.decode_time_s(1, 100) < one.decode_time_s(1, 100)
    assert two.kv_capacity_tokens() > one.kv_capacity_tokens()
    with pytest.raises(OrreryInputError):
        perf(tp=3)


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
    assert 0.012 < m.decode_time_s(1, 500) < 0.04
    assert 0.02 < m.decode_time_s(16, 16 * 1000) < 0.04
    assert m.prefill_time_s(1000) > m.decode_time_s(1, 1000)
    assert m.prefill_time_s(2048, 4) < m.prefill_time_s(2048, 1)  # less causal attention
    assert m.swap_time_s(25e9) == pytest.approx(1.0)


def test_committed_params_reproduce_fit(shared_data):
    doc = json.loads(DEFAULT_PARAMS_PATH.read_text())
    path = shared_data / "llm" / "mlenergy_llama3.1-8b_chat.json"
    import hashlib

    assert doc["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    res = fit_llm.evaluate(load_default_params(), path)
    e = res["errors"]
    assert e["itl_median_abs_rel_err_all_rows"] <= 0.15
    assert e["power_median_abs_rel_err_all_rows"] <= 0.15
    for k, v in doc["errors"].items():
        assert e[k] == pytest.approx(v, abs=1e-9)
    assert any(r["heldout"] for r in res["rows"]) and not all(r["heldout"] for r in res["rows"])


def test_fit_rejects_malformed(tmp_path, shared_data):
    doc = json.loads((shared_data / "llm" / "mlenergy_llama3.1-8b_chat.json").read_text())
    bad = tmp_path / "bad.json"
    for c in doc["configurations"]:
        if c["gpu_model"] == "H100":
            del c["median_itl_ms"]
            break
    bad.write_text(json.dumps(doc))
    with pytest.raises(OrreryInputError, match="median_itl_ms"):
        fit_llm.fit(bad)
    bad.write_text("{not json")
    with pytest.raises(OrreryInputError, match="JSON"):
        fit_llm.fit(bad)
    with pytest.raises(OrreryInputError, match="not found"):
        fit_llm.fit(tmp_path / "missing.json")
    assert fit_llm.main(["--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.json")]) == 2


def test_fit_roundtrip(tmp_path, shared_data):
    res = fit_llm.fit(shared_data / "llm" / "mlenergy_llama3.1-8b_chat.json")
    out = fit_llm.write_params(res, tmp_path / "p.json")
    p = load_default_params(out)
    assert p.eff_mem == pytest.approx(res["params"]["eff_mem"])
    assert res["errors"]["itl_median_abs_rel_err_heldout_rows"] <= 0.15
    assert res["errors"]["power_median_abs_rel_err_heldout_rows"] <= 0.15


def test_committed_fit_holds_no_measured_values():
    import json

    from orrery.hwmodels.fit_llm import DEFAULT_PARAMS_PATH

    d = json.loads(open(DEFAULT_PARAMS_PATH).read())
    assert "rows" not in d
    assert not any("measured" in k for k in json.dumps(d).split('"'))
