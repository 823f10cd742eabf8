"""LLM architecture catalog: the published configs the latency/power model needs.

Numbers are from the models' released `config.json` files (Hugging Face hub) and papers:
layer count, hidden size, attention heads, KV heads (grouped-query attention: Llama-2-70B and
all Llama-3.1 models use 8 KV heads), MLP width, vocabulary, total parameters and the trained
context length. Parameter counts include embeddings and the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

from orrery.sim.errors import UnknownNameError


@dataclass(frozen=True)
class LLMConfig:
    name: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    vocab_size: int
    n_params: float
    max_context_tokens: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def gqa_ratio(self) -> float:
        """KV heads / attention heads: the factor GQA shrinks the KV cache by."""
        return self.n_kv_heads / self.n_heads


MODELS: dict[str, LLMConfig] = {
    m.name: m
    for m in [
        LLMConfig("Llama-2-7B", 32, 4096, 32, 32, 11008, 32000, 6.74e9, 4096),
        LLMConfig("Llama-2-13B", 40, 5120, 40, 40, 13824, 32000, 13.02e9, 4096),
        LLMConfig("Llama-2-70B", 80, 8192, 64, 8, 28672, 32000, 68.98e9, 4096),
        LLMConfig("Llama-3.1-8B", 32, 4096, 32, 8, 14336, 128256, 8.03e9, 131072),
        LLMConfig("Llama-3.1-70B", 80, 8192, 64, 8, 28672, 128256, 70.55e9, 131072),
        LLMConfig("OPT-13B", 40, 5120, 40, 40, 20480, 50272, 12.85e9, 2048),
        LLMConfig("OPT-66B", 64, 9216, 72, 72, 36864, 50272, 65.7e9, 2048),
    ]
}

_SUFFIXES = ("-chat-hf", "-hf", "-instruct", "-chat")
_PREFIXES = {"llama2-": "llama-2-", "llama3.1-": "llama-3.1-", "meta-llama-3.1-": "llama-3.1-"}
_BY_KEY: dict[str, str] = {name.lower(): name for name in MODELS}


def _normalise(name: str) -> str:
    key = name.strip().lower().rsplit("/", 1)[-1].replace("_", "-")
    for suffix in _SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            key = new + key[len(old):]
            break
    return key


def get_model(name: str) -> LLMConfig:
    """Look a model up by catalog name or a common alias, case-insensitively.

    Accepts e.g. "Llama-2-13B", "llama-2-13b", "llama2-13b", "meta-llama/Llama-2-13b-hf",
    "llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "opt-13b", "facebook/opt-13b".
    """
    if name in MODELS:
        return MODELS[name]
    full = _BY_KEY.get(_normalise(name))
    if full is None:
        raise UnknownNameError("model", name, list(MODELS))
    return MODELS[full]
