"""Size-tiered FL: one independent model per device capability tier.

Tier k's model scales every cell of the starting model geometrically towards the largest
model of the search space (widths) and linearly (depths); the top tier is the largest model.
Each model is initialised fresh and aggregated only with its own clients (no sharing); a client
trains and uses the largest tier model it can train (memory, and the round's time budget).
"""

from __future__ import annotations

from orrery.policies.fedtrans.base import (
    ArchSpec,
    MultiModelDecision,
    MultiModelPolicy,
    MultiModelView,
    NewModel,
    largest_trainable,
)
from orrery.policies.registry import register


def tier_archs(view: MultiModelView, n_tiers: int) -> list[ArchSpec]:
    root = view.models[0].arch
    out = [root]
    for k in range(1, n_tiers):
        f = k / (n_tiers - 1)
        cells = tuple(
            (max(w, round(w * (view.max_width / w) ** f)), max(d, round(d + (view.max_depth - d) * f)))
            for w, d in root.cells
        )
        a = ArchSpec(root.kind, root.in_shape, root.n_classes, cells)
        if a not in out:
            out.append(a)
    return out


@register("fedtrans", "tiered")
class Tiered(MultiModelPolicy):
    def __init__(self, n_tiers: int = 3):
        if int(n_tiers) < 1:
            raise ValueError(f"n_tiers must be >= 1, got {n_tiers}")
        self.n_tiers = int(n_tiers)

    def schedule(self, view: MultiModelView) -> MultiModelDecision:
        if not view.models:
            return MultiModelDecision()
        archs = {}
        new = []
        for a in tier_archs(view, self.n_tiers):
            have = [m.model_id for m in view.models if m.arch == a]
            if have:
                archs[have[0]] = a
            elif view.purpose == "train" and len(view.models) + len(new) < view.max_models:
                archs[view.next_model_id + len(new)] = a
                new.append(NewModel("fresh", arch=a))
        assign = {}
        for c in view.clients:
            mid = largest_trainable(view, c, archs)
            if mid is not None:
                assign[c.client_id] = mid
        return MultiModelDecision(assign=assign, new_models=tuple(new))
