"""Deployment search (`orrery plan`): the cheapest, greenest serving deployment that meets a
QoE target on a trace.

A plan (TOML) names a search space (GPU type, TP, replicas, max batch, scheduler, router,
power limit), a trace (optionally rate-scaled), constraints on the run's metrics and the
objectives to minimise (cost $/h, energy J, carbon g). The search

1. expands the space and rejects, without simulating, every point whose weights (or one
   longest request's KV) do not fit, that breaks an analytic constraint (cost, GPU count), or
   whose analytic work bound exceeds the trace's deadline span: `capacity below demand` (the
   busy time each replica needs at its best batch exceeds the time from the first arrival to
   the last token a reader expects, by more than `capacity_slack_s`: the backlog only grows);
2. visits the rest cheapest first (at one cost, the lowest power limit first) and skips a
   point that a known-feasible point dominates on the objectives' lower bounds (cost is exact;
   energy >= idle power x GPUs x arrival span + a floor on the busy energy above idle; carbon
   >= that idle energy at the arrival span's own intensity + the busy floor at the trace's
   lowest intensity);
3. simulates the remaining points (local process pool or Dask; a worker takes the next point
   as soon as it is free) with a monitor that stops a run as soon as its outcome is decided: a
   constraint can no longer hold (upper bound on mean QoE from the QoE already lost, requests
   already past the TTFT limit) or the energy and carbon already spent make it dominated by a
   feasible point (also those settled after the run started: the search republishes them);
   a vLLM-FCFS run also settles its Andes sibling when a shadow of Andes, fed the same views,
   would have decided the same throughout (`ShadowScheduler`: Andes is vLLM's step whenever it
   is not under pressure; then the two runs are one, bit for bit);
4. keeps every finished point in `DIR/points.jsonl` (re-running resumes), and writes the
   Pareto set (`pareto.csv`, `pareto.png`), the best point per objective and the rejection
   reasons by region (`rejections.csv`, `summary.json`).

Pruning by dominance, the monitors' bounds and twins never drop a Pareto point (they only skip
or stop points that are strictly dominated or infeasible, or reuse a run that is provably the
same); the capacity rule is the one modelling assumption (an hour of sustained overload misses
any sensible QoE target). All are checked against exhaustive simulation in the tests.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.hwmodels.deployment import fit_problem, replica_perf, tp_problem
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.prices import check_prices, gpu_price_usd_per_h
from orrery.policies.registry import get_policy_class, make_policy
from orrery.policies.serving.base import RUNNING, ServingDecision, ServingPolicy, ServingView
from orrery.policies.serving.qoe import qoe_from_deficit
from orrery.sim.cluster_serving import (
    CLUSTER_METRICS,
    ClusterProgress,
    ClusterServingScenario,
    carbon_trace,
    min_intensity,
    simulate_cluster,
)
from orrery.sim.engine import Simulation
from orrery.sim.scenario import read_toml
from orrery.sim.serving_replica import ReplicaState
from orrery.workloads.serving import ServingWorkload

OBJECTIVES = {"cost": "cost_usd_per_h", "energy": "energy_j", "carbon": "carbon_g"}
SPACE_KEYS = ("gpu", "tp", "ep", "replicas", "max_num_seqs", "scheduler", "router", "power_limit_frac")
ANALYTIC = ("cost_usd_per_h", "n_gpus")  # constraint metrics known before simulating
PLANS_DIR = Path(__file__).resolve().parent / "plans"
LB_ROUNDING = 1e-9  # floors are lowered by this relative margin: sums in another order round differently


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Constraint:
    metric: str
    bound: float
    kind: str  # "min" or "max"

    @property
    def name(self) -> str:
        return f"{self.metric}_{self.kind}"

    def holds(self, value: float) -> bool:
        if not np.isfinite(value):
            return False
        return value >= self.bound if self.kind == "min" else value <= self.bound

    def why(self, value: float) -> str:
        op = ">=" if self.kind == "min" else "<="
        return f"{self.metric} = {value:.4g} violates {self.metric} {op} {self.bound:g}"


@dataclass(frozen=True)
class Point:
    gpu: str
    tp: int
    ep: int  # expert parallelism (MoE models; shares the tp GPUs: ep = tp, or tp = 1)
    replicas: int
    max_num_seqs: int
    scheduler: str
    router: str
    power_limit_frac: float

    @property
    def gpus_per_replica(self) -> int:
        return max(self.tp, self.ep)

    @property
    def key(self) -> str:
        ep = f"/ep{self.ep}" if self.ep > 1 else ""  # keys of dense plans stay as before (resume)
        return (f"{self.gpu}/tp{self.tp}{ep}/x{self.replicas}/b{self.max_num_seqs}/{self.scheduler}/"
                f"{self.router}/pl{self.power_limit_frac:g}")

    def power_limit_w(self) -> float | None:
        if self.power_limit_frac >= 1.0:
            return None
        g = get_gpu(self.gpu)
        return g.clamp_power_limit(self.power_limit_frac * g.power_limit_max_w)


@dataclass
class Plan:
    name: str
    model: str
    seed: int
    objectives: list[str]
    constraints: list[Constraint]
    points: list[Point]
    workload: ServingWorkload
    base: dict[str, Any]  # further ClusterServingScenario fields (qoe, slo, carbon, prices)
    capacity_margin: float = 1.0
    capacity_slack_s: float = 60.0
    source: str = "<plan>"
    raw: dict[str, Any] = field(default_factory=dict)

    def scenario(self, p: Point) -> ClusterServingScenario:
        group = {"count": p.replicas, "gpu": p.gpu, "model": self.model, "tp": p.tp, "ep": p.ep,
                 "max_num_seqs": p.max_num_seqs, "scheduler": p.scheduler,
                 "power_limit_w": p.power_limit_w()}
        data = {**self.base, "name": p.key, "policy": p.router, "seed": self.seed, "replicas": [group],
                "workload": self.workload.model_dump(), "check_decisions": False}
        return ClusterServingScenario.model_validate(data)

    def digest(self) -> str:
        """Hash of what determines each point's result (not the space or the constraints)."""
        keep = {"model": self.model, "seed": self.seed, "workload": self.workload.model_dump(mode="json"),
                "base": self.base}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _err(source: str, field_: str, msg: str) -> OrreryInputError:
    return OrreryInputError(f"{source}: {field_}: {msg}")


def _list(v: Any) -> list:
    if isinstance(v, dict) and set(v) <= {"min", "max", "step"}:
        return list(range(int(v["min"]), int(v["max"]) + 1, int(v.get("step", 1))))
    return list(v) if isinstance(v, list | tuple) else [v]


def load_plan(path_or_dict: str | Path | dict, source: str | None = None) -> Plan:
    """Read and validate a plan; bad input raises OrreryInputError naming the field."""
    if isinstance(path_or_dict, dict):
        raw, src = path_or_dict, source or "<plan>"
    else:
        p = Path(path_or_dict)
        if not p.is_file() and (PLANS_DIR / f"{p.name}.toml").is_file():
            p = PLANS_DIR / f"{p.name}.toml"
        raw, src = read_toml(p), str(p)
    known = {"plan", "trace", "space", "constraints", "scenario"}
    unknown = set(raw) - known
    if unknown:
        raise _err(src, sorted(unknown)[0], f"unknown table; known: {', '.join(sorted(known))}")
    head = dict(raw.get("plan", {}))
    name = str(head.pop("name", Path(src).stem))
    model = str(head.pop("model", "llama-3.1-8b"))
    try:
        get_model(model)
    except OrreryInputError as e:
        raise _err(src, "plan.model", str(e)) from None
    seed = int(head.pop("seed", 0))
    objectives = list(head.pop("objectives", ["cost", "energy", "carbon"]))
    for o in objectives:
        if o not in OBJECTIVES:
            raise _err(src, "plan.objectives", f"unknown objective {o!r}; known: {', '.join(OBJECTIVES)}")
    if not objectives:
        raise _err(src, "plan.objectives", "name at least one objective")
    margin = float(head.pop("capacity_margin", 1.0))
    if not margin > 0:
        raise _err(src, "plan.capacity_margin", f"must be > 0, got {margin}")
    slack = float(head.pop("capacity_slack_s", 60.0))
    if not slack >= 0:
        raise _err(src, "plan.capacity_slack_s", f"must be >= 0, got {slack}")
    if head:
        raise _err(src, f"plan.{sorted(head)[0]}", "unknown key")

    workload = _workload(raw.get("trace", {}), src)
    space = dict(raw.get("space", {}))
    defaults = {"tp": [1], "ep": [1], "replicas": [1], "max_num_seqs": [256], "scheduler": ["vllm_fcfs"],
                "router": ["least_outstanding_tokens"], "power_limit_frac": [1.0]}
    for k in space:
        if k not in SPACE_KEYS:
            raise _err(src, f"space.{k}", f"unknown dimension; known: {', '.join(SPACE_KEYS)}")
    if "gpu" not in space:
        raise _err(src, "space.gpu", "name at least one GPU type")
    dims = {k: _list(space.get(k, defaults.get(k))) for k in SPACE_KEYS}
    for k, vals in dims.items():
        if not vals:
            raise _err(src, f"space.{k}", "is empty")
    gpus = []
    for i, g in enumerate(dims["gpu"]):
        try:
            gpus.append(get_gpu(str(g)).name)
        except OrreryInputError as e:
            raise _err(src, f"space.gpu[{i}]", str(e)) from None
    dims["gpu"] = list(dict.fromkeys(gpus))
    for k in ("tp", "ep", "replicas", "max_num_seqs"):
        for i, v in enumerate(dims[k]):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise _err(src, f"space.{k}[{i}]", f"must be an integer >= 1, got {v!r}")
    for i, tp in enumerate(dims["tp"]):
        problem = tp_problem(model, tp)
        if problem:
            raise _err(src, f"space.tp[{i}]", problem)
    m_cfg = get_model(model)
    for i, ep in enumerate(dims["ep"]):
        if ep > 1 and not m_cfg.is_moe:
            raise _err(src, f"space.ep[{i}]", f"ep = {ep}: {m_cfg.name} is a dense model; expert parallelism "
                       "needs a mixture-of-experts model (use ep = 1)")
        if ep > 1 and m_cfg.n_experts % ep:
            raise _err(src, f"space.ep[{i}]", f"ep = {ep} does not divide {m_cfg.name}'s {m_cfg.n_experts} experts")
    for k, dom in (("scheduler", "serving"), ("router", "routing")):
        for i, v in enumerate(dims[k]):
            try:
                get_policy_class(dom, str(v))
            except ValueError as e:
                raise _err(src, f"space.{k}[{i}]", str(e)) from None
    for i, v in enumerate(dims["power_limit_frac"]):
        if not isinstance(v, int | float) or not 0 < v <= 1:
            raise _err(src, f"space.power_limit_frac[{i}]", f"must be in (0, 1] (fraction of the max power "
                       f"limit; 1 = default), got {v!r}")

    constraints = []
    for k, v in dict(raw.get("constraints", {})).items():
        kind = "min" if k.endswith("_min") else "max" if k.endswith("_max") else None
        metric = k[: -4] if kind else k
        if kind is None or metric not in CLUSTER_METRICS:
            raise _err(src, f"constraints.{k}", "expected <metric>_min or <metric>_max with a metric among "
                       f"{', '.join(sorted(CLUSTER_METRICS))}")
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise _err(src, f"constraints.{k}", f"must be a number, got {v!r}")
        constraints.append(Constraint(metric, float(v), kind))

    base = dict(raw.get("scenario", {}))
    for k in ("policy", "replicas", "workload", "seed", "name"):
        if k in base:
            raise _err(src, f"scenario.{k}", "is set by the plan (space, trace, plan.seed)")
    try:
        check_prices(base.get("prices_usd_per_gpu_h"), "scenario.prices_usd_per_gpu_h")
    except OrreryInputError as e:
        raise _err(src, "scenario.prices_usd_per_gpu_h", str(e)) from None
    points = [Point(*vals) for vals in itertools.product(*(dims[k] for k in SPACE_KEYS))]
    plan = Plan(name, model, seed, objectives, constraints, points, workload, base, margin, slack, src, raw)
    try:  # validate the shared scenario fields once
        ClusterServingScenario.from_dict({**base, "policy": dims["router"][0],
                                          "replicas": [{"gpu": gpus[0], "model": model, "tp": max(dims["tp"])}],
                                          "workload": workload.model_dump()}, source=f"{src} [scenario]")
    except ScenarioError as e:
        if "[scenario]" in str(e) and "replicas" not in str(e):
            raise
    return plan


def _workload(t: dict, src: str) -> ServingWorkload:
    t = dict(t)
    rate_scale = t.pop("rate_scale", 1.0)
    if not isinstance(rate_scale, int | float) or not rate_scale > 0:
        raise _err(src, "trace.rate_scale", f"must be > 0, got {rate_scale!r}")
    data: dict[str, Any] = {"max_total_tokens": t.pop("max_total_tokens", 8192)}
    if "path" in t:
        data.update(arrival="trace", trace_path=t.pop("path"), lengths="trace", time_scale=1.0 / rate_scale)
    else:
        data.update(arrival=t.pop("arrival", "poisson"), rate_rps=t.pop("rate_rps", None))
        if data["rate_rps"] is not None:
            data["rate_rps"] = data["rate_rps"] * rate_scale
        if "cv" in t:
            data["cv"] = t.pop("cv")
    for k in ("n_requests", "duration_s"):
        if k in t:
            data[k] = t.pop(k)
    if t:
        raise _err(src, f"trace.{sorted(t)[0]}", "unknown key (path, rate_scale, duration_s, n_requests, "
                   "max_total_tokens; or arrival, rate_rps, cv without a path)")
    try:
        wl = ServingWorkload.model_validate(data)
    except Exception as e:  # noqa: BLE001 - pydantic or data-path error, reported with the field
        raise _err(src, "trace", " ".join(str(e).split())) from None
    return wl


# ----------------------------------------------------------------------------- analytic bounds


@dataclass
class Demand:
    """What the trace asks for, from the very requests every simulation will see."""

    n: int
    prompt_tokens: float
    output_tokens: float
    mean_context: float
    span_s: float
    deadline_span_s: float  # first arrival to the last moment a reader expects a token
    first_arrival_s: float = 0.0


def trace_demand(plan: Plan) -> Demand:
    sim = Simulation(plan.seed)
    reqs = plan.workload.generate(sim.rng["arrivals"], sim.rng["lengths"])
    if len(reqs) == 0:
        raise _err(plan.source, "trace", "the trace has no requests (check path, duration_s, n_requests)")
    span = float(reqs.arrival_s.max() - reqs.arrival_s.min()) if len(reqs) > 1 else 0.0
    qoe = ClusterServingScenario.model_validate({**plan.base, "replicas": [{"model": plan.model}]}).qoe
    tds = min(qoe.tds_exp_tok_s, 3.3 if qoe.listening_fraction > 0 else qoe.tds_exp_tok_s)
    due = reqs.arrival_s + qoe.ttft_exp_s + reqs.output_tokens / tds
    return Demand(len(reqs), float(reqs.prompt_tokens.sum()), float(reqs.output_tokens.sum()),
                  float(np.mean(reqs.prompt_tokens + reqs.output_tokens / 2.0)), span,
                  float(due.max() - reqs.arrival_s.min()), float(reqs.arrival_s.min()))


@dataclass
class Bounds:
    cost_usd_per_h: float
    n_gpus: int
    energy_floor_j: float  # idle power x GPUs x trace span + busy floor x (busy - idle power)
    carbon_floor_g: float
    work_s: float  # analytic busy time each replica needs at least (work spread evenly)
    problem: str | None = None
    decode_s_per_token: float = 0.0  # floor on a replica's busy time per decoded token
    prefill_s_per_token: float = 0.0  # ... per prompt token
    busy_extra_w: float = 0.0  # floor on (busy - idle) power of a replica (all its GPUs)


def analytic(plan: Plan, p: Point, d: Demand, min_ci: float, prices: dict,
             span_ci: float | None = None) -> Bounds:
    """Analytic bounds of point `p`. Carbon floor: the idle floor (every GPU draws at least its
    idle power from the first to the last arrival) at `span_ci`, the mean intensity over that
    span (default: `min_ci`), and the busy floor above idle at `min_ci`, the trace's lowest."""
    span_ci = min_ci if span_ci is None else span_ci
    n_gpus = p.gpus_per_replica * p.replicas
    cost = n_gpus * gpu_price_usd_per_h(p.gpu, prices)
    problem = tp_problem(plan.model, p.tp, p.ep)
    if problem:
        return Bounds(cost, n_gpus, 0.0, 0.0, math.inf, f"invalid parallelism: {problem}")
    try:
        perf = replica_perf(p.gpu, plan.model, p.tp, ep=p.ep, power_limit_w=p.power_limit_w())
    except OrreryInputError as e:
        return Bounds(cost, n_gpus, 0.0, 0.0, math.inf, f"invalid: {e}")
    max_len = min(get_model(plan.model).max_context_tokens, plan.workload.max_total_tokens)
    idle = float(perf.power_w(0, busy=False))
    e_floor = idle * n_gpus * d.span_s
    c_floor = e_floor * span_ci / 3.6e6
    c_idle = c_floor
    problem = fit_problem(perf, max_len)
    if problem:
        return Bounds(cost, n_gpus, e_floor, c_floor, math.inf, problem)
    # a floor on the busy GPU-time the trace needs: decode tokens at the largest batch with no
    # context (time per token only falls with the batch), prompt tokens at the compute roofline;
    # every busy second draws at least the one-sequence power
    per_tok_decode = float(perf.decode_time_s(p.max_num_seqs, 0)) / p.max_num_seqs
    per_tok_prefill = perf.prefill_flops(1, 1, 0) / (perf.gpu.peak_flops(16) * perf.fam.eff_compute)
    busy_floor_s = max(d.output_tokens - d.n, 0.0) * per_tok_decode + d.prompt_tokens * per_tok_prefill
    p_busy = min(float(perf.power_w(1)), float(perf.prefill_power_w(1)))
    extra_w = max(0.0, p_busy - idle) * p.gpus_per_replica
    e_floor += extra_w * busy_floor_s
    c_floor = c_idle + extra_w * busy_floor_s * min_ci / 3.6e6
    kv = perf.kv_capacity_tokens()
    b = max(1.0, min(float(p.max_num_seqs), kv / max(d.mean_context, 1.0)))
    decode_s = d.output_tokens / b * float(perf.decode_time_s(b, b * d.mean_context))
    chunk = float(max(max_len, 2048))  # vLLM's max_num_batched_tokens default
    prefill_s = d.prompt_tokens / chunk * perf.prefill_time_s(int(chunk), 1)
    e_floor *= 1 - LB_ROUNDING
    c_floor *= 1 - LB_ROUNDING
    return Bounds(cost, n_gpus, e_floor, c_floor, (decode_s + prefill_s) / p.replicas, None,
                  per_tok_decode, per_tok_prefill, extra_w)


# ----------------------------------------------------------------------------- early stop


def _dominates(a: dict[str, float], b: dict[str, float], objectives: list[str]) -> bool:
    """a <= b in every objective and < in one (minimisation)."""
    ge = all(a[o] <= b[o] for o in objectives)
    return ge and any(a[o] < b[o] for o in objectives)


@dataclass
class Monitor:
    """Stops a run once a constraint can no longer hold or a feasible point dominates it."""

    constraints: list[Constraint]
    objectives: list[str]  # metric names
    feasible: list[tuple[str, dict[str, float]]]  # (key, objective values) known feasible
    cost_usd_per_h: float
    bounds: Bounds | None = None  # the point's work floors: the energy still to come is bounded too
    feasible_path: str | None = None  # JSON file the search rewrites as feasible points settle
    _feasible_mtime: int = -1

    def _refresh(self) -> None:
        """Take up the feasible points settled since this run started (the search rewrites the
        file atomically; every entry is a finished, feasible simulation, so adding them keeps
        the dominance test sound). A missing or unreadable file leaves the list as it is."""
        if not self.feasible_path:
            return
        try:
            mtime = os.stat(self.feasible_path).st_mtime_ns
            if mtime == self._feasible_mtime:
                return
            with open(self.feasible_path) as f:
                rows = json.load(f)
        except (OSError, ValueError):
            return
        self._feasible_mtime = mtime
        known = {k for k, _ in self.feasible}
        self.feasible = self.feasible + [(k, o) for k, o in rows if k not in known]

    def __call__(self, p: ClusterProgress) -> str | None:
        self._refresh()
        r = p.state
        n = r.n
        arrived = r.arrival_s <= p.now_s
        for c in self.constraints:
            if c.metric == "qoe_mean" and c.kind == "min":
                ub = self._qoe_upper(p)
                if ub < c.bound:
                    return f"qoe_mean <= {ub:.4g} < {c.bound:g} (bound at t={p.now_s:.0f} s)"
            q = _ttft_q(c.metric)
            if q is not None and c.kind == "max":
                late = self._late(p, arrived, c.bound)
                pos = (n - 1) * q / 100.0
                if late >= n - math.floor(pos):
                    return f"{c.metric} > {c.bound:g}: {late} of {n} requests already past it (t={p.now_s:.0f} s)"
            if c.metric == "slo_attainment" and c.kind == "min":
                ub = 1.0 - self._late(p, arrived, self._slo_ttft) / n if self._slo_ttft else 1.0
                if ub < c.bound:
                    return f"slo_attainment <= {ub:.4g} < {c.bound:g} (t={p.now_s:.0f} s)"
        if self.feasible:
            lb = self.lower_bounds(p)
            e_lb = lb["energy_j"]
            for key, obj in self.feasible:
                if _dominates(obj, lb, self.objectives):
                    self.stop_energy_lb_j = e_lb
                    return f"dominated by {key} (energy already >= {e_lb:.4g} J at t={p.now_s:.0f} s)"
        return None

    _slo_ttft: float | None = None
    stop_energy_lb_j: float | None = None  # the energy floor that proved the run dominated

    def lower_bounds(self, p: ClusterProgress) -> dict[str, float]:
        """Floors of the run's final objectives, whatever it does after `p.now_s`."""
        future_j = self._future_busy_extra_j(p)
        e_lb = p.busy_energy_j + p.idle_energy_floor_j + future_j
        # carbon: idle power over the arrival span at its own intensity, the busy energy above
        # idle so far at the lowest intensity since the first arrival, the rest at the trace's
        # lowest (never above what the run's carbon accounting charges)
        c_lb = max(e_lb * p.min_intensity_g_per_kwh / 3.6e6,
                   p.idle_carbon_floor_g + (p.busy_extra_j * p.min_intensity_past_g_per_kwh
                                            + future_j * p.min_intensity_g_per_kwh) / 3.6e6)
        return {"cost_usd_per_h": self.cost_usd_per_h, "energy_j": e_lb * (1 - LB_ROUNDING),
                "carbon_g": c_lb * (1 - LB_ROUNDING)}

    def _future_busy_extra_j(self, p: ClusterProgress) -> float:
        """(busy - idle) power x a floor on the busy time the tokens not yet delivered still need
        (prompts of requests without a first token at the prefill roofline, the other tokens at
        the largest batch's time per token; recomputation after preemption only adds). The idle
        floor already charges idle power for that time, so this is what busy time adds on top."""
        b = self.bounds
        if b is None or b.busy_extra_w <= 0:
            return 0.0
        r = p.state
        fresh = r.generated == 0
        decode_tok = float(np.maximum(r.output - r.generated - fresh, 0).sum())
        prefill_tok = float(r.prompt[fresh].sum())
        return b.busy_extra_w * (decode_tok * b.decode_s_per_token + prefill_tok * b.prefill_s_per_token)

    @staticmethod
    def _late(p: ClusterProgress, arrived: np.ndarray, limit_s: float) -> int:
        r = p.state
        ttft = r.first_token_s - r.arrival_s
        known_late = np.isfinite(ttft) & (ttft > limit_s)
        # no first token yet: it comes no earlier than now (the iteration in flight ends later)
        pending_late = arrived & ~np.isfinite(ttft) & (p.now_s - r.arrival_s > limit_s)
        return int(known_late.sum() + pending_late.sum())

    @staticmethod
    def _qoe_upper(p: ClusterProgress) -> float:
        """Upper bound on the final mean QoE: the deficit already lost, plus, for requests that
        are queued (not in the iteration in flight), the lateness their next token already has,
        which every later token of theirs inherits."""
        r = p.state
        q = r.qoe
        L = np.maximum(r.output, 1).astype(float)
        n_done = q.delivered.astype(float)
        step = 1.0 / q.tds
        rel_now = p.now_s - r.arrival_s
        queued = (r.arrival_s <= p.now_s) & (r.state != 1) & (r.state != 3)  # waiting or swapped
        d_next = np.where(np.isfinite(q.digest_last_s), q.digest_last_s + step, -np.inf)
        d_next = np.where(queued, np.maximum(d_next, rel_now), d_next)
        e_next = q.ttft_exp_s + n_done * step
        extra = np.where(np.isfinite(d_next), np.maximum(0.0, d_next - e_next), 0.0) * (L - n_done)
        ub = qoe_from_deficit(q.deficit + np.maximum(extra, 0.0), L, q.tds)
        return float(np.mean(ub))


def _ttft_q(metric: str) -> float | None:
    if metric.startswith("ttft_p") and metric.endswith("_s"):
        try:
            return float(metric[len("ttft_p"):-2])
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------------- running points


# A point whose scheduler is a key here can be settled by its sibling's run (the value), when
# that run shows the two schedulers would have taken the same decisions throughout.
TWINS = {"andes": "vllm_fcfs"}


class ShadowScheduler(ServingPolicy):
    """Runs `primary` (vLLM-FCFS) and watches whether Andes, given the same views, would have
    decided the same. Andes (`policies/serving/andes.py`) returns vLLM's step whenever it is not
    under pressure (no request waiting or swapped, or KV use below its trigger and the decode
    step within the strictest token interval); the two differ otherwise, and in the preemption
    mode (Andes swaps, vLLM-FCFS recomputes), which only acts when a running request is
    preempted. So while no view puts Andes under pressure and no decision preempts, the Andes run
    is the same run, step for step (same running sets, same clock, same energy, same router
    inputs); `diverged_s` is the first time that no longer holds (None: never)."""

    policy_name = "vllm_fcfs+andes_shadow"
    fast_forward = True

    def __init__(self, primary: ServingPolicy, andes: ServingPolicy):
        if not hasattr(andes, "_under_pressure"):
            raise TypeError("the shadow needs Andes' pressure test")
        self.primary, self.andes = primary, andes
        self.diverged_s: float | None = None

    def schedule(self, view: ServingView) -> ServingDecision:
        dec = self.primary.schedule(view)
        if self.diverged_s is None:
            chosen = ReplicaState.chosen(view, dec)
            preempts = bool(((view.state == RUNNING) & ~chosen).any())
            if preempts or self.andes._under_pressure(view):
                self.diverged_s = float(view.now_s)
        return dec

    def on_finish(self, request_id: int, now_s: float) -> None:
        self.primary.on_finish(request_id, now_s)


def simulate_point(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: simulate one point (picklable in, picklable out). With `task["twin"]` (the key
    and scheduler params of an Andes sibling) the run watches Andes too and says whether its
    result is the sibling's as well."""
    t0 = time.perf_counter()
    scn = ClusterServingScenario.model_validate(task["scenario"])
    mon = task.get("monitor")
    twin = task.get("twin")
    shadows: list[ShadowScheduler] = []
    make = None
    if twin is not None:
        def make(gi, g):
            sh = ShadowScheduler(make_policy("serving", g.scheduler, g.scheduler_params),
                                 make_policy("serving", "andes", twin.get("params") or {}))
            shadows.append(sh)
            return sh
    res, stopped = simulate_cluster(scn, monitor=mon, check_every_s=task.get("check_every_s", 60.0),
                                    make_scheduler=make)
    out = {"key": task["key"], "metrics": {k: float(v) for k, v in res.metrics.items()},
           "stopped": stopped, "wall_s": time.perf_counter() - t0}
    if getattr(mon, "stop_energy_lb_j", None) is not None:
        out["energy_lb_j"] = float(mon.stop_energy_lb_j)
    if twin is not None:
        div = [s.diverged_s for s in shadows if s.diverged_s is not None]
        out["twin"] = {"key": twin["key"], "same": not div, "diverged_s": min(div) if div else None}
    return out


class _Submitter:
    """Submit one task at a time (a worker takes the next point as soon as it is free)."""

    def __init__(self, backend, n_jobs: int):
        self.backend = backend
        self.threads = None
        if getattr(backend, "pool", None) is None and getattr(backend, "client", None) is not None:
            self.threads = ThreadPoolExecutor(max_workers=n_jobs)  # a thread per Dask task in flight

    def submit(self, fn, task) -> Future:
        pool = getattr(self.backend, "pool", None)
        if pool is not None:
            return pool.submit(fn, task)
        if self.threads is not None:
            client = self.backend.client
            return self.threads.submit(lambda: client.submit(fn, task, pure=False).result())
        f: Future = Future()
        try:
            f.set_result(fn(task))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)


@dataclass
class SearchResult:
    points: pd.DataFrame  # one row per point: space, status, reason, metrics
    pareto: pd.DataFrame
    best: dict[str, dict]
    counts: dict[str, int]
    wall_s: float
    out: Path | None = None


def _span_intensity(plan: Plan, d: Demand) -> tuple[float, float]:
    """(mean carbon intensity over [first arrival, last arrival], lowest intensity) of the very
    trace the runs use (same spec, seed and length as `simulate_cluster` loads)."""
    scn = plan.scenario(plan.points[0])
    trace = carbon_trace(scn, d.first_arrival_s + d.span_s + 3600.0)
    t0 = d.first_arrival_s + scn.carbon_start_s
    lowest = float(np.min(trace.values_g_per_kwh))
    if d.span_s <= 0:
        return min_intensity(trace, t0, t0), lowest
    return float(trace.integral(t0, t0 + d.span_s)) / d.span_s, lowest


def search(plan: Plan, out: str | Path | None = None, *, jobs: int | None = None, dask: str | None = None,
           prune: bool = True, check_every_s: float = 60.0, progress=None,
           budget_s: float | None = None) -> SearchResult:
    """Run the deployment search (`prune=False`: simulate every point that fits, no early stop).

    `budget_s`: wall seconds after which no new simulation starts; the points not reached are
    reported as `unvisited` (the Pareto set is then of the points settled so far; a re-run into
    the same folder resumes and goes on)."""
    from orrery.experiments.runner import make_backend

    t_start = time.perf_counter()
    out_dir = Path(out) if out is not None else None
    demand = trace_demand(plan)
    span_ci, min_ci = _span_intensity(plan, demand)
    prices = plan.base.get("prices_usd_per_gpu_h") or {}
    obj_metrics = [OBJECTIVES[o] for o in plan.objectives]
    digest = plan.digest() + ("" if prune else "-exhaustive")
    done: dict[str, dict] = {}
    store = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        store = out_dir / "points.jsonl"
        if store.is_file():
            for line in store.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption
                if rec.get("digest") == digest:
                    done[rec["key"]] = rec
    rows: dict[str, dict] = {}
    bounds: dict[str, Bounds] = {}
    analytic_cons = [c for c in plan.constraints if c.metric in ANALYTIC]
    for p in plan.points:
        b = analytic(plan, p, demand, min_ci, prices, span_ci)
        bounds[p.key] = b
        row = {"key": p.key, **{k: getattr(p, k) for k in SPACE_KEYS}, "n_gpus": b.n_gpus,
               "cost_usd_per_h": b.cost_usd_per_h, "work_s": b.work_s, "energy_floor_j": b.energy_floor_j}
        if b.problem:
            kind = "invalid parallelism" if b.problem.startswith("invalid parallelism") else "does not fit"
            row.update(status="pruned", reason_kind=kind, reason=b.problem)
        else:
            bad = [c for c in analytic_cons if not c.holds({"cost_usd_per_h": b.cost_usd_per_h,
                                                              "n_gpus": b.n_gpus}[c.metric])]
            if bad:
                v = {"cost_usd_per_h": b.cost_usd_per_h, "n_gpus": b.n_gpus}[bad[0].metric]
                row.update(status="pruned", reason_kind=f"constraint {bad[0].name}", reason=bad[0].why(v))
            elif prune and b.work_s > plan.capacity_margin * demand.deadline_span_s + plan.capacity_slack_s:
                row.update(status="pruned", reason_kind="capacity below demand",
                           reason=f"each replica needs >= {b.work_s:.0f} s of work, more than the "
                                  f"{demand.deadline_span_s:.0f} s from the first arrival to the last "
                                  f"token readers expect (+ {plan.capacity_slack_s:g} s)")
        rows[p.key] = row
    candidates = [p for p in plan.points if "status" not in rows[p.key]]
    if not candidates:
        kinds = sorted({r["reason_kind"] for r in rows.values()})
        raise _err(plan.source, "space/constraints",
                   f"no configuration is left to simulate ({', '.join(kinds)}); widen the space or relax "
                   "the constraints")
    # cheapest first (dominance needs a feasible point no dearer); at one cost the lowest power
    # limit first (it tends to spend the least energy, so it stops its siblings soonest), and a
    # twin's primary scheduler before the scheduler it can settle
    candidates.sort(key=lambda p: (bounds[p.key].cost_usd_per_h, p.power_limit_frac, p.scheduler in TWINS,
                                   bounds[p.key].energy_floor_j, p.key))
    feasible: list[tuple[str, dict[str, float]]] = []

    def settle(p: Point, rec: dict) -> None:
        row = rows[p.key]
        m = rec["metrics"]
        row.update({k: m.get(k, np.nan) for k in CLUSTER_METRICS})
        row["cost_usd_per_h"] = bounds[p.key].cost_usd_per_h
        row["wall_s"] = rec.get("wall_s", np.nan)
        row["twin_of"] = rec.get("twin_of", "")
        if rec.get("energy_lb_j") is not None:  # a run stopped as dominated: the floor that proved it
            row["energy_floor_j"] = max(row["energy_floor_j"], float(rec["energy_lb_j"]))
        if rec.get("stopped"):
            kind = "dominated" if rec["stopped"].startswith("dominated") else "infeasible"
            row.update(status="stopped", reason_kind=f"{kind} (stopped early)", reason=rec["stopped"])
            return
        bad = [c for c in plan.constraints if not c.holds(float(m.get(c.metric, np.nan)))]
        if bad:
            first = bad[0]
            row.update(status="infeasible", reason_kind=f"constraint {first.name}",
                       reason="; ".join(c.why(float(m.get(c.metric, np.nan))) for c in bad))
        else:
            row.update(status="feasible", reason_kind="", reason="")
            feasible.append((p.key, {o: float(m[o]) if o != "cost_usd_per_h" else bounds[p.key].cost_usd_per_h
                                     for o in OBJECTIVES.values()}))

    backend = make_backend(jobs=jobs, dask=dask)
    n_jobs = max(1, int(getattr(backend, "jobs", 0) or jobs or os.cpu_count() or 1))
    if dask:
        n_jobs = max(n_jobs, backend.describe().get("workers", 1) or 1)
    submitter = _Submitter(backend, n_jobs)
    simulated = resumed = twinned = 0
    queue = list(candidates)
    by_key = {p.key: p for p in plan.points}
    cand_keys = {p.key for p in candidates}
    inflight: dict[Future, Point] = {}
    inflight_keys: set[str] = set()
    scratch = None
    feasible_path = None
    if prune:  # running monitors read the feasible points settled after they started
        scratch = tempfile.TemporaryDirectory(prefix="orrery_plan_")
        feasible_path = os.path.join(scratch.name, "feasible.json")

    def publish() -> None:
        if feasible_path is None:
            return
        tmp = feasible_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(feasible, f)
        os.replace(tmp, feasible_path)

    def store_rec(rec: dict) -> None:
        rec["digest"] = digest
        if store is not None:
            with store.open("a") as f:
                f.write(json.dumps(rec, default=float) + "\n")

    def twin_key(p: Point) -> str | None:
        """The sibling this point's run can settle too (an Andes point of a vLLM-FCFS run)."""
        for other, primary in TWINS.items():
            if p.scheduler == primary:
                k = replace(p, scheduler=other).key
                if k in cand_keys and "status" not in rows[k] and k not in done and k not in inflight_keys:
                    return k
        return None

    def blocked(p: Point) -> bool:
        """An Andes point waits while its vLLM-FCFS sibling runs (that run may settle it)."""
        primary = TWINS.get(p.scheduler)
        return bool(primary) and replace(p, scheduler=primary).key in inflight_keys

    try:
        while queue or inflight:
            i = 0
            while len(inflight) < n_jobs and i < len(queue):
                p = queue[i]
                if "status" in rows[p.key]:  # settled meanwhile (by a twin's run)
                    queue.pop(i)
                    continue
                if p.key in done:
                    queue.pop(i)
                    settle(p, done[p.key])
                    resumed += 1
                    continue
                if budget_s is not None and time.perf_counter() - t_start > budget_s:
                    queue.pop(i)
                    rows[p.key].update(status="unvisited", reason_kind="time budget",
                                       reason=f"not reached within the {budget_s:g} s budget")
                    continue
                b = bounds[p.key]
                lb = {"cost_usd_per_h": b.cost_usd_per_h, "energy_j": b.energy_floor_j, "carbon_g": b.carbon_floor_g}
                dom = next((k for k, o in feasible if _dominates(o, lb, obj_metrics)), None) if prune else None
                if dom is not None:
                    queue.pop(i)
                    rows[p.key].update(status="pruned", reason_kind="dominated",
                                       reason=f"dominated by feasible {dom} (cost, energy floor)")
                    continue
                if prune and blocked(p):
                    i += 1
                    continue
                queue.pop(i)
                task: dict[str, Any] = {"key": p.key, "scenario": plan.scenario(p).model_dump(mode="json"),
                                        "check_every_s": check_every_s}
                if prune:
                    mon = Monitor(plan.constraints, obj_metrics, list(feasible), bounds[p.key].cost_usd_per_h,
                                  bounds[p.key], feasible_path)
                    mon._slo_ttft = plan.scenario(p).slo.ttft_s
                    task["monitor"] = mon
                    tk = twin_key(p)
                    if tk is not None:
                        task["twin"] = {"key": tk, "params": plan.scenario(by_key[tk]).replicas[0].scheduler_params}
                fut = submitter.submit(simulate_point, task)
                inflight[fut] = p
                inflight_keys.add(p.key)
            if not inflight:
                continue
            finished, _ = wait_futures(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                p = inflight.pop(fut)
                inflight_keys.discard(p.key)
                rec = fut.result()
                simulated += 1
                twin = rec.pop("twin", None)
                store_rec(rec)
                settle(p, rec)
                if progress is not None:
                    progress(rec, rows[rec["key"]])
                if twin is not None and twin["same"] and "status" not in rows[twin["key"]]:
                    trec = {"key": twin["key"], "metrics": rec["metrics"], "stopped": rec["stopped"],
                            "wall_s": 0.0, "twin_of": p.key}
                    if "energy_lb_j" in rec:
                        trec["energy_lb_j"] = rec["energy_lb_j"]
                    store_rec(trec)
                    settle(by_key[twin["key"]], trec)
                    twinned += 1
                    if progress is not None:
                        progress(trec, rows[twin["key"]])
            publish()
    finally:
        submitter.close()
        backend.close()
        if scratch is not None:
            scratch.cleanup()

    table = pd.DataFrame(list(rows.values()))
    feas = table[table["status"] == "feasible"].copy()
    pareto = _pareto(feas, obj_metrics)
    best = {}
    for o, m in zip(plan.objectives, obj_metrics, strict=True):
        if len(feas):
            order = feas.sort_values([m, *[x for x in obj_metrics if x != m], "key"])
            best[o] = order.iloc[0].to_dict()
    counts = {"configurations": len(table), "simulated": simulated, "twinned": twinned, "resumed": resumed,
              "pruned": int((table["status"] == "pruned").sum()),
              "stopped_early": int((table["status"] == "stopped").sum()),
              "feasible": len(feas), "infeasible": int((table["status"] == "infeasible").sum()),
              "unvisited": int((table["status"] == "unvisited").sum()), "pareto": len(pareto)}
    res = SearchResult(table, pareto, best, counts, time.perf_counter() - t_start, out_dir)
    if out_dir is not None:
        write_outputs(plan, res)
    return res


def _pareto(feas: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    if feas.empty:
        return feas
    vals = feas[objectives].to_numpy(dtype=float)
    keep = []
    for i in range(len(vals)):
        dominated = np.any(np.all(vals <= vals[i], axis=1) & np.any(vals < vals[i], axis=1))
        keep.append(not dominated)
    return feas[np.array(keep)].sort_values([*objectives, "key"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- outputs


def rejection_regions(table: pd.DataFrame) -> pd.DataFrame:
    """Rejected points grouped by GPU, TP and reason: the regions of the space and why."""
    rej = table[table["status"] != "feasible"]
    if rej.empty:
        return pd.DataFrame(columns=["gpu", "tp", "reason_kind", "points", "replicas", "example"])
    g = rej.groupby(["gpu", "tp", "reason_kind"], sort=True)
    return g.agg(points=("key", "size"), replicas=("replicas", lambda s: f"{s.min()}-{s.max()}"),
                 example=("reason", "first")).reset_index()


def plot_front(plan: Plan, res: SearchResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orrery.experiments.plotting import save

    t = res.points
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # stopped runs are left out: their energy is only what they had spent when stopped
    sim = t[(t["status"] == "infeasible") & t["energy_j"].notna()] if "energy_j" in t else t[:0]
    feas = t[t["status"] == "feasible"]
    # points dominated without a full run: at the energy floor that proved it (analytic when
    # pruned, the monitor's when stopped)
    dom = t[t["reason_kind"].astype(str).str.startswith("dominated")] if "energy_floor_j" in t else t[:0]
    pf0 = res.pareto
    if len(dom) and len(pf0):
        x_max = 2.5 * float(pf0["cost_usd_per_h"].max())
        y_max = 2.0 * float(pf0["energy_j"].max()) / 3.6e6
        near = dom[(dom["cost_usd_per_h"] <= x_max) & (dom["energy_floor_j"] / 3.6e6 <= y_max)]
        ax.scatter(near["cost_usd_per_h"], near["energy_floor_j"] / 3.6e6, marker="^", s=14, c="#dddddd",
                   label=f"dominated: energy floor that proved it ({len(dom)}; {len(dom) - len(near)} off the chart)")
    if len(sim):
        ax.scatter(sim["cost_usd_per_h"], sim["energy_j"] / 3.6e6, marker="x", s=18, c="#bbbbbb",
                   label="misses a constraint")
    if len(feas):
        ax.scatter(feas["cost_usd_per_h"], feas["energy_j"] / 3.6e6, s=22, c="#4c72b0", alpha=0.6,
                   label="meets every constraint")
    pf = res.pareto
    if len(pf):
        pf = pf.sort_values("cost_usd_per_h")
        ax.step(pf["cost_usd_per_h"], pf["energy_j"] / 3.6e6, where="post", c="#c44e52", lw=1.5)
        ax.scatter(pf["cost_usd_per_h"], pf["energy_j"] / 3.6e6, s=46, c="#c44e52", zorder=3, label="Pareto set")
        for (cost, energy), grp in pf.groupby(["cost_usd_per_h", "energy_j"], sort=True):
            r = grp.iloc[0]
            pl = "" if r["power_limit_frac"] >= 1 else f" at {r['power_limit_frac']:g} x max power"
            ep = f" ep{r['ep']}" if r.get("ep", 1) > 1 else ""
            label = (f"{r['gpu'].split('-')[0]} tp{r['tp']}{ep} x{r['replicas']}{pl}\n"
                     f"{' / '.join(sorted(set(grp['scheduler'])))}")
            ax.annotate(label, (cost, energy / 3.6e6), fontsize=7, xytext=(5, 4), textcoords="offset points")
    n_stop = int((t["status"] == "stopped").sum())
    n_pruned = int((t["status"] == "pruned").sum())
    ax.text(0.99, 0.02, f"{len(t)} configurations: {n_pruned} pruned, {n_stop} stopped early, "
            f"{len(feas) + len(sim)} simulated to the end", transform=ax.transAxes, ha="right", fontsize=7,
            color="#555555")
    cons = ", ".join(f"{c.metric} {'>=' if c.kind == 'min' else '<='} {c.bound:g}" for c in plan.constraints)
    ax.set_xlabel("deployment cost ($/h)")
    ax.set_ylabel("energy over the trace (kWh)")
    ax.set_title(f"{plan.name}: cost vs energy ({cons})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def write_outputs(plan: Plan, res: SearchResult) -> None:
    out = res.out
    assert out is not None
    res.points.to_csv(out / "points.csv", index=False)
    res.pareto.to_csv(out / "pareto.csv", index=False)
    rejection_regions(res.points).to_csv(out / "rejections.csv", index=False)
    plot_front(plan, res, out / "pareto.png")
    cols = ["key", *SPACE_KEYS, *OBJECTIVES.values(), "qoe_mean", "ttft_p99_s"]
    summary = {
        "plan": plan.name, "objectives": plan.objectives,
        "constraints": {c.name: c.bound for c in plan.constraints}, "counts": res.counts,
        "best": {o: {k: _jsonable(r.get(k)) for k in cols} for o, r in res.best.items()},
        "pareto": [{k: _jsonable(r.get(k)) for k in cols} for r in res.pareto.to_dict("records")],
        "wall_s": round(res.wall_s, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
