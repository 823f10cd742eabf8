"""The engine's model: catalog architectures at real shapes, shrunk copies on the CPU, both
attention paths, GQA and MoE, KV sizing from a memory budget."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.llm import MODELS
from orrery.realbackend.serving import EngineConfig, build_model, resolve_kv_capacity
from orrery.realbackend.tiny_llm import (
    ModelConfig,
    SeqWork,
    TinyLLM,
    decode_batch_bucket,
    slot_bytes,
)

LLAMA8 = ModelConfig.from_catalog("Llama-3.1-8B", max_len=1024)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_catalog_architectures_at_real_shapes(name):
    m = MODELS[name]
    if m.is_mla:
        with pytest.raises(OrreryInputError, match="latent attention"):
            ModelConfig.from_catalog(m)
        return
    c = ModelConfig.from_catalog(m)
    assert (c.n_layers, c.hidden_size, c.n_heads, c.kv_heads, c.head_dim, c.vocab_size) == (
        m.n_layers, m.hidden_size, m.n_heads, m.n_kv_heads, m.head_dim, m.vocab_size)
    assert (c.n_experts, c.experts_per_token, c.n_shared_experts) == (
        m.n_experts, m.experts_per_token, m.n_shared_experts)
    assert c.dtype == "bfloat16"
    # the weights the engine allocates are the catalog's derived count (embeddings, experts,
    # shared experts, routers, dense layers of MoE models)
    assert c.n_params == pytest.approx(m.weight_params, rel=1e-9)
    # and the KV cache holds what the simulator's model charges per token in 16 bits
    assert c.kv_bytes_per_token == m.n_layers * m.kv_elems_per_token_layer * 2
    s = c.shrunk(16, max_len=64)
    assert s.n_heads // s.kv_heads == c.n_heads // c.kv_heads
    assert (s.n_experts > 0) == (c.n_experts > 0) and s.n_params < c.n_params


def test_llama_8b_shapes_and_its_shrunk_copy():
    assert (LLAMA8.n_layers, LLAMA8.hidden_size, LLAMA8.n_heads, LLAMA8.kv_heads, LLAMA8.head_dim) == (
        32, 4096, 32, 8, 128)
    assert LLAMA8.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # 128 KiB per token in bf16
    assert LLAMA8.weight_bytes == pytest.approx(16.06e9, rel=1e-3)
    s = LLAMA8.shrunk(16, max_len=128)
    assert s.n_heads // s.kv_heads == 4  # the GQA ratio survives
    assert s.hidden_size == 256 and s.n_layers == 2 and s.dtype == "float32" and s.max_len == 128
    assert "shrunk" in s.name and s.n_params < LLAMA8.n_params / 1000


def _run(cfg: ModelConfig, seed: int = 1) -> list[list[int]]:
    """Two sequences: prefill, then five decode steps together (greedy tokens)."""
    m = TinyLLM(cfg, 4, seed=seed)
    out = m.step([SeqWork(0, 0, [1, 2, 3, 4, 5]), SeqWork(2, 0, [7, 8])])
    seq = [out]
    for k in range(5):
        out = m.step([SeqWork(0, 5 + k, [out[0]]), SeqWork(2, 2 + k, [out[1]])])
        seq.append(out)
    return seq


@pytest.mark.parametrize("arch", ["gqa", "moe", "gelu"])
def test_batched_decode_matches_per_sequence_attention(arch):
    base = LLAMA8.shrunk(16, max_len=64)
    if arch == "moe":
        base = replace(base, n_experts=8, experts_per_token=2, n_shared_experts=1, expert_intermediate_size=32,
                       n_dense_layers=1, tie_embeddings=True)
    if arch == "gelu":
        base = replace(base, gated_mlp=False)
    a = _run(replace(base, attention="per_seq"))
    b = _run(replace(base, attention="batched"))
    assert a == b
    assert all(0 <= t < base.vocab_size for step in a for t in step)
    assert _run(replace(base, attention="per_seq"), seed=2) != a  # the seed sets the weights


def test_padded_context_and_cache_round_trip():
    cfg = replace(LLAMA8.shrunk(16, max_len=600), attention="batched")
    m = TinyLLM(cfg, 3, seed=0)
    m.step([SeqWork(1, 0, list(range(300)))])
    kv = m.save_slot(1, 300)
    assert kv.shape == (cfg.n_layers, 2, 300, cfg.kv_heads, cfg.head_dim)
    t1 = m.step([SeqWork(1, 300, [5])])  # context 301 pads to 512 positions, masked
    m.cache.zero_()
    m.load_slot(2, kv)
    assert m.step([SeqWork(2, 300, [5])]) == t1  # the swapped-in KV gives the same token
    assert m.execution()["attention"] == "batched" and m.execution()["cuda_graphs"] is False


def test_graph_buckets():
    assert [decode_batch_bucket(b) for b in (1, 2, 3, 4, 5, 8, 9, 64)] == [1, 2, 4, 4, 8, 8, 16, 64]


def test_kv_slots_sized_from_a_memory_budget():
    cfg = LLAMA8.shrunk(16, max_len=128)
    one = slot_bytes(cfg)
    m = TinyLLM(cfg, 4, kv_budget_bytes=5 * one)  # 4 slots + the scratch slot
    assert m.n_slots == 4 and m.kv_budget_bytes == 5 * one
    with pytest.raises(OrreryInputError, match="KV budget.*holds 3 cache slots"):
        TinyLLM(cfg, 4, kv_budget_bytes=4 * one)
    ecfg = EngineConfig(device="cpu", model=cfg, kv_capacity_tokens=0, kv_budget_bytes=40 * one)
    model = build_model(ecfg, 8)
    assert resolve_kv_capacity(ecfg, model) == 40 * one // cfg.kv_bytes_per_token == 40 * 128
    assert build_model(ecfg, 4) is model  # reused: at least as many slots
    with pytest.raises(OrreryInputError, match="kv_budget_bytes"):
        resolve_kv_capacity(replace(ecfg, kv_budget_bytes=None), TinyLLM(cfg, 2))


def test_bad_configs_are_input_errors():
    with pytest.raises(OrreryInputError, match="multiple of n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(OrreryInputError, match="dtype"):
        ModelConfig(dtype="float8")
    with pytest.raises(OrreryInputError, match="experts_per_token"):
        ModelConfig(n_experts=4, experts_per_token=5)
    with pytest.raises(OrreryInputError, match="attention"):
        ModelConfig(attention="flash")


def test_bfloat16_runs_on_the_cpu():
    cfg = replace(LLAMA8.shrunk(32, max_len=32), dtype="bfloat16")
    m = TinyLLM(cfg, 1)
    assert m.cache.dtype == torch.bfloat16
    (tok,) = m.step([SeqWork(0, 0, [1, 2, 3])])
    assert 0 <= tok < cfg.vocab_size and not math.isnan(float(m.cache.float().abs().sum()))
