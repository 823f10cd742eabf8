"""GPT-3-family training jobs as layer lists with per-layer time and memory on a given GPU.

Why layer lists: pipeline planners (Oobleck, Varuna, Bamboo) partition a model into stages of
contiguous layers, so every planner and the resilience simulator need per-layer forward and
backward time and memory. They are derived from FLOPs and bytes with the GPU catalog (a
roofline with one efficiency factor), not measured, so any catalog GPU works.

Assumptions (each a documented modelling choice, not a measurement):
- Mixed-precision Adam: 16 bytes of model state per parameter (fp16 weights and gradients,
  fp32 master weights, momentum and variance; Rajbhandari et al., ZeRO, 2020).
- Activation recomputation (checkpointing) on: a layer keeps only its fp16 input
  (2·s·b·d bytes) per in-flight microbatch, and the backward pass re-runs the forward
  (backward = 2× forward FLOPs for gradients + 1× for the recompute).
- Transient peak of one layer during its backward: 34·s·b·d bytes (Korthikanti et al., 2022,
  without the attention-score term because attention is fused / flash).
- Matmul efficiency `mfu` = 0.45 of the dense fp16 tensor peak (typical of Megatron-style
  training), plus a fixed 0.2 ms of kernel-launch overhead per layer pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from orrery.core.errors import UnknownNameError
from orrery.hwmodels.gpus import GPUSpec, get_gpu

BYTES_PER_PARAM_STATE = 16  # fp16 weight + fp16 grad + fp32 master, m, v
BYTES_PER_PARAM_GRAD = 2  # fp16 gradient (what data-parallel all-reduce moves)
LAYER_OVERHEAD_S = 2e-4
DEFAULT_MFU = 0.45


@dataclass(frozen=True)
class GPTConfig:
    """A GPT-3-family architecture (Brown et al., 2020, table 2.1)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    vocab: int = 50257
    max_seq_len: int = 2048

    @property
    def params_per_block(self) -> int:
        d = self.d_model
        return 12 * d * d + 13 * d  # QKV+proj (4d²), MLP (8d²), biases and layer norms

    @property
    def n_params(self) -> int:
        emb = self.vocab * self.d_model + self.max_seq_len * self.d_model
        return emb + self.n_layers * self.params_per_block + 2 * self.d_model


GPT3_MODELS: dict[str, GPTConfig] = {
    c.name: c
    for c in [
        GPTConfig("gpt3-350m", 24, 1024, 16),
        GPTConfig("gpt3-1.3b", 24, 2048, 32),
        GPTConfig("gpt3-2.7b", 32, 2560, 32),
        GPTConfig("gpt3-6.7b", 32, 4096, 32),
    ]
}


# BERT-large, the Oobleck paper's third model (Devlin et al., 2019: 24 layers, hidden 1024,
# 16 heads, WordPiece vocabulary 30522, 512 positions; ~340M parameters). Its encoder blocks
# have the GPT block's shape (4d^2 attention + 8d^2 MLP), so the same layer profiles apply;
# the masked-LM head is modelled like the LM head (tied decoder).
ENCODER_MODELS: dict[str, GPTConfig] = {
    "bert-large": GPTConfig("bert-large", 24, 1024, 16, vocab=30522, max_seq_len=512),
}
TRAINING_MODELS: dict[str, GPTConfig] = {**GPT3_MODELS, **ENCODER_MODELS}


def get_model(name: str) -> GPTConfig:
    key = name.lower()
    if key in TRAINING_MODELS:
        return TRAINING_MODELS[key]
    alias = {"350m": "gpt3-350m", "1.3b": "gpt3-1.3b", "2.7b": "gpt3-2.7b", "6.7b": "gpt3-6.7b",
             "bert": "bert-large"}
    if key in alias:
        return TRAINING_MODELS[alias[key]]
    raise UnknownNameError("model", name, list(TRAINING_MODELS))


@dataclass(frozen=True)
class LayerProfile:
    """One pipeline-partitionable layer for one microbatch on one GPU."""

    name: str
    params: int
    fwd_s: float
    bwd_s: float  # includes the recomputed forward
    state_bytes: int  # model + optimizer state, held for the whole run
    act_bytes: int  # kept per in-flight microbatch until its backward
    peak_bytes: int  # transient working memory while the layer runs its backward
    out_bytes: int  # activation sent to the next stage per microbatch (p2p)


def _pass_time_s(flops: float, bytes_moved: float, gpu: GPUSpec, mfu: float) -> float:
    compute = flops / (gpu.peak_flops(16) * mfu)
    memory = bytes_moved / gpu.mem_bw_bytes_per_s
    return max(compute, memory) + LAYER_OVERHEAD_S


def layer_profiles(
    model: str | GPTConfig,
    gpu: str | GPUSpec,
    *,
    microbatch_size: int = 1,
    seq_len: int | None = None,
    mfu: float = DEFAULT_MFU,
) -> list[LayerProfile]:
    """Embedding, `n_layers` transformer blocks, then the final norm + LM head."""
    cfg = get_model(model) if isinstance(model, str) else model
    g = get_gpu(gpu) if isinstance(gpu, str) else gpu
    if microbatch_size < 1:
        raise ValueError(f"microbatch_size must be >= 1, got {microbatch_size}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    s = seq_len or cfg.max_seq_len
    b, d, v = microbatch_size, cfg.d_model, cfg.vocab
    tokens = s * b
    act_in = 2 * tokens * d  # fp16 hidden state
    out: list[LayerProfile] = []

    emb_params = v * d + cfg.max_seq_len * d
    # Lookup: memory-bound (read the rows, write the hidden state); backward scatters grads.
    emb_fwd = _pass_time_s(0.0, 2 * act_in, g, mfu)
    out.append(LayerProfile("embedding", emb_params, emb_fwd, 2 * emb_fwd,
                            emb_params * BYTES_PER_PARAM_STATE, 0, act_in, act_in))

    p = cfg.params_per_block
    blk_flops = tokens * (2 * 12 * d * d + 4 * s * d)  # matmuls + attention scores/values
    blk_fwd = _pass_time_s(blk_flops, 2 * p + 4 * act_in, g, mfu)
    blk_bwd = _pass_time_s(3 * blk_flops, 6 * p + 12 * act_in, g, mfu)
    for i in range(cfg.n_layers):
        out.append(LayerProfile(f"block{i}", p, blk_fwd, blk_bwd, p * BYTES_PER_PARAM_STATE,
                                act_in, 34 * tokens * d, act_in))

    head_params = 2 * d  # final layer norm; the LM head shares the embedding matrix
    head_flops = 2 * tokens * d * v
    logits_bytes = 4 * tokens * v  # fp32 logits for the loss
    head_fwd = _pass_time_s(head_flops, 2 * v * d + logits_bytes, g, mfu)
    head_bwd = _pass_time_s(2 * head_flops, 4 * v * d + 2 * logits_bytes, g, mfu)
    # The last stage holds its own copy of the (tied) output embedding.
    head_state = (v * d + head_params) * BYTES_PER_PARAM_STATE
    out.append(LayerProfile("lm_head", v * d + head_params, head_fwd, head_bwd, head_state,
                            act_in, act_in + logits_bytes, 0))
    return out
