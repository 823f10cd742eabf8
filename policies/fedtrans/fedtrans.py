"""FedTrans: grow models from a small one where the architecture is the bottleneck.

Decisions, all from the view (no torch here):

*When to transform.* A leaf model (no child yet) that has trained `min_rounds` rounds since
it was created and whose loss has plateaued: the mean of its last `patience` round losses
improved on the `patience` before by less than `plateau_tol` (relative). The loss is the
global model's loss on its clients' data before local training, so it measures the model the
server holds, not what clients overfit.

*Which cell.* The bottleneck signal of a cell is the norm of the round's aggregated update of
the cell's weights relative to the norm of those weights (an EMA over rounds, computed by the
simulator from the client updates). When the loss no longer falls but a cell is still pushed
hardest, that cell's capacity limits the loss; it is transformed: widened by `widen_factor`
(duplicate units, split outgoing weights) while it is narrower than `max_width`, else deepened
by one identity-initialised layer while shallower than `max_depth`, else the next cell by
signal is tried. A transform happens only if at least `min_capable_fraction` of all clients can
train the new model within memory and the time budget; at most one transform per round.

*Who trains what (data-aware utility).* Clients in decreasing data weight (more samples and
more varied labels first, see `base.data_weight`) each take the model maximising
`w_c * log2(1 + params_m / params_smallest) + need_bonus * starving_m`, among the models they
can train (memory and time budget), where `starving_m` is the fraction of `min_clients` that
model m still misses this round. Only *active* models are trained: those that are the largest
trainable model of at least one client; a model all of whose capable clients can train a
bigger one is superseded (it is kept, and still serves clients until its successor has
trained `eval_min_rounds` rounds). Data-rich capable clients train big models; every model keeps
a few clients.

*Soft aggregation.* Models of one derivation tree share the layers they have in common:
`share[(m, n)] = share_decay ** tree_distance(m, n)`.

*Serving (eval).* A client uses the largest model it can hold that has trained at least
`eval_min_rounds` rounds (else the largest it can hold).
"""

from __future__ import annotations

import math

import numpy as np

from orrery.policies.fedtrans.base import (
    ArchSpec,
    ModelView,
    MultiModelDecision,
    MultiModelPolicy,
    MultiModelView,
    NewModel,
    archs_after,
    data_weight,
    largest_trainable,
    tree_distance,
)
from orrery.policies.registry import register


def plateaued(losses: tuple[float, ...], patience: int, tol: float) -> bool:
    if len(losses) < 2 * patience:
        return False
    prev = float(np.mean(losses[-2 * patience:-patience]))
    recent = float(np.mean(losses[-patience:]))
    return (prev - recent) < tol * max(abs(prev), 1e-12)


@register("fedtrans", "fedtrans")
class FedTrans(MultiModelPolicy):
    def __init__(self, patience: int = 2, plateau_tol: float = 0.1, min_rounds: int = 3,
                 widen_factor: float = 4.0, share_decay: float = 0.5, min_clients: int = 2,
                 need_bonus: float = 1.0, min_capable_fraction: float = 0.1, eval_min_rounds: int = 3):
        if patience < 1 or min_rounds < 1 or min_clients < 0 or eval_min_rounds < 0:
            raise ValueError("patience, min_rounds >= 1; min_clients, eval_min_rounds >= 0")
        if widen_factor <= 1.0:
            raise ValueError(f"widen_factor must be > 1, got {widen_factor}")
        if not 0.0 <= share_decay <= 1.0 or not 0.0 <= min_capable_fraction <= 1.0:
            raise ValueError("share_decay and min_capable_fraction must lie in [0, 1]")
        self.patience, self.plateau_tol, self.min_rounds = int(patience), float(plateau_tol), int(min_rounds)
        self.widen_factor, self.share_decay = float(widen_factor), float(share_decay)
        self.min_clients, self.need_bonus = int(min_clients), float(need_bonus)
        self.min_capable_fraction, self.eval_min_rounds = float(min_capable_fraction), int(eval_min_rounds)
        self._last_transform_round = -1

    # -- when and which cell -------------------------------------------------------------
    def capable_fraction(self, view: MultiModelView, arch: ArchSpec) -> float:
        if not view.population:
            return 0.0
        return sum(view.can_train(c, arch) for c in view.population) / len(view.population)

    def propose(self, view: MultiModelView) -> NewModel | None:
        if view.purpose != "train" or len(view.models) >= view.max_models:
            return None
        if view.round <= self._last_transform_round:
            return None
        parents = {m.parent_id for m in view.models}
        leaves = sorted((m for m in view.models if m.model_id not in parents),
                        key=lambda m: (-m.arch.n_params(), m.model_id))
        for m in leaves:
            if m.rounds_trained < self.min_rounds or view.round - m.created_round < self.min_rounds:
                continue
            if not plateaued(m.losses, self.patience, self.plateau_tol):
                continue
            nm = self.transform_of(view, m)
            if nm is not None:
                return nm
        return None

    def transform_of(self, view: MultiModelView, m: ModelView) -> NewModel | None:
        sig = list(m.cell_signal) + [0.0] * (len(m.arch.cells) - len(m.cell_signal))
        for cell in sorted(range(len(m.arch.cells)), key=lambda c: (-sig[c], c)):
            w, d = m.arch.cells[cell]
            if w < view.max_width:
                nm = NewModel("widen", m.model_id, cell, min(view.max_width, int(math.ceil(w * self.widen_factor))))
            elif d < view.max_depth:
                nm = NewModel("deepen", m.model_id, cell)
            else:
                continue
            if self.capable_fraction(view, nm.result(m.arch)) >= self.min_capable_fraction:
                return nm
        return None

    # -- decision ----------------------------------------------------------------------------
    def schedule(self, view: MultiModelView) -> MultiModelDecision:
        if not view.models:
            return MultiModelDecision()
        nm = self.propose(view)
        new = (nm,) if nm is not None else ()
        if new:
            self._last_transform_round = view.round
        dec = MultiModelDecision(new_models=new)
        archs = archs_after(view, dec)
        parents = {m.model_id: m.parent_id for m in view.models}
        for i, n in enumerate(new):
            parents[view.next_model_id + i] = n.parent_id
        if view.purpose == "eval":
            assign = self.assign_eval(view, archs)
        else:
            assign = self.assign_train(view, archs)
        share = {}
        ids = sorted(archs)
        for a in ids:
            for b in ids:
                if a != b:
                    dist = tree_distance(parents, a, b)
                    if dist is not None and self.share_decay > 0:
                        share[(a, b)] = self.share_decay ** dist
        return MultiModelDecision(assign=assign, new_models=new, share=share)

    def assign_eval(self, view: MultiModelView, archs: dict[int, ArchSpec]) -> dict[int, int]:
        trained = {m.model_id for m in view.models if m.rounds_trained >= self.eval_min_rounds}
        assign = {}
        for c in view.clients:
            mid = largest_trainable(view, c, archs, trained)
            if mid is None:
                mid = largest_trainable(view, c, archs)
            if mid is not None:
                assign[c.client_id] = mid
        return assign

    def active_models(self, view: MultiModelView, archs: dict[int, ArchSpec]) -> set[int]:
        """Models that are the largest trainable model of at least one client: a model every
        one of whose capable clients can train a bigger one is superseded and no longer trained."""
        active = set()
        for c in view.population or view.clients:
            mid = largest_trainable(view, c, archs)
            if mid is not None:
                active.add(mid)
        return active

    def assign_train(self, view: MultiModelView, archs: dict[int, ArchSpec]) -> dict[int, int]:
        ref = float(np.median([c.n_samples for c in view.population])) if view.population else 1.0
        p_min = min(a.n_params() for a in archs.values())
        active = self.active_models(view, archs)
        counts = {mid: view.assigned.get(mid, 0) for mid in archs}
        order = sorted(view.clients, key=lambda c: (-data_weight(c, ref), c.client_id))
        assign = {}
        for c in order:
            dw = data_weight(c, ref)
            best, best_u = None, -math.inf
            for mid in sorted(active):
                a = archs[mid]
                if not view.can_train(c, a):
                    continue
                starving = max(0, self.min_clients - counts[mid]) / self.min_clients if self.min_clients else 0.0
                u = dw * math.log2(1.0 + a.n_params() / p_min) + self.need_bonus * starving
                if u > best_u + 1e-12:
                    best, best_u = mid, u
            if best is not None:
                assign[c.client_id] = best
                counts[best] += 1
        return assign
