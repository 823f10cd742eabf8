"""Uniform data-parallel × pipeline-parallel plans, as the Varuna and Bamboo baselines use:
D identical pipelines of P stages (P·D ≤ nodes; leftover nodes idle), the global batch split
evenly. Stage partitions come from the same template planner as Oobleck's, so the comparison
isolates the recovery strategy, not the partitioner.
"""

from __future__ import annotations

from orrery.policies.resilience.base import (
    ClusterView,
    Pipeline,
    plan_fits,
    plan_iteration_estimate_s,
)
from orrery.policies.resilience.templates import Template


def uniform_pipelines(view: ClusterView, tp: Template, nodes: list[str], depth: int,
                      replicas: int) -> tuple[Pipeline, ...]:
    B = view.global_microbatches
    q, r = divmod(B, replicas)
    return tuple(Pipeline(tuple(nodes[k * depth:(k + 1) * depth]), tp.bounds, q + (1 if k < r else 0))
                 for k in range(replicas))


def best_uniform(view: ClusterView, templates: dict[int, Template], nodes: list[str],
                 redundancy: float = 0.0, min_depth: int = 1):
    """(pipelines, estimated iteration s) of the fastest uniform plan that fits, or None."""
    best = None
    for P, tp in sorted(templates.items()):
        if P < min_depth or P > len(nodes):
            continue
        D = min(len(nodes) // P, view.global_microbatches)
        pipes = uniform_pipelines(view, tp, nodes, P, D)
        if not plan_fits(view, pipes, redundancy):
            continue
        it = plan_iteration_estimate_s(view, pipes, redundancy)
        if best is None or it < best[1]:
            best = (pipes, it)
    return best
