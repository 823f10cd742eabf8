"""A real torch training loop, measured step by step, driven by the energy and carbon policies.

The policy (`make_policy("energy", ...)`: Zeus, Chase, max_power, ...) sees the very
`EnergyView` the simulator builds (`sim/training.py`): the power-limit range of the GPU, the
setting in force, the steps done, the last window's `Measurement` (steps, seconds, joules) and
the carbon intensity and its history. Its `EnergyDecision` is applied through a
`GPUActuator` — dry-run by default, so the power limits are recorded, not set — and it is
called back after `next_call_steps` steps or `next_call_s` seconds, as in the simulator.

Time per window is measured (`perf_counter`, device synchronised); energy comes from a
`GPUMonitor` window when NVML sees a GPU. On the CPU there is no GPU energy source: windows
report NaN joules and the run says so in `info["energy_source"]`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from orrery.hwmodels.gpus import get_gpu
from orrery.policies.energy.base import (
    EnergyDecision,
    EnergyView,
    Measurement,
    validate_decision,
    zeus_cost,
)
from orrery.policies.registry import make_policy
from orrery.realbackend.nvml import GPUActuator
from orrery.realbackend.serving import NO_GPU_ENERGY, resolve_device
from orrery.traces.carbon import load_carbon_trace


@dataclass(frozen=True)
class RealTrainingConfig:
    """The job: a small MLP classifier on generated data (no downloads)."""

    device: str = "auto"
    steps: int = 200
    batch_size: int = 64
    in_features: int = 64
    hidden: int = 256
    layers: int = 3
    n_classes: int = 10
    lr: float = 1e-2
    seed: int = 0
    threads: int | None = 1


def _model(cfg: RealTrainingConfig, device: str) -> nn.Module:
    torch.manual_seed(cfg.seed)
    mods: list[nn.Module] = []
    width = cfg.in_features
    for _ in range(cfg.layers):
        mods += [nn.Linear(width, cfg.hidden), nn.ReLU()]
        width = cfg.hidden
    mods.append(nn.Linear(width, cfg.n_classes))
    return nn.Sequential(*mods).to(device)


@dataclass
class RealTrainingRun:
    metrics: dict[str, float]
    table: pd.DataFrame  # one row per window
    actions: pd.DataFrame  # what the actuator was asked to set (and whether it did)
    info: dict


def run_real_training(scn, cfg: RealTrainingConfig, actuator: GPUActuator | None = None,
                      monitor=None) -> RealTrainingRun:
    """Train for `cfg.steps` steps under `scn.policy` (a `TrainingScenario`: gpu, eta, carbon)."""
    device = resolve_device(cfg.device)
    if device == "cpu" and cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    policy = make_policy("energy", scn.policy, scn.policy_params)
    actuator = actuator if actuator is not None else GPUActuator(allow_writes=False)
    if monitor is not None:
        info = monitor.info
        gpu_name = info.name
        lo, hi = info.power_limit_min_w, info.power_limit_max_w
        clk_lo, clk_hi = info.sm_clock_min_mhz or 0.0, info.sm_clock_max_mhz or 0.0
        pl = info.power_limit_w or hi
    else:  # the catalog's ranges for the scenario's GPU: decisions are only recorded anyway
        spec = get_gpu(scn.gpu)
        gpu_name = spec.name
        lo, hi = spec.power_limit_min_w, spec.power_limit_max_w
        clk_lo, clk_hi = spec.sm_clock_min_mhz, spec.sm_clock_max_mhz
        pl = hi
    trace = load_carbon_trace(scn.carbon.trace, duration_s=scn.carbon.start_offset_s + 2 * 86400.0, seed=scn.seed,
                              column=scn.carbon.column, duplicates=scn.carbon.duplicates,
                              gaps=scn.carbon.gaps).shifted(scn.carbon.start_offset_s)

    model = _model(cfg, device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    w_true = torch.randn(cfg.in_features, cfg.n_classes, generator=gen)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> float:
        x = torch.randn(cfg.batch_size, cfg.in_features, generator=gen)
        y = (x @ w_true).argmax(dim=1)
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    step()  # warm-up, not measured
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    rows: dict[str, list] = {k: [] for k in ("t_start_s", "t_end_s", "power_limit_w", "steps", "time_s", "energy_j",
                                             "carbon_g", "loss")}
    t_run0 = time.perf_counter()
    steps_done = 0
    last: Measurement | None = None
    energy_total = carbon_total = 0.0
    loss = math.nan
    while steps_done < cfg.steps:
        now = time.perf_counter() - t_run0
        view = EnergyView(time_s=now, gpu=gpu_name, n_gpus=1, power_limit_min_w=lo, power_limit_max_w=hi,
                          sm_clock_min_mhz=clk_lo, sm_clock_max_mhz=clk_hi, power_limit_w=pl,
                          steps_done=steps_done, last_window=last, carbon_g_per_kwh=trace.value_at(now),
                          carbon_history=trace.history(now, 60), carbon_interval_s=trace.interval_s)
        dec: EnergyDecision = policy.schedule(view)
        problems = validate_decision(view, dec)
        if problems:
            raise RuntimeError(f"policy {scn.policy!r} made an invalid decision: {'; '.join(problems)}")
        if dec.power_limit_w is not None:
            actuator.apply(dec)
            pl = float(dec.power_limit_w)
        left = cfg.steps - steps_done
        n_steps = min(int(dec.next_call_steps), left) if dec.next_call_steps is not None else left
        deadline = dec.next_call_s
        window = monitor.window() if monitor is not None else None
        w = window.__enter__() if window is not None else None
        t0 = time.perf_counter()
        k = 0
        while k < n_steps:
            loss = step()
            k += 1
            if deadline is not None and time.perf_counter() - t0 >= deadline:
                break
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if window is not None:
            window.__exit__(None, None, None)
            e = float(w.energy_j)
        else:
            e = math.nan
        t_start = t0 - t_run0
        ci = float(trace.integral(t_start, t_start + dt))
        c = e / dt * ci / 3.6e6 if dt > 0 else 0.0
        for key, v in (("t_start_s", t_start), ("t_end_s", t_start + dt), ("power_limit_w", pl), ("steps", k),
                       ("time_s", dt), ("energy_j", e), ("carbon_g", c), ("loss", loss)):
            rows[key].append(v)
        steps_done += k
        energy_total += e
        carbon_total += c
        last = Measurement(pl, k, dt, e)
    total_t = time.perf_counter() - t_run0
    table = pd.DataFrame(rows)
    actions = pd.DataFrame([asdict(a) for a in actuator.log]) if actuator.log else pd.DataFrame(
        columns=["t_s", "what", "value", "applied"])
    metrics = {"time_s": total_t, "energy_j": energy_total, "carbon_g": carbon_total,
               "cost": zeus_cost(scn.eta, energy_total, total_t, hi), "steps": float(steps_done),
               "windows": float(len(table)), "final_power_limit_w": pl, "final_loss": loss,
               "actions_applied": float(sum(a.applied for a in actuator.log)),
               "actions_recorded": float(len(actuator.log))}
    info = {"device": device, "energy_source": monitor.source if monitor is not None else (
        NO_GPU_ENERGY if device == "cpu" else "none (no NVML monitor given)"),
            "gpu_writes": "applied" if actuator.allow_writes else "dry run: recorded, not applied",
            "policy_class": f"{type(policy).__module__}.{type(policy).__qualname__}"}
    return RealTrainingRun(metrics=metrics, table=table, actions=actions, info=info)
