"""Cluster serving: N replicas (each a GPU type x TP x max batch, with its own scheduler and
power limit or SM clock) behind a router, on one request trace.

The replicas are the single-replica serving simulator's own (`sim/serving.py`: its replica
process, request state and metrics), composed here: one shared `RequestState`, one replica
process per replica with its own latency/power model (`hwmodels.deployment.replica_perf`), and
an arrival process that asks the router policy (`policies/routing/`) where each request goes.

Metrics add to the serving ones: TTFT and TBT percentiles (TBT: each request's mean time
between tokens), SLO attainment, energy and carbon per request (carbon from a carbon-intensity
trace over the iterations' actual times), deployment cost from the GPU price table, and GPU
utilisation (busy GPU-seconds / GPU-seconds). `simulate_cluster(..., monitor=...)` lets a
caller (the deployment search) stop a run early once its outcome is decided; the domain's
`run` never stops early.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError
from orrery.hwmodels.deployment import decode_capacity_tok_s, fit_problem, replica_perf, tp_problem
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.prices import check_prices, gpu_price_usd_per_h
from orrery.policies.registry import get_policy_class, make_policy
from orrery.policies.routing.base import RouterView, validate_routing
from orrery.policies.serving.base import WAITING
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.scenario import Scenario
from orrery.sim.serving import SimReplica
from orrery.sim.serving_replica import FINISHED, RequestState, summarize_requests
from orrery.sim.serving_scenario import QoESpec, ServingHardware, ServingScenario
from orrery.workloads.serving import ServingWorkload

DEFAULT_CHECK_EVERY_S = 60.0  # simulated seconds between early-stop checks (monitor only)


class ReplicaGroup(Strict):
    """`count` identical replicas: one model on `tp` GPUs of one type, one scheduler each."""

    count: int = Field(1, ge=1, description="replicas of this kind")
    gpu: str = "h100"
    model: str = "llama-3.1-8b"
    tp: int = Field(1, ge=1, description="tensor-parallel GPUs per replica")
    ep: int = Field(1, ge=1, description="expert-parallel degree (MoE models only; shares the tp GPUs as in "
                    "vLLM: ep = tp, or tp = 1 and the replica has ep GPUs)")
    weight_bits: Literal[4, 8, 16] = 16
    kv_bits: Literal[4, 8, 16] = 16
    max_num_seqs: int = Field(256, ge=1, description="max batch (running sequences) per replica")
    scheduler: str = Field("vllm_fcfs", description="serving policy of each replica")
    scheduler_params: dict[str, Any] = Field(default_factory=dict)
    power_limit_w: float | None = Field(None, gt=0, description="per-GPU power limit (W)")
    sm_clock_mhz: float | None = Field(None, gt=0, description="locked SM clock (MHz)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)

    @model_validator(mode="after")
    def _valid(self) -> ReplicaGroup:
        get_gpu(self.gpu)
        get_model(self.model)
        problem = tp_problem(self.model, self.tp, self.ep)
        if problem:
            raise ValueError(problem)
        get_policy_class("serving", self.scheduler)
        perf = self.perf()  # power limit / clock ranges
        problem = fit_problem(perf, min(get_model(self.model).max_context_tokens, 2), self.gpu_memory_utilization)
        if problem:
            raise ValueError(problem)
        return self

    def perf(self):
        return replica_perf(self.gpu, self.model, self.tp, ep=self.ep, weight_bits=self.weight_bits,
                            kv_bits=self.kv_bits, power_limit_w=self.power_limit_w, sm_clock_mhz=self.sm_clock_mhz)

    @property
    def gpus_per_replica(self) -> int:
        return max(self.tp, self.ep)  # EP shares the tensor-parallel GPUs (hwmodels.llm_perf)

    @property
    def n_gpus(self) -> int:
        return self.count * self.gpus_per_replica


class SLOSpec(Strict):
    ttft_s: float = Field(5.0, gt=0, description="time-to-first-token objective (s)")
    tbt_s: float = Field(0.2, gt=0, description="mean time-between-tokens objective (s)")


class ClusterServingScenario(Scenario):
    domain: ClassVar[str] = "cluster_serving"

    policy: str = Field("round_robin", description="router policy (policies/routing)")
    replicas: list[ReplicaGroup] = Field(default_factory=lambda: [ReplicaGroup(count=2)], min_length=1)
    workload: ServingWorkload = ServingWorkload(rate_rps=2.0, n_requests=100)
    qoe: QoESpec = QoESpec()
    slo: SLOSpec = SLOSpec()
    carbon_trace: str | None = Field(
        None, description="carbon intensity over time: 'constant:<g/kWh>', 'synthetic:<zone>', "
        "'shared:<csv>' or a CSV path; None: carbon_intensity_g_per_kwh throughout")
    carbon_intensity_g_per_kwh: float = Field(400.0, ge=0, description="constant intensity without a trace")
    carbon_start_s: float = Field(0.0, ge=0, description="offset of the run's t=0 into the carbon trace (s)")
    prices_usd_per_gpu_h: dict[str, float] = Field(default_factory=dict, description="overrides of the price table")
    check_decisions: bool = Field(True, description="validate every scheduler and router decision")
    fast_forward: bool = True

    @field_validator("prices_usd_per_gpu_h")
    @classmethod
    def _prices(cls, v: dict[str, float]) -> dict[str, float]:
        check_prices(v)
        return v

    @model_validator(mode="after")
    def _router(self) -> ClusterServingScenario:
        get_policy_class("routing", self.policy)
        return self

    @property
    def n_replicas(self) -> int:
        return sum(g.count for g in self.replicas)

    @property
    def n_gpus(self) -> int:
        return sum(g.n_gpus for g in self.replicas)

    def cost_usd_per_h(self) -> float:
        return sum(g.n_gpus * gpu_price_usd_per_h(g.gpu, self.prices_usd_per_gpu_h) for g in self.replicas)


@dataclass
class ClusterProgress:
    """What an early-stop monitor sees: the run so far (arrays are the live state; read only)."""

    now_s: float
    state: RequestState
    busy_energy_j: float  # busy energy accounted so far
    idle_energy_floor_j: float  # idle energy the remaining span will cost at least
    first_arrival_s: float
    last_arrival_s: float
    min_intensity_g_per_kwh: float  # lowest intensity of the whole carbon trace
    # for a time-resolved carbon floor: every replica draws at least its idle power over
    # [first arrival, max(last arrival, now)]; busy iterations so far drew busy_extra_j above
    # idle within [first arrival, now]; later ones come at or after now
    idle_carbon_floor_g: float = 0.0
    busy_extra_j: float = 0.0
    min_intensity_past_g_per_kwh: float = 0.0  # lowest intensity over [first arrival, now]


Monitor = Callable[[ClusterProgress], str | None]


class _Stopped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _router(scn: ClusterServingScenario):
    cls = get_policy_class("routing", scn.policy)
    params = dict(scn.policy_params)
    if "seed" in inspect.signature(cls).parameters and "seed" not in params:
        params["seed"] = scn.seed  # a randomised router follows the scenario's seed
    return make_policy("routing", scn.policy, params)


def carbon_trace(scn: ClusterServingScenario, horizon_s: float):
    """The carbon-intensity trace a run of `scn` whose last arrival is before `horizon_s` uses."""
    from orrery.traces.carbon import load_carbon_trace

    spec = scn.carbon_trace or f"constant:{scn.carbon_intensity_g_per_kwh}"
    trace = load_carbon_trace(spec, duration_s=max(horizon_s + scn.carbon_start_s, 86400.0), seed=scn.seed)
    return trace


_carbon = carbon_trace


def min_intensity(trace, t0_s: float, t1_s: float) -> float:
    """Lowest intensity the (repeating) trace takes over [t0, t1] (trace time)."""
    v = trace.values_g_per_kwh
    if not t1_s - t0_s < trace.duration_s:
        return float(v.min())
    k0 = int(math.floor(t0_s / trace.interval_s))
    k1 = int(math.floor(t1_s / trace.interval_s))
    return float(v[np.arange(k0, k1 + 1) % len(v)].min())


def _max_len(scn: ClusterServingScenario) -> int:
    """The longest request any replica must hold: the smallest model context, capped by the workload."""
    return min(min(get_model(g.model).max_context_tokens for g in scn.replicas), scn.workload.max_total_tokens)


def _fitting_perf(gi: int, g, max_len: int):
    """Replica group `gi`'s latency/power model; bad input if one longest request does not fit."""
    perf = g.perf()
    problem = fit_problem(perf, max_len, g.gpu_memory_utilization)
    if problem:
        raise OrreryInputError(f"replicas[{gi}]: {problem}")
    return perf


def simulate_cluster(scn: ClusterServingScenario, monitor: Monitor | None = None,
                     check_every_s: float = DEFAULT_CHECK_EVERY_S,
                     make_scheduler: Callable[[int, ReplicaGroup], Any] | None = None,
                     ) -> tuple[RunResult, str | None]:
    """Run `scn`; with a `monitor`, stop as soon as it returns a reason. Returns the result
    (metrics of the run so far when stopped) and the stop reason (None: ran to completion).
    `make_scheduler(group index, group)` builds each replica's serving policy instead of the
    registry (the deployment search passes a scheduler that also watches a second one)."""
    sim = Simulation(scn.seed)
    max_len = _max_len(scn)
    reqs = scn.workload.generate(sim.rng["arrivals"], sim.rng["lengths"])
    if len(reqs) == 0:
        raise OrreryInputError("workload: the trace or generator produced no requests; check trace_path, "
                               "n_requests and duration_s")
    state = RequestState(reqs, scn.qoe, sim.rng["qoe"])
    replicas: list[SimReplica] = []
    meta = []
    for gi, g in enumerate(scn.replicas):
        hw = ServingHardware(gpu=g.gpu, model=g.model, tp=g.tp, ep=g.ep, weight_bits=g.weight_bits, kv_bits=g.kv_bits,
                             max_num_seqs=g.max_num_seqs, gpu_memory_utilization=g.gpu_memory_utilization)
        rep_scn = ServingScenario(policy=g.scheduler, policy_params=g.scheduler_params, hardware=hw,
                                  check_decisions=scn.check_decisions, fast_forward=scn.fast_forward,
                                  horizon_s=scn.horizon_s)
        perf = _fitting_perf(gi, g, max_len)
        mean_ctx = float(np.mean(reqs.prompt_tokens + reqs.output_tokens / 2.0))
        cap = decode_capacity_tok_s(perf, g.max_num_seqs, mean_ctx, g.gpu_memory_utilization)
        for _ in range(g.count):
            policy = (make_scheduler(gi, g) if make_scheduler is not None
                      else make_policy("serving", g.scheduler, g.scheduler_params))
            rep = SimReplica(len(replicas), sim, rep_scn, perf, policy, state, max_len)
            replicas.append(rep)
            meta.append({"group": gi, "gpu": get_gpu(g.gpu).name, "tp": g.gpus_per_replica, "capacity_tok_s": cap,
                         "idle_w": float(perf.power_w(0, busy=False))})
    router = _router(scn)
    n_rep = len(replicas)
    caps = np.array([m["capacity_tok_s"] for m in meta])
    tps = np.array([m["tp"] for m in meta], dtype=float)
    idle_w = np.array([m["idle_w"] for m in meta])
    totals = np.array([rep.state.total_blocks for rep in replicas], dtype=np.int64)
    max_seqs = np.array([rep.state.max_num_seqs for rep in replicas], dtype=np.int64)
    lat = tuple(rep.latency for rep in replicas)
    arrivals_done = sim.env.event()
    routed = np.zeros(state.n, dtype=np.int64)

    rep_index = np.arange(n_rep)

    def view_for(rid: int) -> RouterView:
        # one vectorised pass over every replica's live requests (the per-arrival hot path)
        per = [rep.state.ids() for rep in replicas]
        n_live = np.fromiter((ids.size for ids in per), np.int64, n_rep)
        ids = np.concatenate(per) if n_live.any() else np.zeros(0, np.int64)
        owner = np.repeat(rep_index, n_live)
        p = state.prompt[ids]
        w = state.state[ids] == WAITING
        n_wait = np.bincount(owner, weights=w, minlength=n_rep).astype(np.int64)
        wait_tok = np.bincount(owner, weights=p * w, minlength=n_rep).astype(np.int64)
        out_tok = np.bincount(owner, weights=p + state.generated[ids], minlength=n_rep).astype(np.int64)
        return RouterView(
            now_s=sim.now, request_id=rid, prompt_tokens=int(state.prompt[rid]),
            ttft_exp_s=float(state.ttft[rid]), tds_exp_tok_s=float(state.tds[rid]), n_live=n_live,
            n_waiting=n_wait, waiting_prompt_tokens=wait_tok, outstanding_tokens=out_tok,
            kv_blocks_used=np.array([rep.state.used_blocks for rep in replicas], dtype=np.int64),
            kv_blocks_total=totals, max_num_seqs=max_seqs, capacity_tok_s=caps, latency=lat)

    def arrivals():
        for rid, t in enumerate(state.arrival_s.tolist()):
            if t > sim.now:
                yield sim.timeout(t - sim.now)
            view = view_for(rid)
            dec = router.route(view)
            if scn.check_decisions:
                problems = validate_routing(view, dec)
                if problems:
                    raise RuntimeError(f"router {scn.policy!r} made an invalid decision for request {rid}: "
                                       f"{'; '.join(problems)}")
            k = int(dec.replica)
            state.replica[rid] = k
            routed[rid] += 1
            replicas[k].add(rid)
        arrivals_done.succeed()

    first_s, last_s = float(state.arrival_s.min()), float(state.arrival_s.max())
    carbon = _carbon(scn, last_s + 3600.0)
    c0 = scn.carbon_start_s

    def watch():
        min_ci = float(np.min(carbon.values_g_per_kwh))
        idle_total_w = float((idle_w * tps).sum())
        while True:
            yield sim.timeout(check_every_s)
            if arrivals_done.triggered and not any(rep.state.live for rep in replicas):
                return
            busy = np.array([rep.busy_s for rep in replicas])
            floor = float((idle_w * tps * np.maximum(0.0, (last_s - first_s) - busy)).sum())
            busy_e = float(sum(rep.energy_j for rep in replicas))
            idle_c = idle_total_w * float(carbon.integral(first_s + c0, max(last_s, sim.now) + c0)) / 3.6e6
            prog = ClusterProgress(sim.now, state, busy_e, floor, first_s, last_s, min_ci, idle_c,
                                   max(0.0, busy_e - float((idle_w * tps * busy).sum())),
                                   min_intensity(carbon, first_s + c0, sim.now + c0))
            reason = monitor(prog)
            if reason:
                raise _Stopped(reason)

    sim.process(arrivals())
    for rep in replicas:
        sim.process(rep.loop(arrivals_done))
    if monitor is not None:
        sim.process(watch())
    stopped = None
    try:
        sim.run(until=scn.horizon_s)
    except _Stopped as s:
        stopped = s.reason
    if stopped is None and ((routed != 1) & (state.arrival_s <= sim.now)).any():
        raise RuntimeError("a request was not routed exactly once")  # invariant of the arrival loop
    result = _collect(scn, sim, state, replicas, meta, tps, idle_w, carbon, c0)
    result.metrics["stopped_early"] = float(stopped is not None)
    return result, stopped


def check_cluster(scn: ClusterServingScenario) -> None:
    """What `run_cluster` rejects as input, without simulating: each replica group's hardware
    (the model and one longest request fit), its scheduler, the router, the carbon trace and the
    workload's data files (parsed whole, as the run parses them)."""
    max_len = _max_len(scn)
    for gi, g in enumerate(scn.replicas):
        _fitting_perf(gi, g, max_len)
        make_policy("serving", g.scheduler, g.scheduler_params)
    _router(scn)
    _carbon(scn, 0.0)
    scn.workload.check_inputs()


def run_cluster(scn: ClusterServingScenario) -> RunResult:
    """Simulate `scn` to completion (the domain's pure run function)."""
    return simulate_cluster(scn)[0]


def _pct(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def _collect(scn, sim, r: RequestState, replicas, meta, tps, idle_w, carbon, c0) -> RunResult:
    table, metrics, span_s = summarize_requests(r, sim.now)
    n = r.n
    busy_s = np.array([rep.busy_s for rep in replicas])
    busy_e = np.array([rep.energy_j for rep in replicas])
    idle_s = np.maximum(0.0, span_s - busy_s)
    energy = float(busy_e.sum() + (idle_s * idle_w * tps).sum())
    # carbon: busy iterations at their own times, idle power over the rest of the span
    t_first = float(r.arrival_s.min())
    it = sim.rec.frames().get("iterations")
    if it is not None and len(it):
        rep_i = it["replica"].to_numpy(dtype=np.int64)
        start = it["start_s"].to_numpy(dtype=float) + c0
        dur = it["duration_s"].to_numpy(dtype=float)
        ci_busy = np.asarray(carbon.integral(start, start + dur), dtype=float)  # g/kWh x s
        busy_g = float((it["power_w"].to_numpy(dtype=float) * tps[rep_i] * ci_busy).sum() / 3.6e6)
        busy_ci_per_rep = np.bincount(rep_i, weights=ci_busy, minlength=len(replicas))
    else:
        busy_g, busy_ci_per_rep = 0.0, np.zeros(len(replicas))
    span_ci = float(carbon.integral(t_first + c0, t_first + span_s + c0))
    idle_g = float((idle_w * tps * np.maximum(0.0, span_ci - busy_ci_per_rep)).sum() / 3.6e6)
    carbon_g = busy_g + idle_g
    finished = r.state == FINISHED
    ttft = table["ttft_s"].to_numpy(dtype=float)
    tbt = table["tpot_s"].to_numpy(dtype=float)
    slo_ok = finished & (ttft <= scn.slo.ttft_s) & ~(tbt > scn.slo.tbt_s)
    cost_h = scn.cost_usd_per_h()
    cost = cost_h * span_s / 3600.0
    n_gpus = float(tps.sum())
    metrics.update({
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99),
        "tbt_p50_s": _pct(tbt, 50), "tbt_p90_s": _pct(tbt, 90), "tbt_p99_s": _pct(tbt, 99),
        "slo_attainment": float(slo_ok.mean()),
        "energy_j": energy, "energy_per_request_j": energy / n,
        "energy_per_token_j": energy / max(int(r.generated.sum()), 1),
        "carbon_g": carbon_g, "carbon_per_request_g": carbon_g / n,
        "cost_usd_per_h": cost_h, "cost_usd": cost, "cost_per_request_usd": cost / n,
        "gpu_utilization": float((busy_s * tps).sum() / max(n_gpus * span_s, 1e-12)),
        "n_gpus": n_gpus, "n_replicas": float(len(replicas)),
        "iterations": float(sum(rep.iterations for rep in replicas)),
        "sim_time_s": float(sim.now),
    })
    per_rep = pd.DataFrame(meta)
    per_rep.insert(0, "replica", np.arange(len(replicas)))
    per_rep["requests"] = np.bincount(r.replica[r.replica >= 0], minlength=len(replicas))
    per_rep["busy_s"] = busy_s
    per_rep["energy_j"] = busy_e + idle_s * idle_w * tps
    per_rep["iterations"] = [rep.iterations for rep in replicas]
    return RunResult(metrics=metrics, table=table, series={"replicas": per_rep})


CLUSTER_METRICS = {
    "qoe_mean": "higher", "qoe_p10": "higher", "ttft_p50_s": "lower", "ttft_p90_s": "lower",
    "ttft_p99_s": "lower", "tbt_p50_s": "lower", "tbt_p90_s": "lower", "tbt_p99_s": "lower",
    "slo_attainment": "higher", "throughput_tok_s": "higher", "throughput_rps": "higher",
    "energy_j": "lower", "energy_per_request_j": "lower", "carbon_g": "lower",
    "carbon_per_request_g": "lower", "cost_usd_per_h": "lower", "cost_usd": "lower",
    "cost_per_request_usd": "lower", "gpu_utilization": "higher", "n_gpus": "lower",
    "preemptions_per_request": "lower", "n_requests": "higher", "n_finished": "higher",
}

register_domain(Domain(
    name="cluster_serving",
    scenario_type=ClusterServingScenario,
    run=run_cluster,
    check=check_cluster,
    metrics=CLUSTER_METRICS,
    policy_domain="routing",
    description="LLM serving on a cluster of replicas behind a router: QoE, SLOs, energy, carbon, cost",
))
