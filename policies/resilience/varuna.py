"""Varuna (EuroSys'22) as the checkpoint-restart baseline.

Uniform D × P plan (the fastest that fits; `uniform.py`); periodic checkpoints; on any loss of a
node in use, the job restarts on the remaining nodes from the last checkpoint and re-plans. New
nodes are taken in by a planned restart (checkpoint first, so nothing is lost) when the new plan
is estimated at least `min_gain` faster.

Constants (DESIGN: "Varuna checkpoints periodically and restarts (minutes per failure)"):
- `restart_s` = 240 s: relaunch the job on the new node set, rebuild communicators, load the
  checkpoint and re-profile / morph the configuration ("minutes per failure").
- `checkpoint_interval_s` = 240 s of training between checkpoints (frequent, which favours
  Varuna: little work is lost per failure, at ~1-2% checkpoint overhead).
- checkpoint pause = 1 s + (largest stage state / D) / storage bandwidth: each data-parallel
  replica of a stage writes a disjoint slice of that stage's state.
"""

from __future__ import annotations

from orrery.policies.registry import register
from orrery.policies.resilience.base import (
    ClusterView,
    Decision,
    ResiliencePolicy,
    node_groups,
    plan_iteration_estimate_s,
)
from orrery.policies.resilience.templates import TemplateCache
from orrery.policies.resilience.uniform import best_uniform


@register("resilience", "varuna")
class Varuna(ResiliencePolicy):
    def __init__(self, restart_s: float = 240.0, checkpoint_interval_s: float = 240.0,
                 min_gain: float = 0.05):
        if restart_s < 0 or checkpoint_interval_s <= 0 or min_gain < 0:
            raise ValueError("need restart_s >= 0, checkpoint_interval_s > 0, min_gain >= 0")
        self.restart_s = float(restart_s)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.min_gain = float(min_gain)
        self._cache = TemplateCache()
        self._templates: dict = {}

    def _plan(self, view: ClusterView):
        self._templates = self._cache.get(view.layers, view.mem_bytes, view.max_nodes)
        return best_uniform(view, self._templates, list(view.nodes))

    def _decision(self, view, pipes, **kw) -> Decision:
        D = len(pipes)
        ranges = pipes[0].stage_layers(len(view.layers))
        biggest = max(sum(view.layers[i].state_bytes for i in r) for r in ranges)
        ckpt = 1.0 + biggest / D / view.storage_bw_bytes_per_s
        return Decision(pipes, checkpoint_interval_s=self.checkpoint_interval_s, checkpoint_s=ckpt,
                        reason=f"D={D} x P={pipes[0].n_stages}", **kw)

    def schedule(self, view: ClusterView) -> Decision:
        best = self._plan(view)
        if best is None:
            infeasible = not self._templates
            return Decision((), action="infeasible" if infeasible else "wait", infeasible=infeasible,
                            pause_s=0.0 if view.event == "start" else self.restart_s,
                            rollback=bool(view.current),
                            reason="no uniform plan fits in GPU memory on these nodes")
        pipes, it = best
        if view.event == "start" or not view.current:
            pause = 0.0 if view.event == "start" else self.restart_s
            return self._decision(view, pipes, pause_s=pause, action="start")
        in_use = {n for p in view.current for n, _ in node_groups(p)}
        lost = in_use - set(view.nodes)
        if lost:
            return self._decision(view, pipes, pause_s=self.restart_s, rollback=True,
                                  action="restart")
        # only additions (or idle nodes lost): restart to grow if it pays
        cur_it = plan_iteration_estimate_s(view, view.current)
        if it < cur_it / (1.0 + self.min_gain):
            ckpt = self._decision(view, pipes).checkpoint_s
            return self._decision(view, pipes, pause_s=ckpt + self.restart_s, action="grow")
        return self._decision(view, view.current, action="keep")
