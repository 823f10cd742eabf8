"""The restart protocol of Oobleck's SOSP'23 artifact simulators, as a reusable state machine.

Source: SymbioticLab/Oobleck, branch `sosp23-artifact`, tools/simulator/varuna_simulator.py and
oobleck_simulator.py (`simulate_spot_instance_remove`, `simulate_rendezvous_start`,
`simulate_rendezvous_timeout`, `simulate_spot_instance_ready`, `simulate_assign_coordinates`,
`simulate_training_step_complete`). Both the artifact's Varuna and its Oobleck follow these rules;
they produced the paper's Figures 9-10, so `semantics="artifact"` (the default under the
artifact's constants) follows them too:

1. Every node removal (in use, idle, or still starting) opens a rendezvous and arms its own timer,
   `timer_s` later (Varuna: restart - checkpoint, 465 s for GPT-3 2.7B; Oobleck: 6 s).
2. A rendezvous completes when the earliest pending timer fires; the job then trains on the
   nodes ready at that moment, or stops if fewer than `MIN_NODES` are ready (the artifact runs
   pipelines of `num_stages_target = 12` stages).
3. A timer that fires when no rendezvous is open (it was armed by a later removal of the same
   rendezvous, e.g. two removals at one timestamp) stops the job: it runs zero pipelines until the
   next node becomes ready or the next removal opens a new rendezvous.
4. While a rendezvous is open, the steps already under way keep completing on the old plan (their
   step events carry the rendezvous version, which changes only when the rendezvous completes);
   the step in flight at completion is dropped. A stopped job has no such steps.
5. Nodes that become ready while the job runs wait (`simulate_should_reconfigure` returns False):
   they join at the next rendezvous.

Orrery's own protocol (`semantics="orrery"`): one decision per timestamp for all changes at that
time (no stale timer stops the job), the restart pauses training for its whole length, and
policies may take in new nodes when it pays. Policies pick the protocol; the simulator executes
rule 4 through `Decision.train_through_pause`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orrery.policies.resilience.base import ClusterView

# `num_stages_target = 12` for GPT-3 2.7B / 6.7B in both simulators (BERT-large: "NO USE HERE",
# yet `simulate_assign_coordinates` applies it to every model)
MIN_NODES = 12
SEMANTICS = ("artifact", "orrery")
_EPS = 1e-9


@dataclass
class RendezvousStep:
    """What the protocol says at one call."""

    phase: str  # "running" | "rendezvous" | "stopped"
    removals: int  # removals seen at this call
    pause_s: float = 0.0  # phase "rendezvous": until it completes
    wake_after_s: float | None = None  # the next pending timer
    events: list[str] = field(default_factory=list)  # what happened (for the decision's reason)


class ArtifactRendezvous:
    """Rules 1-3 and 5 (module docstring); one instance per job."""

    def __init__(self, min_nodes: int = MIN_NODES):
        self.min_nodes = int(min_nodes)
        self.phase = "stopped"
        self.timers: list[float] = []
        self.started = False

    def needed(self, view: ClusterView) -> int:
        """Ready nodes the job needs to train: `min_nodes`, capped at the cluster's largest size
        (a cluster smaller than the artifact's 12-stage pipeline still trains when whole)."""
        return min(self.min_nodes, max(1, view.max_nodes))

    def _fire(self, view: ClusterView, until: float, events: list[str]) -> None:
        while self.timers and self.timers[0] <= until:
            self.timers.pop(0)
            if self.phase == "rendezvous":
                ok = len(view.nodes) >= self.needed(view)
                self.phase = "running" if ok else "stopped"
                events.append("rendezvous complete" if ok else
                              f"rendezvous complete with {len(view.nodes)} < {self.needed(view)} nodes: stopped")
            elif self.phase == "running":
                self.phase = "stopped"
                events.append("a superseded rendezvous timer fired: job stopped (artifact rule)")

    def step(self, view: ClusterView, timer_s: float) -> RendezvousStep:
        """Advance to `view`: timers due before it, then (at its time, in the artifact's event
        order) removals, nodes ready, timers due now."""
        t = view.time_s
        events: list[str] = []
        self.timers.sort()
        self._fire(view, t - _EPS, events)
        removals = len(view.failed) + len(view.departed)
        for _ in range(removals):
            self.timers.append(t + timer_s)
        if removals:
            self.phase = "rendezvous"
            events.append(f"{removals} removal(s): rendezvous {timer_s:g} s")
        elif self.phase == "stopped" and (view.added or not self.started) and view.nodes:
            self.timers.append(t + timer_s)
            self.phase = "rendezvous"
            events.append(f"node ready while stopped: rendezvous {timer_s:g} s")
        self.started = self.started or bool(view.nodes)
        self.timers.sort()
        self._fire(view, t + _EPS, events)
        pause = self.timers[0] - t if self.phase == "rendezvous" else 0.0
        wake = self.timers[0] - t if self.timers else None
        return RendezvousStep(self.phase, removals, pause, wake, events)
