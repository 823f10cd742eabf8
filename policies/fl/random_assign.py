"""Random assignment: each checking-in device goes to a uniformly random eligible job that
still needs devices (the state of the art Venn compares against, as in FedScale)."""

from __future__ import annotations

from orrery.policies.fl.base import FLDecision, FLPolicy, FLView
from orrery.policies.registry import register


@register("fl", "random")
class RandomAssign(FLPolicy):
    # lists every active job; the executor draws among those still collecting devices
    replan_on = "jobs"

    def schedule(self, view: FLView) -> FLDecision:
        jobs = sorted(view.jobs, key=lambda j: j.job_id)
        order = {a.mask: tuple(j.job_id for j in jobs if a.eligible_for(j.requirement)) for a in view.atoms}
        return FLDecision(order=order, split="random")
