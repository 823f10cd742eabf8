"""The LLM catalog: published configs and name lookup."""

from __future__ import annotations

import pytest

from orrery.hwmodels.llm import MODELS, get_model
from orrery.sim.errors import OrreryInputError, UnknownNameError


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
        assert m.head_dim * m.n_heads == m.hidden_size
        assert m.n_heads % m.n_kv_heads == 0


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
