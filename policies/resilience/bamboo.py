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
- `fallback_s` = 180 s ("orrery" constants): reconfiguration after an unrecoverable loss or to rebuild clean
  pipelines.
- `repair_after_s` = 300 s: a degraded (failed-over) plan is rebuilt this long after the
  failover, when no other change has triggered a reconfiguration first (modelling choice: a
  failed-over pipeline has no redundancy left and runs slow, so it is repaired at the next
  reconfiguration point rather than left degraded for hours).
- New nodes join by a reconfiguration (`fallback_s`) when the new plan is estimated at least
  `min_gain` faster.
- `constants="artifact"` (default): `fallback_s` per model from Oobleck's SOSP'23 artifact
  (SymbioticLab/Oobleck@sosp23-artifact, tools/simulator/bamboo_simulator.py,
  `local_rendezvous_timeout_delta`): 230 s for GPT-3 2.7B, 450 s for 6.7B, 76 s for BERT-large;
  other models and `constants="orrery"` use 180 s.

Memory (`memory=`), the question the artifact answers with "OOM" for every GPT-3 model:
- "bamboo" (default with `constants="artifact"`): Bamboo's own accounting. Eager forward redundant computation (FRC) runs
  the successor stage's forward for every microbatch and keeps its outputs until that
  microbatch's backward, so that a failed-over node can run the lost stage's backward at once;
  activations are kept whole (no recomputation: FRC's kept outputs *are* the activations a
  recomputation would rebuild). Per in-flight microbatch a layer then keeps its full activation
  (34·s·b·d bytes, Korthikanti et al. 2022; the layer profile's `peak_bytes`), twice (own +
  the successor's copy), and the node holds its own and its successor's model+optimizer state.
  Bamboo's pipelines split the layers evenly by parameters (DeepSpeed's default
  `partition_method="parameters"`), so under 1F1B the first stage of P keeps P microbatches of
  ~L/P layers: about 2 × (one microbatch's activations through the whole model), whatever the
  depth. For GPT-3 2.7B at microbatch 4 and 2048 tokens that is 2 × 22.9 GiB, beyond a 48 GB
  A40 with the state: the run is reported infeasible, as the artifact reports (OOM). A
  memory-aware partition (few layers on the early stages) would fit 2.7B even so — that is
  orrery's planner, not Bamboo's.
- "orrery" (default with `constants="orrery"`): recomputation on, memory-aware partition, and
  the backup holds state only (what orrery assumed before; it fits GPT-3 2.7B and 6.7B on
  48 GB). Kept as a named option.
The decision's `reason` (the run's decisions table) states the numbers behind the answer.
"""

from __future__ import annotations

from dataclasses import replace

from orrery.policies.registry import register
from orrery.policies.resilience.base import (
    ClusterView,
    Decision,
    Pipeline,
    ResiliencePolicy,
    node_groups,
    pipeline_node_memory,
    plan_fits,
    plan_iteration_estimate_s,
)
from orrery.policies.resilience.rendezvous import SEMANTICS
from orrery.policies.resilience.templates import Template, TemplateCache
from orrery.policies.resilience.uniform import best_uniform

GiB = 1024**3
# fallback/restart s per model, SymbioticLab/Oobleck@sosp23-artifact
# tools/simulator/bamboo_simulator.py `local_rendezvous_timeout_delta` (ms / 1000)
ARTIFACT_BAMBOO_FALLBACK_S = {"gpt3-2.7b": 230.0, "gpt3-6.7b": 450.0, "bert-large": 76.0}
ORRERY_FALLBACK_S = 180.0
MEMORY_MODELS = ("bamboo", "orrery")


@register("resilience", "bamboo")
class Bamboo(ResiliencePolicy):
    def __init__(self, redundancy: float = 0.2, fallback_s: float | None = None,
                 repair_after_s: float = 300.0, min_gain: float = 0.05,
                 constants: str = "artifact", memory: str | None = None,
                 semantics: str | None = None):
        # accepted so one study case can switch Varuna's and Oobleck's restart protocol
        # (`rendezvous.py`); Bamboo keeps orrery's under both values: the artifact's Bamboo runs
        # GPT-3 out of memory and its BERT-large Bamboo is outside the target table
        if semantics is not None and semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        self.semantics = semantics
        if memory is None:  # each set of constants brings its memory accounting
            memory = "bamboo" if constants == "artifact" else "orrery"
        if constants not in ("artifact", "orrery"):
            raise ValueError(f"constants must be 'artifact' or 'orrery', got {constants!r}")
        if memory not in MEMORY_MODELS:
            raise ValueError(f"memory must be one of {MEMORY_MODELS}, got {memory!r}")
        if (redundancy < 0 or (fallback_s is not None and fallback_s < 0) or repair_after_s <= 0
                or min_gain < 0):
            raise ValueError("need redundancy >= 0, fallback_s >= 0, repair_after_s > 0, min_gain >= 0")
        self.redundancy = float(redundancy)
        self._fallback_s = fallback_s
        self.constants = constants
        self.memory = memory
        self.repair_after_s = float(repair_after_s)
        self.min_gain = float(min_gain)
        # state_factor 2: own stage + the neighbour's redundant copy (exact check follows)
        self._cache = TemplateCache(state_factor=2.0)
        self._templates: dict = {}
        self._mem_layers: tuple | None = None
        self._mem_key = None
        self._even: dict = {}
        self._even_key = None

    def fallback_s(self, view: ClusterView) -> float:
        if self._fallback_s is not None:
            return float(self._fallback_s)
        if self.constants == "artifact":
            return ARTIFACT_BAMBOO_FALLBACK_S.get(view.model, ORRERY_FALLBACK_S)
        return ORRERY_FALLBACK_S

    def _mview(self, view: ClusterView) -> ClusterView:
        """The view with the layers as Bamboo's memory accounting sees them."""
        if self.memory == "orrery":
            return view
        if self._mem_key is not view.layers:
            # whole activations (no recomputation), kept twice: own + the successor's FRC copy
            self._mem_layers = tuple(replace(x, act_bytes=2.0 * max(x.peak_bytes, x.act_bytes))
                                     for x in view.layers)
            self._mem_key = view.layers
        return replace(view, layers=self._mem_layers)

    def explain(self, view: ClusterView, pipes=None) -> str:
        """The memory behind the answer, in words (recorded as the decision's reason)."""
        usable = view.mem_bytes / GiB
        state = sum(x.state_bytes for x in view.layers) / GiB
        worst = ""
        if pipes:
            m = max(pipeline_node_memory(self._mview(view).layers, pipes[0], self.redundancy).values())
            worst = f"; busiest GPU of the plan {m / GiB:.1f} GiB"
        if self.memory == "orrery":
            return (f"memory 'orrery': recomputation on, memory-aware stage partition, the backup "
                    f"holds the successor's state only; model+optimizer state {state:.1f} GiB in all, "
                    f"{usable:.1f} GiB usable per GPU{worst}")
        act = sum(max(x.peak_bytes, x.act_bytes) for x in view.layers) / GiB
        return (f"memory 'bamboo': no recomputation, eager FRC keeps the successor's activations, "
                f"stages split evenly by parameters (DeepSpeed's default): the first stage of P keeps "
                f"P microbatches of 1/P of the layers, i.e. ~2 x {act:.1f} GiB of activations (own + "
                f"FRC copy) at any depth, + its own and its successor's state ({state:.1f} GiB of "
                f"model+optimizer state in all); {usable:.1f} GiB usable per GPU{worst}")

    def _plan(self, view: ClusterView):
        mv = self._mview(view)
        if self.memory == "bamboo":
            if self._even_key != (view.layers, view.max_nodes):
                self._even = even_templates(view.layers, view.max_nodes)
                self._even_key = (view.layers, view.max_nodes)
            cands = self._even
        else:
            cands = self._cache.get(mv.layers, mv.mem_bytes, mv.max_nodes)
        best = best_uniform(mv, cands, list(view.nodes), self.redundancy, min_depth=2)
        # "infeasible" (as opposed to "wait for more nodes") when no depth fits at all
        self._templates = cands if best is not None or len(view.nodes) < view.max_nodes else {}
        return best

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
        if not plan_fits(self._mview(view), out, self.redundancy):
            return None
        return out

    def schedule(self, view: ClusterView) -> Decision:
        best = self._plan(view)
        if best is None:
            infeasible = not self._templates
            return Decision((), action="infeasible" if infeasible else "wait", infeasible=infeasible,
                            pause_s=0.0 if view.event == "start" else self.fallback_s(view),
                            reason="no redundant plan fits in GPU memory on these nodes; "
                            + self.explain(view))
        pipes, it = best
        if view.event == "start" or not view.current:
            pause = 0.0 if view.event == "start" else self.fallback_s(view)
            return self._dec(pipes, pause_s=pause, action="start",
                             reason="fits; " + self.explain(view, pipes))
        ready = set(view.nodes)
        in_use = {n for p in view.current for n in p.nodes}
        if in_use - ready:
            fo = self._failover(view)
            if fo is None:
                return self._dec(pipes, pause_s=self.fallback_s(view), action="fallback",
                                 reason="a stage and its backup are both lost")
            return self._dec(fo, action="failover", wake_after_s=self.repair_after_s,
                             keeps_in_flight=True)
        degraded = self._degraded(view.current)
        if view.event == "wake" and degraded:
            return self._dec(pipes, pause_s=self.fallback_s(view), action="repair")
        cur_it = plan_iteration_estimate_s(view, view.current, self.redundancy)
        if view.added and it < cur_it / (1.0 + self.min_gain):
            return self._dec(pipes, pause_s=self.fallback_s(view), action="grow")
        return self._dec(view.current, action="keep",
                         wake_after_s=self.repair_after_s if degraded else None)


def even_templates(layers, max_stages: int) -> dict[int, Template]:
    """Stages split evenly by parameter count (DeepSpeed's `partition_method="parameters"`,
    which Bamboo's pipelines use) for every depth 2..max_stages; memory is checked by the caller."""
    import numpy as np

    L = len(layers)
    st = np.array([x.state_bytes for x in layers])
    cum = np.concatenate([[0.0], np.cumsum(st)])
    t = np.array([x.fwd_s + x.bwd_s for x in layers])
    out: dict[int, Template] = {}
    for P in range(2, min(max_stages, L) + 1):
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, P) / P, side="left")
        bounds = [0]
        for c in cuts:
            b = int(min(max(c, bounds[-1] + 1), L - (P - len(bounds))))
            bounds.append(b)
        ends = bounds[1:] + [L]
        if any(b <= a for a, b in zip(bounds, ends, strict=True)):
            continue
        out[P] = Template(P, tuple(bounds), tuple(float(t[a:b].sum()) for a, b in zip(bounds, ends, strict=True)),
                          float(max(sum(x.grad_bytes for x in layers[a:b]) for a, b in zip(bounds, ends, strict=True))),
                          tuple(float(st[a:b].sum()) for a, b in zip(bounds, ends, strict=True)))
    return out
