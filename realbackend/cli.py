"""What `orrery calibrate --backend real` and `orrery validate-real` do (the CLI delegates here)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from orrery.core.errors import OrreryInputError
from orrery.realbackend.latency import CalibrationFile
from orrery.realbackend.serving import NO_GPU_ENERGY, EngineConfig, resolve_device


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def engine_config(args: argparse.Namespace) -> EngineConfig:
    cfg = EngineConfig(device=resolve_device(getattr(args, "device", None) or "auto"))
    if getattr(args, "kv_tokens", None):
        if args.kv_tokens < 1:
            raise OrreryInputError(f"--kv-tokens must be >= 1, got {args.kv_tokens}")
        cfg = replace(cfg, kv_capacity_tokens=int(args.kv_tokens))
    if getattr(args, "threads", None):
        cfg = replace(cfg, threads=int(args.threads))
    return cfg


def gpu_monitor_or_none(device: str):
    """An NVML monitor for CUDA runs; None (and a plain note) on the CPU or without NVML."""
    if not device.startswith("cuda"):
        _say(f"energy: {NO_GPU_ENERGY}")
        return None
    from orrery.realbackend.nvml import GPUMonitor, GPUUnavailableError

    idx = int(device.split(":", 1)[1]) if ":" in device else 0
    try:
        mon = GPUMonitor(idx)
    except GPUUnavailableError as err:
        _say(f"energy: none ({err})")
        return None
    _say(f"energy: {mon.source}")
    return mon


def calibrate_command(args: argparse.Namespace) -> int:
    from orrery.realbackend.calibrate import calibrate

    cfg = engine_config(args)
    mon = gpu_monitor_or_none(cfg.device)
    _say(f"profiling the real engine on {cfg.device} ({'quick' if args.quick else 'full'} grid)...")
    cal = calibrate(cfg, quick=args.quick, monitor=mon, log=_say)
    out = Path(args.out or f"results/calibration/real-{cfg.device.replace(':', '')}.json")
    cal.write(out)
    p = cal.params
    print(f"device: {cal.device} ({cal.device_name}); energy source: {cal.energy_source}")
    print(f"decode  (s) = {p.decode_a_s:.3e} + {p.decode_b_s:.3e}*batch + {p.decode_c_s:.3e}*context_tokens  "
          f"[MAPE {cal.fit['decode']['mape_pct']:.1f}%]")
    print(f"prefill (s) = {p.prefill_p_s:.3e} + {p.prefill_q_s:.3e}*seqs + {p.prefill_r_s:.3e}*tokens + "
          f"{p.prefill_s_s:.3e}*tokens^2/seqs  [MAPE {cal.fit['prefill']['mape_pct']:.1f}%]")
    print(f"swap bandwidth {p.swap_bw_bytes_per_s / 1e9:.2f} GB/s; KV {p.kv_bytes_per_token:.0f} B/token, "
          f"capacity {p.kv_capacity_tokens} tokens")
    print(f"wrote {out}")
    return 0


def scenario_from_toml(path: str):
    from orrery.sim.serving_scenario import ServingScenario

    return ServingScenario.from_toml(path)


def validate_real_command(args: argparse.Namespace, scenarios: list[tuple[str, object]]) -> int:
    from orrery.realbackend.calibrate import calibrate
    from orrery.realbackend.validate import format_table, validate_scenarios

    cfg = engine_config(args)
    if args.policies:
        keep = {p.strip() for p in args.policies.split(",") if p.strip()}
        scenarios = [(lab, s) for lab, s in scenarios if s.policy in keep]
        if not scenarios:
            raise OrreryInputError(f"--policies {args.policies}: no scenario runs these policies")
    if args.n_requests:
        scenarios = [(lab, s.with_updates({"workload.n_requests": int(args.n_requests)})) for lab, s in scenarios]
    if args.time_scale is not None and not args.time_scale > 0:
        raise OrreryInputError(f"--time-scale must be > 0, got {args.time_scale}")
    if args.params:
        cal = CalibrationFile.read(args.params)
        if args.kv_tokens:
            cal.params = replace(cal.params, kv_capacity_tokens=int(args.kv_tokens))
    else:
        _say(f"calibrating the real engine on {cfg.device} first (use --params FILE to reuse a calibration)...")
        cal = calibrate(cfg, log=_say)
    if cal.device.split(":")[0] != cfg.device.split(":")[0]:
        _say(f"warning: calibration was made on {cal.device}, the engine runs on {cfg.device}")
    gpu_monitor_or_none(cfg.device)
    long, _ = validate_scenarios(scenarios, cfg, cal, time_scale=args.time_scale, log=_say,
                                 drift=not getattr(args, "no_drift_probe", False))
    print(format_table(long))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0
