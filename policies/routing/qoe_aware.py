"""QoE-aware routing: send the request where its expected QoE is highest.

For each replica the router predicts the request's time to first token (the queued prompts'
prefill ahead of it plus its own, on that replica's latency model) and its token delivery
speed (one decode step at the replica's batch after admission), and turns them into the Andes
QoE of a stream that starts at that TTFT and then keeps that pace:

    QoE = E / (E + deficit),  deficit = L·max(0, ttft − ttft_exp) + late tokens' extra lateness

with L the expected output length (`expected_output_tokens`; the router never sees the true
length). Ties (e.g. every replica meets the expectation) go to the replica with the least outstanding
work in seconds of its own capacity, so an idle cluster spreads load instead of piling onto
replica 0.
"""

from __future__ import annotations

import numpy as np

from orrery.policies.registry import register
from orrery.policies.routing.base import RouterPolicy, RouterView, RoutingDecision
from orrery.policies.serving.qoe import qoe_from_deficit


def expected_qoe(ttft_s, token_interval_s, ttft_exp_s: float, tds_exp_tok_s: float, length: float):
    """QoE of a stream of `length` tokens whose first token comes at `ttft_s` and the rest
    every `token_interval_s` (vectorised over replicas). Tokens faster than the reader's pace
    add nothing; slower ones fall behind linearly."""
    ttft = np.asarray(ttft_s, float)
    gap = np.asarray(token_interval_s, float)
    step = 1.0 / tds_exp_tok_s
    start_late = np.maximum(0.0, ttft - ttft_exp_s)
    drift = np.maximum(0.0, gap - step)  # extra lateness each further token adds
    k = np.arange(length, dtype=float)
    deficit = length * start_late + drift * k.sum()
    return qoe_from_deficit(deficit, length, tds_exp_tok_s)


@register("routing", "qoe_aware")
class QoEAwareRouter(RouterPolicy):
    def __init__(self, expected_output_tokens: float = 256.0, context_tokens: float = 600.0) -> None:
        if expected_output_tokens <= 0 or context_tokens <= 0:
            raise ValueError("expected_output_tokens and context_tokens must be > 0")
        self.length = float(expected_output_tokens)
        self.ctx = float(context_tokens)

    def route(self, view: RouterView) -> RoutingDecision:
        n = view.n_replicas
        ttft = np.empty(n)
        gap = np.empty(n)
        for k in range(n):
            lat = view.latency[k]
            queued = int(view.waiting_prompt_tokens[k]) + view.prompt_tokens
            ttft[k] = lat.prefill_time_s(queued, int(view.n_waiting[k]) + 1)
            b = min(int(view.n_live[k]) + 1, int(view.max_num_seqs[k]))
            gap[k] = float(lat.decode_time_s(b, b * self.ctx))
            # requests beyond max_num_seqs wait for a slot: one stream's worth of decode each
            over = int(view.n_live[k]) + 1 - int(view.max_num_seqs[k])
            if over > 0:
                ttft[k] += over / b * self.length * gap[k]
        q = expected_qoe(ttft, gap, view.ttft_exp_s, view.tds_exp_tok_s, self.length)
        load_s = view.outstanding_tokens / np.maximum(view.capacity_tok_s, 1e-9)
        order = np.lexsort((np.arange(n), load_s, -np.round(q, 6)))
        return RoutingDecision(int(order[0]))
