"""Multi-model FL contract: architectures, their costs, the policy's view and its decision.

Why a separate policy domain: `policies/fl/` decides how FL *jobs* share devices (Venn & co.);
a multi-model FL policy instead decides, inside one training, which models exist and which
client trains which one. Different view, different decision, so a different contract.

Architectures are plain data (`ArchSpec`: a stack of cells, each `depth` layers of `width`
units) and their costs are computed here, in pure Python, so that a policy can price a model
it has not built yet; the torch models in `realbackend/fedtrans_models.py` follow the same
layout (a test checks the parameter counts agree).

Model ids: the models of a view keep their ids; the i-th entry of `decision.new_models`
becomes model `view.next_model_id + i`, and the same decision may already assign clients to it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import numpy as np

from orrery.policies.registry import Contract, register_contract

BYTES_PER_PARAM = 4  # float32


# ----------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class ArchSpec:
    """A model built from cells. `kind` "mlp": each layer is Linear+ReLU on a flat input;
    "cnn": each layer is a 3x3 Conv+ReLU (padding 1), 2x2 max-pool after every cell but the last
    while the map is at least 2x2, then global average pooling. Both end in a Linear head."""

    kind: str  # "mlp" | "cnn"
    in_shape: tuple[int, ...]  # mlp: (features,), cnn: (channels, height, width)
    n_classes: int
    cells: tuple[tuple[int, int], ...]  # (width, depth) per cell

    def layers(self) -> list[tuple[int, int, int, int, int]]:
        """(cell, layer, fan_in, fan_out, spatial positions) of every hidden layer, in order."""
        out = []
        if self.kind == "mlp":
            fan_in, hw = int(np.prod(self.in_shape)), 1
        else:
            fan_in, hw = self.in_shape[0], self.in_shape[1] * self.in_shape[2]
        h = self.in_shape[1] if self.kind == "cnn" else 1
        w = self.in_shape[2] if self.kind == "cnn" else 1
        for c, (width, depth) in enumerate(self.cells):
            for layer in range(depth):
                out.append((c, layer, fan_in, width, hw))
                fan_in = width
            if self.kind == "cnn" and c < len(self.cells) - 1 and h >= 2 and w >= 2:
                h, w = h // 2, w // 2
                hw = h * w
        return out

    def n_params(self) -> int:
        k = 9 if self.kind == "cnn" else 1
        n = sum(fi * fo * k + fo for _, _, fi, fo, _ in self.layers())
        return n + self.cells[-1][0] * self.n_classes + self.n_classes

    def forward_flops(self) -> float:
        """FLOPs of one forward pass of one sample (2 per multiply-add)."""
        k = 9 if self.kind == "cnn" else 1
        macs = sum(fi * fo * k * hw for _, _, fi, fo, hw in self.layers())
        return 2.0 * (macs + self.cells[-1][0] * self.n_classes)

    def activations(self) -> int:
        """Activations kept for the backward pass, per sample."""
        return int(np.prod(self.in_shape)) + sum(fo * hw for *_, fo, hw in self.layers()) + self.n_classes

    def widen(self, cell: int, width: int) -> ArchSpec:
        cells = list(self.cells)
        cells[cell] = (int(width), cells[cell][1])
        return replace(self, cells=tuple(cells))

    def deepen(self, cell: int) -> ArchSpec:
        cells = list(self.cells)
        cells[cell] = (cells[cell][0], cells[cell][1] + 1)
        return replace(self, cells=tuple(cells))

    def within(self, max_width: int, max_depth: int) -> bool:
        return all(w <= max_width and d <= max_depth for w, d in self.cells)

    def same_family(self, other: ArchSpec) -> bool:
        return (self.kind, self.in_shape, self.n_classes, len(self.cells)) == (
            other.kind, other.in_shape, other.n_classes, len(other.cells))


@dataclass(frozen=True)
class CostModel:
    """How a proxy model's size maps to the emulated on-device cost.

    The torch model trained in the emulation is a small proxy; `scale` multiplies its
    parameters, FLOPs and activations to the size of the model a phone would really train
    (one knob, stated per study). Training memory = weights + gradients + optimizer state
    (3 x params) + activations of one batch (forward and backward, 2 x), float32.
    Training FLOPs per sample = 3 x forward (forward + backward).
    """

    scale: float = 1.0
    batch_size: int = 16

    def train_mem_bytes(self, arch: ArchSpec) -> float:
        return self.scale * BYTES_PER_PARAM * (3 * arch.n_params() + 2 * self.batch_size * arch.activations())

    def train_flops_per_sample(self, arch: ArchSpec) -> float:
        return self.scale * 3.0 * arch.forward_flops()

    def update_bytes(self, arch: ArchSpec) -> float:
        return self.scale * BYTES_PER_PARAM * arch.n_params()


# ----------------------------------------------------------------------------- view
@dataclass(frozen=True)
class ClientView:
    """What the server knows about a client: a capability summary and a data summary."""

    client_id: int
    mem_bytes: float  # memory available for training
    flops_per_s: float  # sustained training speed
    bw_down_bytes_s: float
    bw_up_bytes_s: float
    n_samples: int  # local training samples
    label_entropy: float  # entropy of the local label histogram / log(n_classes), in [0, 1]


@dataclass(frozen=True)
class ModelView:
    model_id: int
    parent_id: int  # -1: a root (freshly initialised) model
    arch: ArchSpec
    created_round: int
    rounds_trained: int
    losses: tuple[float, ...]  # sample-weighted mean loss of the global model on its clients'
    # training data (measured before local training), one per round it trained, oldest first
    cell_signal: tuple[float, ...]  # bottleneck signal per cell (see sim.fedtrans), 0 before any round
    clients_last_round: int


@dataclass(frozen=True)
class MultiModelView:
    round: int
    time_s: float
    purpose: str  # "train": assign this round's candidates; "eval": give every client the model it uses
    models: tuple[ModelView, ...]
    clients: tuple[ClientView, ...]  # train: this round's candidates; eval: every client
    population: tuple[ClientView, ...]  # every client (for "how many could train it")
    assigned: dict[int, int]  # model id -> clients already assigned earlier in this round
    target: int  # clients the round still wants assigned (train)
    time_budget_s: float  # a client must finish compute + transfer within this (train)
    local_epochs: int
    cost: CostModel
    max_width: int  # bounds of the architecture search space
    max_depth: int
    max_models: int
    next_model_id: int

    def model(self, model_id: int) -> ModelView:
        for m in self.models:
            if m.model_id == model_id:
                return m
        raise KeyError(model_id)

    def round_time_s(self, c: ClientView, arch: ArchSpec) -> float:
        """Compute + transfer time of one round of local training of `arch` on client `c`."""
        cm = self.cost
        comp = self.local_epochs * c.n_samples * cm.train_flops_per_sample(arch) / c.flops_per_s
        ub = cm.update_bytes(arch)
        return comp + ub / c.bw_down_bytes_s + ub / c.bw_up_bytes_s

    def fits_memory(self, c: ClientView, arch: ArchSpec) -> bool:
        return self.cost.train_mem_bytes(arch) <= c.mem_bytes

    def can_train(self, c: ClientView, arch: ArchSpec) -> bool:
        """Memory always; the per-round time budget when training."""
        if not self.fits_memory(c, arch):
            return False
        return self.purpose == "eval" or self.round_time_s(c, arch) <= self.time_budget_s


# ----------------------------------------------------------------------------- decision
@dataclass(frozen=True)
class NewModel:
    """A model to add: `op` "widen" (cell `cell` to `width` units), "deepen" (one identity layer
    appended to cell `cell`) of model `parent_id`, or "fresh" (random init of `arch`)."""

    op: str
    parent_id: int = -1
    cell: int = -1
    width: int = 0
    arch: ArchSpec | None = None  # fresh only

    def result(self, parent: ArchSpec | None) -> ArchSpec:
        if self.op == "fresh":
            if self.arch is None:
                raise ValueError("a fresh model needs an arch")
            return self.arch
        if parent is None:
            raise ValueError(f"{self.op} needs a parent model")
        if self.op == "widen":
            return parent.widen(self.cell, self.width)
        if self.op == "deepen":
            return parent.deepen(self.cell)
        raise ValueError(f"unknown op {self.op!r}")


@dataclass(frozen=True)
class MultiModelDecision:
    assign: dict[int, int] = field(default_factory=dict)  # client id -> model id (absent: sits out)
    new_models: tuple[NewModel, ...] = ()
    # soft aggregation: share[(m, n)] in [0, 1] is how much model m's layers that model n has in
    # common (same layer, same shape) move towards n's clients' weights; absent = 0 (independent)
    share: dict[tuple[int, int], float] = field(default_factory=dict)


class MultiModelPolicy(ABC):
    """Decide the models of a multi-model FL training and who trains which."""

    policy_name = ""

    @abstractmethod
    def schedule(self, view: MultiModelView) -> MultiModelDecision:
        """Called when a round has candidates to place (train) and when clients are evaluated."""


# ----------------------------------------------------------------------------- helpers
def archs_after(view: MultiModelView, decision: MultiModelDecision) -> dict[int, ArchSpec]:
    """Model id -> architecture, including the decision's new models."""
    out = {m.model_id: m.arch for m in view.models}
    for i, nm in enumerate(decision.new_models):
        out[view.next_model_id + i] = nm.result(out.get(nm.parent_id))
    return out


def data_weight(c: ClientView, ref_samples: float) -> float:
    """How much a client's data can feed a bigger model: more and more varied samples -> closer to 1."""
    amount = min(1.0, math.sqrt(max(c.n_samples, 0) / max(ref_samples, 1e-9)))
    return amount * (0.5 + 0.5 * min(max(c.label_entropy, 0.0), 1.0))


def largest_trainable(view: MultiModelView, c: ClientView, archs: dict[int, ArchSpec],
                      allowed: set[int] | None = None) -> int | None:
    """The model with the most parameters client `c` can train (ties: lowest id)."""
    best, best_p = None, -1
    for mid in sorted(archs):
        if allowed is not None and mid not in allowed:
            continue
        a = archs[mid]
        if view.can_train(c, a) and a.n_params() > best_p:
            best, best_p = mid, a.n_params()
    return best


def tree_distance(parents: dict[int, int], a: int, b: int) -> int | None:
    """Edges between two models in the derivation tree (None: different trees)."""
    def chain(x):
        out = []
        while x >= 0 and x not in out:
            out.append(x)
            x = parents.get(x, -1)
        return out
    ca, cb = chain(a), chain(b)
    common = [x for x in ca if x in cb]
    if not common:
        return None
    return ca.index(common[0]) + cb.index(common[0])


# ----------------------------------------------------------------------------- contract
def validate(view: MultiModelView, decision: MultiModelDecision) -> list[str]:
    if not isinstance(decision, MultiModelDecision):
        return [f"decision is {type(decision).__name__}, expected MultiModelDecision"]
    problems: list[str] = []
    archs = {m.model_id: m.arch for m in view.models}
    root = view.models[0].arch if view.models else None
    if view.purpose == "eval" and decision.new_models:
        problems.append("new models proposed in an eval view")
    if len(view.models) + len(decision.new_models) > view.max_models:
        problems.append(f"{len(view.models) + len(decision.new_models)} models exceed max_models {view.max_models}")
    for i, nm in enumerate(decision.new_models):
        mid = view.next_model_id + i
        if nm.op not in ("widen", "deepen", "fresh"):
            problems.append(f"new model {mid}: unknown op {nm.op!r}")
            continue
        parent = archs.get(nm.parent_id)
        if nm.op != "fresh" and parent is None:
            problems.append(f"new model {mid}: unknown parent {nm.parent_id}")
            continue
        if nm.op != "fresh" and not (0 <= nm.cell < len(parent.cells)):
            problems.append(f"new model {mid}: cell {nm.cell} outside 0..{len(parent.cells) - 1}")
            continue
        if nm.op == "widen" and nm.width <= parent.cells[nm.cell][0]:
            problems.append(f"new model {mid}: widen to {nm.width} units is not wider")
            continue
        try:
            a = nm.result(parent)
        except ValueError as err:
            problems.append(f"new model {mid}: {err}")
            continue
        if root is not None and not a.same_family(root):
            problems.append(f"new model {mid}: architecture of another family")
        if not a.within(view.max_width, view.max_depth):
            problems.append(f"new model {mid}: {a.cells} outside width <= {view.max_width}, depth <= {view.max_depth}")
        archs[mid] = a
    clients = {c.client_id: c for c in view.clients}
    for cid, mid in decision.assign.items():
        c = clients.get(cid)
        if c is None:
            problems.append(f"client {cid} is not in the view")
            continue
        a = archs.get(mid)
        if a is None:
            problems.append(f"client {cid}: unknown model {mid}")
            continue
        if not view.fits_memory(c, a):
            problems.append(f"client {cid}: model {mid} needs {view.cost.train_mem_bytes(a):.3g} B, "
                            f"device has {c.mem_bytes:.3g} B")
        elif view.purpose == "train" and view.round_time_s(c, a) > view.time_budget_s:
            problems.append(f"client {cid}: model {mid} takes {view.round_time_s(c, a):.3g} s, "
                            f"budget {view.time_budget_s:.3g} s")
    for (m, n), w in decision.share.items():
        if m not in archs or n not in archs:
            problems.append(f"share ({m}, {n}) names an unknown model")
        if not (0.0 <= w <= 1.0) or not math.isfinite(w):
            problems.append(f"share ({m}, {n}) = {w} outside [0, 1]")
    return problems


def sample_views(rng: np.random.Generator) -> list[MultiModelView]:
    """A short training history: one root model, later views with derived models, and eval views."""
    cost = CostModel(scale=50.0, batch_size=16)
    root = ArchSpec("mlp", (16,), 5, ((8, 1), (8, 1)))
    pop = tuple(
        ClientView(i, float(rng.choice([2e6, 5e6, 2e7, 1e8])), float(rng.uniform(1e8, 1e10)),
                   float(rng.uniform(1e5, 5e6)), float(rng.uniform(5e4, 1e6)), int(rng.integers(5, 200)),
                   float(rng.uniform(0, 1)))
        for i in range(40)
    )
    views = []
    models: list[ModelView] = [ModelView(0, -1, root, 0, 0, (), (0.0, 0.0), 0)]
    for r in range(12):
        if r == 6:
            a1 = root.widen(1, 16)
            models.append(ModelView(1, 0, a1, 6, 0, (), (0.0, 0.0), 0))
        if r == 9:
            models.append(ModelView(2, 1, models[1].arch.deepen(0), 9, 0, (), (0.0, 0.0), 0))
        trained = []
        for m in models:
            k = r - m.created_round
            losses = tuple(float(2.0 * math.exp(-0.3 * i) + 0.5 + 0.01 * rng.random()) for i in range(k))
            sig = tuple(float(x) for x in rng.uniform(0, 0.2, len(m.arch.cells)))
            trained.append(replace(m, rounds_trained=k, losses=losses, cell_signal=sig, clients_last_round=int(k > 0) * 3))
        purpose = "eval" if r in (5, 11) else "train"
        idx = rng.choice(len(pop), size=int(rng.integers(3, 15)), replace=False)
        cands = pop if purpose == "eval" else tuple(pop[i] for i in sorted(idx))
        views.append(MultiModelView(
            round=r, time_s=100.0 * r, purpose=purpose, models=tuple(trained), clients=cands, population=pop,
            assigned={}, target=len(cands), time_budget_s=float(rng.choice([5.0, 60.0, 600.0])),
            local_epochs=1, cost=cost, max_width=64, max_depth=3, max_models=6, next_model_id=len(trained),
        ))
    return views


register_contract(Contract(domain="fedtrans", base=MultiModelPolicy, sample_views=sample_views, validate=validate))
