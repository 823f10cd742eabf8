"""Least outstanding tokens: the replica with the least queued and held context, in seconds of
its own decode capacity when `normalize` (heterogeneous clusters), else in raw tokens.

Ties go to the lowest index, so a router is a pure function of the view."""

from __future__ import annotations

import numpy as np

from orrery.policies.registry import register
from orrery.policies.routing.base import RouterPolicy, RouterView, RoutingDecision


@register("routing", "least_outstanding_tokens")
class LeastOutstandingTokens(RouterPolicy):
    def __init__(self, normalize: bool = True) -> None:
        self.normalize = bool(normalize)

    def route(self, view: RouterView) -> RoutingDecision:
        load = view.outstanding_tokens.astype(float)
        if self.normalize:
            load = load / np.maximum(view.capacity_tok_s, 1e-9)
        return RoutingDecision(int(np.argmin(load)))
