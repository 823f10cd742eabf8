"""Power-of-two-choices on KV use: sample two replicas at random, send the request to the one
whose KV cache (held blocks plus the queued prompts' blocks) is the less full (Mitzenmacher,
"The Power of Two Choices in Randomized Load Balancing", IEEE TPDS 2001: two samples cut the
maximum load from log n / log log n to log log n). Deterministic by the policy's own seed."""

from __future__ import annotations

import numpy as np

from orrery.policies.registry import register
from orrery.policies.routing.base import RouterPolicy, RouterView, RoutingDecision

BLOCK_TOKENS = 16  # vLLM's KV block size (tokens), for the queued prompts' share


@register("routing", "power_of_two")
class PowerOfTwoKV(RouterPolicy):
    def __init__(self, seed: int = 0, d: int = 2) -> None:
        if int(d) < 1:
            raise ValueError(f"d (choices per request) must be >= 1, got {d}")
        self.d = int(d)
        self.rng = np.random.default_rng(seed)

    def route(self, view: RouterView) -> RoutingDecision:
        n = view.n_replicas
        if n == 1:
            return RoutingDecision(0)
        cand = np.sort(self.rng.choice(n, size=min(self.d, n), replace=False))
        queued = view.waiting_prompt_tokens[cand] / BLOCK_TOKENS
        use = (view.kv_blocks_used[cand] + queued) / np.maximum(view.kv_blocks_total[cand], 1)
        return RoutingDecision(int(cand[int(np.argmin(use))]))
