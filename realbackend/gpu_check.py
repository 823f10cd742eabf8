"""The GPU check behind `scripts/gpu_check.sh`: NVML readings, the energy counter against
integrated power, the real serving engine on CUDA under FCFS and Andes, and the sim-vs-real
error table. Reads GPU settings, never writes one (and checks they are unchanged at the end).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from orrery.realbackend.calibrate import calibrate
from orrery.realbackend.nvml import (
    GPUMonitor,
    GPUUnavailableError,
    check_energy_agreement,
    discover,
)
from orrery.realbackend.serving import EngineConfig
from orrery.realbackend.validate import SHIPPED_STUDY, format_table, validate_scenarios


def _scenarios(n_requests: int):
    import tomllib

    from orrery.sim.serving import ServingScenario

    doc = tomllib.loads(SHIPPED_STUDY.read_text())
    base = doc["scenario"]
    out = []
    for rate in doc["variables"]["workload.rate_rps"]:
        for pol in ("vllm_fcfs", "andes"):
            d = {**base, "policy": pol, "workload": {**base["workload"], "rate_rps": rate, "n_requests": n_requests}}
            out.append((f"policy={pol},rate_rps={rate}", ServingScenario.from_dict(d, "gpu_check")))
    return out


def _settings(g) -> tuple:
    return (g.power_limit_w, g.sm_clock_max_mhz)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check")
    ap.add_argument("--n-requests", type=int, default=200)
    ap.add_argument("--gpu", type=int, default=0)
    a = ap.parse_args(argv)
    t_start = time.time()
    try:
        gpus = discover()
    except GPUUnavailableError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    print("== NVML readings")
    for g in gpus:
        print(f"GPU {g.index}: {g.name} ({g.architecture}), {g.memory_bytes / 2**30:.1f} GiB, power {g.power_w} W, "
              f"limit {g.power_limit_w} W in [{g.power_limit_min_w}, {g.power_limit_max_w}] W, "
              f"SM clock max {g.sm_clock_max_mhz} MHz, {len(g.sm_clocks_supported_mhz)} supported clocks, "
              f"energy counter: {g.has_energy_counter}, {g.temperature_c} C")
    before = _settings(gpus[a.gpu])
    if not torch.cuda.is_available():
        print("torch sees no CUDA device: cannot run the engine on the GPU", file=sys.stderr)
        return 1
    dev = f"cuda:{a.gpu}"
    mon = GPUMonitor(a.gpu)
    print(f"\n== energy counter vs integrated power ({mon.source})")
    x = torch.randn(4096, 4096, device=dev, dtype=torch.float16)

    def work():
        for _ in range(20):
            x @ x
        torch.cuda.synchronize()

    if mon.info.has_energy_counter:
        for label, w in (("idle", None), ("matmul load", work)):
            r = check_energy_agreement(mon, w, seconds=4.0)
            print(f"{label:>12}: counter {r['counter_j']:.1f} J ({r['counter_avg_w']:.1f} W), sampled "
                  f"{r['sampled_j']:.1f} J ({r['sampled_avg_w']:.1f} W) over {r['seconds']:.1f} s, "
                  f"{r['n_samples']} samples: difference {100 * r['rel_diff']:.1f}%")
    else:
        print("no energy counter on this GPU (pre-Volta): power sampling only")

    print("\n== calibrating the real engine on", dev)
    cfg = EngineConfig(device=dev)
    cal = calibrate(cfg, monitor=mon, log=print)
    p = cal.params
    print(f"decode = {p.decode_a_s:.3e} + {p.decode_b_s:.3e}*B + {p.decode_c_s:.3e}*ctx; "
          f"power idle {p.idle_power_w:.1f} W, busy {p.busy_power_w:.1f} W")
    print(f"\n== sim vs real, {a.n_requests} requests, FCFS and Andes")
    long, runs = validate_scenarios(_scenarios(a.n_requests), cfg, cal, log=print)
    print(format_table(long))
    for (lab, _), r in zip(_scenarios(a.n_requests), runs, strict=True):
        print(f"{lab}: energy {r.metrics['energy_j']:.1f} J ({r.info['energy_source']}), "
              f"QoE {r.metrics['qoe_mean']:.3f}")
    after = _settings(discover()[a.gpu])
    print(f"\nGPU settings before {before}, after {after}: {'unchanged' if before == after else 'CHANGED'}")
    print(f"total {time.time() - t_start:.0f} s")
    return 0 if before == after else 1


if __name__ == "__main__":
    sys.exit(main())
