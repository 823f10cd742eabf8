"""Bamboo (NSDI'23) as the redundant-computation baseline.

Uniform D × P plan (P >= 2) in which every node also holds the model state of the next stage of
its pipeline (the last stage backs up the first) and runs that stage's forward pass redundantly,
so memory is about twice the plain plan's and every stage is slower. When a node is lost, the
node of the preceding stage takes its stage over at once (failover, no pause; that node then
runs two stages, so its pipeline — and the synchronous job — slows down). When a stage and its
backup are both gone (two adjacent nodes lost, or a failed-over node lost), Bamboo falls back:
it reconfigures the pipelines on the remaining nodes.

Constants (DESIGN: "≈ 20% throughput cost; minutes to fall back when adjacent nodes are lost"):
- `redundancy` = 0.2: extra compute per stage for the redundant forward pass.
- `fallback_s` = 180 s: reconfiguration after an unrecoverable loss or to rebuild clean
  pipelines.
- `repair_after_s` = 300 s: a degraded (failed-over) plan is rebuilt this long after the
  failover, when no other change has triggered a reconfiguration first (modelling choice: a
  failed-over pipeline has no redundancy left and runs slow, so it is repaired at the next
  reconfiguration point rather than left degraded for hours).
- New nodes join by a reconfiguration (`fallback_s`) when the new plan is estimated at least
  `min_gain` faster.
"""

from __future__ import annotations

from orrery.policies.registry import register
from orrery.policies.resilience.base import (
    ClusterView,
    Decision,
    Pipeline,
    ResiliencePolicy,
    node_groups,
    plan_fits,
    plan_iteration_estimate_s,
)
from orrery.policies.resilience.templates import TemplateCache
from orrery.policies.resilience.uniform import best_uniform


@register("resilience", "bamboo")
class Bamboo(ResiliencePolicy):
    def __init__(self, redundancy: float = 0.2, fallback_s: float = 180.0,
                 repair_after_s: float = 300.0, min_gain: float = 0.05):
        if redundancy < 0 or fallback_s < 0 or repair_after_s <= 0 or min_gain < 0:
            raise ValueError("need redundancy >= 0, fallback_s >= 0, repair_after_s > 0, min_gain >= 0")
        self.redundancy = float(redundancy)
        self.fallback_s = float(fallback_s)
        self.repair_after_s = float(repair_after_s)
        self.min_gain = float(min_gain)
        # state_factor 2: own stage + the neighbour's redundant copy (exact check follows)
        self._cache = TemplateCache(state_factor=2.0)
        self._templates: dict = {}

    def _plan(self, view: ClusterView):
        self._templates = self._cache.get(view.layers, view.mem_bytes, view.max_nodes)
        return best_uniform(view, self._templates, list(view.nodes), self.redundancy, min_depth=2)

    def _dec(self, pipes, **kw) -> Decision:
        return Decision(tuple(pipes), redundancy=self.redundancy, **kw)

    @staticmethod
    def _degraded(pipes) -> bool:
        return any(len(node_groups(p)) < p.n_stages for p in pipes)

    def _failover(self, view: ClusterView):
        """Move each lost stage onto the node of the preceding stage; None if impossible."""
        ready = set(view.nodes)
        out = []
        for p in view.current:
            nodes = list(p.nodes)
            lost = [s for s, n in enumerate(nodes) if n not in ready]
            if not lost:
                out.append(p)
                continue
            hosts = {n: nodes.count(n) for n in nodes}
            for s in lost:
                prev = nodes[(s - 1) % len(nodes)]
                if prev not in ready or hosts[nodes[s]] > 1 or hosts[prev] > 1:
                    # adjacent loss, or a node that already ran two stages
                    return None
                hosts[prev] += 1
                nodes[s] = prev
            out.append(Pipeline(tuple(nodes), p.bounds, p.microbatches))
        out = tuple(out)
        if not plan_fits(view, out, self.redundancy):
            return None
        return out

    def schedule(self, view: ClusterView) -> Decision:
        best = self._plan(view)
        if best is None:
            infeasible = not self._templates
            return Decision((), action="infeasible" if infeasible else "wait", infeasible=infeasible,
                            pause_s=0.0 if view.event == "start" else self.fallback_s,
                            reason="no redundant plan fits in GPU memory on these nodes")
        pipes, it = best
        if view.event == "start" or not view.current:
            pause = 0.0 if view.event == "start" else self.fallback_s
            return self._dec(pipes, pause_s=pause, action="start")
        ready = set(view.nodes)
        in_use = {n for p in view.current for n in p.nodes}
        if in_use - ready:
            fo = self._failover(view)
            if fo is None:
                return self._dec(pipes, pause_s=self.fallback_s, action="fallback",
                                 reason="a stage and its backup are both lost")
            return self._dec(fo, action="failover", wake_after_s=self.repair_after_s,
                             keeps_in_flight=True)
        degraded = self._degraded(view.current)
        if view.event == "wake" and degraded:
            return self._dec(pipes, pause_s=self.fallback_s, action="repair")
        cur_it = plan_iteration_estimate_s(view, view.current, self.redundancy)
        if view.added and it < cur_it / (1.0 + self.min_gain):
            return self._dec(pipes, pause_s=self.fallback_s, action="grow")
        return self._dec(view.current, action="keep",
                         wake_after_s=self.repair_after_s if degraded else None)
