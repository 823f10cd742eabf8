"""A calibrated latency (and power) model of the real engine, in the simulator's interface.

The tiny torch engine is not a roofline-bound GPU kernel: its iteration time is launch and
interpreter overhead plus work linear in the tokens it processes. So it gets its own small
model, fitted to measurements by `realbackend.calibrate`:

    decode(B, C)     = a + b·B + c·C                  (B sequences whose contexts sum to C)
    prefill(N, S)    = p + q·S + r·N + s·N²/S          (N prompt tokens of S sequences;
                                                       N²/S: causal attention per sequence)
    swap(bytes)      = bytes / swap_bw

all in real seconds. `EnginePerfModel` duck-types `hwmodels.llm_perf.LLMPerfModel` (the
methods the serving simulator calls) and divides every time by `time_scale` (real seconds per
workload second), so the simulator, the policies and the real engine all speak workload time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from orrery.core.errors import OrreryInputError

PARAMS_KIND = "orrery-real-engine-latency"


@dataclass(frozen=True)
class EngineLatencyParams:
    """Fitted coefficients (real seconds) and the engine facts the simulator needs."""

    decode_a_s: float
    decode_b_s: float  # per sequence
    decode_c_s: float  # per context token
    prefill_p_s: float
    prefill_q_s: float  # per sequence
    prefill_r_s: float  # per token
    prefill_s_s: float  # per token² / sequence
    swap_bw_bytes_per_s: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    idle_power_w: float = math.nan  # NaN: no GPU energy source (CPU)
    busy_power_w: float = math.nan  # decoding one sequence
    busy_power_per_doubling_w: float = 0.0  # decode power grows by this per doubling of the batch
    prefill_power_w: float = math.nan  # NaN: as decode at batch 1

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if "power" in f.name:
                continue
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise OrreryInputError(f"engine latency parameter {f.name} must be a finite number >= 0, got {v!r}")
        if self.swap_bw_bytes_per_s <= 0 or self.kv_capacity_tokens < 1:
            raise OrreryInputError("engine latency parameters need swap_bw_bytes_per_s > 0 and kv_capacity_tokens >= 1")

    # real seconds ---------------------------------------------------------------------------
    def decode_s(self, batch_size, context_tokens):
        return self.decode_a_s + self.decode_b_s * np.asarray(batch_size, float) + self.decode_c_s * np.asarray(
            context_tokens, float)

    def decode_power_w(self, batch_size):
        """Power while decoding `batch_size` sequences: busy + per_doubling·log2(B), never
        below idle (scalar or array; NaN without a GPU energy source)."""
        b = np.maximum(np.asarray(batch_size, float), 1.0)
        p = self.busy_power_w + self.busy_power_per_doubling_w * np.log2(b)
        return np.maximum(p, self.idle_power_w) if math.isfinite(self.idle_power_w) else p

    def prefill_s(self, n_tokens, n_seqs=1):
        s = np.maximum(np.asarray(n_seqs, float), 1.0)
        n = np.asarray(n_tokens, float)
        return self.prefill_p_s + self.prefill_q_s * s + self.prefill_r_s * n + self.prefill_s_s * n * n / s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "parameters") -> EngineLatencyParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise OrreryInputError(f"{source}: unknown engine parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            vals = {k: (None if v is None else float(v)) for k, v in d.items()}
            vals = {k: (math.nan if v is None else v) for k, v in vals.items()}
            if "kv_capacity_tokens" in vals:
                vals["kv_capacity_tokens"] = int(vals["kv_capacity_tokens"])
            return cls(**vals)
        except TypeError as e:
            raise OrreryInputError(f"{source}: {e}") from None
        except ValueError as e:
            raise OrreryInputError(f"{source}: parameters must be numbers ({e})") from None


@dataclass
class CalibrationFile:
    """What `orrery calibrate --backend real` writes (JSON)."""

    params: EngineLatencyParams
    device: str
    device_name: str
    model: dict
    threads: int | None
    fit: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    energy_source: str = "none"

    def to_json(self) -> str:
        doc = {"kind": PARAMS_KIND, "device": self.device, "device_name": self.device_name,
               "model": self.model, "threads": self.threads, "energy_source": self.energy_source,
               "params": _nan_to_none(self.params.to_dict()), "fit": self.fit, "samples": self.samples}
        return json.dumps(doc, indent=2)

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n")
        return p

    @classmethod
    def read(cls, path: str | Path) -> CalibrationFile:
        p = Path(path)
        if not p.is_file():
            raise OrreryInputError(f"calibration file not found: {p} (write one with `orrery calibrate --backend real --out {p}`)")
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise OrreryInputError(f"{p}: not valid JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("kind") != PARAMS_KIND or "params" not in doc:
            raise OrreryInputError(f"{p}: not a real-engine calibration file (expected kind = {PARAMS_KIND!r})")
        return cls(params=EngineLatencyParams.from_dict(doc["params"], str(p)), device=str(doc.get("device", "?")),
                   device_name=str(doc.get("device_name", "?")), model=dict(doc.get("model", {})),
                   threads=doc.get("threads"), fit=dict(doc.get("fit", {})), samples=dict(doc.get("samples", {})),
                   energy_source=str(doc.get("energy_source", "none")))


def _nan_to_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


class EnginePerfModel:
    """`LLMPerfModel`'s interface over `EngineLatencyParams`, in workload seconds.

    Drop-in for the serving simulator (`build_perf_model`'s return value) and, wrapped by
    `sim.serving.TokenLatency`-like access, the latency oracle the policies see.
    """

    tp = 1
    tokens_per_step = 1.0

    def __init__(self, params: EngineLatencyParams, time_scale: float = 1.0):
        if not time_scale > 0:
            raise OrreryInputError(f"time_scale must be > 0, got {time_scale}")
        self.params = params
        self.time_scale = float(time_scale)
        self.kv_bytes_per_token = float(params.kv_bytes_per_token)

    def decode_time_s(self, batch_size, context_tokens):
        t = self.params.decode_s(batch_size, context_tokens) / self.time_scale
        return float(t) if np.ndim(t) == 0 else t

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        # recompute re-prefills the whole context, so context_tokens is always part of n_tokens here
        return float(self.params.prefill_s(n_tokens, n_seqs)) / self.time_scale

    def swap_time_s(self, n_bytes):
        t = np.asarray(n_bytes, float) / self.params.swap_bw_bytes_per_s / self.time_scale
        return float(t) if np.ndim(t) == 0 else t

    def power_w(self, batch_size, busy: bool = True):
        prm = self.params
        if isinstance(batch_size, np.ndarray):
            if not busy:
                return np.full(batch_size.shape, prm.idle_power_w, dtype=float)
            return np.where(batch_size > 0, prm.decode_power_w(batch_size), prm.idle_power_w)
        if not busy or batch_size <= 0:
            return float(prm.idle_power_w)
        return float(prm.decode_power_w(batch_size))

    def prefill_power_w(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        p = self.params.prefill_power_w
        return float(p if math.isfinite(p) else self.params.decode_power_w(1))

    def kv_capacity_tokens(self, gpu_memory_utilization: float = 0.9, activation_reserve_bytes: float | None = None) -> int:
        return int(self.params.kv_capacity_tokens)


class EngineLatencyOracle:
    """The `LatencyOracle` a policy sees in the real engine (same as the simulator's
    `TokenLatency` over an `EnginePerfModel`: no speculative decoding here)."""

    def __init__(self, perf: EnginePerfModel):
        self.perf = perf
        self.kv_bytes_per_token = perf.kv_bytes_per_token

    def decode_time_s(self, batch_size, context_tokens):
        return self.perf.decode_time_s(batch_size, context_tokens)

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        return self.perf.prefill_time_s(n_tokens, n_seqs, context_tokens)

    def swap_time_s(self, n_bytes):
        return self.perf.swap_time_s(n_bytes)
