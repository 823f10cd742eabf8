"""Oobleck-style pipeline templates and their instantiation (also used by the baselines).

A *template* is the best partition of the model's layers into n contiguous stages, one node
each, for every n from n0 (fewest nodes that fit the model in GPU memory) to n_max. One
dynamic program over layer suffixes yields them all at once: for 1F1B the stage with r stages
after it (itself included) keeps r microbatches in flight, so its memory depends only on r,
not on the pipeline length. Objective: the slowest stage (it paces the steady state).

*Instantiation* splits the ready nodes into pipelines, each a template (so every node is used
when sizes n0..n_max can sum to the node count), and distributes the global batch's
microbatches across pipelines so their iteration times balance (greedy: each next microbatch
goes to the pipeline that would finish it soonest).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from orrery.policies.resilience.base import LayerSpec


@dataclass(frozen=True)
class Template:
    n_stages: int
    bounds: tuple[int, ...]
    stage_s: tuple[float, ...]  # forward + backward per microbatch, per stage
    max_grad_bytes: float  # largest per-stage gradient (all-reduce volume)
    state_bytes: tuple[float, ...]  # per stage

    @property
    def fill_s(self) -> float:
        return float(sum(self.stage_s))

    @property
    def bottleneck_s(self) -> float:
        return float(max(self.stage_s))

    def iteration_s(self, microbatches: int, slowdown: float = 1.0) -> float:
        return slowdown * (self.fill_s + (microbatches - 1) * self.bottleneck_s)


def plan_templates(
    layers: tuple[LayerSpec, ...] | list[LayerSpec],
    mem_bytes: float,
    max_stages: int,
    *,
    state_factor: float = 1.0,
) -> dict[int, Template]:
    """Templates for every feasible stage count 1..max_stages (keys: stage counts).

    `state_factor` scales resident state in the memory check (2 models a redundant copy of a
    neighbour's stage, as in Bamboo). Infeasible counts are absent."""
    L = len(layers)
    R = min(max_stages, L)
    if R < 1:
        return {}
    t = np.array([x.fwd_s + x.bwd_s for x in layers])
    st = np.array([x.state_bytes for x in layers]) * state_factor
    act = np.array([x.act_bytes for x in layers])
    peak = np.array([x.peak_bytes for x in layers])
    ct = np.concatenate([[0.0], np.cumsum(t)])
    cs = np.concatenate([[0.0], np.cumsum(st)])
    ca = np.concatenate([[0.0], np.cumsum(act)])
    # peakmax[i, j] = max peak over layers i..j-1
    peakmax = np.full((L + 1, L + 1), np.inf)
    for i in range(L):
        peakmax[i, i + 1:] = np.maximum.accumulate(peak[i:])
    seg_t = ct[None, :] - ct[:, None]  # [i, j]: time of layers i..j-1
    seg_state = cs[None, :] - cs[:, None]
    seg_act = ca[None, :] - ca[:, None]
    upper = np.triu(np.ones((L + 1, L + 1), dtype=bool), k=1)
    inf = np.inf
    # g[r][i]: best bottleneck for layers i..L-1 on r stages; choice[r][i]: end of first stage
    g = np.full((R + 1, L + 1), inf)
    choice = np.zeros((R + 1, L + 1), dtype=np.int64)
    g[0, L] = 0.0
    for r in range(1, R + 1):
        fits = upper & (seg_state + r * seg_act + peakmax <= mem_bytes)
        cost = np.where(fits, seg_t, inf)  # [i, j]
        # candidate[i, j] = max(cost[i, j], g[r-1][j])
        cand = np.maximum(cost, g[r - 1][None, :])
        j_best = np.argmin(cand, axis=1)
        g[r] = cand[np.arange(L + 1), j_best]
        choice[r] = j_best
    out: dict[int, Template] = {}
    for n in range(1, R + 1):
        if not np.isfinite(g[n, 0]):
            continue
        bounds, i = [], 0
        for r in range(n, 0, -1):
            bounds.append(i)
            i = int(choice[r, i])
        ends = bounds[1:] + [L]
        stage_s = tuple(float(ct[b] - ct[a]) for a, b in zip(bounds, ends, strict=True))
        grads = [sum(x.grad_bytes for x in layers[a:b]) for a, b in zip(bounds, ends, strict=True)]
        states = tuple(float(sum(x.state_bytes for x in layers[a:b]))
                       for a, b in zip(bounds, ends, strict=True))
        out[n] = Template(n, tuple(bounds), stage_s, float(max(grads)), states)
    return out


def contiguous_range(templates: dict[int, Template]) -> tuple[int, int] | None:
    """(n0, n_max): the smallest feasible size and the end of the unbroken run above it."""
    if not templates:
        return None
    n0 = min(templates)
    n = n0
    while n + 1 in templates:
        n += 1
    return n0, n


def distribute_microbatches(templates: list[Template], total: int) -> list[int]:
    """Give each pipeline >= 1 microbatch, then each next one to whichever pipeline would
    finish it earliest; the counts sum to `total` (requires total >= len(templates))."""
    k = len(templates)
    if total < k:
        raise ValueError(f"{total} microbatches cannot feed {k} pipelines")
    m = [1] * k
    heap = [(tp.fill_s + tp.bottleneck_s, i) for i, tp in enumerate(templates)]
    heapq.heapify(heap)
    for _ in range(total - k):
        _, i = heapq.heappop(heap)
        m[i] += 1
        heapq.heappush(heap, (templates[i].fill_s + m[i] * templates[i].bottleneck_s, i))
    return m


def even_sizes(n_nodes: int, n_pipelines: int) -> list[int]:
    q, r = divmod(n_nodes, n_pipelines)
    return [q + 1] * r + [q] * (n_pipelines - r)


def allreduce_s(max_grad_bytes: float, n: int, bw: float) -> float:
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * 2e-5 + 2 * (n - 1) / n * max_grad_bytes / bw


def sizes_iteration_s(templates: dict[int, Template], sizes: list[int], total_mb: int,
                      bw: float) -> tuple[float, list[int]]:
    tps = [templates[s] for s in sizes]
    mb = distribute_microbatches(tps, total_mb)
    it = max(tp.iteration_s(m) for tp, m in zip(tps, mb, strict=True))
    ar = allreduce_s(max(tp.max_grad_bytes for tp in tps), len(tps), bw)
    return it + ar, mb


def best_sizes(
    templates: dict[int, Template],
    n_nodes: int,
    total_mb: int,
    bw: float,
    min_pipelines: int = 1,
) -> tuple[list[int], list[int], float] | None:
    """Pipeline sizes covering all `n_nodes` (near-even split per pipeline count), the
    microbatches per pipeline and the estimated iteration time; prefers >= min_pipelines."""
    rng = contiguous_range(templates)
    if rng is None:
        return None
    n0, nmax = rng
    best: tuple[list[int], list[int], float] | None = None
    best_pref = False
    for p in range(max(1, math.ceil(n_nodes / nmax)), min(n_nodes // n0, total_mb) + 1):
        sizes = even_sizes(n_nodes, p)
        if sizes[0] > nmax or sizes[-1] < n0:
            continue
        it, mb = sizes_iteration_s(templates, sizes, total_mb, bw)
        pref = p >= min_pipelines
        if best is None or (pref and not best_pref) or (pref == best_pref and it < best[2]):
            best, best_pref = (sizes, mb, it), pref
    return best


class TemplateCache:
    """`plan_templates` for the last (layers, memory, node count) asked: a policy re-plans only
    when the model, the GPU memory or the cluster size changes, not at every decision."""

    def __init__(self, state_factor: float = 1.0):
        self.state_factor = float(state_factor)
        self._key: tuple | None = None
        self._templates: dict[int, Template] = {}

    def get(self, layers, mem_bytes: float, max_stages: int) -> dict[int, Template]:
        key = (layers, mem_bytes, max_stages)
        if key != self._key:
            self._templates = plan_templates(layers, mem_bytes, max_stages, state_factor=self.state_factor)
            self._key = key
        return self._templates
