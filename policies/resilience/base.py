"""Resilience domain contract: what a recovery strategy sees and what it decides.

A policy is called at the start of the job, whenever the set of ready nodes changes (spot
preemption, failure, a new node finished starting up) and when a wake-up it asked for is due.
It returns the full plan in force from then on: the pipelines (which node hosts which stage of
contiguous layers, how many microbatches each pipeline runs per iteration) and the price of
getting there (pause, rollback to the last checkpoint), plus its steady-state overheads
(checkpointing, redundant computation). The backend (simulator or real) executes it.

Memory and time estimates here are shared by all policies and by `validate`, so a plan that does
not fit in GPU memory is rejected the same way everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from orrery.policies.registry import Contract, register_contract

NET_LATENCY_S = 2e-5


@dataclass(frozen=True)
class LayerSpec:
    """Per-microbatch profile of one partitionable layer on the cluster's GPU."""

    fwd_s: float
    bwd_s: float
    state_bytes: float  # model + optimizer state, resident
    act_bytes: float  # kept per in-flight microbatch
    peak_bytes: float = 0.0  # transient working memory of the layer
    grad_bytes: float = 0.0  # bytes all-reduced across data-parallel replicas
    out_bytes: float = 0.0  # activation sent to the next stage


@dataclass(frozen=True)
class Pipeline:
    """One pipeline: `nodes[s]` hosts stage s, made of layers bounds[s] .. bounds[s+1]-1.

    A node may appear for two consecutive stages (Bamboo's failover onto a neighbour)."""

    nodes: tuple[str, ...]
    bounds: tuple[int, ...]
    microbatches: int

    @property
    def n_stages(self) -> int:
        return len(self.bounds)

    def stage_layers(self, n_layers: int) -> list[range]:
        ends = list(self.bounds[1:]) + [n_layers]
        return [range(a, b) for a, b in zip(self.bounds, ends, strict=True)]


@dataclass(frozen=True)
class ClusterView:
    time_s: float
    event: str  # "start" | "change" | "wake"
    nodes: tuple[str, ...]  # ready nodes now (sorted)
    failed: tuple[str, ...]  # nodes lost since the last call
    added: tuple[str, ...]  # nodes ready since the last call
    layers: tuple[LayerSpec, ...]
    global_microbatches: int
    mem_bytes: float  # usable memory per GPU
    max_nodes: int  # most nodes the cluster may ever hold (for template planning)
    network_bw_bytes_per_s: float
    storage_bw_bytes_per_s: float
    current: tuple[Pipeline, ...] = ()  # plan in force before this event (may name failed nodes)
    current_redundancy: float = 0.0
    model: str = ""  # the model's catalog name (policies with per-model constants use it)
    departed: tuple[str, ...] = ()  # nodes that left while still starting up (never ready)


@dataclass(frozen=True)
class Decision:
    pipelines: tuple[Pipeline, ...]  # empty: do not train (too few nodes / nothing fits)
    pause_s: float = 0.0  # time before training resumes (restart, reconfigure, copy state)
    rollback: bool = False  # lose all work since the last commit (restart from checkpoint)
    checkpoint_interval_s: float | None = None  # training time between checkpoints; None: none
    checkpoint_s: float = 0.0  # pause per checkpoint
    # checkpoint every this many iterations instead (the backend converts with its iteration
    # time; Varuna in Oobleck's artifact checkpoints every 10 iterations)
    checkpoint_every_iterations: int | None = None
    # the first checkpoint of this plan comes after this many iterations (then the regular
    # period); Varuna in Oobleck's artifact checkpoints right after the first iteration of a
    # restart
    first_checkpoint_after_iterations: int | None = None
    redundancy: float = 0.0  # extra compute per stage for redundant computation (fraction)
    wake_after_s: float | None = None  # ask to be called again after this long
    keeps_in_flight: bool = False  # the running iteration survives a loss (redundant compute)
    # the plan already training keeps training during `pause_s` (after the rollback, if any;
    # its checkpoints included) and this plan takes over at the end, the iteration then in flight
    # lost: the restarts of Oobleck's artifact (`policies/resilience/rendezvous.py`, rule 4).
    # Nothing trains during the pause when no plan was training.
    train_through_pause: bool = False
    action: str = "plan"  # what kind of change this is (recorded)
    infeasible: bool = False  # no plan fits GPU memory on these nodes
    reason: str = ""
    meta: dict = field(default_factory=dict, compare=False)


class ResiliencePolicy(ABC):
    """A recovery strategy; one method, called on every membership change."""

    policy_name: str = ""

    @abstractmethod
    def schedule(self, view: ClusterView) -> Decision: ...


# ---------------------------------------------------------------- shared memory / time model


def node_groups(p: Pipeline) -> list[tuple[str, list[int]]]:
    """Consecutive stages hosted by the same node, as (node, stage indices)."""
    out: list[tuple[str, list[int]]] = []
    for s, n in enumerate(p.nodes):
        if out and out[-1][0] == n:
            out[-1][1].append(s)
        else:
            out.append((n, [s]))
    if len(out) > 1 and out[0][0] == out[-1][0]:  # the last node took over the first stage
        last = out.pop()
        out[0] = (last[0], last[1] + out[0][1])
    return out


def stage_memory_bytes(layers, lo: int, hi: int, in_flight: int) -> float:
    """State of layers lo..hi-1 + activations of `in_flight` microbatches + one layer's peak."""
    seg = layers[lo:hi]
    return (sum(x.state_bytes for x in seg) + in_flight * sum(x.act_bytes for x in seg)
            + max((x.peak_bytes for x in seg), default=0.0))


def pipeline_node_memory(layers, p: Pipeline, redundancy: float) -> dict[str, float]:
    """Memory on each node of a pipeline. 1F1B: stage s of P keeps min(P−s, M) microbatches.
    With redundancy (Bamboo) a node also holds the state of the stage after its first one
    (the last stage backs up the first), unless it already hosts it (after a failover)."""
    ranges = p.stage_layers(len(layers))
    P = p.n_stages
    out: dict[str, float] = {}
    for node, stages in node_groups(p):
        m = sum(stage_memory_bytes(layers, ranges[s].start, ranges[s].stop,
                                   min(P - s, p.microbatches)) for s in stages)
        if redundancy > 0 and P > 1:
            nxt = (stages[0] + 1) % P
            if nxt not in stages:
                r = ranges[nxt]
                m += sum(x.state_bytes for x in layers[r.start:r.stop])
        out[node] = out.get(node, 0.0) + m
    return out


def pipeline_iteration_estimate_s(layers, p: Pipeline, redundancy: float, bw: float) -> float:
    """1F1B iteration time of one pipeline: fill + drain + (M−1) × slowest node."""
    ranges = p.stage_layers(len(layers))
    per_node = []
    hops = 0.0
    groups = node_groups(p)
    for gi, (_, stages) in enumerate(groups):
        t = sum(layers[i].fwd_s + layers[i].bwd_s for s in stages for i in ranges[s])
        per_node.append(t * (1.0 + redundancy))
        if gi < len(groups) - 1:
            last = ranges[stages[-1]]
            hops += 2 * (NET_LATENCY_S + layers[last.stop - 1].out_bytes / bw)
    return sum(per_node) + hops + (p.microbatches - 1) * max(per_node)


def allreduce_estimate_s(layers, pipelines, bw: float) -> float:
    """Ring all-reduce of the largest per-node gradient share across the pipelines."""
    n = len(pipelines)
    if n <= 1:
        return 0.0
    worst = 0.0
    for p in pipelines:
        ranges = p.stage_layers(len(layers))
        for _, stages in node_groups(p):
            worst = max(worst, sum(layers[i].grad_bytes for s in stages for i in ranges[s]))
    return 2 * (n - 1) * NET_LATENCY_S + 2 * (n - 1) / n * worst / bw


def plan_iteration_estimate_s(view: ClusterView, pipelines, redundancy: float = 0.0) -> float:
    if not pipelines:
        return float("inf")
    bw = view.network_bw_bytes_per_s
    return (max(pipeline_iteration_estimate_s(view.layers, p, redundancy, bw) for p in pipelines)
            + allreduce_estimate_s(view.layers, pipelines, bw))


def plan_fits(view: ClusterView, pipelines, redundancy: float = 0.0) -> bool:
    return all(m <= view.mem_bytes for p in pipelines
               for m in pipeline_node_memory(view.layers, p, redundancy).values())


def validate(view: ClusterView, d: Decision) -> list[str]:
    """Every problem with decision `d` for `view` (empty when valid)."""
    probs: list[str] = []
    if not isinstance(d, Decision):
        return [f"decision is {type(d).__name__}, not Decision"]
    if d.pause_s < 0 or not np.isfinite(d.pause_s):
        probs.append(f"pause_s {d.pause_s} must be finite and >= 0")
    if d.redundancy < 0:
        probs.append(f"redundancy {d.redundancy} < 0")
    if d.checkpoint_interval_s is not None and d.checkpoint_interval_s <= 0:
        probs.append("checkpoint_interval_s must be > 0 or None")
    for name in ("checkpoint_every_iterations", "first_checkpoint_after_iterations"):
        v = getattr(d, name)
        if v is not None and v < 1:
            probs.append(f"{name} must be >= 1 or None")
    if d.wake_after_s is not None and d.wake_after_s <= 0:
        probs.append("wake_after_s must be > 0 or None")
    if not d.pipelines:
        return probs
    ready = set(view.nodes)
    seen: set[str] = set()
    L = len(view.layers)
    for k, p in enumerate(d.pipelines):
        if len(p.nodes) != len(p.bounds) or not p.nodes:
            probs.append(f"pipeline {k}: {len(p.nodes)} nodes for {len(p.bounds)} stages")
            continue
        if p.bounds[0] != 0 or any(b <= a for a, b in zip(p.bounds, p.bounds[1:], strict=False)) or p.bounds[-1] >= L:
            probs.append(f"pipeline {k}: bounds {p.bounds} must rise strictly from 0 below {L}")
        if p.microbatches < 1:
            probs.append(f"pipeline {k}: {p.microbatches} microbatches")
        for node, _ in node_groups(p):
            if node not in ready:
                probs.append(f"pipeline {k}: node {node!r} is not ready")
            if node in seen:
                probs.append(f"node {node!r} is in two places")
            seen.add(node)
    total = sum(p.microbatches for p in d.pipelines)
    if total != view.global_microbatches:
        probs.append(f"microbatches sum to {total}, not the global {view.global_microbatches}")
    if not probs and not plan_fits(view, d.pipelines, d.redundancy):
        probs.append("plan does not fit in GPU memory")
    return probs


# ---------------------------------------------------------------- contract


def synthetic_layers(rng: np.random.Generator, n_layers: int, mem_scale: float = 1.0):
    """Random layer profiles for tests and the conformance checker."""
    out = []
    for _ in range(n_layers):
        f = float(rng.uniform(0.005, 0.05))
        out.append(LayerSpec(f, f * float(rng.uniform(2.0, 3.5)),
                             float(rng.uniform(1, 4)) * 1e9 * mem_scale,
                             float(rng.uniform(0.01, 0.1)) * 1e9,
                             float(rng.uniform(0.1, 0.5)) * 1e9,
                             float(rng.uniform(0.1, 0.5)) * 1e9, 8e6))
    return tuple(out)


def sample_views(rng: np.random.Generator) -> list[ClusterView]:
    """A start, a failure, a simultaneous double failure, an addition, and a too-small cluster."""
    layers = synthetic_layers(rng, 16)
    nodes = tuple(f"node{i}" for i in range(1, 13))
    base = dict(layers=layers, global_microbatches=32, mem_bytes=24e9, max_nodes=12,
                network_bw_bytes_per_s=12.5e9, storage_bw_bytes_per_s=2e9)
    views = [ClusterView(0.0, "start", nodes, (), nodes, **base)]
    views.append(ClusterView(600.0, "change", nodes[1:], nodes[:1], (), **base))
    views.append(ClusterView(1200.0, "change", nodes[3:], nodes[1:3], (), **base))
    views.append(ClusterView(1800.0, "change", nodes[:10], (), nodes[:3], **base))
    views.append(ClusterView(2400.0, "change", nodes[:1], nodes[1:10], (), **base))
    return views


def drive(policy: ResiliencePolicy, views: list[ClusterView]) -> list[Decision]:
    """Feed the sample views in order, each carrying the previous decision as `current`."""
    out: list[Decision] = []
    current: tuple[Pipeline, ...] = ()
    red = 0.0
    for v in views:
        v2 = ClusterView(**{**v.__dict__, "current": current, "current_redundancy": red})
        d = policy.schedule(v2)
        out.append(d)
        current, red = d.pipelines, d.redundancy
    return out


def _validate_for_drive(view: ClusterView, d: Decision) -> list[str]:
    return validate(view, d)


register_contract(Contract("resilience", ResiliencePolicy, sample_views, _validate_for_drive, drive))
