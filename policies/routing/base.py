"""The routing contract: which replica of a serving cluster gets an arriving request.

At every request arrival the backend builds a frozen `RouterView` of the cluster (one entry
per replica, aligned arrays) plus what is known about the request (its prompt length and its
QoE expectation; never its output length, which a real router does not know either) and asks
`router.route(view)` for a `RoutingDecision` naming one replica. The backend hands the request
to that replica's own scheduler (`policies/serving/`); a request is routed exactly once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from orrery.policies.registry import Contract, register_contract


class ReplicaLatency(Protocol):
    """Per-replica latency oracle (the replica's own GPU, parallelism and clock)."""

    def decode_time_s(self, batch_size, context_tokens): ...

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float: ...


@dataclass(frozen=True, eq=False)
class RouterView:
    """The cluster when a request arrives. Per-replica arrays have one entry per replica."""

    now_s: float
    request_id: int
    prompt_tokens: int
    ttft_exp_s: float
    tds_exp_tok_s: float
    n_live: np.ndarray  # requests at the replica (waiting, running or swapped)
    n_waiting: np.ndarray  # of which not yet started (waiting for their prefill)
    waiting_prompt_tokens: np.ndarray  # prompt tokens still to prefill at the replica
    outstanding_tokens: np.ndarray  # KV context held or queued: prompt + generated of live requests
    kv_blocks_used: np.ndarray
    kv_blocks_total: np.ndarray
    max_num_seqs: np.ndarray
    capacity_tok_s: np.ndarray  # analytic decode capacity (tokens/s at the replica's max batch)
    latency: tuple[ReplicaLatency, ...]  # one oracle per replica

    @property
    def n_replicas(self) -> int:
        return int(self.n_live.size)

    @property
    def kv_use(self) -> np.ndarray:
        """Fraction of each replica's KV blocks in use."""
        return self.kv_blocks_used / np.maximum(self.kv_blocks_total, 1)


@dataclass(frozen=True)
class RoutingDecision:
    replica: int


class RouterPolicy(ABC):
    """A cluster router. Subclasses register with `@register("routing", name)`."""

    policy_name: str = ""

    @abstractmethod
    def route(self, view: RouterView) -> RoutingDecision:
        """Choose the replica for `view.request_id`."""


def validate_routing(view: RouterView, decision: RoutingDecision) -> list[str]:
    """Problems with a routing decision (empty: valid). Used by backends and check_policy."""
    if not isinstance(decision, RoutingDecision):
        return [f"decision is {type(decision).__name__}, expected RoutingDecision"]
    k = decision.replica
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        return [f"replica must be an int, got {type(k).__name__}"]
    if not 0 <= int(k) < view.n_replicas:
        return [f"replica {k} out of range [0, {view.n_replicas})"]
    return []


class _SampleLatency:
    def __init__(self, speed: float):
        self.speed = speed

    def decode_time_s(self, batch_size, context_tokens):
        return (0.012 + 2e-4 * np.asarray(batch_size) + 2e-7 * np.asarray(context_tokens)) / self.speed

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        return (0.015 + 1e-4 * n_tokens) / self.speed


def sample_views(rng: np.random.Generator, n: int = 24) -> list[RouterView]:
    """Random but consistent cluster states: 1 to 16 replicas, idle to saturated, mixed speeds."""
    views = []
    for i in range(n):
        r = int(rng.integers(1, 17))
        total = rng.integers(200, 4000, r)
        used = (total * rng.uniform(0, 1, r)).astype(np.int64) if i else np.zeros(r, np.int64)
        n_live = rng.integers(0, 80, r) if i else np.zeros(r, np.int64)
        n_wait = (n_live * rng.uniform(0, 1, r)).astype(np.int64)
        wait_tok = n_wait * rng.integers(50, 800, r)
        speed = rng.choice([0.5, 1.0, 2.0], r)
        views.append(RouterView(
            now_s=float(rng.uniform(0, 3600)), request_id=i, prompt_tokens=int(rng.integers(1, 4000)),
            ttft_exp_s=1.0, tds_exp_tok_s=float(rng.choice([4.8, 3.3])), n_live=n_live,
            n_waiting=n_wait, waiting_prompt_tokens=wait_tok,
            outstanding_tokens=used * 16 + wait_tok, kv_blocks_used=used, kv_blocks_total=total,
            max_num_seqs=rng.choice([16, 64, 256], r), capacity_tok_s=2000.0 * speed,
            latency=tuple(_SampleLatency(float(s)) for s in speed),
        ))
    return views


def drive(policy: RouterPolicy, views: list[RouterView]) -> list[RoutingDecision]:
    return [policy.route(v) for v in views]


register_contract(Contract(domain="routing", base=RouterPolicy, sample_views=sample_views,
                           validate=validate_routing, drive=drive))

__all__ = ["RouterPolicy", "RouterView", "RoutingDecision", "sample_views", "validate_routing"]
