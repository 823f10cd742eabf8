"""Oobleck (SOSP'23): resilient pipeline training from pipeline templates.

Plan templates for every node count n0..n_max once (dynamic programming over layer profiles,
`templates.py`); instantiate at least f + 1 pipelines so every ready node is used, and balance
the global batch's microbatches across them by speed. On failure, re-instantiate from the
templates: each damaged pipeline shrinks to the smaller template; one left below n0 borrows
nodes from the largest pipeline or, failing that, merges with the smallest other pipeline; new
nodes extend the smallest pipelines (or form a new one). The lost layers are copied from a
surviving replica of each layer, so recovery takes seconds (DESIGN: "recovery takes seconds").
When a fresh near-even instantiation is estimated faster, it is used instead (still templates).

Recovery cost, two named sets of constants (`constants=`):
- "artifact" (default): the whole reconfiguration takes the Oobleck SOSP'23 artifact's figure
  (SymbioticLab/Oobleck@sosp23-artifact, tools/simulator/oobleck_simulator.py,
  `local_rendezvous_timeout_delta`): 6 s for GPT-3 2.7B, 10 s for 6.7B, 2 s for BERT-large;
  other models use the "orrery" model below.
- "orrery": `reconfigure_s` = 3 s fixed (re-create communicators and
pipeline engines) + the largest per-node volume of layer state that node must receive, over the
network bandwidth. If some layer has no surviving replica (more than f simultaneous losses
that hit every copy), Oobleck falls back to a restart (`restart_s`, like Varuna) and loses the
work since its last commit.

Restart protocol (`semantics=`, default: the one of the constants in force):
- "artifact": the artifact simulator's (`rendezvous.py`; oobleck_simulator.py): every removal
  reconfigures after the rendezvous time above while the steps under way keep completing, a
  superseded rendezvous timer (two removals at one timestamp) stops the job until a node becomes
  ready or is removed, new nodes wait for the next removal's rendezvous, fewer than 12 ready
  nodes do not train, and nothing is rolled back (the artifact's Oobleck never loses completed
  steps; `step_wasted` is set but unused). Its throughput then matches the artifact's within 5%
  on every trace of the target table (tests/sim/test_resilience_artifact.py).
- "orrery": one decision per timestamp, the reconfiguration pauses training, new nodes are taken
  in when that is faster, a layer with no surviving replica forces a restart (`restart_s`).
"""

from __future__ import annotations

from orrery.policies.registry import register
from orrery.policies.resilience.base import (
    ClusterView,
    Decision,
    Pipeline,
    ResiliencePolicy,
    node_groups,
)
from orrery.policies.resilience.rendezvous import SEMANTICS, ArtifactRendezvous
from orrery.policies.resilience.templates import (
    Template,
    TemplateCache,
    best_sizes,
    contiguous_range,
    sizes_iteration_s,
)

# reconfiguration s per model, SymbioticLab/Oobleck@sosp23-artifact
# tools/simulator/oobleck_simulator.py `local_rendezvous_timeout_delta` (ms / 1000)
ARTIFACT_OOBLECK_RECONFIGURE_S = {"gpt3-2.7b": 6.0, "gpt3-6.7b": 10.0, "bert-large": 2.0}


@register("resilience", "oobleck")
class Oobleck(ResiliencePolicy):
    def __init__(self, f: int = 1, reconfigure_s: float = 3.0, restart_s: float = 180.0,
                 constants: str = "artifact", semantics: str | None = None):
        if constants not in ("artifact", "orrery"):
            raise ValueError(f"constants must be 'artifact' or 'orrery', got {constants!r}")
        semantics = constants if semantics is None else semantics
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        self.constants = constants
        self.semantics = semantics
        self._rdv = ArtifactRendezvous()
        if f < 0:
            raise ValueError(f"f must be >= 0, got {f}")
        if reconfigure_s < 0 or restart_s < 0:
            raise ValueError("reconfigure_s and restart_s must be >= 0")
        self.f = int(f)
        self.reconfigure_s = float(reconfigure_s)
        self.restart_s = float(restart_s)
        self._cache = TemplateCache()

    # ----------------------------------------------------------------- planning
    def templates(self, view: ClusterView) -> dict[int, Template]:
        tps = self._cache.get(view.layers, view.mem_bytes, max(1, view.max_nodes))
        rng = contiguous_range(tps)
        if rng is not None:
            # templates n0 .. N - f; a cluster too small for f + 1 pipelines of n0 nodes
            # tolerates fewer faults (f_eff) rather than leaving nodes unusable
            n0 = rng[0]
            f_eff = min(self.f, max(0, view.max_nodes // n0 - 1))
            n_max = min(rng[1], max(n0, view.max_nodes - f_eff))
            tps = {n: t for n, t in tps.items() if n0 <= n <= n_max}
        return tps

    def _build(self, tps: dict[int, Template], groups: list[list[str]], view: ClusterView):
        sizes = [len(g) for g in groups]
        it, mb = sizes_iteration_s(tps, sizes, view.global_microbatches, view.network_bw_bytes_per_s)
        pipes = tuple(Pipeline(tuple(g), tps[len(g)].bounds, m)
                      for g, m in zip(groups, mb, strict=True))
        return pipes, it

    def _fresh(self, tps, nodes: list[str], view: ClusterView):
        choice = None
        for k in range(len(nodes), 0, -1):  # leave nodes idle only if no split covers them all
            choice = best_sizes(tps, k, view.global_microbatches, view.network_bw_bytes_per_s,
                                self.f + 1)
            if choice is not None:
                break
        if choice is None:
            return None
        sizes = choice[0]
        groups, k = [], 0
        for s in sizes:
            groups.append(nodes[k:k + s])
            k += s
        return self._build(tps, groups, view)

    def _incremental(self, tps, view: ClusterView):
        """Shrink / borrow / merge the current pipelines; place new nodes."""
        n0, nmax = contiguous_range(tps)
        ready = set(view.nodes)
        groups = [[n for n, _ in node_groups(p) if n in ready] for p in view.current]
        groups = [g for g in groups if g]
        placed = {n for g in groups for n in g}
        spare = [n for n in view.nodes if n not in placed]
        changed = True
        while changed:
            changed = False
            groups.sort(key=len)
            short = [g for g in groups if len(g) < n0]
            if not short:
                break
            g = short[0]
            donor = max(groups, key=len)
            if donor is not g and len(donor) - (n0 - len(g)) >= n0:  # borrow
                need = n0 - len(g)
                g.extend(donor[-need:])
                del donor[-need:]
                changed = True
            elif spare:  # take idle nodes
                g.append(spare.pop(0))
                changed = True
            elif len(groups) > 1:  # merge into the smallest other pipeline
                other = min((h for h in groups if h is not g), key=len)
                if len(other) + len(g) <= nmax:
                    other.extend(g)
                    groups.remove(g)
                    changed = True
        # new / spare nodes: extend the smallest pipelines, or start a new one
        while spare:
            if len(spare) >= n0 and (not groups or min(len(g) for g in groups) >= n0):
                groups.append(spare[:n0])
                spare = spare[n0:]
                continue
            cands = [g for g in groups if len(g) < nmax]
            if not cands:
                break
            min(cands, key=len).append(spare.pop(0))
        if not groups or any(not n0 <= len(g) <= nmax for g in groups) or spare:
            return None
        if len(groups) > view.global_microbatches:
            return None
        return self._build(tps, groups, view)

    # ----------------------------------------------------------------- recovery cost
    def _copy_s(self, view: ClusterView, new: tuple[Pipeline, ...]) -> float | None:
        """Seconds to copy missing layer state; None when some layer has no surviving replica."""
        L = len(view.layers)
        ready = set(view.nodes)
        had: dict[str, set[int]] = {}
        holders: set[int] = set()
        for p in view.current:
            for node, stages in node_groups(p):
                lay = {i for s in stages for i in p.stage_layers(L)[s]}
                if node in ready:
                    had.setdefault(node, set()).update(lay)
                    holders |= lay
        if view.current and len(holders) < L:
            return None
        worst = 0.0
        for p in new:
            for node, stages in node_groups(p):
                need = {i for s in stages for i in p.stage_layers(L)[s]} - had.get(node, set())
                worst = max(worst, sum(view.layers[i].state_bytes for i in need))
        if not view.current:
            return 0.0
        return worst / view.network_bw_bytes_per_s

    # ----------------------------------------------------------------- decision
    def _choose(self, view: ClusterView):
        """(action, pipelines) of the best instantiation, or a Decision when nothing runs."""
        tps = self.templates(view)
        if not tps:
            return Decision((), action="infeasible", infeasible=True,
                            reason="no pipeline template fits the model in GPU memory")
        n0, _ = contiguous_range(tps)
        if len(view.nodes) < n0:
            return Decision((), action="wait", reason=f"{len(view.nodes)} nodes < n0 = {n0}")
        nodes = list(view.nodes)
        if view.current:  # keep surviving pipeline members together, in their old order
            order = {n: i for i, n in enumerate(n for p in view.current for n, _ in node_groups(p))}
            nodes.sort(key=lambda n: (order.get(n, len(order)), n))
        cands = []
        if view.current:
            inc = self._incremental(tps, view)
            if inc is not None:
                cands.append(("reinstantiate", inc))
        fresh = self._fresh(tps, nodes, view)
        if fresh is not None:
            cands.append(("instantiate", fresh))
        if not cands:
            return Decision((), action="wait", reason="no instantiation covers the nodes")
        # incremental first: it wins ties (less state to move)
        action, (pipes, _) = min(cands, key=lambda c: c[1][1] * (1.0 if c[0] == "reinstantiate" else 1.001))
        return action, pipes

    def _pause_s(self, view: ClusterView, pipes) -> float | None:
        copy = self._copy_s(view, pipes)
        if copy is None:
            return None
        if self.constants == "artifact" and view.model in ARTIFACT_OOBLECK_RECONFIGURE_S:
            return ARTIFACT_OOBLECK_RECONFIGURE_S[view.model]
        return self.reconfigure_s + copy

    def schedule(self, view: ClusterView) -> Decision:
        if self.semantics == "artifact":
            return self._schedule_artifact(view)
        choice = self._choose(view)
        if isinstance(choice, Decision):
            return choice
        action, pipes = choice
        if view.event == "start" or not view.current:
            return Decision(pipes, action="start", reason=f"{len(pipes)} pipelines")
        pause = self._pause_s(view, pipes)
        if pause is None:
            return Decision(pipes, pause_s=self.restart_s, rollback=True, action="restart",
                            reason="a layer lost every replica")
        return Decision(pipes, pause_s=pause, action=action,
                        reason=f"{len(pipes)} pipelines, sizes {[p.n_stages for p in pipes]}")

    def _schedule_artifact(self, view: ClusterView) -> Decision:
        """The artifact's restart protocol (`rendezvous.py`): every removal reconfigures after the
        artifact's rendezvous time while training goes on, superseded timers stop the job, new
        nodes wait for the next rendezvous, no rollback (the artifact's Oobleck never loses
        committed work)."""
        if self.constants == "artifact" and view.model in ARTIFACT_OOBLECK_RECONFIGURE_S:
            timer = ARTIFACT_OOBLECK_RECONFIGURE_S[view.model]
        else:
            timer = self.reconfigure_s
        st = self._rdv.step(view, timer)
        why = "; ".join(st.events)
        if st.phase == "running" and view.current:
            return Decision(view.current, action="keep", wake_after_s=st.wake_after_s,
                            reason=why or "running")
        if st.phase != "rendezvous":
            return Decision((), action="stop", wake_after_s=st.wake_after_s, reason=why or "stopped")
        choice = self._choose(view)
        if isinstance(choice, Decision):
            if choice.infeasible:
                return choice
            pipes, action = (), "wait"
            why = f"{why + '; ' if why else ''}{choice.reason}"
        elif len(view.nodes) < self._rdv.needed(view):
            pipes, action = (), "wait"
            why = f"{why + '; ' if why else ''}{len(view.nodes)} < {self._rdv.needed(view)} nodes (artifact: 12-stage pipelines)"
        else:
            action, pipes = choice
            why = f"{why + '; ' if why else ''}{len(pipes)} pipelines, sizes {[p.n_stages for p in pipes]}"
        return Decision(pipes, pause_s=st.pause_s, train_through_pause=True,
                        wake_after_s=st.wake_after_s, action=action, reason=why)
