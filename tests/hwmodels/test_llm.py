"""The LLM catalog: published configs and name lookup."""

from __future__ import annotations

import pytest

from orrery.core.errors import OrreryInputError, UnknownNameError
from orrery.hwmodels.llm import MODELS, get_model


def test_llama2_13b_config():
    m = get_model("Llama-2-13B")
    assert (m.n_layers, m.hidden_size, m.n_heads, m.n_kv_heads) == (40, 5120, 40, 40)
    assert m.head_dim == 128
    assert 12.5e9 < m.n_params < 13.5e9


def test_gqa_models_have_8_kv_heads():
    for name in ("Llama-2-70B", "Llama-3.1-8B", "Llama-3.1-70B"):
        assert MODELS[name].n_kv_heads == 8
    assert MODELS["Llama-2-7B"].n_kv_heads == MODELS["Llama-2-7B"].n_heads
    assert MODELS["Llama-3.1-8B"].vocab_size == 128256


def test_head_dim_consistent():
    for m in MODELS.values():
        if not m.head_dim_:  # models with an explicit head_dim (Qwen3, gemma-3) need not match
            assert m.head_dim * m.n_heads == m.hidden_size
        assert m.n_heads % m.n_kv_heads == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_derived_params_match_published(name):
    """Parameter counts derived from the architecture agree with the model cards (gemma-3's
    published totals include a ~0.4B vision encoder, Llama-4 Scout's too)."""
    m = MODELS[name]
    assert m.weight_params == pytest.approx(m.n_params, rel=0.04)
    if m.is_moe:
        assert m.flop_params_per_token == pytest.approx(m.n_active_params, rel=0.08)
        assert m.flop_params_per_token < 0.35 * m.weight_params
    else:
        assert m.flop_params_per_token <= m.weight_params
    assert m.source.startswith("https://huggingface.co/") and m.source.endswith("config.json")


def test_moe_and_attention_facts():
    q = get_model("Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert (q.n_experts, q.experts_per_token, q.moe_intermediate_size, q.n_kv_heads, q.head_dim) == (128, 8, 768, 4, 128)
    assert get_model("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8").name == "Qwen3-235B-A22B"
    assert get_model("meta-llama/Llama-3.1-405B-Instruct-FP8").name == "Llama-3.1-405B"
    g = get_model("openai/gpt-oss-20b")
    assert g.weight_precision == "mxfp4" and g.n_sliding_layers == 12 and g.sliding_window == 128
    d = get_model("deepseek-v3")
    assert d.is_mla and d.kv_elems_per_token_layer == 512 + 64 and d.n_dense_layers == 3
    assert get_model("google/gemma-3-12b-it").head_dim == 256
    mav = get_model("llama-4-maverick-17b-128e")
    assert mav.n_moe_layers == 24 and mav.n_shared_experts == 1


@pytest.mark.parametrize(
    "alias,name",
    [("llama-2-13b", "Llama-2-13B"), ("LLAMA-2-7B", "Llama-2-7B"), ("llama2-70b", "Llama-2-70B"),
     ("llama-3.1-8b", "Llama-3.1-8B"), ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
     ("meta-llama/Llama-2-13b-hf", "Llama-2-13B"), ("opt-13b", "OPT-13B"), ("facebook/opt-66b", "OPT-66B")],
)
def test_aliases(alias, name):
    assert get_model(alias).name == name


def test_unknown_model():
    with pytest.raises(UnknownNameError) as e:
        get_model("gpt-5")
    assert isinstance(e.value, OrreryInputError)
    assert "gpt-5" in str(e.value) and "Llama-2-13B" in str(e.value)
