"""SRSF: smallest remaining service first, ignoring which devices each job can use.

Remaining service = participants x remaining rounds (device-rounds still to serve): the
job closest to finishing is served first, the classic way to lower mean completion time.
"""

from __future__ import annotations

from orrery.policies.fl.base import FLDecision, FLPolicy, FLView, order_by_key
from orrery.policies.registry import register


@register("fl", "srsf")
class SRSF(FLPolicy):
    def schedule(self, view: FLView) -> FLDecision:
        return order_by_key(view, lambda j: (j.remaining_service, j.arrival_s))
