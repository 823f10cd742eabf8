"""vLLM's default scheduler: first come, first served, prefill-first, preempt the newest.

Facts from vLLM (v0.2-era, no chunked prefill): iterations are prefill-only while waiting
requests fit and nothing is swapped out, otherwise decode-only; when KV blocks run out the
latest-arrived running request is preempted; single-sequence requests are recomputed (blocks
freed, back to the head of the waiting queue, which is ordered by arrival).
"""

from __future__ import annotations

from orrery.policies.registry import register
from orrery.policies.serving.base import PreemptMode, ServingDecision, ServingPolicy, ServingView
from orrery.policies.serving.common import vllm_step_ids


@register("serving", "vllm_fcfs")
class VLLMFCFS(ServingPolicy):
    def __init__(self, preempt_mode: PreemptMode = "recompute"):
        if preempt_mode not in ("recompute", "swap"):
            raise ValueError(f"preempt_mode must be 'recompute' or 'swap', got {preempt_mode!r}")
        self.preempt_mode = preempt_mode

    keeps_all_that_fit = True  # (vllm_step_ids' first case; the policy keeps no state)

    def schedule(self, view: ServingView) -> ServingDecision:
        return ServingDecision(vllm_step_ids(view), self.preempt_mode)  # (view.ids when all keep)
