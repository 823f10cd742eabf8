"""GPU catalog: the published specs every hardware model starts from.

Peak FLOP/s are dense (no sparsity) tensor-core figures from the vendors' datasheets; memory
bandwidth and size likewise. Idle power and power-limit ranges are what `nvidia-smi -q -d POWER`
reports on these parts (A100 SXM 100-400 W, H100 SXM 200-700 W, A40 100-300 W; see
../shared/data/SOURCES.md). Blocking power is the draw of a GPU that waits on a peer (pipeline
bubbles, all-reduce): about 84 W on A100 and 70 W on A40 (Perseus, SOSP'24).
"""

from __future__ import annotations

from dataclasses import dataclass

from orrery.sim.errors import UnknownNameError


@dataclass(frozen=True)
class GPUSpec:
    name: str
    arch: str
    mem_bytes: int
    mem_bw_bytes_per_s: float
    flops_fp32: float
    flops_fp16: float  # dense tensor-core FP16/BF16
    flops_fp8: float  # 0 where the part has no FP8 tensor cores
    flops_int8: float
    tdp_w: float
    idle_w: float
    blocking_w: float  # power while blocked on communication / pipeline bubbles
    power_limit_min_w: float
    power_limit_max_w: float
    sm_clock_min_mhz: float
    sm_clock_max_mhz: float
    interconnect_bw_bytes_per_s: float  # per-GPU NVLink (or PCIe) bandwidth, one direction

    def peak_flops(self, bits: int) -> float:
        """Dense tensor FLOP/s for a compute precision of `bits` (16, 8; 32 for fp32)."""
        if bits >= 32:
            return self.flops_fp32
        if bits >= 16:
            return self.flops_fp16
        return self.flops_fp8 or self.flops_int8 or self.flops_fp16

    def clamp_power_limit(self, watts: float) -> float:
        return min(max(watts, self.power_limit_min_w), self.power_limit_max_w)

    def power_limits_w(self, step_w: float = 25.0) -> list[float]:
        """Power limits from max down to min in `step_w` steps (the Zeus profiling order)."""
        out, w = [], self.power_limit_max_w
        while w >= self.power_limit_min_w - 1e-9:
            out.append(float(w))
            w -= step_w
        return out


GiB = 1024**3
GB = 1e9
T = 1e12

GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in [
        GPUSpec("A100-SXM4-80GB", "ampere", 80 * GiB, 2039 * GB, 19.5 * T, 312 * T, 0.0, 624 * T,
                400, 60, 84, 100, 400, 210, 1410, 300 * GB),
        GPUSpec("A100-SXM4-40GB", "ampere", 40 * GiB, 1555 * GB, 19.5 * T, 312 * T, 0.0, 624 * T,
                400, 55, 84, 100, 400, 210, 1410, 300 * GB),
        GPUSpec("A100-PCIE-80GB", "ampere", 80 * GiB, 1935 * GB, 19.5 * T, 312 * T, 0.0, 624 * T,
                300, 50, 80, 150, 300, 210, 1410, 32 * GB),
        GPUSpec("H100-SXM5-80GB", "hopper", 80 * GiB, 3350 * GB, 67 * T, 989 * T, 1979 * T, 1979 * T,
                700, 75, 110, 200, 700, 345, 1980, 450 * GB),
        GPUSpec("H200-SXM-141GB", "hopper", 141 * GB, 4800 * GB, 67 * T, 989 * T, 1979 * T, 1979 * T,
                700, 75, 110, 200, 700, 345, 1980, 450 * GB),
        GPUSpec("A40", "ampere", 48 * GiB, 696 * GB, 37.4 * T, 149.7 * T, 0.0, 299.3 * T,
                300, 30, 70, 100, 300, 210, 1740, 32 * GB),
        GPUSpec("V100-SXM2-32GB", "volta", 32 * GiB, 900 * GB, 15.7 * T, 125 * T, 0.0, 0.0,
                300, 40, 60, 100, 300, 135, 1530, 150 * GB),
        GPUSpec("V100-PCIE-32GB", "volta", 32 * GiB, 900 * GB, 14 * T, 112 * T, 0.0, 0.0,
                250, 35, 55, 100, 250, 135, 1380, 32 * GB),
        GPUSpec("L4", "ada", 24 * GiB, 300 * GB, 30.3 * T, 121 * T, 242.5 * T, 242.5 * T,
                72, 16, 20, 40, 72, 210, 2040, 32 * GB),
    ]
}

# Short names users type in scenario files.
ALIASES: dict[str, str] = {
    "a100": "A100-SXM4-80GB",
    "a100-80gb": "A100-SXM4-80GB",
    "a100-sxm": "A100-SXM4-80GB",
    "a100-40gb": "A100-SXM4-40GB",
    "a100-pcie": "A100-PCIE-80GB",
    "h100": "H100-SXM5-80GB",
    "h100-sxm": "H100-SXM5-80GB",
    "h200": "H200-SXM-141GB",
    "a40": "A40",
    "v100": "V100-SXM2-32GB",
    "v100-pcie": "V100-PCIE-32GB",
    "l4": "L4",
}


def get_gpu(name: str) -> GPUSpec:
    """Look a GPU up by catalog name or alias (case-insensitive)."""
    if name in GPUS:
        return GPUS[name]
    key = name.lower()
    for full in GPUS:
        if full.lower() == key:
            return GPUS[full]
    if key in ALIASES:
        return GPUS[ALIASES[key]]
    raise UnknownNameError("GPU", name, list(GPUS) + list(ALIASES))
