"""GPU rental prices ($ per GPU-hour, on-demand) for deployment cost; a plan or cluster
scenario can override any entry (`prices_usd_per_gpu_h = {h100 = 2.0}`).

Sources (list prices move; override them with your own contract rates):
- H100-SXM5-80GB 2.99, A100-SXM4-80GB 1.79, A100-SXM4-40GB 1.29, V100-SXM2-32GB 0.55 (8x V100
  instance $4.40/h): Lambda GPU Cloud on-demand list prices, lambdalabs.com/service/gpu-cloud
  (2024). They sit inside the early-2026 on-demand ranges reported at
  pricegpu.pages.dev/blog/h100-vs-a100-cloud-price (A100 80GB SXM $1.49-2.49, H100 SXM
  $2.49-3.99 per GPU-hour).
- H200-SXM-141GB 3.99: the top of the H100 SXM range above (H200 lists at a premium over H100).
- A100-PCIE-80GB 1.49: the bottom of the A100 80GB range above (PCIe parts rent below SXM).
- L4 0.80: AWS g6.xlarge (1x L4) on-demand, us-east-1, $0.8048/h (aws.amazon.com/ec2/pricing).
- H100-PCIE-80GB 2.49: the bottom of the H100 range above; A100-PCIE-40GB 1.29: as A100 SXM 40GB.
- A40 0.69, V100-PCIE-32GB 0.50, L40S 0.99 and B200-SXM-180GB 4.99: approximate on-demand
  rates of GPU clouds (Lambda, RunPod, vast.ai listings, 2024-2025); treat as placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import get_gpu

PRICE_USD_PER_GPU_H: dict[str, float] = {
    "H100-SXM5-80GB": 2.99,
    "H200-SXM-141GB": 3.99,
    "A100-SXM4-80GB": 1.79,
    "A100-SXM4-40GB": 1.29,
    "A100-PCIE-80GB": 1.49,
    "A40": 0.69,
    "L4": 0.80,
    "V100-SXM2-32GB": 0.55,
    "V100-PCIE-32GB": 0.50,
    "H100-PCIE-80GB": 2.49,
    "A100-PCIE-40GB": 1.29,
    "L40S": 0.99,
    "B200-SXM-180GB": 4.99,
}


def gpu_price_usd_per_h(gpu: str, overrides: Mapping[str, float] | None = None,
                        field: str = "prices_usd_per_gpu_h") -> float:
    """Price of one GPU-hour of `gpu` (catalog name or alias); `overrides` keys may be aliases."""
    name = get_gpu(gpu).name
    for key, value in (overrides or {}).items():
        if get_gpu(key).name == name:
            if not value >= 0:
                raise OrreryInputError(f"{field}.{key} = {value}: a price must be >= 0 ($ per GPU-hour)")
            return float(value)
    if name not in PRICE_USD_PER_GPU_H:
        raise OrreryInputError(f"{field}: no price for GPU {name!r}; add one ({field} = {{{gpu} = ...}})")
    return PRICE_USD_PER_GPU_H[name]


def check_prices(overrides: Mapping[str, float] | None, field: str = "prices_usd_per_gpu_h") -> None:
    """Validate a price override table: known GPUs, non-negative finite prices."""
    for key, value in (overrides or {}).items():
        get_gpu(key)
        if not (isinstance(value, int | float) and value >= 0 and value < float("inf")):
            raise OrreryInputError(f"{field}.{key} = {value!r}: a price must be a number >= 0 ($ per GPU-hour)")
