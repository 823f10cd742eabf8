"""FL feasibility study (after LinkedIn's FLINT decision workflow): can this population train
this model with this plan, and at what cost?

One job (the planned training) runs on the population with the FL round engine of
`sim.fl` (same check-ins, eligibility, response times, deadlines, over-commit). The run
reports participation over the day, the round-time distribution, the wall time to finish
N rounds (extrapolated from the mean round time when the horizon ends first), device-side
cost (compute seconds, energy estimate, bytes down and up), server-side load (concurrent
clients, aggregation rate, ingress bandwidth) and a go/no-go table against the thresholds.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from orrery.core.config import Strict
from orrery.hwmodels.edge import RADIO_POWER_W, TRAIN_POWER_W
from orrery.policies.registry import make_policy
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.fl import (
    WEEK_S,
    DevicePool,
    FLRoundEngine,
    FLScenario,
    PopulationConfig,
    RoundConfig,
    build_availability,
    build_population,
    check_population_files,
)
from orrery.sim.scenario import Scenario
from orrery.traces.devices import check_requirement
from orrery.workloads.fl import JobSet


class ModelConfig(Strict):
    size_bytes: float = Field(10e6, gt=0, description="model (update) size sent down and up (bytes)")
    flops_per_sample: float = Field(3e9, gt=0, description="training FLOPs per sample (forward + backward)")
    reference_flops: float = Field(1e9, gt=0, description="FLOPs of one work unit (one reference inference)")


class PlanConfig(Strict):
    rounds: int = Field(200, ge=1)
    participants: int = Field(200, ge=1, description="target responses per round")
    samples_per_round: int = Field(100, ge=1, description="samples each device trains on per round")
    deadline_s: float = Field(600.0, gt=0)
    requirement: str = Field("any", description="device requirement (see traces.devices)")


class Thresholds(Strict):
    max_wall_time_s: float = Field(3 * 86400.0, gt=0)
    max_round_time_p90_s: float = Field(900.0, gt=0)
    max_device_energy_j_per_round: float = Field(500.0, gt=0, description="per participating device")
    max_bytes_per_device_round: float = Field(100e6, gt=0)
    max_ingress_bytes_s: float = Field(1e9, gt=0, description="server ingress at the busiest hour")
    min_success_fraction: float = Field(0.9, ge=0, le=1)


class FLFeasibilityScenario(Scenario):
    domain: ClassVar[str] = "fl_feasibility"

    policy: str = "fifo"
    horizon_s: float | None = Field(WEEK_S, gt=0)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    rounds: RoundConfig = Field(default_factory=RoundConfig)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    start_s: float = Field(0.0, ge=0, description="when training starts (s after t=0)")


def check_fl_feasibility(scn: FLFeasibilityScenario) -> None:
    """What `run_fl_feasibility` rejects as input, without simulating: the device requirement,
    the population's data files and the policy."""
    check_requirement(scn.plan.requirement)
    check_population_files(scn.population)
    make_policy("fl", scn.policy, scn.policy_params)


def run_fl_feasibility(scn: FLFeasibilityScenario) -> RunResult:
    check_requirement(scn.plan.requirement)
    horizon = float(scn.horizon_s or WEEK_S)
    sim = Simulation(scn.seed)
    pop = build_population(scn.population, sim.rng["hardware"])
    av = build_availability(scn.population, horizon, sim.rng["availability"])
    pool = DevicePool(pop, av, scn.population.recheckin_s, scn.population.n_tiers)
    work = scn.plan.samples_per_round * scn.model.flops_per_sample / scn.model.reference_flops
    mb = scn.model.size_bytes
    jobs = JobSet(np.array([scn.start_s]), np.array([scn.plan.rounds]), np.array([scn.plan.participants]),
                  np.array([scn.plan.deadline_s]), np.array([work]), np.array([mb]), (scn.plan.requirement,))
    inner = FLScenario(policy=scn.policy, policy_params=scn.policy_params, seed=scn.seed, horizon_s=horizon,
                       population=scn.population, rounds=scn.rounds, record_assignments=True)
    eng = FLRoundEngine(inner, sim, pool, jobs, make_policy("fl", scn.policy, scn.policy_params))
    for j in eng.jobs:
        sim.process(eng.job_process(j))
    sim.process(eng.driver(horizon))
    sim.run(until=horizon)

    frames = sim.rec.frames()
    rounds, asg, supply = frames["rounds"], frames["assignments"], frames["supply"]
    job = eng.jobs[0]
    dev = asg["device"].to_numpy()
    t_a = asg["t_assign_s"].to_numpy()
    resp = asg["resp_s"].to_numpy()
    closes = rounds.set_index("round")["t_close_s"]
    t_close = closes.reindex(asg["round"].to_numpy()).to_numpy()
    responded = np.isfinite(resp) & (resp <= np.nan_to_num(t_close, nan=np.inf))
    compute_s = pop.hw.s_per_unit[dev].astype(float) * work
    transfer_s = (mb / pop.hw.bw_down_bytes_s[dev].astype(float)) + np.where(
        responded, mb / pop.hw.bw_up_bytes_s[dev].astype(float), 0.0)
    busy_end = np.minimum(asg["busy_until_s"].to_numpy(), np.nan_to_num(t_close, nan=np.inf))
    worked_s = np.clip(busy_end - t_a, 0.0, None)
    comp_used = np.minimum(compute_s, worked_s)
    energy_j = comp_used * TRAIN_POWER_W + np.minimum(transfer_s, worked_s) * RADIO_POWER_W
    n_rounds = max(len(rounds), 1)
    round_time = (rounds["t_close_s"] - rounds["t_req_s"]).to_numpy()
    succ = rounds["success"].to_numpy(dtype=bool) if len(rounds) else np.zeros(0, bool)
    if math.isfinite(job.finish_s):
        wall = job.finish_s - scn.start_s
    elif succ.any():
        wall = (horizon - scn.start_s) / succ.sum() * scn.plan.rounds  # extrapolated
    else:
        wall = math.inf
    # server load: concurrent clients sampled every minute, ingress of responses per hour
    grid = np.arange(0.0, horizon, 60.0)
    conc = (np.searchsorted(np.sort(t_a), grid, side="right")
            - np.searchsorted(np.sort(busy_end), grid, side="right"))
    up_t = resp[responded]
    hours = np.floor(up_t / 3600.0)
    ingress = (np.bincount(hours.astype(int), minlength=int(horizon // 3600) + 1) * mb / 3600.0) if len(up_t) else np.zeros(1)
    metrics = {
        "wall_time_s": float(wall),
        "rounds_completed": float(job.completed),
        "round_time_p50_s": float(np.percentile(round_time, 50)) if len(round_time) else math.nan,
        "round_time_p90_s": float(np.percentile(round_time, 90)) if len(round_time) else math.nan,
        "round_success_fraction": float(succ.mean()) if len(succ) else 0.0,
        "device_compute_s_per_round": float(comp_used.sum() / n_rounds),
        "device_energy_j_per_device_round": float(energy_j.mean()) if len(energy_j) else 0.0,
        "device_energy_j_total": float(energy_j.sum()),
        "bytes_down_total": float(len(dev) * mb),
        "bytes_up_total": float(responded.sum() * mb),
        "bytes_per_device_round": float(mb + mb * responded.mean()) if len(dev) else 0.0,
        "server_concurrent_clients_max": float(conc.max()) if len(conc) else 0.0,
        "server_concurrent_clients_mean": float(conc.mean()) if len(conc) else 0.0,
        "server_aggregation_rate_per_s": float(responded.sum() / max(horizon if not math.isfinite(job.finish_s) else job.finish_s - scn.start_s, 1.0)),
        "server_ingress_peak_bytes_s": float(ingress.max()),
        "dropout_fraction": float(np.isinf(resp).mean()) if len(resp) else 0.0,
    }
    th = scn.thresholds
    checks = [
        ("wall time to finish (s)", metrics["wall_time_s"], th.max_wall_time_s, "<="),
        ("round time p90 (s)", metrics["round_time_p90_s"], th.max_round_time_p90_s, "<="),
        ("device energy per round (J)", metrics["device_energy_j_per_device_round"], th.max_device_energy_j_per_round, "<="),
        ("bytes per device per round", metrics["bytes_per_device_round"], th.max_bytes_per_device_round, "<="),
        ("server ingress, busiest hour (B/s)", metrics["server_ingress_peak_bytes_s"], th.max_ingress_bytes_s, "<="),
        ("round success fraction", metrics["round_success_fraction"], th.min_success_fraction, ">="),
    ]
    go = pd.DataFrame({
        "check": [c[0] for c in checks], "value": [c[1] for c in checks], "threshold": [c[2] for c in checks],
        "ok": [bool(c[1] <= c[2]) if c[3] == "<=" else bool(c[1] >= c[2]) for c in checks],
    })
    metrics["go"] = float(go["ok"].all())
    by_hour = pd.DataFrame({"hour": (supply["t_s"] % 86400) // 3600, "available": supply["available"],
                            "assigned": supply["assigned"], "idle_checkins": supply["idle_checkins"]})
    participation = by_hour.groupby("hour", as_index=False).mean()
    return RunResult(metrics=metrics, table=go,
                     series={"rounds": rounds, "participation_by_hour": participation})


register_domain(Domain(
    name="fl_feasibility",
    scenario_type=FLFeasibilityScenario,
    run=run_fl_feasibility,
    check=check_fl_feasibility,
    policy_domain="fl",
    metrics={
        "wall_time_s": "lower", "round_time_p50_s": "lower", "round_time_p90_s": "lower",
        "round_success_fraction": "higher", "device_compute_s_per_round": "lower",
        "device_energy_j_per_device_round": "lower", "device_energy_j_total": "lower",
        "bytes_down_total": "lower", "bytes_up_total": "lower", "bytes_per_device_round": "lower",
        "server_concurrent_clients_max": "lower", "server_concurrent_clients_mean": "lower",
        "server_aggregation_rate_per_s": "higher", "server_ingress_peak_bytes_s": "lower",
        "dropout_fraction": "lower", "rounds_completed": "higher", "go": "higher",
    },
    plots="orrery.experiments.plotting:fl_feasibility_plots",
    description="FLINT-style go/no-go: one planned FL training on a device population",
))
