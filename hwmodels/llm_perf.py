"""Per-iteration latency and power of LLM inference: a roofline with fitted efficiencies.

One iteration (a prefill, a decode step, or a mix) costs

    t = max(FLOPs / (peak · eff_compute), bytes / (mem_bw · eff_mem))
        + overhead_s + per_seq_overhead_s · n_seqs + all-reduce time (tp > 1)

with FLOPs = 2 · n_params · tokens + 4 · n_layers · n_heads · head_dim · (query, key) pairs and
bytes = weights + KV read + KV written, all per GPU. The fixed and per-sequence overheads stand
for what a roofline omits: kernel launches, the scheduler, sampling. Power is idle plus a dynamic
share that grows with the compute utilisation u = (FLOPs / peak) / t of the iteration:
P = idle + (TDP − idle) · power_dyn_frac · u^power_exp, capped at TDP. The efficiencies and power
terms are fitted to measured vLLM serving on an H100 (`hwmodels/fit_llm.py`) and applied to
every GPU in the catalog; the model is on the serving simulator's hot path, so everything that
does not depend on the call's arguments is precomputed in `__init__`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import GPUSpec
from orrery.hwmodels.llm import LLMConfig

DEFAULT_PARAMS_PATH = Path(__file__).resolve().parent / "params" / "llm_h100_mlenergy.json"
ACTIVATION_BITS = 16  # activations and compute stay 16-bit under weight-only quantisation


@dataclass(frozen=True)
class SpecDecode:
    """Speculative decoding: a draft proposes `draft_len` (γ) tokens, each accepted with
    probability `acceptance` (α); one draft step costs `draft_cost` (c) target steps."""

    acceptance: float
    draft_len: int
    draft_cost: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.acceptance <= 1.0:
            raise OrreryInputError(f"spec_decode.acceptance must be in [0, 1], got {self.acceptance}")
        if int(self.draft_len) != self.draft_len or self.draft_len < 1:
            raise OrreryInputError(f"spec_decode.draft_len must be an integer >= 1, got {self.draft_len}")
        if self.draft_cost < 0:
            raise OrreryInputError(f"spec_decode.draft_cost must be >= 0, got {self.draft_cost}")

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens emitted per target pass: (1 − α^(γ+1)) / (1 − α)."""
        a, g = self.acceptance, self.draft_len
        if a >= 1.0:
            return float(g + 1)
        return (1.0 - a ** (g + 1)) / (1.0 - a)


@dataclass(frozen=True)
class LatencyPowerParams:
    """Fitted efficiencies and constants (see `hwmodels/params/llm_h100_mlenergy.json`)."""

    eff_compute: float
    eff_mem: float
    overhead_s: float
    per_seq_overhead_s: float
    power_dyn_frac: float
    power_exp: float
    swap_bw_bytes_per_s: float = 25e9  # host<->GPU over PCIe Gen4/5 x16, effective
    allreduce_latency_s: float = 8e-6  # one small NVLink all-reduce (vLLM custom all-reduce)
    eff_interconnect: float = 0.7  # achieved / peak interconnect bandwidth
    activation_reserve_bytes: float = 2e9  # vLLM's profiled activation peak, per GPU
    default_context_tokens: float = 600.0  # per sequence, used by power_w(batch_size)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise OrreryInputError(f"LLM perf parameter {f.name} must be a finite number >= 0, got {v!r}")
        for name in ("eff_compute", "eff_mem", "eff_interconnect", "swap_bw_bytes_per_s"):
            if getattr(self, name) <= 0:
                raise OrreryInputError(f"LLM perf parameter {name} must be > 0")

    @classmethod
    def from_dict(cls, d: dict, source: str = "parameters") -> LatencyPowerParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise OrreryInputError(f"{source}: unknown LLM perf parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**{k: float(v) for k, v in d.items()})
        except TypeError as e:  # missing required field
            raise OrreryInputError(f"{source}: {e}") from None
        except ValueError as e:
            raise OrreryInputError(f"{source}: parameters must be numbers ({e})") from None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@lru_cache(maxsize=4)
def _load_params(path: str) -> LatencyPowerParams:
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"LLM perf parameter file not found: {p} (refit with `python -m hwmodels.fit_llm`)")
    doc = json.loads(p.read_text())
    if "params" not in doc:
        raise OrreryInputError(f"{p}: no 'params' object")
    return LatencyPowerParams.from_dict(doc["params"], str(p))


def load_default_params(path: str | Path | None = None) -> LatencyPowerParams:
    """The committed parameters fitted to H100 measurements (cached)."""
    return _load_params(str(path or DEFAULT_PARAMS_PATH))


class LLMPerfModel:
    """Latency and power of one model replica (tp GPUs) of `model` on `gpu`."""

    def __init__(
        self,
        model: LLMConfig,
        gpu: GPUSpec,
        tp: int = 1,
        weight_bits: int = 16,
        kv_bits: int = 16,
        spec_decode: SpecDecode | None = None,
        params: LatencyPowerParams | None = None,
    ):
        if int(tp) != tp or tp < 1:
            raise OrreryInputError(f"tp (tensor-parallel degree) must be an integer >= 1, got {tp}")
        for what, bits in (("weight_bits", weight_bits), ("kv_bits", kv_bits)):
            if bits not in (2, 3, 4, 8, 16, 32):
                raise OrreryInputError(f"{what} must be one of 2, 3, 4, 8, 16, 32; got {bits}")
        if model.n_heads % tp or (model.n_kv_heads % tp and tp % model.n_kv_heads):
            raise OrreryInputError(
                f"tp={tp} does not divide {model.name}'s {model.n_heads} attention heads "
                f"/ {model.n_kv_heads} KV heads")
        p = params if params is not None else load_default_params()
        self.model, self.gpu, self.tp, self.params = model, gpu, int(tp), p
        self.weight_bits, self.kv_bits, self.spec_decode = weight_bits, kv_bits, spec_decode

        self.weight_bytes_per_gpu: float = model.n_params * weight_bits / 8.0 / tp
        # KV heads are replicated when tp exceeds them (GQA), so never fewer than one per GPU.
        kv_heads_per_gpu = max(model.n_kv_heads / tp, 1.0)
        self.kv_bytes_per_token: float = 2.0 * model.n_layers * kv_heads_per_gpu * model.head_dim * kv_bits / 8.0
        self.tokens_per_step: float = spec_decode.tokens_per_step if spec_decode else 1.0

        peak = gpu.peak_flops(ACTIVATION_BITS)
        self._peak_flops = peak
        self._flops_per_token = 2.0 * model.n_params / tp
        self._flops_per_pair = 4.0 * model.n_layers * model.n_heads * model.head_dim / tp
        self._inv_flops = 1.0 / (peak * p.eff_compute)
        self._inv_bw = 1.0 / (gpu.mem_bw_bytes_per_s * p.eff_mem)
        self._w = self.weight_bytes_per_gpu
        self._kv = self.kv_bytes_per_token
        self._per_seq = p.per_seq_overhead_s
        if tp > 1:  # two all-reduces per layer (attention out, MLP out), ring algorithm
            n_ar = 2 * model.n_layers
            act_bytes = model.hidden_size * ACTIVATION_BITS / 8.0
            ic_bw = gpu.interconnect_bw_bytes_per_s * p.eff_interconnect
            self._fixed = p.overhead_s + n_ar * p.allreduce_latency_s
            self._ar_per_token = n_ar * 2.0 * (tp - 1) / tp * act_bytes / ic_bw
        else:
            self._fixed = p.overhead_s
            self._ar_per_token = 0.0
        sd = spec_decode
        self._g1 = float(sd.draft_len + 1) if sd else 1.0
        self._draft = sd.draft_len * sd.draft_cost if sd else 0.0
        # power: P = idle + span · u^k, capped at TDP
        self._idle_w = gpu.idle_w
        self._tdp_w = gpu.tdp_w
        self._span_w = (gpu.tdp_w - gpu.idle_w) * p.power_dyn_frac
        self._power_exp = p.power_exp
        self._ctx_default = p.default_context_tokens

    # ---- one iteration -------------------------------------------------------------------
    def _iter(self, tokens: float, n_seqs: float, pairs: float, kv_read_tokens: float) -> float:
        """Scalar roofline time of one iteration (no speculative decoding)."""
        c = (self._flops_per_token * tokens + self._flops_per_pair * pairs) * self._inv_flops
        m = (self._w + self._kv * (kv_read_tokens + tokens)) * self._inv_bw
        return (c if c > m else m) + self._fixed + self._per_seq * n_seqs + self._ar_per_token * tokens

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        """One iteration prefilling `n_tokens` prompt tokens of `n_seqs` sequences that already
        hold `context_tokens` KV tokens in total (0 for fresh prompts)."""
        s = n_seqs if n_seqs > 0 else 1
        pairs = (n_tokens * context_tokens + 0.5 * n_tokens * n_tokens) / s
        return self._iter(n_tokens, s, pairs, context_tokens)

    def mixed_step_time_s(self, decode_batch: float, context_tokens: float,
                          prefill_tokens: float, prefill_seqs: float = 1.0) -> float:
        """One iteration that decodes `decode_batch` sequences (KV contexts summing to
        `context_tokens`) and prefills `prefill_tokens` new prompt tokens (chunked prefill)."""
        ps = prefill_seqs if prefill_seqs > 0 else 1.0
        pairs = context_tokens + 0.5 * prefill_tokens * prefill_tokens / ps
        return self._iter(decode_batch + prefill_tokens, decode_batch + prefill_seqs, pairs, context_tokens)

    def decode_time_s(self, batch_size, context_tokens):
        """One decode iteration of `batch_size` sequences whose KV contexts sum to
        `context_tokens`. Scalars give a float; numpy arrays broadcast and give an array.
        With speculative decoding the target verifies γ+1 tokens per sequence and the draft
        adds γ·c target-step equivalents; the step then yields `tokens_per_step` tokens."""
        if isinstance(batch_size, np.ndarray) or isinstance(context_tokens, np.ndarray):
            return self._decode_np(np.asarray(batch_size, dtype=float), np.asarray(context_tokens, dtype=float))
        if self._g1 == 1.0:
            return self._iter(batch_size, batch_size, context_tokens, context_tokens)
        g1 = self._g1
        verify = self._iter(batch_size * g1, batch_size, context_tokens * g1, context_tokens)
        return verify + self._draft * self._iter(batch_size, batch_size, context_tokens, context_tokens)

    def _decode_np(self, b: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        t, _ = self._decode_np_flops(b, ctx)
        return t

    def _decode_np_flops(self, b: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def it(tokens, pairs):
            flops = self._flops_per_token * tokens + self._flops_per_pair * pairs
            m = (self._w + self._kv * (ctx + tokens)) * self._inv_bw
            t = np.maximum(flops * self._inv_flops, m) + self._fixed + self._per_seq * b + self._ar_per_token * tokens
            return t, flops

        t, flops = it(b * self._g1, ctx * self._g1)
        if self._draft:
            t_plain, f_plain = it(b, ctx)
            t = t + self._draft * t_plain
            flops = flops + self._draft * f_plain
        return t, flops

    # ---- power ---------------------------------------------------------------------------
    def power_at_utilization_w(self, u):
        """Per-GPU power at compute utilisation u = (FLOPs / peak) / time (scalar or array)."""
        p = self._idle_w + self._span_w * np.power(np.clip(u, 0.0, 1.0), self._power_exp)
        return np.minimum(p, self._tdp_w) if isinstance(p, np.ndarray) else min(float(p), self._tdp_w)

    def power_w(self, batch_size, busy: bool = True):
        """Per-GPU power while decoding `batch_size` sequences of the default context length
        (params.default_context_tokens each); idle power when not busy. Vectorised."""
        arr = isinstance(batch_size, np.ndarray)
        if not arr and self._g1 == 1.0:  # scalar fast path (hot loop of the simulator)
            if not busy or batch_size <= 0:
                return float(self._idle_w)
            ctx = batch_size * self._ctx_default
            flops = self._flops_per_token * batch_size + self._flops_per_pair * ctx
            u = flops / self._peak_flops / self._iter(batch_size, batch_size, ctx, ctx)
            p = self._idle_w + self._span_w * (u if u < 1.0 else 1.0) ** self._power_exp
            return p if p < self._tdp_w else float(self._tdp_w)
        b = np.asarray(batch_size, dtype=float)
        if not busy:
            return np.full(b.shape, self._idle_w) if arr else float(self._idle_w)
        t, flops = self._decode_np_flops(b, b * self._ctx_default)
        u = flops / self._peak_flops / t
        u = np.where(b > 0, u, 0.0)
        p = self.power_at_utilization_w(u)
        return p if arr else float(p)

    def step_utilization(self, flops: float, time_s: float) -> float:
        """Compute utilisation of an iteration with `flops` per GPU that took `time_s`."""
        return flops / self._peak_flops / time_s if time_s > 0 else 0.0

    def prefill_flops(self, n_tokens: float, n_seqs: float = 1, context_tokens: float = 0) -> float:
        s = n_seqs if n_seqs > 0 else 1
        pairs = (n_tokens * context_tokens + 0.5 * n_tokens * n_tokens) / s
        return self._flops_per_token * n_tokens + self._flops_per_pair * pairs

    def prefill_power_w(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        """Per-GPU power during a prefill iteration (usually compute-bound, near TDP)."""
        t = self.prefill_time_s(n_tokens, n_seqs, context_tokens)
        return float(self.power_at_utilization_w(
            self.step_utilization(self.prefill_flops(n_tokens, n_seqs, context_tokens), t)))

    # ---- memory --------------------------------------------------------------------------
    def kv_capacity_tokens(self, gpu_memory_utilization: float = 0.9,
                           activation_reserve_bytes: float | None = None) -> int:
        """KV-cache tokens that fit per replica: (memory · util − weights − activations) / KV
        bytes per token, all per GPU (each GPU holds 1/tp of every token's KV)."""
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise OrreryInputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        reserve = self.params.activation_reserve_bytes if activation_reserve_bytes is None else activation_reserve_bytes
        budget = self.gpu.mem_bytes * gpu_memory_utilization
        free = budget - self.weight_bytes_per_gpu - reserve
        if free < self.kv_bytes_per_token:
            raise OrreryInputError(
                f"{self.model.name} does not fit on {self.gpu.name} with tp={self.tp}: "
                f"{self.weight_bits}-bit weights need {self.weight_bytes_per_gpu / 1e9:.1f} GB per GPU "
                f"plus {reserve / 1e9:.1f} GB for activations, but only {budget / 1e9:.1f} GB "
                f"({gpu_memory_utilization:g} of {self.gpu.mem_bytes / 1e9:.1f} GB) is usable, leaving "
                f"no room for the KV cache; raise tp, lower weight_bits or use a larger GPU")
        return int(free // self.kv_bytes_per_token)

    def swap_time_s(self, n_bytes):
        """Host<->GPU transfer time of `n_bytes` (KV swap) over PCIe (scalar or array)."""
        return n_bytes / self.params.swap_bw_bytes_per_s
