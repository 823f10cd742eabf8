"""A decoder-only transformer with a slot KV cache, for the real serving engine.

Random weights from a seed (no downloads): the engine measures how long real prefill and
decode work takes, not what the model says. The architecture is the Llama family's (RMSNorm,
rotary position embeddings, grouped-query attention, SwiGLU MLP (a GELU one for OPT), untied
LM head; optionally mixture-of-experts MLPs with shared experts), so any dense or MoE architecture of the catalog (`hwmodels.llm`) can
be built at its real shapes (`ModelConfig.from_catalog`, bf16 on a GPU) or as a shrunk copy
that keeps its structure (`.shrunk(f)`, what the CPU tests run).

Sequences are packed: the linear layers run over all tokens of the iteration at once
(continuous batching). Attention runs either per sequence against that sequence's cache slot
(`attention="per_seq"`: exact, no padding; the default on the CPU, where a tiny model's cost is
interpreter overhead per sequence) or, for decode steps, batched (`"batched"`: the batch's
slots are gathered up to the longest context and masked, one
`torch.nn.functional.scaled_dot_product_attention` call per layer; the default on CUDA,
where launching per-sequence kernels would cost more than the math). Grouped-query attention
in batched decode stacks each KV head's query group along the query axis, so keys and values
are never expanded. On CUDA, batched decode steps are captured as CUDA graphs per (batch
bucket, context bucket) and replayed (`cuda_graphs=True`); a capture that fails switches the
model to eager decode and says why in `graph_error`.

The cache is `n_slots` contiguous slots of `max_len` tokens (plus one scratch slot that padded
graph rows write into); the serving engine does the paged (block) accounting the policies see
and maps each request that holds KV to one slot. `kv_budget_bytes` (or, on CUDA, the memory
left free after the weights) bounds the slots.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch.nn import functional as F

from orrery.core.errors import OrreryInputError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ATTENTION_MODES = ("auto", "per_seq", "batched")
CONTEXT_BUCKET = 256  # batched decode pads the context to a multiple of this (graph shapes)
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of GPU memory the engine may use
ACTIVATION_RESERVE_BYTES = 2 * 1024**3  # left free on the GPU for activations and graphs


@dataclass(frozen=True)
class TinyLLMConfig:
    """Architecture and execution choices. The defaults run a decode step of a few
    milliseconds on one CPU core. Zero means "derived": `n_kv_heads` 0 = `n_heads` (no GQA),
    `head_size` 0 = hidden_size // n_heads, `expert_intermediate_size` 0 = intermediate_size."""

    n_layers: int = 4
    hidden_size: int = 256
    n_heads: int = 4
    intermediate_size: int = 1024
    vocab_size: int = 512
    max_len: int = 1024  # cache slot length = longest prompt + output the engine accepts
    dtype: str = "float32"  # bfloat16 on CUDA
    n_kv_heads: int = 0
    head_size: int = 0
    n_experts: int = 0  # 0: dense MLP
    experts_per_token: int = 0
    n_shared_experts: int = 0
    expert_intermediate_size: int = 0
    shared_intermediate_size: int = 0  # 0: expert_intermediate_size
    n_dense_layers: int = 0  # MoE models: this many layers keep a dense MLP (intermediate_size)
    tie_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU (Llama, Qwen, Mistral...); False: GELU MLP of two matrices (OPT)
    name: str = "tiny"
    attention: str = "auto"  # auto: batched on CUDA, per_seq on the CPU
    cuda_graphs: bool = True  # capture batched decode as CUDA graphs (CUDA only)

    def __post_init__(self) -> None:
        zero_ok = {"n_kv_heads", "head_size", "n_experts", "experts_per_token", "n_shared_experts",
                   "expert_intermediate_size", "shared_intermediate_size", "n_dense_layers", "intermediate_size"}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("dtype", "name", "attention", "cuda_graphs", "gated_mlp", "tie_embeddings"):
                continue
            lo = 0 if f.name in zero_ok else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise OrreryInputError(f"model config {f.name} must be an integer >= {lo}, got {v!r}")
        if self.dtype not in DTYPES:
            raise OrreryInputError(f"model config dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.attention not in ATTENTION_MODES:
            raise OrreryInputError(f"model config attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.head_size == 0 and self.hidden_size % self.n_heads:
            raise OrreryInputError(f"hidden_size {self.hidden_size} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise OrreryInputError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.kv_heads}")
        if self.head_dim % 2:
            raise OrreryInputError(f"head dimension {self.head_dim} must be even (rotary embeddings)")
        if self.n_experts and not 1 <= self.experts_per_token <= self.n_experts:
            raise OrreryInputError(f"experts_per_token must be in [1, n_experts={self.n_experts}], "
                                   f"got {self.experts_per_token}")
        if self.n_dense_layers > self.n_layers:
            raise OrreryInputError(f"n_dense_layers {self.n_dense_layers} exceeds n_layers {self.n_layers}")
        if self.intermediate_size == 0 and (not self.n_experts or self.n_dense_layers):
            raise OrreryInputError("intermediate_size must be >= 1 for dense MLP layers")

    # derived shapes ------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden_size // self.n_heads

    @property
    def expert_ffn(self) -> int:
        return self.expert_intermediate_size or self.intermediate_size

    @property
    def shared_ffn(self) -> int:
        return self.shared_intermediate_size or self.expert_ffn

    def is_moe_layer(self, layer: int) -> bool:
        return bool(self.n_experts) and layer >= self.n_dense_layers

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def element_bytes(self) -> int:
        return torch.tensor([], dtype=self.torch_dtype).element_size()

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.n_layers * self.kv_heads * self.head_dim * self.element_bytes

    @property
    def n_params(self) -> int:
        """Weights the model holds (embeddings, LM head, all experts)."""
        h, d = self.hidden_size, self.head_dim
        attn = h * (self.n_heads + 2 * self.kv_heads) * d + self.n_heads * d * h
        m = 3 if self.gated_mlp else 2
        moe = h * self.n_experts + self.n_experts * m * h * self.expert_ffn + m * h * self.shared_ffn * self.n_shared_experts
        n_moe = sum(self.is_moe_layer(k) for k in range(self.n_layers))
        mlp = n_moe * moe + (self.n_layers - n_moe) * m * h * self.intermediate_size
        return (1 if self.tie_embeddings else 2) * self.vocab_size * h + self.n_layers * attn + mlp

    @property
    def weight_bytes(self) -> int:
        return self.n_params * self.element_bytes

    # catalog ---------------------------------------------------------------------------------
    @classmethod
    def from_catalog(cls, model, max_len: int = 1024, dtype: str = "bfloat16", **over) -> TinyLLMConfig:
        """The real shapes of a catalog architecture (`hwmodels.llm.LLMConfig` or its name).
        Attention is full (sliding windows no wider than the slot change nothing; narrower
        ones are attended in full, a small overcount); multi-head latent attention (DeepSeek)
        is not built."""
        if isinstance(model, str):
            from orrery.hwmodels.llm import get_model

            model = get_model(model)
        g = lambda k: int(getattr(model, k, 0) or 0)  # noqa: E731 - fields older catalogs lack
        if g("kv_lora_rank"):
            raise OrreryInputError(f"{model.name}: multi-head latent attention (MLA) is not built by the real "
                                   "engine; pick a model with grouped-query attention")
        n_exp = g("n_experts")
        kw = dict(n_layers=model.n_layers, hidden_size=model.hidden_size, n_heads=model.n_heads,
                  intermediate_size=model.intermediate_size, vocab_size=model.vocab_size, max_len=int(max_len),
                  dtype=dtype, n_kv_heads=g("n_kv_heads") or model.n_heads,
                  head_size=int(getattr(model, "head_dim", 0) or model.hidden_size // model.n_heads),
                  n_experts=n_exp, experts_per_token=g("experts_per_token") if n_exp else 0,
                  n_shared_experts=g("n_shared_experts") if n_exp else 0,
                  expert_intermediate_size=g("moe_intermediate_size") if n_exp else 0,
                  shared_intermediate_size=g("shared_intermediate_size") if n_exp else 0,
                  n_dense_layers=g("n_dense_layers") if n_exp else 0,
                  tie_embeddings=bool(getattr(model, "tie_embeddings", False)),
                  gated_mlp=bool(getattr(model, "gated_mlp", True)), name=str(model.name))
        kw.update(over)
        return cls(**kw)

    def shrunk(self, factor: int = 16, max_len: int | None = None, dtype: str = "float32") -> TinyLLMConfig:
        """A copy `factor` times narrower (hidden, FFN, vocab, expert count) and shallower, that
        keeps the structure: the query-to-KV head ratio (GQA), experts per token, shared experts.
        What the CPU tests run in place of a real-size architecture."""
        f = max(1, int(factor))
        group = self.n_heads // self.kv_heads
        head = max(8, min(self.head_dim, 32) // 2 * 2)
        hidden = max(group * head, self.hidden_size // f)
        kv = max(1, hidden // head // group)
        n_exp = max(self.experts_per_token, self.n_experts // f) if self.n_experts else 0
        layers = max(1, self.n_layers // f)
        dense = min(layers - 1, -(-self.n_dense_layers // f)) if n_exp and self.n_dense_layers else 0
        return replace(
            self, n_layers=layers, hidden_size=hidden, n_heads=kv * group, n_kv_heads=kv,
            head_size=head, intermediate_size=max(16, self.intermediate_size // f) if self.intermediate_size else 0,
            vocab_size=max(64, self.vocab_size // f), max_len=int(max_len or self.max_len), dtype=dtype,
            n_experts=n_exp, expert_intermediate_size=max(16, self.expert_ffn // f) if n_exp else 0,
            shared_intermediate_size=max(16, self.shared_ffn // f) if n_exp and self.n_shared_experts else 0,
            n_dense_layers=dense, name=f"{self.name} (shrunk x{f})")

    def describe(self) -> dict:
        d = asdict(self)
        d.update(head_dim=self.head_dim, kv_heads=self.kv_heads, n_params=self.n_params,
                 kv_bytes_per_token=self.kv_bytes_per_token)
        return d


ModelConfig = TinyLLMConfig  # the name the realistic engine reads better with


@dataclass
class SeqWork:
    """One sequence's share of an iteration: its cache slot, where its new tokens start in
    the slot, and the new token ids."""

    slot: int
    start: int
    tokens: list[int]


def _sdpa_supports_gqa() -> bool:
    try:
        q = torch.zeros(1, 2, 1, 2)
        k = torch.zeros(1, 1, 1, 2)
        F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


_GQA = _sdpa_supports_gqa()


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """SDPA over (..., heads, len, d) with fewer KV heads than query heads (GQA)."""
    if k.shape[-3] != q.shape[-3]:
        if _GQA:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _rms(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (T, heads, d) with cos/sin (T, d/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def slot_bytes(cfg: TinyLLMConfig) -> int:
    """Bytes of one cache slot (`max_len` tokens of KV over all layers)."""
    return cfg.max_len * cfg.kv_bytes_per_token


def cuda_kv_budget_bytes(device: torch.device, utilization: float = GPU_MEMORY_UTILIZATION,
                         reserve_bytes: int = ACTIVATION_RESERVE_BYTES) -> int:
    """KV bytes the GPU has room for now (weights already loaded): total·utilization minus
    what is in use, minus a reserve for activations and CUDA graphs (vLLM's sizing rule)."""
    free, total = torch.cuda.mem_get_info(device)
    return int(total * utilization - (total - free) - reserve_bytes)


def decode_batch_bucket(b: int) -> int:
    """Padded batch size of a captured decode graph: 1, 2, 4, then multiples of 8 (vLLM's)."""
    if b <= 4:
        return 1 if b <= 1 else (2 if b == 2 else 4)
    return -(-b // 8) * 8


class TinyLLM:
    """The model, its weights (seeded) and its slot KV cache, on one device."""

    def __init__(self, cfg: TinyLLMConfig, n_slots: int, device: str = "cpu", seed: int = 0,
                 kv_budget_bytes: int | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self.attention = cfg.attention if cfg.attention != "auto" else ("batched" if self.is_cuda else "per_seq")
        dt = cfg.torch_dtype
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        h, d, H, K, L = cfg.hidden_size, cfg.head_dim, cfg.n_heads, cfg.kv_heads, cfg.n_layers

        def w(*shape: int) -> torch.Tensor:
            t = torch.randn(*shape, generator=gen, device=self.device, dtype=dt)
            return t.mul_(1.0 / math.sqrt(shape[-2]))

        m = 2 if cfg.gated_mlp else 1  # gate+up in one matrix, or up alone
        with torch.inference_mode():
            self.tok_emb = w(cfg.vocab_size, h)
            self.lm_head = self.tok_emb.T if cfg.tie_embeddings else w(h, cfg.vocab_size)
            self.wqkv = [w(h, (H + 2 * K) * d) for _ in range(L)]
            self.wo = [w(H * d, h) for _ in range(L)]
            # per layer: a dense MLP, or (MoE layers) a router, stacked experts, shared experts
            E, fe, ns = cfg.n_experts, cfg.expert_ffn, cfg.n_shared_experts * cfg.shared_ffn
            self.router = [w(h, E) if cfg.is_moe_layer(k) else None for k in range(L)]
            self.w_gu = [w(E, h, m * fe) if cfg.is_moe_layer(k) else w(h, m * cfg.intermediate_size)
                         for k in range(L)]
            self.w_down = [w(E, fe, h) if cfg.is_moe_layer(k) else w(cfg.intermediate_size, h) for k in range(L)]
            self.ws_gu = [w(h, m * ns) if cfg.is_moe_layer(k) and ns else None for k in range(L)]
            self.ws_down = [w(ns, h) if cfg.is_moe_layer(k) and ns else None for k in range(L)]
            inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, device=self.device, dtype=torch.float32) / d))
            ang = torch.arange(cfg.max_len, device=self.device, dtype=torch.float32)[:, None] * inv[None, :]
            self.cos, self.sin = ang.cos().to(dt), ang.sin().to(dt)
        if kv_budget_bytes is None and self.is_cuda:
            kv_budget_bytes = cuda_kv_budget_bytes(self.device)
        self.kv_budget_bytes = kv_budget_bytes
        want = int(n_slots)
        if kv_budget_bytes is not None:
            fit = int(kv_budget_bytes // slot_bytes(cfg)) - 1  # one scratch slot
            if fit < want:
                raise OrreryInputError(
                    f"{cfg.name}: the KV budget of {kv_budget_bytes / 2**30:.2f} GiB holds {max(fit, 0)} cache "
                    f"slots of {cfg.max_len} tokens ({slot_bytes(cfg) / 2**20:.1f} MiB each), {want} needed; "
                    f"lower max_num_seqs, the model's max_len, or use a larger device")
        self.n_slots = want
        self.scratch = want  # padded graph rows write here
        # cache[layer, k|v, slot, position, kv_head, head_dim]
        self.cache = torch.zeros(L, 2, want + 1, cfg.max_len, K, d, device=self.device, dtype=dt)
        self._graphs: dict[tuple[int, int], tuple] = {}
        self._graph_pool = None
        self.use_graphs = bool(cfg.cuda_graphs and self.is_cuda and self.attention == "batched")
        self.graph_error: str | None = None
        self._arange: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------
    def _act(self, gu: torch.Tensor) -> torch.Tensor:
        if self.cfg.gated_mlp:
            g, u = gu.chunk(2, dim=-1)
            return F.silu(g) * u
        return F.gelu(gu)

    def _mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if not cfg.is_moe_layer(layer):
            return self._act(x @ self.w_gu[layer]) @ self.w_down[layer]
        k = cfg.experts_per_token
        top_v, top_i = (x @ self.router[layer]).topk(k, dim=-1)
        gate = torch.softmax(top_v.float(), dim=-1).to(x.dtype).reshape(-1)
        flat = top_i.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=cfg.n_experts).tolist()
        out = torch.zeros_like(x)
        at = 0
        for e, c in enumerate(counts):
            if not c:
                continue
            sel = order[at:at + c]
            rows = sel // k
            y = (self._act(x[rows] @ self.w_gu[layer][e]) @ self.w_down[layer][e]) * gate[sel][:, None]
            out.index_add_(0, rows, y)
            at += c
        if self.ws_gu[layer] is not None:
            out = out + self._act(x @ self.ws_gu[layer]) @ self.ws_down[layer]
        return out

    def _qkv(self, layer: int, hN: torch.Tensor, cos, sin):
        cfg = self.cfg
        H, K, d = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        qkv = hN @ self.wqkv[layer]
        q = _rope(qkv[:, :H * d].view(-1, H, d), cos, sin)
        k = _rope(qkv[:, H * d:(H + K) * d].view(-1, K, d), cos, sin)
        v = qkv[:, (H + K) * d:].view(-1, K, d)
        return q, k, v

    @torch.inference_mode()
    def step(self, work: list[SeqWork]) -> list[int]:
        """Run one iteration over the sequences in `work` (prefills and decodes may mix) and
        return the next token of each (greedy)."""
        cfg = self.cfg
        for s in work:
            if s.start + len(s.tokens) > cfg.max_len:
                raise ValueError(f"sequence of {s.start + len(s.tokens)} tokens exceeds the model's max_len "
                                 f"{cfg.max_len}")
        if self.attention == "batched" and all(len(s.tokens) == 1 for s in work):
            return self._decode(work)
        return self._packed(work)

    def _packed(self, work: list[SeqWork]) -> list[int]:
        """Linear layers over all tokens at once, attention per sequence."""
        cfg = self.cfg
        H, d = cfg.n_heads, cfg.head_dim
        ids, pos, spans = [], [], []
        off = 0
        for s in work:
            n = len(s.tokens)
            ids.extend(s.tokens)
            pos.extend(range(s.start, s.start + n))
            spans.append((off, n))
            off += n
        dev = self.device
        pos_t = torch.tensor(pos, device=dev)
        cos, sin = self.cos[pos_t], self.sin[pos_t]
        x = self.tok_emb[torch.tensor(ids, device=dev)]
        for layer in range(cfg.n_layers):
            q, k, v = self._qkv(layer, _rms(x), cos, sin)
            outs = []
            for s, (o, n) in zip(work, spans, strict=True):
                end = s.start + n
                self.cache[layer, 0, s.slot, s.start:end] = k[o:o + n]
                self.cache[layer, 1, s.slot, s.start:end] = v[o:o + n]
                qs = q[o:o + n].transpose(0, 1)  # (H, n, d)
                if s.start == 0:  # a prefill (recompute re-prefills the whole context): plain causal
                    outs.append(_attend(qs, k[o:o + n].transpose(0, 1), v[o:o + n].transpose(0, 1), n > 1))
                elif n == 1:
                    outs.append(_attend(qs, self.cache[layer, 0, s.slot, :end].transpose(0, 1),
                                        self.cache[layer, 1, s.slot, :end].transpose(0, 1), False))
                else:  # new tokens after a cached prefix: causal with an offset
                    mask = torch.ones(n, end, dtype=torch.bool, device=dev).tril(diagonal=s.start)
                    Kc = self.cache[layer, 0, s.slot, :end].transpose(0, 1)
                    Vc = self.cache[layer, 1, s.slot, :end].transpose(0, 1)
                    rep = H // cfg.kv_heads
                    outs.append(F.scaled_dot_product_attention(
                        qs, Kc.repeat_interleave(rep, 0), Vc.repeat_interleave(rep, 0), attn_mask=mask))
            att = torch.cat(outs, dim=1).transpose(0, 1).reshape(-1, H * d)
            x = x + att @ self.wo[layer]
            x = x + self._mlp(layer, _rms(x))
        last = torch.tensor([o + n - 1 for o, n in spans], device=dev)
        return (_rms(x[last]) @ self.lm_head).argmax(dim=-1).tolist()

    # batched decode --------------------------------------------------------------------------
    def _ar(self, n: int) -> torch.Tensor:
        t = self._arange.get(n)
        if t is None:
            t = self._arange[n] = torch.arange(n, device=self.device)
        return t

    def _decode_core(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, ctx: int) -> torch.Tensor:
        """One decode token for each row: ids, pos, slots are (B,) device tensors; `ctx` bounds
        every row's context (pos < ctx). Static shapes: what a CUDA graph captures."""
        cfg = self.cfg
        H, K, d = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        B, group = ids.shape[0], H // K
        ar = self._ar(ctx)
        mask = (ar[None, :] <= pos[:, None])[:, None, None, :]  # (B, 1, 1, ctx)
        cos, sin = self.cos[pos], self.sin[pos]
        x = self.tok_emb[ids]
        gather = (slots[:, None], ar[None, :])
        for layer in range(cfg.n_layers):
            q, k, v = self._qkv(layer, _rms(x), cos, sin)
            kc, vc = self.cache[layer, 0], self.cache[layer, 1]
            kc[slots, pos] = k
            vc[slots, pos] = v
            Kb = kc[gather].transpose(1, 2)  # (B, K, ctx, d)
            Vb = vc[gather].transpose(1, 2)
            qg = q.view(B, K, group, d)  # a KV head's query group along the query axis
            o = F.scaled_dot_product_attention(qg, Kb, Vb, attn_mask=mask)
            x = x + o.reshape(B, H * d) @ self.wo[layer]
            x = x + self._mlp(layer, _rms(x))
        return (_rms(x) @ self.lm_head).argmax(dim=-1)

    def _decode(self, work: list[SeqWork]) -> list[int]:
        B = len(work)
        ctx = min(self.cfg.max_len, -(-(max(s.start for s in work) + 1) // CONTEXT_BUCKET) * CONTEXT_BUCKET)
        if self.use_graphs and not self.cfg.n_experts:
            try:
                return self._decode_graph(work, ctx)
            except Exception as err:  # noqa: BLE001 - any capture failure: fall back to eager, say why
                self.use_graphs = False
                self.graph_error = f"{type(err).__name__}: {err}"
                self._graphs.clear()
        dev = self.device
        ids = torch.tensor([s.tokens[0] for s in work], device=dev)
        pos = torch.tensor([s.start for s in work], device=dev)
        slots = torch.tensor([s.slot for s in work], device=dev)
        return self._decode_core(ids, pos, slots, ctx)[:B].tolist()

    def _decode_graph(self, work: list[SeqWork], ctx: int) -> list[int]:
        B = len(work)
        bp = min(decode_batch_bucket(B), max(decode_batch_bucket(self.n_slots), B))
        g = self._graphs.get((bp, ctx)) or self._capture(bp, ctx)
        graph, ids, pos, slots, out = g
        host = torch.tensor([[s.tokens[0], s.start, s.slot] for s in work]
                            + [[0, 0, self.scratch]] * (bp - B), dtype=torch.long)
        ids.copy_(host[:, 0], non_blocking=True)
        pos.copy_(host[:, 1], non_blocking=True)
        slots.copy_(host[:, 2], non_blocking=True)
        graph.replay()
        return out[:B].tolist()

    def _capture(self, bp: int, ctx: int) -> tuple:
        dev = self.device
        ids = torch.zeros(bp, dtype=torch.long, device=dev)
        pos = torch.zeros(bp, dtype=torch.long, device=dev)
        slots = torch.full((bp,), self.scratch, dtype=torch.long, device=dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._decode_core(ids, pos, slots, ctx)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self._graph_pool):
            out = self._decode_core(ids, pos, slots, ctx)
        entry = (graph, ids, pos, slots, out)
        self._graphs[(bp, ctx)] = entry
        return entry

    @torch.inference_mode()
    def capture_graphs(self, max_batch: int | None = None) -> int:
        """Capture every decode graph up to `max_batch` rows ahead of a timed run (a lazy
        capture would land inside the run). Returns how many graphs exist (0: eager)."""
        if not (self.use_graphs and not self.cfg.n_experts):
            return 0
        top = decode_batch_bucket(min(max_batch or self.n_slots, self.n_slots))
        buckets = sorted({decode_batch_bucket(b) for b in range(1, top + 1)})
        ctxs = range(CONTEXT_BUCKET, self.cfg.max_len + CONTEXT_BUCKET, CONTEXT_BUCKET)
        try:
            for bp in buckets:
                for c in ctxs:
                    c = min(c, self.cfg.max_len)
                    if (bp, c) not in self._graphs:
                        self._capture(bp, c)
        except Exception as err:  # noqa: BLE001
            self.use_graphs = False
            self.graph_error = f"{type(err).__name__}: {err}"
            self._graphs.clear()
        self.synchronize()
        return len(self._graphs)

    # ------------------------------------------------------------------------------------
    def save_slot(self, slot: int, length: int) -> torch.Tensor:
        """Copy a slot's KV to host memory (swap out)."""
        return self.cache[:, :, slot, :length].to("cpu", copy=True)

    def load_slot(self, slot: int, kv: torch.Tensor) -> None:
        """Copy swapped-out KV back into a slot (swap in)."""
        self.cache[:, :, slot, : kv.shape[2]] = kv.to(self.device)

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def execution(self) -> dict:
        """How this model runs (for run reports): attention path, CUDA graphs, KV sizing."""
        return {"attention": self.attention, "cuda_graphs": self.use_graphs, "graphs_captured": len(self._graphs),
                "graph_error": self.graph_error, "n_slots": self.n_slots,
                "kv_budget_bytes": self.kv_budget_bytes, "weight_bytes": self.cfg.weight_bytes,
                "sdpa_gqa": _GQA}
