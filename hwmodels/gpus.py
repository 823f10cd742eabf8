"""GPU catalog: the published specs every hardware model starts from, each number with its source.

Peak FLOP/s are *dense* (no 2:4 sparsity) tensor-core figures from the vendors' datasheets;
where a datasheet prints only the sparse figure (marked "*" or "with sparsity"), the dense one
is half of it. Memory size and bandwidth are the datasheets'. `interconnect_bw_bytes_per_s` is
the per-GPU GPU-to-GPU bandwidth in ONE direction (NVLink / Infinity Fabric where the part has
a switch fabric, else PCIe): datasheets print the bidirectional total, so it is half of that.

Power-limit ranges, idle and blocking power and minimum clocks are mostly not in datasheets.
Where they come from `nvidia-smi -q -d POWER,CLOCK` reports or the papers this project
implements, the source says so; where they are an estimate, the source starts with
"estimate:" so a user knows which numbers to replace with their own measurement.
`GPUSpec.source(field)` returns the source of any number; `orrery list --gpus` prints them.

`family` groups parts whose fitted efficiencies are shared by the LLM serving model (a
Hopper fit serves H100 and H200); families without measurements use the shared parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from orrery.core.errors import UnknownNameError

GiB = 1024**3
GB = 1e9
T = 1e12

NUMERIC_FIELDS = (
    "mem_bytes", "mem_bw_bytes_per_s", "flops_fp32", "flops_fp16", "flops_fp8", "flops_int8",
    "flops_fp4", "tdp_w", "idle_w", "blocking_w", "power_limit_min_w", "power_limit_max_w",
    "sm_clock_min_mhz", "sm_clock_max_mhz", "interconnect_bw_bytes_per_s",
)


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
    flops_fp4: float = 0.0  # dense FP4 (Blackwell); 0 where the part has none
    vendor: str = "nvidia"
    interconnect: str = "pcie"  # nvlink | infinity-fabric | pcie
    family: str = ""  # fit family (defaults to arch)
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def peak_flops(self, bits: float) -> float:
        """Dense tensor FLOP/s for a compute precision of `bits` (32, 16, 8, 4)."""
        if bits >= 32:
            return self.flops_fp32
        if bits >= 16:
            return self.flops_fp16
        if bits >= 8:
            return self.flops_fp8 or self.flops_int8 or self.flops_fp16
        return self.flops_fp4 or self.flops_fp8 or self.flops_int8 or self.flops_fp16

    def native_bits(self, bits: float) -> float:
        """The narrowest tensor-core precision >= `bits` this part computes in (weight-only
        quantised formats it lacks are dequantised to 16 bit)."""
        if bits < 8 and self.flops_fp4:
            return 4
        if bits < 16 and self.flops_fp8:
            return 8
        return 16

    def source(self, name: str) -> str:
        """Where the number in field `name` comes from."""
        return dict(self.sources).get(name, "")

    @property
    def fit_family(self) -> str:
        return self.family or self.arch

    def clamp_power_limit(self, watts: float) -> float:
        return min(max(watts, self.power_limit_min_w), self.power_limit_max_w)

    def power_limits_w(self, step_w: float = 25.0) -> list[float]:
        """Power limits from max down to min in `step_w` steps (the Zeus profiling order),
        ending at the minimum when the range is not a multiple of the step."""
        out, w = [], self.power_limit_max_w
        while w >= self.power_limit_min_w - 1e-9:
            out.append(float(w))
            w -= step_w
        if out[-1] > self.power_limit_min_w + 1e-9:
            out.append(float(self.power_limit_min_w))
        return out


# ---- sources ------------------------------------------------------------------------------
DS = {
    "p100": "NVIDIA Tesla P100 datasheet (images.nvidia.com/content/tesla/pdf/nvidia-tesla-p100-datasheet.pdf)",
    "v100": "NVIDIA V100 datasheet (images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf)",
    "t4": "NVIDIA T4 datasheet (nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf)",
    "a10": "NVIDIA A10 datasheet (nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf); "
           "A10G is AWS's variant (EC2 G5), NVIDIA publishes no separate sheet",
    "l4": "NVIDIA L4 datasheet (resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet)",
    "l40s": "NVIDIA L40S datasheet (resources.nvidia.com/en-us-l40s/l40s-datasheet-28413)",
    "rtx6000": "NVIDIA Quadro RTX 6000 datasheet (nvidia.com/content/dam/en-zz/Solutions/design-visualization/"
               "quadro-product-literature/quadro-rtx-6000-us-nvidia-704093-r4-web.pdf)",
    "a6000": "NVIDIA RTX A6000 datasheet (nvidia.com/content/dam/en-zz/Solutions/design-visualization/"
             "quadro-product-literature/proviz-print-nvidia-rtx-a6000-datasheet-us-nvidia-1454980-r9-web.pdf)",
    "a40": "NVIDIA A40 datasheet (images.nvidia.com/content/Solutions/data-center/a40/nvidia-a40-datasheet.pdf)",
    "a100": "NVIDIA A100 datasheet (nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)",
    "h100": "NVIDIA H100 datasheet (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)",
    "h200": "NVIDIA H200 datasheet (nvdam.widen.net/s/nb5zzzsjdf/hpc-datasheet-sc23-h200-datasheet-3002446)",
    "b200": "NVIDIA HGX B200 / DGX B200 datasheet (nvidia.com/en-us/data-center/hgx/; 8-GPU totals / 8)",
    "mi300x": "AMD Instinct MI300X datasheet (amd.com/content/dam/amd/en/documents/instinct-tech-docs/"
              "data-sheets/amd-instinct-mi300x-data-sheet.pdf)",
}
SMI = "nvidia-smi -q -d POWER default/min/max power limit on this part"
PAPERS = "orrery SOURCES.md (Perseus SOSP'24, Zeus NSDI'23 artifacts)"
ML_ENERGY = "ML.ENERGY leaderboard measurements (shared/data/llm/mlenergy)"


def _gpu(name: str, arch: str, src: str, notes: dict[str, str], **kw) -> GPUSpec:
    """A catalog entry; every numeric field's source is `src` unless `notes` says otherwise."""
    sources = {f: notes.get(f, DS[src]) for f in NUMERIC_FIELDS}
    for f in ("flops_fp8", "flops_fp4", "flops_int8"):
        if kw.get(f, 0.0) == 0.0 and f not in notes:
            sources[f] = f"{DS[src]}: the part has no such tensor cores (0)"
    return GPUSpec(name=name, arch=arch, sources=tuple(sorted(sources.items())), **kw)


def _est(what: str) -> str:
    return f"estimate: {what}"


_IDLE = _est("typical idle draw of this class of part (replace with a measurement)")
_BLOCK = _est("idle + ~30% (a GPU spinning in a collective), as measured on A100/A40 by Perseus")
_CLK_MIN = _est("lowest application SM clock nvidia-smi lists for this architecture")

GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in [
        _gpu("P100-SXM2-16GB", "pascal", "p100",
             {"flops_fp16": DS["p100"] + " (FP16 21.2 TF, no tensor cores)", "idle_w": _IDLE, "blocking_w": _BLOCK,
              "power_limit_min_w": _est("half of TDP"), "sm_clock_min_mhz": _CLK_MIN,
              "interconnect_bw_bytes_per_s": DS["p100"] + " (NVLink 160 GB/s bidirectional)"},
             mem_bytes=16 * GiB, mem_bw_bytes_per_s=732 * GB, flops_fp32=10.6 * T, flops_fp16=21.2 * T,
             flops_fp8=0.0, flops_int8=0.0, tdp_w=300, idle_w=30, blocking_w=40, power_limit_min_w=150,
             power_limit_max_w=300, sm_clock_min_mhz=544, sm_clock_max_mhz=1480,
             interconnect_bw_bytes_per_s=80 * GB, interconnect="nvlink"),
        _gpu("V100-SXM2-32GB", "volta", "v100",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": PAPERS + " (Zeus V100 sweep starts at 100 W)",
              "sm_clock_min_mhz": _CLK_MIN, "interconnect_bw_bytes_per_s": DS["v100"] + " (NVLink 300 GB/s bidirectional)"},
             mem_bytes=32 * GiB, mem_bw_bytes_per_s=900 * GB, flops_fp32=15.7 * T, flops_fp16=125 * T,
             flops_fp8=0.0, flops_int8=0.0, tdp_w=300, idle_w=40, blocking_w=60, power_limit_min_w=100,
             power_limit_max_w=300, sm_clock_min_mhz=135, sm_clock_max_mhz=1530,
             interconnect_bw_bytes_per_s=150 * GB, interconnect="nvlink"),
        _gpu("V100-PCIE-32GB", "volta", "v100",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "interconnect_bw_bytes_per_s": DS["v100"] + " (PCIe Gen3 32 GB/s bidirectional)"},
             mem_bytes=32 * GiB, mem_bw_bytes_per_s=900 * GB, flops_fp32=14 * T, flops_fp16=112 * T,
             flops_fp8=0.0, flops_int8=0.0, tdp_w=250, idle_w=35, blocking_w=55, power_limit_min_w=100,
             power_limit_max_w=250, sm_clock_min_mhz=135, sm_clock_max_mhz=1380,
             interconnect_bw_bytes_per_s=16 * GB),
        _gpu("T4", "turing", "t4",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI + " (60-70 W)", "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": "NVIDIA Turing architecture whitepaper (T4 boost 1590 MHz)",
              "interconnect_bw_bytes_per_s": DS["t4"] + " (PCIe Gen3 x16, 32 GB/s bidirectional)"},
             mem_bytes=16 * GiB, mem_bw_bytes_per_s=320 * GB, flops_fp32=8.1 * T, flops_fp16=65 * T,
             flops_fp8=0.0, flops_int8=130 * T, tdp_w=70, idle_w=10, blocking_w=20, power_limit_min_w=60,
             power_limit_max_w=70, sm_clock_min_mhz=300, sm_clock_max_mhz=1590,
             interconnect_bw_bytes_per_s=16 * GB),
        _gpu("Quadro-RTX-6000", "turing", "rtx6000",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": _est("nvidia-smi minimum of Turing boards"),
              "sm_clock_min_mhz": _CLK_MIN, "flops_int8": DS["rtx6000"] + " (INT8 261 TOPS)",
              "interconnect_bw_bytes_per_s": DS["rtx6000"] + " (PCIe Gen3 x16; NVLink bridge 100 GB/s pairs only)"},
             mem_bytes=24 * GiB, mem_bw_bytes_per_s=672 * GB, flops_fp32=16.3 * T, flops_fp16=130.5 * T,
             flops_fp8=0.0, flops_int8=261 * T, tdp_w=260, idle_w=20, blocking_w=45, power_limit_min_w=100,
             power_limit_max_w=260, sm_clock_min_mhz=300, sm_clock_max_mhz=1770,
             interconnect_bw_bytes_per_s=16 * GB),
        _gpu("A10G", "ampere", "a10",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI + " on AWS g5 (100-300 W)",
              "power_limit_max_w": SMI + " on AWS g5 (100-300 W)", "tdp_w": SMI + " on AWS g5 (300 W)",
              "sm_clock_min_mhz": _CLK_MIN, "interconnect_bw_bytes_per_s": DS["a10"] + " (PCIe Gen4 x16 64 GB/s)"},
             mem_bytes=24 * GiB, mem_bw_bytes_per_s=600 * GB, flops_fp32=31.2 * T, flops_fp16=125 * T,
             flops_fp8=0.0, flops_int8=250 * T, tdp_w=300, idle_w=25, blocking_w=50, power_limit_min_w=100,
             power_limit_max_w=300, sm_clock_min_mhz=210, sm_clock_max_mhz=1710,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("RTX-A6000", "ampere", "a6000",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "flops_fp16": DS["a6000"] + " (309.7 TF with sparsity)", "flops_int8": DS["a6000"] + " (619.4 TOPS with sparsity)",
              "sm_clock_max_mhz": "NVIDIA Ampere GA102 whitepaper (RTX A6000 boost 1800 MHz)",
              "interconnect_bw_bytes_per_s": DS["a6000"] + " (PCIe Gen4 x16; NVLink bridge 112.5 GB/s pairs only)"},
             mem_bytes=48 * GiB, mem_bw_bytes_per_s=768 * GB, flops_fp32=38.7 * T, flops_fp16=154.8 * T,
             flops_fp8=0.0, flops_int8=309.7 * T, tdp_w=300, idle_w=25, blocking_w=60, power_limit_min_w=100,
             power_limit_max_w=300, sm_clock_min_mhz=210, sm_clock_max_mhz=1800,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("A40", "ampere", "a40",
             {"idle_w": _IDLE, "blocking_w": PAPERS + " (70 W blocking on A40)", "power_limit_min_w": PAPERS,
              "power_limit_max_w": PAPERS, "sm_clock_min_mhz": _CLK_MIN, "sm_clock_max_mhz": PAPERS + " (1740 MHz)",
              "interconnect_bw_bytes_per_s": DS["a40"] + " (PCIe Gen4 x16; NVLink bridge pairs only)"},
             mem_bytes=48 * GiB, mem_bw_bytes_per_s=696 * GB, flops_fp32=37.4 * T, flops_fp16=149.7 * T,
             flops_fp8=0.0, flops_int8=299.3 * T, tdp_w=300, idle_w=30, blocking_w=70, power_limit_min_w=100,
             power_limit_max_w=300, sm_clock_min_mhz=210, sm_clock_max_mhz=1740,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("A100-SXM4-80GB", "ampere", "a100",
             {"idle_w": _IDLE, "blocking_w": PAPERS + " (84 W blocking on A100)", "power_limit_min_w": PAPERS,
              "power_limit_max_w": PAPERS, "sm_clock_min_mhz": _CLK_MIN, "sm_clock_max_mhz": PAPERS + " (1410 MHz)",
              "interconnect_bw_bytes_per_s": DS["a100"] + " (NVLink 600 GB/s bidirectional)"},
             mem_bytes=80 * GiB, mem_bw_bytes_per_s=2039 * GB, flops_fp32=19.5 * T, flops_fp16=312 * T,
             flops_fp8=0.0, flops_int8=624 * T, tdp_w=400, idle_w=60, blocking_w=84, power_limit_min_w=100,
             power_limit_max_w=400, sm_clock_min_mhz=210, sm_clock_max_mhz=1410,
             interconnect_bw_bytes_per_s=300 * GB, interconnect="nvlink"),
        _gpu("A100-SXM4-40GB", "ampere", "a100",
             {"idle_w": _IDLE, "blocking_w": PAPERS + " (84 W blocking on A100)", "power_limit_min_w": PAPERS,
              "power_limit_max_w": PAPERS, "sm_clock_min_mhz": _CLK_MIN, "sm_clock_max_mhz": PAPERS + " (1410 MHz)",
              "interconnect_bw_bytes_per_s": DS["a100"] + " (NVLink 600 GB/s bidirectional)"},
             mem_bytes=40 * GiB, mem_bw_bytes_per_s=1555 * GB, flops_fp32=19.5 * T, flops_fp16=312 * T,
             flops_fp8=0.0, flops_int8=624 * T, tdp_w=400, idle_w=55, blocking_w=84, power_limit_min_w=100,
             power_limit_max_w=400, sm_clock_min_mhz=210, sm_clock_max_mhz=1410,
             interconnect_bw_bytes_per_s=300 * GB, interconnect="nvlink"),
        _gpu("A100-PCIE-80GB", "ampere", "a100",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": PAPERS + " (A100 1410 MHz)",
              "interconnect_bw_bytes_per_s": DS["a100"] + " (PCIe Gen4 64 GB/s bidirectional)"},
             mem_bytes=80 * GiB, mem_bw_bytes_per_s=1935 * GB, flops_fp32=19.5 * T, flops_fp16=312 * T,
             flops_fp8=0.0, flops_int8=624 * T, tdp_w=300, idle_w=50, blocking_w=80, power_limit_min_w=150,
             power_limit_max_w=300, sm_clock_min_mhz=210, sm_clock_max_mhz=1410,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("A100-PCIE-40GB", "ampere", "a100",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": PAPERS + " (A100 1410 MHz)",
              "interconnect_bw_bytes_per_s": DS["a100"] + " (PCIe Gen4 64 GB/s bidirectional)"},
             mem_bytes=40 * GiB, mem_bw_bytes_per_s=1555 * GB, flops_fp32=19.5 * T, flops_fp16=312 * T,
             flops_fp8=0.0, flops_int8=624 * T, tdp_w=250, idle_w=45, blocking_w=70, power_limit_min_w=150,
             power_limit_max_w=250, sm_clock_min_mhz=210, sm_clock_max_mhz=1410,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("L4", "ada", "l4",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI + " (40-72 W)", "sm_clock_min_mhz": _CLK_MIN,
              "flops_fp16": DS["l4"] + " (242 TF with sparsity)", "flops_fp8": DS["l4"] + " (485 TF with sparsity)",
              "flops_int8": DS["l4"] + " (485 TOPS with sparsity)",
              "interconnect_bw_bytes_per_s": DS["l4"] + " (PCIe Gen4 x16 64 GB/s bidirectional)"},
             mem_bytes=24 * GiB, mem_bw_bytes_per_s=300 * GB, flops_fp32=30.3 * T, flops_fp16=121 * T,
             flops_fp8=242.5 * T, flops_int8=242.5 * T, tdp_w=72, idle_w=16, blocking_w=20, power_limit_min_w=40,
             power_limit_max_w=72, sm_clock_min_mhz=210, sm_clock_max_mhz=2040,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("L40S", "ada", "l40s",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "flops_fp16": DS["l40s"] + " (733 TF with sparsity)", "flops_fp8": DS["l40s"] + " (1,466 TF with sparsity)",
              "flops_int8": DS["l40s"] + " (1,466 TOPS with sparsity)",
              "interconnect_bw_bytes_per_s": DS["l40s"] + " (PCIe Gen4 x16 64 GB/s bidirectional)"},
             mem_bytes=48 * GiB, mem_bw_bytes_per_s=864 * GB, flops_fp32=91.6 * T, flops_fp16=362 * T,
             flops_fp8=733 * T, flops_int8=733 * T, tdp_w=350, idle_w=35, blocking_w=70, power_limit_min_w=100,
             power_limit_max_w=350, sm_clock_min_mhz=210, sm_clock_max_mhz=2520,
             interconnect_bw_bytes_per_s=32 * GB),
        _gpu("H100-SXM5-80GB", "hopper", "h100",
             {"idle_w": "orrery SOURCES.md (H100 SXM idles near 75 W)", "blocking_w": _BLOCK,
              "power_limit_min_w": "orrery SOURCES.md (H100 SXM 200-700 W)", "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": "orrery SOURCES.md (H100 SXM up to 1980 MHz)",
              "flops_fp16": DS["h100"] + " (1,979 TF with sparsity)", "flops_fp8": DS["h100"] + " (3,958 TF with sparsity)",
              "flops_int8": DS["h100"] + " (3,958 TOPS with sparsity)",
              "interconnect_bw_bytes_per_s": DS["h100"] + " (NVLink 900 GB/s bidirectional)"},
             mem_bytes=80 * GiB, mem_bw_bytes_per_s=3350 * GB, flops_fp32=67 * T, flops_fp16=989 * T,
             flops_fp8=1979 * T, flops_int8=1979 * T, tdp_w=700, idle_w=75, blocking_w=110, power_limit_min_w=200,
             power_limit_max_w=700, sm_clock_min_mhz=345, sm_clock_max_mhz=1980,
             interconnect_bw_bytes_per_s=450 * GB, interconnect="nvlink"),
        _gpu("H100-PCIE-80GB", "hopper", "h100",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": SMI, "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": "NVIDIA H100 PCIe product brief (boost 1755 MHz)",
              "flops_fp16": DS["h100"] + " (1,513 TF with sparsity)", "flops_fp8": DS["h100"] + " (3,026 TF with sparsity)",
              "flops_int8": DS["h100"] + " (3,026 TOPS with sparsity)",
              "interconnect_bw_bytes_per_s": DS["h100"] + " (PCIe Gen5 128 GB/s bidirectional)"},
             mem_bytes=80 * GiB, mem_bw_bytes_per_s=2000 * GB, flops_fp32=51 * T, flops_fp16=756 * T,
             flops_fp8=1513 * T, flops_int8=1513 * T, tdp_w=350, idle_w=50, blocking_w=90, power_limit_min_w=200,
             power_limit_max_w=350, sm_clock_min_mhz=345, sm_clock_max_mhz=1755,
             interconnect_bw_bytes_per_s=64 * GB),
        _gpu("H200-SXM-141GB", "hopper", "h200",
             {"idle_w": _est("as H100 SXM"), "blocking_w": _BLOCK, "power_limit_min_w": _est("as H100 SXM"),
              "sm_clock_min_mhz": _CLK_MIN, "sm_clock_max_mhz": _est("as H100 SXM (same GH100 die)"),
              "flops_fp16": DS["h200"] + " (1,979 TF with sparsity)", "flops_fp8": DS["h200"] + " (3,958 TF with sparsity)",
              "flops_int8": DS["h200"] + " (3,958 TOPS with sparsity)",
              "interconnect_bw_bytes_per_s": DS["h200"] + " (NVLink 900 GB/s bidirectional)"},
             mem_bytes=141 * GB, mem_bw_bytes_per_s=4800 * GB, flops_fp32=67 * T, flops_fp16=989 * T,
             flops_fp8=1979 * T, flops_int8=1979 * T, tdp_w=700, idle_w=75, blocking_w=110, power_limit_min_w=200,
             power_limit_max_w=700, sm_clock_min_mhz=345, sm_clock_max_mhz=1980,
             interconnect_bw_bytes_per_s=450 * GB, interconnect="nvlink"),
        _gpu("B200-SXM-180GB", "blackwell", "b200",
             {"idle_w": _est("below the lowest busy draw in " + ML_ENERGY + " (~290 W)"), "blocking_w": _BLOCK,
              "flops_fp32": _est("not in the HGX B200 sheet; ~2x the 40 TF FP64"),
              "power_limit_min_w": _est("nvidia-smi minimum on HGX B200"), "sm_clock_min_mhz": _CLK_MIN,
              "sm_clock_max_mhz": _est("reported B200 boost clock"),
              "flops_fp16": DS["b200"] + " (36 PF with sparsity per 8 GPUs)",
              "flops_fp8": DS["b200"] + " (72 PF with sparsity per 8 GPUs)",
              "flops_int8": DS["b200"] + " (72 POPS with sparsity per 8 GPUs)",
              "flops_fp4": DS["b200"] + " (144 PF with sparsity per 8 GPUs)",
              "mem_bytes": DS["b200"] + " (1,440 GB per 8 GPUs)", "mem_bw_bytes_per_s": DS["b200"] + " (64 TB/s per 8 GPUs)",
              "tdp_w": DS["b200"] + " (1,000 W per GPU, HGX B200)",
              "interconnect_bw_bytes_per_s": DS["b200"] + " (NVLink 5: 1.8 TB/s bidirectional per GPU)"},
             mem_bytes=180 * GB, mem_bw_bytes_per_s=8000 * GB, flops_fp32=80 * T, flops_fp16=2250 * T,
             flops_fp8=4500 * T, flops_int8=4500 * T, flops_fp4=9000 * T, tdp_w=1000, idle_w=140, blocking_w=200,
             power_limit_min_w=200, power_limit_max_w=1000, sm_clock_min_mhz=345, sm_clock_max_mhz=1965,
             interconnect_bw_bytes_per_s=900 * GB, interconnect="nvlink"),
        _gpu("MI300X", "cdna3", "mi300x",
             {"idle_w": _IDLE, "blocking_w": _BLOCK, "power_limit_min_w": _est("rocm-smi power-cap floor"),
              "sm_clock_min_mhz": _est("lowest engine clock rocm-smi lists"),
              "flops_fp32": DS["mi300x"] + " (FP32 vector 163.4 TF)",
              "flops_fp16": DS["mi300x"] + " (2,614.9 TF with sparsity)", "flops_fp8": DS["mi300x"] + " (5,229.8 TF with sparsity)",
              "flops_int8": DS["mi300x"] + " (5,229.8 TOPS with sparsity)",
              "sm_clock_max_mhz": DS["mi300x"] + " (peak engine clock 2,100 MHz)",
              "interconnect_bw_bytes_per_s": DS["mi300x"] + " (Infinity Fabric 7 links x 128 GB/s bidirectional)"},
             mem_bytes=192 * GB, mem_bw_bytes_per_s=5300 * GB, flops_fp32=163.4 * T, flops_fp16=1307.4 * T,
             flops_fp8=2614.9 * T, flops_int8=2614.9 * T, tdp_w=750, idle_w=140, blocking_w=190,
             power_limit_min_w=300, power_limit_max_w=750, sm_clock_min_mhz=500, sm_clock_max_mhz=2100,
             interconnect_bw_bytes_per_s=448 * GB, vendor="amd", interconnect="infinity-fabric"),
    ]
}

# Short names users type in scenario files.
ALIASES: dict[str, str] = {
    "p100": "P100-SXM2-16GB",
    "a100": "A100-SXM4-80GB",
    "a100-80gb": "A100-SXM4-80GB",
    "a100-sxm": "A100-SXM4-80GB",
    "a100-40gb": "A100-SXM4-40GB",
    "a100-pcie": "A100-PCIE-80GB",
    "a100-pcie-40gb": "A100-PCIE-40GB",
    "h100": "H100-SXM5-80GB",
    "h100-sxm": "H100-SXM5-80GB",
    "h100-pcie": "H100-PCIE-80GB",
    "h200": "H200-SXM-141GB",
    "b200": "B200-SXM-180GB",
    "a40": "A40",
    "a10g": "A10G",
    "t4": "T4",
    "l40s": "L40S",
    "rtx6000": "Quadro-RTX-6000",
    "rtx-6000": "Quadro-RTX-6000",
    "quadro-rtx-6000": "Quadro-RTX-6000",
    "rtx-a6000": "RTX-A6000",
    "a6000": "RTX-A6000",
    "v100": "V100-SXM2-32GB",
    "v100-pcie": "V100-PCIE-32GB",
    "l4": "L4",
    "mi300x": "MI300X",
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


def gpu_table() -> list[dict]:
    """One row per catalog GPU with every number and its source (for `orrery list --gpus`)."""
    names = [f.name for f in fields(GPUSpec) if f.name not in ("sources",)]
    return [{**{n: getattr(g, n) for n in names}, "sources": dict(g.sources)} for g in GPUS.values()]
