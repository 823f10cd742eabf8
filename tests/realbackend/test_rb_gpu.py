"""Real-GPU checks: marked `gpu`, skipped cleanly without CUDA and NVML. They never write a
GPU setting (the actuator stays in dry run)."""

from __future__ import annotations

import time

import pytest
import torch

from orrery.realbackend.nvml import GPUUnavailableError, discover


def _gpu_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    try:
        return discover()
    except GPUUnavailableError as err:
        pytest.skip(str(err))


@pytest.mark.gpu
def test_nvml_energy_window_on_real_gpu():
    from orrery.realbackend.nvml import GPUMonitor

    gpus = _gpu_or_skip()
    mon = GPUMonitor(0)
    with mon.window() as w:
        time.sleep(0.3)
    assert w.energy_j > 0 and 0 < w.avg_power_w < (gpus[0].power_limit_max_w or 2000) * 1.2


@pytest.mark.gpu
def test_real_engine_on_cuda_small():
    _gpu_or_skip()
    from orrery.realbackend.calibrate import calibrate
    from orrery.realbackend.serving import EngineConfig, run_real_serving
    from orrery.sim.serving import ServingScenario

    before = discover()[0].power_limit_w
    cfg = EngineConfig(device="cuda")
    cal = calibrate(cfg, quick=True)
    scn = ServingScenario.from_dict({"policy": "andes", "workload": {"arrival": "poisson", "rate_rps": 1.0,
                                                                     "n_requests": 10, "max_total_tokens": 256}}, "t")
    run = run_real_serving(scn, cfg, cal.params)
    assert run.table.finished.all() and run.info["device"].startswith("cuda")
    assert discover()[0].power_limit_w == before
