"""Round-robin routing: replica k, k+1, ... in turn, blind to load (the usual baseline)."""

from __future__ import annotations

from orrery.policies.registry import register
from orrery.policies.routing.base import RouterPolicy, RouterView, RoutingDecision


@register("routing", "round_robin")
class RoundRobinRouter(RouterPolicy):
    def __init__(self) -> None:
        self._next = 0

    def route(self, view: RouterView) -> RoutingDecision:
        k = self._next % view.n_replicas
        self._next = k + 1
        return RoutingDecision(k)
