"""A small decoder-only transformer with a slot KV cache, for the real serving engine.

Random weights from a seed (no downloads): the engine measures how long real prefill and
decode work takes, not what the model says. Sequences are packed: the linear layers run over
all tokens of the iteration at once (continuous batching), attention runs per sequence against
that sequence's cache slot, so an iteration costs about a + b·(tokens) + c·(context tokens) —
the shape the simulator's latency oracle assumes — with no padding to the longest sequence.

The cache is `n_slots` contiguous slots of `max_len` tokens; the serving engine does the
paged (block) accounting the policies see and maps each request that holds KV to one slot.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class TinyLLMConfig:
    """Model sizes. The defaults run a decode step of a few milliseconds on one CPU core."""

    n_layers: int = 4
    hidden_size: int = 256
    n_heads: int = 4
    intermediate_size: int = 1024
    vocab_size: int = 512
    max_len: int = 1024  # cache slot length = longest prompt + output the engine accepts
    dtype: str = "float32"  # float16 / bfloat16 on CUDA

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of n_heads {self.n_heads}")
        for k, v in asdict(self).items():
            if k != "dtype" and (not isinstance(v, int) or v < 1):
                raise ValueError(f"TinyLLMConfig.{k} must be an integer >= 1, got {v!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.n_layers * self.hidden_size * torch.tensor([], dtype=self.torch_dtype).element_size()

    @property
    def n_params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return self.vocab_size * h + self.max_len * h + self.n_layers * (4 * h * h + 2 * h * i + 4 * h) + 2 * h


@dataclass
class SeqWork:
    """One sequence's share of an iteration: its cache slot, where its new tokens start in
    the slot, and the new token ids."""

    slot: int
    start: int
    tokens: list[int]


class TinyLLM(nn.Module):
    def __init__(self, cfg: TinyLLMConfig, n_slots: int, device: str = "cpu", seed: int = 0):
        super().__init__()
        self.cfg, self.n_slots = cfg, int(n_slots)
        gen = torch.Generator().manual_seed(int(seed))
        h, i, L = cfg.hidden_size, cfg.intermediate_size, cfg.n_layers

        def w(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=gen) / math.sqrt(shape[0]), requires_grad=False)

        self.tok_emb = w(cfg.vocab_size, h)
        self.pos_emb = w(cfg.max_len, h)
        self.wqkv = nn.ParameterList([w(h, 3 * h) for _ in range(L)])
        self.wo = nn.ParameterList([w(h, h) for _ in range(L)])
        self.w1 = nn.ParameterList([w(h, i) for _ in range(L)])
        self.w2 = nn.ParameterList([w(i, h) for _ in range(L)])
        self.to(device=device, dtype=cfg.torch_dtype)
        self.device = torch.device(device)
        # cache[layer, k|v, slot, head, position, head_dim]
        self.cache = torch.zeros(L, 2, self.n_slots, cfg.n_heads, cfg.max_len, cfg.head_dim,
                                 device=device, dtype=cfg.torch_dtype)

    @torch.inference_mode()
    def step(self, work: list[SeqWork]) -> list[int]:
        """Run one iteration over the sequences in `work` (prefills and decodes may mix) and
        return the next token of each (greedy)."""
        cfg = self.cfg
        H, d = cfg.n_heads, cfg.head_dim
        ids, pos, spans = [], [], []
        off = 0
        for s in work:
            n = len(s.tokens)
            if s.start + n > cfg.max_len:
                raise ValueError(f"sequence of {s.start + n} tokens exceeds the model's max_len {cfg.max_len}")
            ids.extend(s.tokens)
            pos.extend(range(s.start, s.start + n))
            spans.append((off, n))
            off += n
        dev = self.device
        x = self.tok_emb[torch.tensor(ids, device=dev)] + self.pos_emb[torch.tensor(pos, device=dev)]
        for layer in range(cfg.n_layers):
            hN = F.layer_norm(x, (cfg.hidden_size,))
            qkv = (hN @ self.wqkv[layer]).view(-1, 3, H, d).transpose(0, 2)  # (H, 3, T, d)
            outs = []
            for s, (o, n) in zip(work, spans, strict=True):
                q, k, v = qkv[:, 0, o:o + n], qkv[:, 1, o:o + n], qkv[:, 2, o:o + n]
                end = s.start + n
                self.cache[layer, 0, s.slot, :, s.start:end] = k
                self.cache[layer, 1, s.slot, :, s.start:end] = v
                K = self.cache[layer, 0, s.slot, :, :end]
                V = self.cache[layer, 1, s.slot, :, :end]
                # prefills start at 0 (recompute re-prefills the whole context): plain causal
                outs.append(F.scaled_dot_product_attention(q, K, V, is_causal=n > 1 and s.start == 0))
            att = torch.cat(outs, dim=1).transpose(0, 1).reshape(-1, cfg.hidden_size)
            x = x + att @ self.wo[layer]
            x = x + F.gelu(F.layer_norm(x, (cfg.hidden_size,)) @ self.w1[layer]) @ self.w2[layer]
        last = torch.tensor([o + n - 1 for o, n in spans], device=dev)
        logits = F.layer_norm(x[last], (cfg.hidden_size,)) @ self.tok_emb.T
        return logits.argmax(dim=-1).tolist()

    def save_slot(self, slot: int, length: int) -> torch.Tensor:
        """Copy a slot's KV to host memory (swap out)."""
        return self.cache[:, :, slot, :, :length].to("cpu", copy=True)

    def load_slot(self, slot: int, kv: torch.Tensor) -> None:
        """Copy swapped-out KV back into a slot (swap in)."""
        self.cache[:, :, slot, :, : kv.shape[3]] = kv.to(self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
