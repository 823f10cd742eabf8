"""LLM architecture catalog: the published configs the latency/power model needs, dense and MoE.

Every number is from the model's released `config.json` on the Hugging Face hub (the URL is in
`LLMConfig.source`; for multimodal releases the text decoder's `text_config`), except the
published totals `n_params` / `n_active_params`, which come from the model card. Parameter
counts used by the models are *derived* from the architecture (`weight_params`,
`flop_params_per_token`); a test checks them against the published totals.

Mixture-of-experts fields: `n_experts` routed experts of width `moe_intermediate_size`, of
which `experts_per_token` run per token, plus `n_shared_experts` always-on experts (width
`shared_intermediate_size`); `n_dense_layers` layers keep a dense MLP (`intermediate_size`):
DeepSeek-V3's first three, every other layer of Llama-4 Maverick. Attention: grouped-query
(`n_kv_heads`), explicit `head_dim` (Qwen3 and gemma-3 do not use hidden/heads), sliding-window
layers (gemma-3: 5 of 6 with a 1024-token window; gpt-oss: every other with 128) and DeepSeek's
multi-head latent attention (`kv_lora_rank` + `qk_rope_head_dim` cached per token and layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orrery.core.errors import OrreryInputError, UnknownNameError


@dataclass(frozen=True)
class Precision:
    """A weight (or KV) number format: bits per element including block scales, and which
    weights it covers ("linear": every decoder linear layer; "mlp": MLP/expert layers only;
    "experts": routed experts only). Embeddings and the LM head stay 16-bit."""

    name: str
    bits: float
    scope: str = "linear"
    act_bits: int = 16  # what the matmuls compute in (W8A8 fp8 computes in 8 bit)


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in [
        Precision("bf16", 16.0),
        Precision("fp16", 16.0),
        Precision("fp8", 8.0, act_bits=8),  # W8A8 (vLLM's fp8 checkpoints and --quantization fp8)
        Precision("int8", 8.0),  # weight-only
        # OCP microscaling FP4: 4-bit elements + one 8-bit scale per 32 → 4.25 bits. gpt-oss
        # quantises only the MoE experts (its quantization_config leaves attention in bf16).
        Precision("mxfp4", 4.25, scope="experts"),
        Precision("int4", 4.25),  # AWQ/GPTQ-style weight-only with group-128 scales ≈ 4.1-4.25
    ]
}
BITS_TO_PRECISION = {16: "bf16", 8: "fp8", 4: "int4"}


def get_precision(name: str | int | float | Precision) -> Precision:
    if isinstance(name, Precision):
        return name
    if isinstance(name, int | float) and not isinstance(name, bool):
        if int(name) in BITS_TO_PRECISION:
            return PRECISIONS[BITS_TO_PRECISION[int(name)]]
        raise OrreryInputError(f"no weight precision with {name} bits; known: 16, 8, 4 or {sorted(PRECISIONS)}")
    key = str(name).strip().lower().replace("bfloat16", "bf16").replace("float16", "fp16")
    if key in PRECISIONS:
        return PRECISIONS[key]
    raise UnknownNameError("precision", str(name), list(PRECISIONS))


HF = "https://huggingface.co/{}/blob/main/config.json"


@dataclass(frozen=True)
class LLMConfig:
    name: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int  # dense MLP width (0 when every layer is MoE)
    vocab_size: int
    n_params: float  # published total (model card)
    max_context_tokens: int
    head_dim_: int = 0  # explicit attention head width; 0: hidden_size // n_heads
    n_experts: int = 0  # routed experts per MoE layer (0: dense model)
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    n_shared_experts: int = 0
    shared_intermediate_size: int = 0  # 0: same as moe_intermediate_size
    n_dense_layers: int = 0  # layers with a dense MLP in an MoE model
    tie_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU/GeGLU: 3 matrices; OPT: 2
    sliding_window: int = 0  # tokens; 0: none
    n_sliding_layers: int = 0  # layers using the window
    kv_lora_rank: int = 0  # MLA (DeepSeek): latent KV width
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    v_head_dim: int = 0
    qk_nope_head_dim: int = 0
    n_active_params: float = 0.0  # published active parameters (MoE model cards); 0: dense
    weight_precision: str = "bf16"  # of the released checkpoint
    hf_id: str = ""
    source: str = ""

    # ---- derived ---------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.head_dim_ or self.hidden_size // self.n_heads

    @property
    def gqa_ratio(self) -> float:
        """KV heads / attention heads: the factor GQA shrinks the KV cache by."""
        return self.n_kv_heads / self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers if self.is_moe else 0

    def _mlp(self, width: int) -> float:
        return (3 if self.gated_mlp else 2) * self.hidden_size * width

    @property
    def attn_params_per_layer(self) -> float:
        h, hd = self.hidden_size, self.head_dim
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.n_heads * qk) if self.q_lora_rank else h * self.n_heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank * self.n_heads * (
                self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + self.n_heads * self.v_head_dim * h
        return 2 * h * self.n_heads * hd + 2 * h * self.n_kv_heads * hd

    @property
    def expert_params(self) -> float:
        """Parameters of ONE routed expert (one layer)."""
        return self._mlp(self.moe_intermediate_size) if self.is_moe else 0.0

    @property
    def shared_expert_params_per_layer(self) -> float:
        return self.n_shared_experts * self._mlp(self.shared_intermediate_size or self.moe_intermediate_size)

    @property
    def routed_expert_params(self) -> float:
        """All routed-expert parameters of the model (what expert parallelism splits)."""
        return self.n_moe_layers * self.n_experts * self.expert_params

    @property
    def embedding_params(self) -> float:
        """Input embedding plus LM head (one matrix when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def dense_layer_params(self) -> float:
        """Decoder parameters outside the routed experts: attention, dense MLPs, shared
        experts and routers."""
        dense_mlp = (self.n_layers if not self.is_moe else self.n_dense_layers) * self._mlp(self.intermediate_size)
        moe_rest = self.n_moe_layers * (self.shared_expert_params_per_layer + self.hidden_size * self.n_experts)
        return self.n_layers * self.attn_params_per_layer + dense_mlp + moe_rest

    @property
    def attn_params(self) -> float:
        return self.n_layers * self.attn_params_per_layer

    @property
    def weight_params(self) -> float:
        """Every weight the GPUs hold (derived from the architecture)."""
        return self.embedding_params + self.dense_layer_params + self.routed_expert_params

    @property
    def flop_params_per_token(self) -> float:
        """Weights one token multiplies by (2 FLOPs each): decoder layers with the active
        experts, plus the LM head; the embedding lookup costs no FLOPs."""
        active = self.n_moe_layers * self.experts_per_token * self.expert_params
        return self.dense_layer_params + active + self.vocab_size * self.hidden_size

    @property
    def kv_elems_per_token_layer(self) -> float:
        """KV-cache elements one token holds in one layer (K and V; MLA: the latent)."""
        if self.is_mla:
            return float(self.kv_lora_rank + self.qk_rope_head_dim)
        return 2.0 * self.n_kv_heads * self.head_dim

    @property
    def n_full_attention_layers(self) -> int:
        return self.n_layers - self.n_sliding_layers


def _llama(name, hf, layers, hidden, heads, kv, inter, vocab, params, ctx, **kw) -> LLMConfig:
    return LLMConfig(name, layers, hidden, heads, kv, inter, vocab, params, ctx, hf_id=hf, source=HF.format(hf), **kw)


MODELS: dict[str, LLMConfig] = {
    m.name: m
    for m in [
        # ---- dense ------------------------------------------------------------------------
        _llama("Llama-2-7B", "meta-llama/Llama-2-7b-hf", 32, 4096, 32, 32, 11008, 32000, 6.74e9, 4096),
        _llama("Llama-2-13B", "meta-llama/Llama-2-13b-hf", 40, 5120, 40, 40, 13824, 32000, 13.02e9, 4096),
        _llama("Llama-2-70B", "meta-llama/Llama-2-70b-hf", 80, 8192, 64, 8, 28672, 32000, 68.98e9, 4096),
        _llama("Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 32, 8, 14336, 128256, 8.03e9, 131072),
        _llama("Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct", 80, 8192, 64, 8, 28672, 128256, 70.55e9, 131072),
        _llama("Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct", 126, 16384, 128, 8, 53248, 128256,
               405.85e9, 131072),
        _llama("OPT-13B", "facebook/opt-13b", 40, 5120, 40, 40, 20480, 50272, 12.85e9, 2048, gated_mlp=False,
               tie_embeddings=True),
        _llama("OPT-66B", "facebook/opt-66b", 64, 9216, 72, 72, 36864, 50272, 65.7e9, 2048, gated_mlp=False,
               tie_embeddings=True),
        _llama("Qwen3-8B", "Qwen/Qwen3-8B", 36, 4096, 32, 8, 12288, 151936, 8.2e9, 40960, head_dim_=128),
        _llama("Qwen3-14B", "Qwen/Qwen3-14B", 40, 5120, 40, 8, 17408, 151936, 14.8e9, 40960, head_dim_=128),
        _llama("Qwen3-32B", "Qwen/Qwen3-32B", 64, 5120, 64, 8, 25600, 151936, 32.8e9, 40960, head_dim_=128),
        # gemma-3: text_config; 5 of every 6 layers attend within a 1024-token window
        _llama("gemma-3-12b", "google/gemma-3-12b-it", 48, 3840, 16, 8, 15360, 262208, 12.2e9, 131072,
               head_dim_=256, tie_embeddings=True, sliding_window=1024, n_sliding_layers=40),
        _llama("gemma-3-27b", "google/gemma-3-27b-it", 62, 5376, 32, 16, 21504, 262208, 27.4e9, 131072,
               head_dim_=128, tie_embeddings=True, sliding_window=1024, n_sliding_layers=52),
        # ---- mixture of experts -------------------------------------------------------------
        _llama("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B-Instruct-2507", 48, 2048, 32, 4, 0, 151936, 30.5e9, 262144,
               head_dim_=128, n_experts=128, experts_per_token=8, moe_intermediate_size=768, n_active_params=3.3e9),
        _llama("Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B-Instruct-2507", 94, 4096, 64, 4, 0, 151936, 235e9, 262144,
               head_dim_=128, n_experts=128, experts_per_token=8, moe_intermediate_size=1536, n_active_params=22e9),
        _llama("gpt-oss-20b", "openai/gpt-oss-20b", 24, 2880, 64, 8, 0, 201088, 20.9e9, 131072, head_dim_=64,
               n_experts=32, experts_per_token=4, moe_intermediate_size=2880, n_active_params=3.6e9,
               sliding_window=128, n_sliding_layers=12, weight_precision="mxfp4"),
        _llama("gpt-oss-120b", "openai/gpt-oss-120b", 36, 2880, 64, 8, 0, 201088, 116.8e9, 131072, head_dim_=64,
               n_experts=128, experts_per_token=4, moe_intermediate_size=2880, n_active_params=5.1e9,
               sliding_window=128, n_sliding_layers=18, weight_precision="mxfp4"),
        _llama("Mixtral-8x7B", "mistralai/Mixtral-8x7B-Instruct-v0.1", 32, 4096, 32, 8, 0, 32000, 46.7e9, 32768,
               n_experts=8, experts_per_token=2, moe_intermediate_size=14336, n_active_params=12.9e9),
        _llama("Mixtral-8x22B", "mistralai/Mixtral-8x22B-Instruct-v0.1", 56, 6144, 48, 8, 0, 32768, 141e9, 65536,
               n_experts=8, experts_per_token=2, moe_intermediate_size=16384, n_active_params=39e9),
        # Llama 4 (text_config): one shared expert of width intermediate_size; Maverick
        # interleaves dense layers (intermediate_size_mlp = 16384) with MoE layers.
        _llama("Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Scout-17B-16E-Instruct", 48, 5120, 40, 8, 16384, 202048,
               109e9, 10485760, head_dim_=128, n_experts=16, experts_per_token=1, moe_intermediate_size=8192,
               n_shared_experts=1, n_active_params=17e9),
        _llama("Llama-4-Maverick-17B-128E", "meta-llama/Llama-4-Maverick-17B-128E-Instruct", 48, 5120, 40, 8, 16384,
               202048, 400e9, 1048576, head_dim_=128, n_experts=128, experts_per_token=1, moe_intermediate_size=8192,
               n_shared_experts=1, n_dense_layers=24, n_active_params=17e9),
        # DeepSeek-V3: MLA attention, 3 dense layers, 256 routed + 1 shared expert, FP8 weights
        _llama("DeepSeek-V3", "deepseek-ai/DeepSeek-V3", 61, 7168, 128, 128, 18432, 129280, 671e9, 163840,
               head_dim_=128, n_experts=256, experts_per_token=8, moe_intermediate_size=2048, n_shared_experts=1,
               n_dense_layers=3, kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, v_head_dim=128,
               qk_nope_head_dim=128, n_active_params=37e9, weight_precision="fp8"),
    ]
}

_SUFFIXES = ("-chat-hf", "-hf", "-instruct-2507", "-instruct", "-chat", "-it", "-instruct-v0.1")
_PREFIXES = {"llama2-": "llama-2-", "llama3.1-": "llama-3.1-", "meta-llama-3.1-": "llama-3.1-",
             "llama-3.3-": "llama-3.1-", "llama3-": "llama-3.1-"}
_PRECISION_SUFFIX = re.compile(r"-(fp8|mxfp4|int4|int8|awq|gptq)$")
_BY_KEY: dict[str, str] = {name.lower(): name for name in MODELS}
_BY_KEY.update({m.hf_id.lower().rsplit("/", 1)[-1]: n for n, m in MODELS.items() if m.hf_id})


def _normalise(name: str) -> str:
    key = name.strip().lower().rsplit("/", 1)[-1].replace("_", "-")
    if key in _BY_KEY:
        return key
    for suffix in _SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            key = new + key[len(old):]
            break
    return key


def split_precision(name: str) -> tuple[str, str | None]:
    """'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8' -> ('Qwen/Qwen3-235B-A22B-Instruct-2507', 'fp8')."""
    m = _PRECISION_SUFFIX.search(name.strip().lower())
    if not m:
        return name, None
    prec = {"awq": "int4", "gptq": "int4"}.get(m.group(1), m.group(1))
    return name[: m.start()], prec


def get_model(name: str) -> LLMConfig:
    """Look a model up by catalog name, Hugging Face id or a common alias, case-insensitively.

    Accepts e.g. "Llama-2-13B", "llama2-13b", "meta-llama/Llama-2-13b-hf", "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-30B-A3B-Instruct-2507", "gpt-oss-20b",
    "opt-13b". A trailing precision ("-FP8") is ignored here; see `split_precision`.
    """
    if name in MODELS:
        return MODELS[name]
    base, _ = split_precision(name)
    full = _BY_KEY.get(_normalise(base))
    if full is None:
        raise UnknownNameError("model", name, list(MODELS))
    return MODELS[full]


def model_table() -> list[dict]:
    """One row per catalog model with its architecture facts (for `orrery list --models`)."""
    rows = []
    for m in MODELS.values():
        rows.append({
            "name": m.name, "type": "MoE" if m.is_moe else "dense", "layers": m.n_layers, "hidden": m.hidden_size,
            "heads": m.n_heads, "kv_heads": m.n_kv_heads, "head_dim": m.head_dim, "ffn": m.intermediate_size,
            "experts": m.n_experts, "experts_per_token": m.experts_per_token, "expert_ffn": m.moe_intermediate_size,
            "shared_experts": m.n_shared_experts, "vocab": m.vocab_size, "params_b": round(m.weight_params / 1e9, 2),
            "active_params_b": round(m.flop_params_per_token / 1e9, 2), "weights": m.weight_precision,
            "max_context": m.max_context_tokens, "source": m.source,
        })
    return rows
