"""Per-iteration latency and power of LLM serving: any catalog model x GPU x TP/EP x precision.

One iteration (a decode step, a prefill, or a mix) on one GPU of a replica of `n` GPUs:

    t_mem  = (dense weights + touched expert weights / moe_mem_eff + KV read) / (bw · eff_mem)
    t_comp = (FLOPs at the weights' compute precision / peak_q + 16-bit FLOPs / peak_16
              + attention FLOPs / (peak_16 · attn_eff)) / eff_compute
    t      = (t_mem^p + t_comp^p)^(1/p)                      smooth roofline (compute-bound at
                                                              large batch, memory-bound below)
           + collectives (tensor-parallel all-reduce; expert-parallel dispatch/combine)
           + overhead_s + per_layer_s · layers + per_seq_s · seqs     (launches, scheduler, sampling)
           + attn_seq_s · layers · context per sequence               (decode attention's serial floor)

- Dense weights (attention, dense MLPs, shared experts, embeddings/LM head) are split over
  the n GPUs. MoE: a step of T tokens with top-k routing over E experts touches
  E·(1 − (1 − k/E)^T) distinct experts per layer, so small batches read a fraction of the
  expert weights; the per-GPU share is 1/n under either TP or EP. FLOPs count the *active*
  parameters (k experts per token).
- Parallelism follows vLLM: expert parallelism shares its GPUs with tensor-parallel attention
  (EP size = TP × DP, DP = 1 here), so a replica has n = max(tp, ep) GPUs; attention heads are
  split n ways (KV heads replicated when n exceeds them; MLA's latent cache on every GPU).
  Two collectives per layer move T · hidden 16-bit activations (ring all-reduce,
  2(n−1)/n of the bytes); under EP each MoE layer dispatches every token to its k experts and combines them
  (`ep_bytes_factor` x the bytes of an all-reduce, `ep_lat_factor` x its latency); MoE
  layers add fixed kernel time (`moe_layer_s`); every W8A8 fp8 GEMM adds `fp8_gemm_s` (its
  dynamic activation quantisation and launch: one shared constant for fp8 dense and fp8 MoE
  layers, so that either kind informs the other; `fp8_moe_layer_s` is no longer fitted, 0).
- Precision (`hwmodels.llm.PRECISIONS`): weight bytes per element by scope (fp8: every decoder
  linear layer; mxfp4: experts only), W8A8 fp8 computes on fp8 tensor cores where the GPU has
  them; weight-only formats dequantise to 16 bit. KV precision scales KV bytes.
- Power per GPU follows utilisation: u_m = memory time at peak bandwidth / t, u_k = its KV part,
  u_c = compute time at peak FLOP/s / t, u_x = collective share;
  P = idle + (TDP − idle) · (f + (1 − f) · (1 − exp(−(a_m·u_m + a_k·u_k + a_c·u_c + a_x·u_x)))),
  a_k >= 0 (`power_kv`, fitted): decode attention streams the KV *and* runs its dot products and
  softmax on the SMs, so a KV byte draws at least what a weight byte of a GEMV does (long-context
  H100 decode drew 20-27 % above the model without it);
  f = floor · (1 − u_x): the busy floor holds outside the collectives (a GPU waiting on its peers
  in a latency-bound all-reduce draws less; multi-GPU decode at small batch was over-predicted by
  20-50 %); saturates below TDP instead of pinning at it.

Efficiencies, overheads and power coefficients are fitted (`hwmodels/fit_llm.py`) as shared
physical parameters plus per-GPU-family ones (Hopper, Blackwell in the ML.ENERGY data); a
family without measurements gets the geometric mean of the fitted families.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import GPUSpec
from orrery.hwmodels.llm import LLMConfig, Precision, get_precision

DEFAULT_PARAMS_PATH = Path(__file__).resolve().parent / "params" / "llm_serving_mlenergy.json"
SCHEMA = "orrery.hwmodels.llm_serving/2"
ACT_BYTES = 2.0  # activations exchanged by collectives are 16-bit
ROOFLINE_P = 4.0  # smooth-max exponent between the compute and memory times


def _smooth_max4(a, b):
    """(a**4 + b**4) ** (1/4) with multiplications and square roots only: IEEE-exact operations,
    so a float and a numpy array give bit-identical values (a generic `**` may take a vectorised
    pow for arrays and libm's for floats, which differ in the last bit; the simulator's macro
    step must equal its per-iteration path exactly)."""
    a2, b2 = a * a, b * b
    s = a2 * a2 + b2 * b2
    return math.sqrt(math.sqrt(s)) if isinstance(s, float) else np.sqrt(np.sqrt(s))


def _pow_same(base: float, x):
    """base ** x, equal bit for bit whether x is a float or an array of one repeated value
    (the simulator's macro steps keep the batch size fixed); otherwise numpy's power."""
    if isinstance(x, float):
        return base**x
    x = np.asarray(x, dtype=float)
    if x.size and (x == x.flat[0]).all():
        return np.full(x.shape, base ** float(x.flat[0]))
    return np.power(base, x)


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


# ---- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyParams:
    """Fitted per GPU family (the host CPU and software stack come with it)."""

    eff_mem: float = 0.8
    eff_compute: float = 0.6
    overhead_s: float = 2e-3
    per_seq_s: float = 5e-5
    attn_seq_s: float = 1e-9  # per layer and token of context of one sequence (serial floor)
    coll_latency_s: float = 1e-5  # one collective's fixed latency (NVLink generation, NCCL)
    power_floor: float = 0.3  # share of (TDP - idle) drawn by a busy GPU at zero utilisation
    power_mem: float = 1.0  # per unit of memory-streaming utilisation (weights and KV)
    power_kv: float = 0.0  # extra per unit of KV streaming (decode attention), >= 0 (see module doc)
    power_compute: float = 1.0


@dataclass(frozen=True)
class SharedParams:
    """Fitted physical parameters shared by every GPU, plus fixed constants."""

    per_layer_s: float = 2e-5  # kernel launches per layer and step
    moe_mem_eff: float = 0.7  # grouped expert GEMMs reach this share of dense bandwidth
    attn_eff: float = 0.5  # attention FLOP efficiency relative to eff_compute
    eff_interconnect: float = 0.6
    fp8_eff: float = 1.0  # fp8 GEMM efficiency relative to bf16 (of the fp8 peak)
    moe_layer_s: float = 0.0  # extra kernels of an MoE layer (router, top-k, permute)
    fp8_moe_layer_s: float = 0.0  # extra time of an fp8 MoE layer (older fits; not fitted since fp8_gemm_s)
    fp8_gemm_s: float = 0.0  # fixed time of one W8A8 fp8 GEMM (dynamic activation quantisation + launch)
    ep_bytes_factor: float = 1.0  # bytes of an EP dispatch+combine vs one all-reduce
    ep_lat_factor: float = 2.0  # latency of an EP dispatch+combine vs one all-reduce
    power_comm: float = 0.5
    mean_step_factor: float = 0.05  # mean step / median ITL - 1 (throughput)
    mean_step_per_arrival: float = 0.05  # extra mean-step share per request admitted per step
    median_arrival_offset: float = 0.7  # median admitted per step ~ a^2 / (a + this), a = mean (fit only)
    swap_bw_bytes_per_s: float = 25e9  # host<->GPU over PCIe Gen4/5 x16, effective (fixed)
    activation_reserve_bytes: float = 2e9  # vLLM's profiled activation peak, per GPU (fixed)
    default_context_tokens: float = 600.0  # per sequence, used by power_w(batch_size)


def _check_numbers(obj, what: str) -> None:
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise OrreryInputError(f"{what}: {f.name} must be a finite number >= 0, got {v!r}")


def _from_dict(cls, d: dict, source: str):
    if not isinstance(d, dict):
        raise OrreryInputError(f"{source}: expected an object of parameters, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise OrreryInputError(f"{source}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    obj = cls(**d)
    _check_numbers(obj, source)
    return obj


@dataclass(frozen=True)
class ServingParams:
    shared: SharedParams
    families: dict  # family name -> FamilyParams
    prompt_tokens: dict  # task -> mean prompt tokens assumed by the fit
    default_prompt_tokens: float = 500.0

    def family(self, gpu: GPUSpec) -> FamilyParams:
        """The fitted parameters of the GPU's family, else the geometric mean of all fitted."""
        fam = self.families.get(gpu.fit_family)
        if fam is not None:
            return fam
        return self.unknown_family()

    def unknown_family(self) -> FamilyParams:
        fams = list(self.families.values())
        if not fams:
            return FamilyParams()
        return FamilyParams(**{f.name: float(np.exp(np.mean([np.log(max(getattr(x, f.name), 1e-30)) for x in fams])))
                               for f in fields(FamilyParams)})

    def to_dict(self) -> dict:
        return {"shared": asdict(self.shared), "families": {k: asdict(v) for k, v in self.families.items()},
                "prompt_tokens": dict(self.prompt_tokens), "default_prompt_tokens": self.default_prompt_tokens}

    @classmethod
    def from_dict(cls, d: dict, source: str = "parameters") -> ServingParams:
        if not isinstance(d, dict) or "shared" not in d or "families" not in d:
            raise OrreryInputError(f"{source}: expected 'shared' and 'families' objects (schema {SCHEMA})")
        fams = d["families"]
        if not isinstance(fams, dict):
            raise OrreryInputError(f"{source}: 'families' must map a GPU family to its parameters")
        prompts = d.get("prompt_tokens", {})
        if not isinstance(prompts, dict) or not all(isinstance(v, int | float) and v >= 0 for v in prompts.values()):
            raise OrreryInputError(f"{source}: 'prompt_tokens' must map a task name to a number >= 0")
        return cls(_from_dict(SharedParams, d["shared"], f"{source}: shared"),
                   {k: _from_dict(FamilyParams, v, f"{source}: families.{k}") for k, v in fams.items()},
                   {k: float(v) for k, v in prompts.items()}, float(d.get("default_prompt_tokens", 500.0)))


@lru_cache(maxsize=8)
def _load_params(path: str) -> ServingParams:
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"LLM serving parameter file not found: {p} (write one with `orrery fit llm --out FILE`)")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OrreryInputError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "params" not in doc:
        raise OrreryInputError(f"{p}: no 'params' object (schema {SCHEMA})")
    return ServingParams.from_dict(doc["params"], str(p))


def load_default_params(path: str | Path | None = None) -> ServingParams:
    """The committed parameters fitted to the ML.ENERGY measurements (cached per path)."""
    return _load_params(str(Path(path or DEFAULT_PARAMS_PATH).resolve()))


# ---- the step model ---------------------------------------------------------------------------
def deployment_constants(model: LLMConfig, gpu: GPUSpec, tp: int = 1, ep: int = 1,
                         precision: str | int | Precision | None = None, kv_bits: float = 16) -> SimpleNamespace:
    """Everything about one GPU of a replica that does not depend on the step or the fitted
    parameters. Raises OrreryInputError for impossible parallelism."""
    for what, v in (("tp", tp), ("ep", ep)):
        if int(v) != v or v < 1:
            raise OrreryInputError(f"{what} must be an integer >= 1, got {v}")
    tp, ep = int(tp), int(ep)
    if ep > 1 and not model.is_moe:
        raise OrreryInputError(f"ep={ep}: {model.name} is a dense model; expert parallelism needs experts")
    if tp > 1 and ep > 1 and tp != ep:
        raise OrreryInputError(f"tp={tp} with ep={ep}: expert parallelism shares the tensor-parallel GPUs "
                               "(vLLM: EP = TP x DP), so use ep = tp or one of them = 1")
    n = max(tp, ep)
    if model.n_heads % n:
        raise OrreryInputError(f"{n} GPUs do not divide {model.name}'s {model.n_heads} attention heads")
    if not model.is_mla and model.n_kv_heads % n and n % model.n_kv_heads:
        raise OrreryInputError(f"{n} GPUs and {model.name}'s {model.n_kv_heads} KV heads: one must divide the other")
    if ep > 1 and model.n_experts % ep:
        raise OrreryInputError(f"ep={ep} does not divide {model.name}'s {model.n_experts} experts")
    prec = get_precision(precision if precision is not None else model.weight_precision)
    if kv_bits not in (4, 8, 16, 32):
        raise OrreryInputError(f"kv_bits must be one of 4, 8, 16, 32; got {kv_bits}")

    h = model.hidden_size
    attn, dense_mlp_etc = model.attn_params, model.dense_layer_params - model.attn_params
    experts = model.routed_expert_params
    # which weights the precision covers: (quantised, 16-bit) split of the non-embedding weights
    if prec.scope == "experts":
        q_dense, u_dense = 0.0, attn + dense_mlp_etc
    elif prec.scope == "mlp":
        q_dense, u_dense = dense_mlp_etc, attn
    else:
        q_dense, u_dense = attn + dense_mlp_etc, 0.0
    wb = prec.bits / 8.0
    c = SimpleNamespace()
    c.n_gpus, c.tp, c.ep, c.precision = n, tp, ep, prec.name
    c.n_layers = float(model.n_layers)
    c.dense_bytes = (model.embedding_params * 2.0 + q_dense * wb + u_dense * 2.0) / n
    c.weight_bytes_per_gpu = c.dense_bytes + experts * wb / n
    c.expert_bytes_per_gpu = model.expert_params * wb / n  # one expert of one layer, this GPU's share
    c.n_experts = float(model.n_experts)
    c.topk_frac = model.experts_per_token / model.n_experts if model.is_moe else 0.0
    c.topk = float(model.experts_per_token)
    c.n_moe_layers = float(model.n_moe_layers)
    # FLOPs per token on this GPU: quantised part (runs at the compute precision) and 16-bit part
    active_experts = model.n_moe_layers * model.experts_per_token * model.expert_params
    lm_head = model.vocab_size * h
    c.flops_q_per_token = 2.0 * (q_dense + (active_experts if prec.bits < 16 else 0.0)) / n
    c.flops_u_per_token = 2.0 * (u_dense + lm_head + (0.0 if prec.bits < 16 else active_experts)) / n
    if prec.bits >= 16:
        c.flops_u_per_token = 2.0 * (attn + dense_mlp_etc + lm_head + active_experts) / n
        c.flops_q_per_token = 0.0
    compute_bits = 8 if (prec.act_bits <= 8 and gpu.flops_fp8) else 16
    c.peak_q, c.peak_u = gpu.peak_flops(compute_bits), gpu.peak_flops(16)
    c.q_is_fp8 = 1.0 if compute_bits == 8 else 0.0
    # W8A8 GEMMs per step (each quantises its activations first): attention (qkv, o) under the
    # "linear" scope, dense MLPs (gate_up, down) under "linear"/"mlp", experts (two grouped GEMMs)
    n_dense_mlp = model.n_layers - model.n_moe_layers
    gemms = 2.0 * model.n_moe_layers * (1.0 if experts > 0 else 0.0)
    gemms += 2.0 * n_dense_mlp * (prec.scope in ("linear", "mlp")) + 2.0 * model.n_layers * (prec.scope == "linear")
    c.n_fp8_gemms = c.q_is_fp8 * gemms
    head_dim_qk = (model.qk_nope_head_dim + model.qk_rope_head_dim) if model.is_mla else model.head_dim
    head_dim_v = model.v_head_dim if model.is_mla else model.head_dim
    c.attn_flops_per_pair = 2.0 * model.n_heads * (head_dim_qk + head_dim_v) / n  # per layer
    c.n_full_layers, c.n_slide_layers = float(model.n_full_attention_layers), float(model.n_sliding_layers)
    c.window = float(model.sliding_window or 0)
    if model.is_mla:
        kv_elems = model.kv_elems_per_token_layer  # latent replicated on every GPU
    else:
        kv_elems = 2.0 * max(model.n_kv_heads / n, 1.0) * model.head_dim
    c.kv_bytes_per_token_layer = kv_elems * kv_bits / 8.0
    c.kv_bytes_per_token = c.kv_bytes_per_token_layer * model.n_layers
    c.mem_bw, c.ic_bw = gpu.mem_bw_bytes_per_s, gpu.interconnect_bw_bytes_per_s
    c.hidden = float(h)
    c.ring = 2.0 * (n - 1) / n if n > 1 else 0.0
    c.ep_on = 1.0 if ep > 1 else 0.0
    c.idle_w, c.tdp_w = float(gpu.idle_w), float(gpu.tdp_w)
    c.mem_bytes = float(gpu.mem_bytes)
    return c


def step_terms(c, fam, sh, tokens, seqs, ctx_total):
    """Time of one step and its parts, per GPU. Works on floats and numpy arrays alike (the
    fitter passes one row per element; `c`/`fam` fields may be arrays too).

    tokens: tokens processed (decode tokens + prefill tokens); seqs: sequences in the step;
    ctx_total: KV tokens the step attends over, summed over its sequences (each token of the
    step attends over its sequence's context: pairs ≈ ctx_total for decode)."""
    per_seq_ctx = ctx_total / seqs
    if c.window is not None and np.any(c.window):
        slide_ctx = np.minimum(per_seq_ctx, np.where(c.window > 0, c.window, per_seq_ctx)) * seqs
    else:
        slide_ctx = ctx_total
    pairs_layers = c.n_full_layers * ctx_total + c.n_slide_layers * slide_ctx
    kv_bytes = c.kv_bytes_per_token_layer * (pairs_layers + c.n_layers * tokens)
    touched = c.n_experts * (1.0 - (1.0 - c.topk_frac) ** tokens)
    expert_bytes = c.n_moe_layers * touched * c.expert_bytes_per_gpu
    # memory utilisation weighted for power: the attention kernels that stream the KV also run
    # their dot products and softmax on the SMs, so KV bytes draw at least what weight bytes do
    mem_pw = (fam.power_mem * (c.dense_bytes + expert_bytes + kv_bytes) + fam.power_kv * kv_bytes) / c.mem_bw
    t_mem = (c.dense_bytes + expert_bytes / sh.moe_mem_eff + kv_bytes) / (c.mem_bw * fam.eff_mem)
    attn_flops = c.attn_flops_per_pair * (pairs_layers + 0.5 * c.n_layers * tokens * tokens / seqs)
    comp_raw = (c.flops_q_per_token * tokens) / c.peak_q + (c.flops_u_per_token * tokens + attn_flops) / c.peak_u
    t_comp = ((c.flops_q_per_token * tokens) / (c.peak_q * (c.q_is_fp8 * (sh.fp8_eff - 1.0) + 1.0))
              + c.flops_u_per_token * tokens / c.peak_u
              + attn_flops / (c.peak_u * sh.attn_eff)) / fam.eff_compute
    t_gpu = (t_mem**ROOFLINE_P + t_comp**ROOFLINE_P) ** (1.0 / ROOFLINE_P)
    # TP: two all-reduces per layer. EP: one all-reduce (attention) per MoE layer plus the
    # dispatch/combine of each token to its k experts (k x the bytes, ep_lat_factor x the latency)
    ar = fam.coll_latency_s + c.ring * tokens * c.hidden * ACT_BYTES / (c.ic_bw * sh.eff_interconnect)
    n_ar = 2.0 * c.n_layers - c.ep_on * c.n_moe_layers
    a2a = (sh.ep_lat_factor * fam.coll_latency_s
           + c.ring * sh.ep_bytes_factor * tokens * c.hidden * ACT_BYTES / (c.ic_bw * sh.eff_interconnect))
    t_comm = (c.ring > 0) * (n_ar * ar + c.ep_on * c.n_moe_layers * a2a)
    t_cpu = (fam.overhead_s + sh.per_layer_s * c.n_layers + fam.per_seq_s * seqs
             + c.n_moe_layers * (sh.moe_layer_s + c.q_is_fp8 * sh.fp8_moe_layer_s) + c.n_fp8_gemms * sh.fp8_gemm_s)
    t_attn_serial = fam.attn_seq_s * (c.n_full_layers * per_seq_ctx + c.n_slide_layers * slide_ctx / seqs)
    t = t_gpu + t_comm + t_cpu + t_attn_serial
    return t, mem_pw, comp_raw, t_comm


def power_from_terms(c, fam, sh, t, mem_pw, comp_raw, t_comm):
    """Per-GPU power of a step that took `t` (see the module doc): saturating, below TDP."""
    x = (mem_pw + fam.power_compute * comp_raw + sh.power_comm * t_comm) / t
    floor = fam.power_floor * (1.0 - t_comm / t)
    return c.idle_w + (c.tdp_w - c.idle_w) * (floor + (1.0 - floor) * (1.0 - np.exp(-x)))


class LLMPerfModel:
    """Latency and power of one replica (n = max(tp, ep) GPUs) of `model` on `gpu`."""

    def __init__(
        self,
        model: LLMConfig,
        gpu: GPUSpec,
        tp: int = 1,
        weight_bits: int | None = None,
        kv_bits: int = 16,
        spec_decode: SpecDecode | None = None,
        params: ServingParams | None = None,
        ep: int = 1,
        precision: str | None = None,
    ):
        if weight_bits is not None and precision is None:
            if weight_bits not in (4, 8, 16):
                raise OrreryInputError(f"weight_bits must be one of 4, 8, 16; got {weight_bits}")
            precision = {16: "bf16", 8: "fp8", 4: "int4"}[weight_bits]
        p = params if params is not None else load_default_params()
        c = deployment_constants(model, gpu, tp, ep, precision, kv_bits)
        self.model, self.gpu, self.params, self.c = model, gpu, p, c
        self.tp, self.ep, self.n_gpus = c.tp, c.ep, c.n_gpus
        self.precision, self.kv_bits, self.spec_decode = c.precision, kv_bits, spec_decode
        self.weight_bits = get_precision(c.precision).bits
        self.fam, self.sh = p.family(gpu), p.shared
        self.weight_bytes_per_gpu: float = c.weight_bytes_per_gpu
        self.kv_bytes_per_token: float = c.kv_bytes_per_token
        self.tokens_per_step: float = spec_decode.tokens_per_step if spec_decode else 1.0
        sd = spec_decode
        self._g1 = float(sd.draft_len + 1) if sd else 1.0
        self._draft = sd.draft_len * sd.draft_cost if sd else 0.0
        self._idle_w = gpu.idle_w
        self._ctx_default = p.shared.default_context_tokens

        self._scalar_setup()

    def _scalar_setup(self) -> None:
        """Fold the constants of `step_terms` for the simulator's scalar hot path."""
        c, f, sh = self.c, self.fam, self.sh
        self._s_bw = 1.0 / (c.mem_bw * f.eff_mem)
        self._s_moe = c.n_moe_layers * c.expert_bytes_per_gpu / sh.moe_mem_eff
        self._s_q = c.flops_q_per_token / (c.peak_q * (c.q_is_fp8 * (sh.fp8_eff - 1.0) + 1.0)) / f.eff_compute
        self._s_u = c.flops_u_per_token / c.peak_u / f.eff_compute
        self._s_attn = c.attn_flops_per_pair / (c.peak_u * sh.attn_eff) / f.eff_compute
        bw_ic = c.ic_bw * sh.eff_interconnect
        n_ar = 2.0 * c.n_layers - c.ep_on * c.n_moe_layers
        self._s_comm0 = (c.ring > 0) * (n_ar * f.coll_latency_s + c.ep_on * c.n_moe_layers * sh.ep_lat_factor
                                        * f.coll_latency_s)
        self._s_comm1 = (c.ring > 0) * c.ring * c.hidden * ACT_BYTES / bw_ic * (
            n_ar + c.ep_on * c.n_moe_layers * sh.ep_bytes_factor)
        self._s_qu = self._s_q + self._s_u
        self._s_raw_qu = c.flops_q_per_token / c.peak_q + c.flops_u_per_token / c.peak_u
        self._s_moe_n = self._s_moe * c.n_experts
        self._s_pw_w, self._s_pw_kv = f.power_mem / c.mem_bw, (f.power_mem + f.power_kv) / c.mem_bw
        self._s_keep = 1.0 - c.topk_frac
        self._s_serial = f.attn_seq_s * c.n_layers
        self._series_of: dict[int, tuple] = {}  # decode_series_s's batch-only terms (`_series_terms`)
        self._s_cpu0 = (f.overhead_s + sh.per_layer_s * c.n_layers
                        + c.n_moe_layers * (sh.moe_layer_s + c.q_is_fp8 * sh.fp8_moe_layer_s)
                        + c.n_fp8_gemms * sh.fp8_gemm_s)

    def _core(self, tokens, seqs, ctx_total):
        """The folded step terms shared by `_t_scalar` and `_split`: (memory time, compute
        time, serial attention time, touched MoE bytes, KV bytes, attention pairs)."""
        c, f = self.c, self.fam
        per_seq_ctx = ctx_total / seqs
        if c.window > 0:
            slide_ctx = (min(per_seq_ctx, c.window) if isinstance(per_seq_ctx, float)
                         else np.minimum(per_seq_ctx, c.window)) * seqs
            pairs_layers = c.n_full_layers * ctx_total + c.n_slide_layers * slide_ctx
            serial = f.attn_seq_s * (c.n_full_layers * per_seq_ctx + c.n_slide_layers * slide_ctx / seqs)
        else:
            pairs_layers = c.n_layers * ctx_total
            serial = self._s_serial * per_seq_ctx
        kv = c.kv_bytes_per_token_layer * (pairs_layers + c.n_layers * tokens)
        moe = self._s_moe_n * (1.0 - _pow_same(self._s_keep, tokens)) if c.n_experts else 0.0
        t_mem = (c.dense_bytes + moe + kv) * self._s_bw
        attn_pairs = pairs_layers + 0.5 * c.n_layers * tokens * tokens / seqs
        t_comp = self._s_qu * tokens + self._s_attn * attn_pairs
        return t_mem, t_comp, serial, moe, kv, attn_pairs

    def _raw(self, tokens, moe, kv, attn_pairs):
        """Memory time at full bandwidth weighted for power (power_mem, plus power_kv on the KV
        bytes) and compute time at peak: the power model's utilisations."""
        c = self.c
        return ((c.dense_bytes + moe * self.sh.moe_mem_eff) * self._s_pw_w + kv * self._s_pw_kv,
                self._s_raw_qu * tokens + c.attn_flops_per_pair * attn_pairs / c.peak_u)

    def _t_scalar(self, tokens, seqs, ctx_total, parts: bool = False):
        """`step_terms` with the constants folded: floats or numpy arrays (same formula, fewer
        operations; the simulator's hot path). Without `parts` only the step time."""
        t_mem, t_comp, serial, moe, kv, attn_pairs = self._core(tokens, seqs, ctx_total)
        t_gpu = _smooth_max4(t_mem, t_comp)
        t_comm = self._s_comm0 + self._s_comm1 * tokens
        t = t_gpu + t_comm + self._s_cpu0 + self.fam.per_seq_s * seqs + serial
        if not parts:
            return t
        return (t, *self._raw(tokens, moe, kv, attn_pairs), t_comm)

    def _split(self, tokens, seqs, ctx_total):
        """(compute time, memory time, everything else, raw memory time, raw compute time,
        collective time) of a step: `_t_scalar`'s parts, for models that rescale the compute
        part (a power-capped or clock-locked GPU, `hwmodels/deployment.py`)."""
        t_mem, t_comp, serial, moe, kv, attn_pairs = self._core(tokens, seqs, ctx_total)
        t_comm = self._s_comm0 + self._s_comm1 * tokens
        rest = t_comm + self._s_cpu0 + self.fam.per_seq_s * seqs + serial
        return (t_comp, t_mem, rest, *self._raw(tokens, moe, kv, attn_pairs), t_comm)

    def _power(self, t, mem_pw, comp_raw, t_comm):
        c, f = self.c, self.fam
        u = (mem_pw + f.power_compute * comp_raw + self.sh.power_comm * t_comm) / t
        e = np.exp(-u)
        floor = f.power_floor * (1.0 - t_comm / t)
        return c.idle_w + (c.tdp_w - c.idle_w) * (floor + (1.0 - floor) * (1.0 - e))

    def _p_scalar(self, tokens, seqs, ctx_total):
        """Per-GPU power of a step (`power_from_terms`), floats or arrays."""
        t, m, cp, x = self._t_scalar(tokens, seqs, ctx_total, parts=True)
        c, f = self.c, self.fam
        u = (m + f.power_compute * cp + self.sh.power_comm * x) / t
        e = math.exp(-u) if isinstance(u, float) else np.exp(-u)
        floor = f.power_floor * (1.0 - x / t)
        return c.idle_w + (c.tdp_w - c.idle_w) * (floor + (1.0 - floor) * (1.0 - e))

    # ---- one iteration -------------------------------------------------------------------
    def _terms(self, tokens, seqs, ctx):
        return step_terms(self.c, self.fam, self.sh, tokens, seqs, ctx)

    def _iter(self, tokens: float, seqs: float, ctx: float) -> float:
        return self._t_scalar(tokens, seqs if seqs > 0 else 1.0, ctx)

    def step_time_s(self, tokens, seqs, ctx_total):
        """One step processing `tokens` tokens of `seqs` sequences over `ctx_total` KV tokens."""
        return self._terms(tokens, seqs, ctx_total)[0]

    def step_power_w(self, tokens, seqs, ctx_total):
        """Per-GPU power during such a step."""
        t, m, cp, x = self._terms(tokens, seqs, ctx_total)
        return power_from_terms(self.c, self.fam, self.sh, t, m, cp, x)

    def prefill_flops(self, n_tokens: float, n_seqs: float = 1, context_tokens: float = 0) -> float:
        """FLOPs per GPU of a prefill step (linear layers + causal attention)."""
        c = self.c
        s = n_seqs if n_seqs > 0 else 1
        pairs = c.n_layers * (n_tokens * context_tokens / s + 0.5 * n_tokens * n_tokens / s)
        return (c.flops_q_per_token + c.flops_u_per_token) * n_tokens + c.attn_flops_per_pair * pairs

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        """One iteration prefilling `n_tokens` prompt tokens of `n_seqs` sequences that already
        hold `context_tokens` KV tokens in total (0 for fresh prompts)."""
        return float(self._iter(float(n_tokens), float(max(n_seqs, 1)), float(context_tokens)))

    def mixed_step_time_s(self, decode_batch: float, context_tokens: float,
                          prefill_tokens: float, prefill_seqs: float = 1.0) -> float:
        """One iteration that decodes `decode_batch` sequences (KV contexts summing to
        `context_tokens`) and prefills `prefill_tokens` new prompt tokens (chunked prefill)."""
        return float(self._iter(decode_batch + prefill_tokens, decode_batch + prefill_seqs, context_tokens))

    def decode_time_s(self, batch_size, context_tokens):
        """One decode iteration of `batch_size` sequences whose KV contexts sum to
        `context_tokens`. Scalars give a float; numpy arrays broadcast and give an array.
        With speculative decoding the target verifies γ+1 tokens per sequence and the draft
        adds γ·c target-step equivalents; the step then yields `tokens_per_step` tokens."""
        if isinstance(batch_size, np.ndarray) or isinstance(context_tokens, np.ndarray):
            b = np.maximum(np.asarray(batch_size, dtype=float), 1e-9)
            ctx = np.asarray(context_tokens, dtype=float)
            t = self._t_scalar(b * self._g1, b, ctx * self._g1)
            if self._draft:
                t = t + self._draft * self._t_scalar(b, b, ctx)
            return t
        b = float(batch_size) if batch_size > 0 else 1e-9
        t = self._t_scalar(b * self._g1, b, float(context_tokens) * self._g1)
        if self._draft:
            t += self._draft * self._t_scalar(b, b, float(context_tokens))
        return t

    def decode_series_s(self, batch_size: int, context_tokens: int, n: int) -> list[float]:
        """`[decode_time_s(batch_size, context_tokens + batch_size * i) for i in range(n)]`, the
        same floats bit for bit (a macro step's decode iterations: the batch stays, each
        iteration adds one token to every context). The terms that depend on the batch size
        only are computed once per batch size (`_series_terms`, remembered on the instance);
        the per-iteration terms keep `_t_scalar`'s operations in order. A subclass that replaces
        the step formula, speculative decoding with a draft cost and sliding-window attention
        take the generic per-iteration calls."""
        terms = self._series_of.get(batch_size)
        if terms is None:
            terms = self._series_terms(batch_size)
            if terms is None:
                return [self.decode_time_s(batch_size, context_tokens + batch_size * i) for i in range(n)]
        b, g1, nl, kv_tok, mem0, pairs_q, comp0, t_comm, cpu0, per_seq, kvl, bw, att, ser = terms
        sqrt = math.sqrt
        out = []
        for i in range(n):
            x = float(context_tokens + batch_size * i) * g1  # ctx_total
            pairs = nl * x
            t_mem = (mem0 + kvl * (pairs + kv_tok)) * bw
            t_comp = comp0 + att * (pairs + pairs_q)
            a2, b2 = t_mem * t_mem, t_comp * t_comp
            out.append(sqrt(sqrt(a2 * a2 + b2 * b2)) + t_comm + cpu0 + per_seq + ser * (x / b))
        return out

    def _series_terms(self, batch_size: int) -> tuple | None:
        """`decode_series_s`'s batch-only terms for `batch_size` (remembered, at most 4096 batch
        sizes), or None where it takes the generic per-iteration calls (not remembered)."""
        cls = type(self)
        if (self._draft or self.c.window > 0 or not batch_size > 0 or cls._t_scalar is not LLMPerfModel._t_scalar
                or cls._core is not LLMPerfModel._core or cls.decode_time_s is not LLMPerfModel.decode_time_s):
            return None
        c, g1 = self.c, self._g1
        b = float(batch_size)
        tok = b * g1  # decode_time_s's scalar path: _t_scalar(b * g1, b, ctx * g1)
        nl = c.n_layers
        moe = self._s_moe_n * (1.0 - _pow_same(self._s_keep, tok)) if c.n_experts else 0.0
        terms = (b, g1, nl, nl * tok, c.dense_bytes + moe, 0.5 * nl * tok * tok / b, self._s_qu * tok,
                 self._s_comm0 + self._s_comm1 * tok, self._s_cpu0, self.fam.per_seq_s * b,
                 c.kv_bytes_per_token_layer, self._s_bw, self._s_attn, self._s_serial)
        if len(self._series_of) >= 4096:
            self._series_of.clear()
        self._series_of[batch_size] = terms
        return terms

    # ---- power ---------------------------------------------------------------------------
    def power_w(self, batch_size, busy: bool = True):
        """Per-GPU power while decoding `batch_size` sequences of the default context length
        (params.shared.default_context_tokens each); idle power when not busy. Vectorised."""
        arr = isinstance(batch_size, np.ndarray)
        if not arr and self._g1 == 1.0:  # scalar fast path (the simulator's hot loop)
            if not busy or batch_size <= 0:
                return float(self._idle_w)
            bf = float(batch_size)
            return self._p_scalar(bf, bf, bf * self._ctx_default)
        b = np.asarray(batch_size, dtype=float)
        if not busy:
            return np.full(b.shape, float(self._idle_w)) if arr else float(self._idle_w)
        bb = np.maximum(b, 1e-9)
        p = self._p_scalar(bb * self._g1, bb, bb * self._ctx_default * self._g1)
        p = np.where(b > 0, p, self._idle_w)
        return p if arr else float(p)

    def prefill_power_w(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        """Per-GPU power during a prefill iteration (usually compute-bound)."""
        return self._p_scalar(float(n_tokens), float(max(n_seqs, 1)), float(context_tokens))

    # ---- memory --------------------------------------------------------------------------
    def kv_capacity_tokens(self, gpu_memory_utilization: float = 0.9,
                           activation_reserve_bytes: float | None = None) -> int:
        """KV-cache tokens that fit per replica: (memory · util − weights − activations) / KV
        bytes per token, all per GPU."""
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise OrreryInputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        reserve = self.sh.activation_reserve_bytes if activation_reserve_bytes is None else activation_reserve_bytes
        budget = self.gpu.mem_bytes * gpu_memory_utilization
        free = budget - self.weight_bytes_per_gpu - reserve
        if free < self.kv_bytes_per_token:
            raise OrreryInputError(
                f"{self.model.name} does not fit on {self.gpu.name} with tp={self.tp}, ep={self.ep} "
                f"({self.n_gpus} GPUs): {self.precision} weights need {self.weight_bytes_per_gpu / 1e9:.1f} GB per GPU "
                f"plus {reserve / 1e9:.1f} GB for activations, but only {budget / 1e9:.1f} GB "
                f"({gpu_memory_utilization:g} of {self.gpu.mem_bytes / 1e9:.1f} GB) is usable, leaving "
                f"no room for the KV cache; use more GPUs (tp/ep), a narrower precision or a larger GPU")
        return int(free // self.kv_bytes_per_token)

    def swap_time_s(self, n_bytes):
        """Host<->GPU transfer time of `n_bytes` (KV swap) over PCIe (scalar or array)."""
        return n_bytes / self.sh.swap_bw_bytes_per_s
