"""FedAvg: one model for everyone (the baseline of multi-model FL).

`size="smallest"` trains the starting model, which every device can hold; `size="largest"`
(registered as `fedavg_large`) trains the largest model of the search space, freshly
initialised, on every client that can train it and serves nobody else: the "largest model on
every capable client" cost baseline.
"""

from __future__ import annotations

from orrery.policies.fedtrans.base import (
    ArchSpec,
    MultiModelDecision,
    MultiModelPolicy,
    MultiModelView,
    NewModel,
)
from orrery.policies.registry import register


def largest_arch(view: MultiModelView) -> ArchSpec:
    root = view.models[0].arch
    return ArchSpec(root.kind, root.in_shape, root.n_classes,
                    tuple((view.max_width, view.max_depth) for _ in root.cells))


@register("fedtrans", "fedavg")
class FedAvg(MultiModelPolicy):
    def __init__(self, size: str = "smallest"):
        if size not in ("smallest", "largest"):
            raise ValueError(f"size must be 'smallest' or 'largest', got {size!r}")
        self.size = size

    def schedule(self, view: MultiModelView) -> MultiModelDecision:
        if not view.models:
            return MultiModelDecision()
        new: tuple[NewModel, ...] = ()
        if self.size == "smallest":
            mid, arch = view.models[0].model_id, view.models[0].arch
        else:
            arch = largest_arch(view)
            have = [m.model_id for m in view.models if m.arch == arch]
            if have:
                mid = have[0]
            elif view.purpose == "train" and len(view.models) < view.max_models:
                mid, new = view.next_model_id, (NewModel("fresh", arch=arch),)
            else:
                return MultiModelDecision()
        assign = {c.client_id: mid for c in view.clients if view.can_train(c, arch)}
        return MultiModelDecision(assign=assign, new_models=new)


@register("fedtrans", "fedavg_large")
class FedAvgLarge(FedAvg):
    def __init__(self, size: str = "largest"):
        super().__init__(size)
