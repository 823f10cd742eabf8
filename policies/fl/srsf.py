"""SRSF: smallest remaining first, ignoring which devices each job can use. Two variants:

- `srsf` (the Venn paper's baseline, SymbioticLab/Venn src/baseline.py `SmallReqScheduler`):
  the smallest remaining demand of the *current round* first (devices the round still needs).
- `srsf_service` (orrery's earlier SRSF): smallest remaining service first, participants x
  remaining rounds (device-rounds still to serve), the classic way to lower mean completion time.
"""

from __future__ import annotations

from orrery.policies.fl.base import FLDecision, FLPolicy, FLView, order_by_key
from orrery.policies.registry import register


@register("fl", "srsf")
class SRSF(FLPolicy):
    def schedule(self, view: FLView) -> FLDecision:
        return order_by_key(view, lambda j: (j.remaining_demand, j.arrival_s))


@register("fl", "srsf_service")
class SRSFService(FLPolicy):
    def schedule(self, view: FLView) -> FLDecision:
        return order_by_key(view, lambda j: (j.remaining_service, j.arrival_s))
