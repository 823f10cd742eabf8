"""Oobleck's planner: DP optimality, and the guarantee as a property."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.policies.resilience.base import (
    ClusterView,
    node_groups,
    pipeline_node_memory,
    synthetic_layers,
    validate,
)
from orrery.policies.resilience.oobleck import Oobleck
from orrery.policies.resilience.templates import (
    contiguous_range,
    distribute_microbatches,
    plan_templates,
)


def _brute_bottleneck(layers, n, mem):
    L = len(layers)
    best = np.inf
    for cuts in itertools.combinations(range(1, L), n - 1):
        b = [0, *cuts, L]
        ok, worst = True, 0.0
        for s in range(n):
            seg = layers[b[s]:b[s + 1]]
            m = (sum(x.state_bytes for x in seg) + (n - s) * sum(x.act_bytes for x in seg)
                 + max(x.peak_bytes for x in seg))
            ok &= m <= mem
            worst = max(worst, sum(x.fwd_s + x.bwd_s for x in seg))
        if ok:
            best = min(best, worst)
    return best


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 8), st.floats(6e9, 30e9))
def test_templates_are_optimal(seed, L, mem):
    layers = synthetic_layers(np.random.default_rng(seed), L)
    tps = plan_templates(layers, mem, L)
    for n in range(1, L + 1):
        brute = _brute_bottleneck(layers, n, mem)
        if np.isfinite(brute):
            assert n in tps
            assert abs(tps[n].bottleneck_s - brute) < 1e-12
        else:
            assert n not in tps


def _view(layers, nodes, mb, mem, max_nodes, current=(), failed=()):
    return ClusterView(time_s=0.0, event="change" if current else "start", nodes=tuple(nodes),
                       failed=tuple(failed), added=(), layers=layers, global_microbatches=mb,
                       mem_bytes=mem, max_nodes=max_nodes, network_bw_bytes_per_s=12.5e9,
                       storage_bw_bytes_per_s=2e9, current=current)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 3), st.data())
def test_guarantee_after_f_failures(seed, f, data):
    """After any <= f simultaneous failures, a valid instantiation from the templates covers
    every remaining node, no node is in two pipelines, microbatches sum to the global batch."""
    rng = np.random.default_rng(seed)
    layers = synthetic_layers(rng, 24, mem_scale=float(rng.uniform(0.3, 2.0)))
    mem = 24e9
    pol = Oobleck(f=f, semantics="orrery")  # the planner under test; the protocol is orrery's
    probe = _view(layers, [f"n{i}" for i in range(24)], 256, mem, 24)
    rng_ = contiguous_range(pol.templates(probe))
    if rng_ is None:
        return
    n0 = rng_[0]
    if (f + 1) * n0 > 24:
        return  # f + 1 pipelines of the smallest template need more than the 24-node cluster
    n_nodes = data.draw(st.integers((f + 1) * n0, min(24, (f + 1) * n0 + 10)), label="N")
    nodes = [f"n{i}" for i in range(n_nodes)]
    mb = data.draw(st.integers(n_nodes, 4 * n_nodes), label="microbatches")
    view0 = _view(layers, nodes, mb, mem, n_nodes)
    d0 = pol.schedule(view0)
    assert not validate(view0, d0)
    assert len(d0.pipelines) >= f + 1
    k = data.draw(st.integers(0, f), label="failures")
    lost = set(data.draw(st.permutations(nodes), label="order")[:k])
    left = [n for n in nodes if n not in lost]
    view1 = _view(layers, left, mb, mem, n_nodes, current=d0.pipelines, failed=sorted(lost))
    d1 = pol.schedule(view1)
    assert not validate(view1, d1), validate(view1, d1)
    used = [n for p in d1.pipelines for n, _ in node_groups(p)]
    assert sorted(used) == sorted(left)  # covers every remaining node, each once
    assert sum(p.microbatches for p in d1.pipelines) == mb
    assert not d1.rollback  # some replica of every layer survived
    assert all(m <= mem for p in d1.pipelines for m in pipeline_node_memory(layers, p, 0).values())
    assert 0 < d1.pause_s < 60  # seconds, not minutes


def test_distribution_balances():
    layers = synthetic_layers(np.random.default_rng(1), 12)
    tps = plan_templates(layers, 40e9, 12)
    pick = [tps[2], tps[4], tps[6]]
    m = distribute_microbatches(pick, 60)
    assert sum(m) == 60 and all(x >= 1 for x in m)
    assert m[2] > m[0]  # the deeper (faster) pipeline gets more
    times = [tp.iteration_s(x) for tp, x in zip(pick, m, strict=True)]
    # moving one microbatch from the slowest pipeline cannot lower the maximum
    slow = int(np.argmax(times))
    for j in range(3):
        if j != slow and m[slow] > 1:
            alt = list(m)
            alt[slow] -= 1
            alt[j] += 1
            assert max(tp.iteration_s(x) for tp, x in zip(pick, alt, strict=True)) >= max(times) - 1e-12
