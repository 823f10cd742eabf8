"""The serving scenario: hardware, QoE expectations and options of one serving run.

Shared by the simulator (`sim/serving.py`) and the real engine (`realbackend/serving.py`),
which both take a `ServingScenario`; `build_perf_model` gives the catalog's latency/power model
of its hardware.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from orrery.core.config import Strict
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model, split_precision
from orrery.hwmodels.llm_perf import LLMPerfModel, SpecDecode, load_default_params
from orrery.policies.serving.qoe import DEFAULT_TTFT_EXP_S, LISTENING_TDS_TOK_S, READING_TDS_TOK_S
from orrery.sim.scenario import Scenario
from orrery.traces.paths import resolve_data_path
from orrery.workloads.serving import ServingWorkload


class SpecDecodeSpec(Strict):
    """Speculative decoding: acceptance rate, draft length and draft cost (vs. one target pass)."""

    acceptance: float = Field(..., ge=0, lt=1)
    draft_len: int = Field(..., ge=1)
    draft_cost: float = Field(..., ge=0)


class ServingHardware(Strict):
    gpu: str = "a100"
    model: str = "llama-2-13b"
    tp: int = Field(1, ge=1, description="tensor-parallel GPUs per replica")
    ep: int = Field(1, ge=1, description="expert-parallel degree (MoE; shares the tp GPUs: ep = tp or tp = 1)")
    weight_bits: Literal[4, 8, 16] | None = Field(
        None, description="16, 8 (fp8) or 4 (int4); default: the model's released precision")
    precision: str | None = Field(
        None, description="weight format: bf16, fp8, int8, mxfp4, int4 (overrides weight_bits)")
    kv_bits: Literal[4, 8, 16] = 16
    spec_decode: SpecDecodeSpec | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    swap_space_gib: float = Field(16.0, ge=0, description="host memory per replica for swapped KV (GiB)")
    block_size: int = Field(16, ge=1, description="tokens per KV block")
    max_num_seqs: int = Field(256, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1, description="default max(max_model_len, 2048)")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        get_gpu(v)  # an unknown name fails at load time, listing the known ones
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        get_model(v)
        return v


class QoESpec(Strict):
    ttft_exp_s: float = Field(DEFAULT_TTFT_EXP_S, gt=0, description="expected time to first token (s)")
    tds_exp_tok_s: float = Field(READING_TDS_TOK_S, gt=0, description="expected token delivery speed")
    listening_fraction: float = Field(
        0.0, ge=0, le=1, description=f"share of requests expecting {LISTENING_TDS_TOK_S} tok/s (voice)"
    )
    qoe_metric: Literal["andes", "deficit"] = Field(
        "andes", description="the QoE behind qoe_mean/qoe_p10/qoe_ge_0_9_frac: 'andes' "
        "(the paper's area ratio, arXiv:2404.16283 sec. 3) or 'deficit' (E/(E+lost area), "
        "monotone); both are always reported as qoe_andes_mean and qoe_deficit_mean")


class ServingScenario(Scenario):
    domain: ClassVar[str] = "serving"

    replicas: int = Field(1, ge=1)
    dispatcher: Literal["round_robin", "least_loaded"] = "round_robin"
    hardware: ServingHardware = ServingHardware()
    workload: ServingWorkload = ServingWorkload(rate_rps=1.0, n_requests=100)
    qoe: QoESpec = QoESpec()
    record_tokens: bool = Field(False, description="keep every token's delivery time (tests, small runs)")
    check_decisions: bool = Field(True, description="validate every policy decision")
    hw_params: str | None = Field(
        None, description="LLM serving parameter file (`orrery fit llm --out FILE`); default: the shipped fit")
    fast_forward: bool = Field(
        True, description="run uninterrupted decode stretches as one vectorised macro step when "
        "the policy allows it (the same results bit for bit; False: one event per iteration)")


def build_perf_model(hw: ServingHardware, hw_params: str | None = None) -> LLMPerfModel:
    """The latency/power model of one replica: any catalog model x GPU x tp/ep x precision;
    an impossible deployment (heads, experts or memory) raises OrreryInputError."""
    spec = None
    if hw.spec_decode is not None:
        spec = SpecDecode(hw.spec_decode.acceptance, hw.spec_decode.draft_len, hw.spec_decode.draft_cost)
    params = load_default_params(resolve_data_path(hw_params)) if hw_params else None
    precision = hw.precision or (None if hw.weight_bits else split_precision(hw.model)[1])
    return LLMPerfModel(get_model(hw.model), get_gpu(hw.gpu), tp=hw.tp, ep=hw.ep, weight_bits=hw.weight_bits,
                        precision=precision, kv_bits=hw.kv_bits, spec_decode=spec, params=params)


