"""Round-robin time slicing: every live request gets the GPU in turn, a quantum at a time.

The baseline of the Andes paper that shares the GPU fairly regardless of each request's QoE:
after running for `quantum_s`, a request goes to the back of the rotation (preempted when
others are waiting) so waiting requests get their turn.
"""

from __future__ import annotations

import numpy as np

from orrery.policies.registry import register
from orrery.policies.serving.base import (
    RUNNING,
    PreemptMode,
    ServingDecision,
    ServingPolicy,
    ServingView,
)
from orrery.policies.serving.common import admit_in_order


@register("serving", "round_robin")
class RoundRobin(ServingPolicy):
    def __init__(self, quantum_s: float = 5.0, preempt_mode: PreemptMode = "swap"):
        if quantum_s <= 0:
            raise ValueError(f"quantum_s must be > 0, got {quantum_s}")
        self.quantum_s = float(quantum_s)
        self.preempt_mode = preempt_mode
        self._turn_started: dict[int, float] = {}  # request id -> start of its current turn
        self._last_turn_end: dict[int, float] = {}  # request id -> when its last turn ended

    def schedule(self, view: ServingView) -> ServingDecision:
        ids = view.ids.tolist()
        running = view.state == RUNNING
        now = view.now_s
        # rotation key: requests that waited longest since their last turn go first
        last_end = np.array(
            [self._last_turn_end.get(i, view.arrival_s[j]) for j, i in enumerate(ids)]
        )
        expired = np.array(
            [running[j] and now - self._turn_started.get(i, now) >= self.quantum_s
             for j, i in enumerate(ids)],
            dtype=bool,
        )
        others_waiting = (~running).any()
        keep = running & ~(expired & others_waiting)
        # continuing requests first (their turn is not over), then the rotation order
        order = np.lexsort((view.arrival_s, last_end, ~keep))
        chosen = admit_in_order(view, np.zeros(len(ids), bool), order, stop_at_first_misfit=False)
        for j, i in enumerate(ids):
            if chosen[j] and not running[j]:
                self._turn_started[i] = now
            elif running[j] and not chosen[j]:
                self._last_turn_end[i] = now
                self._turn_started.pop(i, None)
            elif chosen[j] and i not in self._turn_started:
                self._turn_started[i] = now
        return ServingDecision(view.ids[chosen], self.preempt_mode)

    def on_finish(self, request_id: int, now_s: float) -> None:
        self._turn_started.pop(request_id, None)
        self._last_turn_end.pop(request_id, None)
