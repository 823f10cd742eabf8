"""FIFO: devices go to the earliest-arrived eligible job that still needs devices."""

from __future__ import annotations

from orrery.policies.fl.base import FLDecision, FLPolicy, FLView, order_by_key
from orrery.policies.registry import register


@register("fl", "fifo")
class FIFO(FLPolicy):
    # the order (by arrival) lists every active job; the executor skips those not collecting,
    # so the decision changes only when a job arrives or finishes
    replan_on = "jobs"

    def schedule(self, view: FLView) -> FLDecision:
        return order_by_key(view, lambda j: j.arrival_s, demanding_only=False)
