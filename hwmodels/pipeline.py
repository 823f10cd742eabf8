"""Pipeline-parallel iteration time and data-parallel all-reduce time.

Why closed forms: the resilience simulator evaluates a plan at every membership change, and
planners evaluate thousands of candidate partitions; a per-microbatch event simulation would
be exact for the same inputs but orders of magnitude slower.

1F1B schedule (PipeDream-Flush / Megatron): with P stages, M microbatches and stage s taking
f_s forward and b_s backward per microbatch, the first microbatch fills the pipeline and the
last one drains it (together the sum of every stage's f_s + b_s, plus one p2p hop per stage
boundary each way), and the M − 1 microbatches in between are paced by the slowest stage.
"""

from __future__ import annotations

from collections.abc import Sequence

NET_LATENCY_S = 2e-5  # per message, one hop (typical RDMA / NCCL small-message latency)


def p2p_s(n_bytes: float, bw_bytes_per_s: float, latency_s: float = NET_LATENCY_S) -> float:
    """Time to send one activation (or gradient) tensor to the neighbouring stage."""
    if bw_bytes_per_s <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bw_bytes_per_s}")
    return latency_s + n_bytes / bw_bytes_per_s


def pipeline_iteration_s(
    stage_fwd_s: Sequence[float],
    stage_bwd_s: Sequence[float],
    n_microbatches: int,
    hop_s: float = 0.0,
) -> float:
    """1F1B iteration time: fill + steady state + drain (see the module docstring)."""
    if len(stage_fwd_s) != len(stage_bwd_s) or not stage_fwd_s:
        raise ValueError("need one forward and one backward time per stage (>= 1 stage)")
    if n_microbatches < 1:
        raise ValueError(f"n_microbatches must be >= 1, got {n_microbatches}")
    per_stage = [f + b for f, b in zip(stage_fwd_s, stage_bwd_s, strict=True)]
    fill_drain = sum(per_stage) + 2 * (len(per_stage) - 1) * hop_s
    return fill_drain + (n_microbatches - 1) * max(per_stage)


def allreduce_s(
    n_bytes: float,
    n_replicas: int,
    bw_bytes_per_s: float,
    latency_s: float = NET_LATENCY_S,
) -> float:
    """Ring all-reduce of `n_bytes` across `n_replicas` (2(n−1)/n of the data each way)."""
    if n_replicas <= 1 or n_bytes <= 0:
        return 0.0
    if bw_bytes_per_s <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bw_bytes_per_s}")
    n = n_replicas
    return 2 * (n - 1) * latency_s + 2 * (n - 1) / n * n_bytes / bw_bytes_per_s
