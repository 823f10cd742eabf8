"""One serving replica's hardware model for cluster serving and deployment search.

The small interface the cluster simulator and `orrery plan` use, so the hardware model behind
it can change (a transferable GPU x model x parallelism predictor) without touching them:

- `replica_perf(...)`: the latency/power model of one replica (model on `tp` GPUs of one type),
  optionally under a per-GPU power limit or a locked SM clock;
- `fit_problem(...)`: why a model does not fit on a replica (None when it fits);
- `decode_capacity_tok_s(...)`: an analytic bound on the tokens/s one replica can decode.

Clock and power limit. The roofline's compute time scales with the SM clock; the memory time
does not (HBM has its own clock), which is why memory-bound decode loses little speed under a
power cap. Dynamic power goes as C·V²·f with V roughly proportional to f across the DVFS range,
so P_dyn ∝ f³ (the usual CMOS approximation, e.g. Rabaey, Digital Integrated Circuits, ch. 5).
At clock ratio s = f / f_max an iteration takes roofline(t_compute / s, t_memory) + overheads and
draws idle + (P0 − idle)·s³, P0 being the uncapped model's power for that iteration. A power
limit PL picks, per iteration, the highest s with idle + (P0 − idle)·s³ <= PL (never below the
GPU's minimum clock), i.e. the GPU throttles only the iterations that would exceed its cap.
"""

from __future__ import annotations

import numpy as np

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import ROOFLINE_P, LLMPerfModel


class ClockedLLMPerf(LLMPerfModel):
    """`LLMPerfModel` under a power limit (W per GPU) or a fixed SM clock (MHz)."""

    def __init__(self, *args, power_limit_w: float | None = None, sm_clock_mhz: float | None = None, **kw):
        super().__init__(*args, **kw)
        if self.spec_decode is not None:
            raise OrreryInputError("a power limit or SM clock cannot be combined with speculative decoding")
        g = self.gpu
        if power_limit_w is not None and sm_clock_mhz is not None:
            raise OrreryInputError("set power_limit_w or sm_clock_mhz, not both")
        if power_limit_w is not None and not g.power_limit_min_w <= power_limit_w <= g.power_limit_max_w:
            raise OrreryInputError(
                f"power_limit_w = {power_limit_w}: {g.name} accepts {g.power_limit_min_w:g}-{g.power_limit_max_w:g} W")
        if sm_clock_mhz is not None and not g.sm_clock_min_mhz <= sm_clock_mhz <= g.sm_clock_max_mhz:
            raise OrreryInputError(
                f"sm_clock_mhz = {sm_clock_mhz}: {g.name} runs {g.sm_clock_min_mhz:g}-{g.sm_clock_max_mhz:g} MHz")
        self.power_limit_w = power_limit_w
        self.sm_clock_mhz = sm_clock_mhz
        self._s_min = g.sm_clock_min_mhz / g.sm_clock_max_mhz
        self._s_fixed = None if sm_clock_mhz is None else sm_clock_mhz / g.sm_clock_max_mhz

    def _ratio(self, p0):
        """Clock ratio s for iterations whose uncapped power is p0 (scalar or array)."""
        if self._s_fixed is not None:
            return self._s_fixed if np.ndim(p0) == 0 else np.full(np.shape(p0), self._s_fixed)
        if self.power_limit_w is None:
            return 1.0 if np.ndim(p0) == 0 else np.ones(np.shape(p0))
        dyn = np.maximum(np.asarray(p0, float) - self._idle_w, 1e-12)
        s = np.clip(((self.power_limit_w - self._idle_w) / dyn) ** (1.0 / 3.0), self._s_min, 1.0)
        return float(s) if np.ndim(p0) == 0 else s

    def _clocked(self, tokens, seqs, ctx_total):
        """(time, power) of a step at the clock the cap (or the fixed clock) allows: the
        compute part of the roofline slows as 1/s, memory and CPU parts do not."""
        t_comp, t_mem, rest, mem_raw, comp_raw, t_comm = self._split(tokens, seqs, ctx_total)
        p_ = ROOFLINE_P
        t0 = (t_mem**p_ + t_comp**p_) ** (1.0 / p_) + rest
        p0 = self._power(t0, mem_raw, comp_raw, t_comm)
        s = self._ratio(p0)
        t = (t_mem**p_ + (t_comp / s) ** p_) ** (1.0 / p_) + rest
        p = self._idle_w + (p0 - self._idle_w) * np.asarray(s) ** 3
        return t, (float(p) if np.ndim(p) == 0 else p)

    def _t_scalar(self, tokens, seqs, ctx_total, parts: bool = False):
        if parts:
            raise NotImplementedError("use _clocked")
        t, _ = self._clocked(tokens, seqs, ctx_total)
        return float(t) if np.ndim(t) == 0 else t

    def _p_scalar(self, tokens, seqs, ctx_total):
        return self._clocked(tokens, seqs, ctx_total)[1]


def replica_perf(gpu: str, model: str, tp: int = 1, *, ep: int = 1, weight_bits: int = 16, kv_bits: int = 16,
                 power_limit_w: float | None = None, sm_clock_mhz: float | None = None) -> LLMPerfModel:
    """The latency/power model of one replica: `model` on max(tp, ep) GPUs of type `gpu`
    (expert parallelism, MoE models only, shares the tensor-parallel GPUs as in vLLM)."""
    m, g = get_model(model), get_gpu(gpu)
    if power_limit_w is None and sm_clock_mhz is None:
        return LLMPerfModel(m, g, tp=tp, ep=ep, weight_bits=weight_bits, kv_bits=kv_bits)
    return ClockedLLMPerf(m, g, tp=tp, ep=ep, weight_bits=weight_bits, kv_bits=kv_bits,
                          power_limit_w=power_limit_w, sm_clock_mhz=sm_clock_mhz)


def tp_problem(model: str, tp: int, ep: int = 1) -> str | None:
    """Why `tp` (and `ep`) cannot shard `model` (None when they can): heads, experts, a dense
    model with ep > 1, or tp and ep that are both > 1 and differ."""
    m = get_model(model)
    if ep > 1:
        if not m.is_moe:
            return f"ep={ep}: {m.name} is a dense model; expert parallelism needs a mixture-of-experts model"
        if tp > 1 and tp != ep:
            return (f"tp={tp} with ep={ep}: expert parallelism shares the tensor-parallel GPUs (vLLM: "
                    "EP = TP x DP), so use ep = tp or tp = 1")
        if m.n_experts % ep:
            return f"ep={ep} does not divide {m.name}'s {m.n_experts} experts"
    n = max(tp, ep)
    if tp < 1 or m.n_heads % n or (not m.is_mla and m.n_kv_heads % n and n % m.n_kv_heads):
        what = f"tp={tp}" if ep == 1 else f"{n} GPUs (tp={tp}, ep={ep})"
        return f"{what} does not divide {m.name}'s {m.n_heads} attention heads / {m.n_kv_heads} KV heads"
    return None


def fit_problem(perf: LLMPerfModel, max_model_len: int, gpu_memory_utilization: float = 0.9,
                block_size: int = 16) -> str | None:
    """Why the model does not fit on the replica (weights, or KV room for one longest request)."""
    try:
        cap = perf.kv_capacity_tokens(gpu_memory_utilization)
    except OrreryInputError as err:
        return f"weights do not fit: {err}"
    blocks = cap // block_size
    if blocks < -(-max_model_len // block_size):
        return (f"KV cache holds {cap} tokens, less than one request of {max_model_len} tokens "
                f"({perf.model.name} on {perf.tp} x {perf.gpu.name})")
    return None


def decode_capacity_tok_s(perf: LLMPerfModel, max_num_seqs: int, mean_context_tokens: float,
                          gpu_memory_utilization: float = 0.9) -> float:
    """Tokens/s one replica decodes at its largest batch: min(max_num_seqs, KV tokens / mean
    context) sequences of the mean context, one token each per decode step."""
    kv = perf.kv_capacity_tokens(gpu_memory_utilization)
    b = max(1.0, min(float(max_num_seqs), kv / max(mean_context_tokens, 1.0)))
    return b / float(perf.decode_time_s(b, b * mean_context_tokens))
