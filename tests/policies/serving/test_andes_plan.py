"""Andes keeps its knapsack plan for `replan_interval_s`; a plan whose requests have all finished
must not idle the GPU while others wait (regression: it ran nobody until the next arrival)."""

from __future__ import annotations

import numpy as np

from orrery.policies.serving.andes import Andes
from orrery.policies.serving.base import RUNNING, WAITING, ServingView


class _Latency:
    kv_bytes_per_token = 1.0

    def decode_time_s(self, batch_size, context_tokens):
        return 0.02 + 1e-3 * np.asarray(batch_size, dtype=float)

    def prefill_time_s(self, n_tokens, n_seqs=1, context_tokens=0):
        return 1e-4 * n_tokens

    def swap_time_s(self, n_bytes):
        return 1e-9 * np.asarray(n_bytes, dtype=float)


def _view(now_s: float, ids, state, kv_free: int) -> ServingView:
    n = len(ids)
    return ServingView(
        now_s=now_s, ids=np.asarray(ids, dtype=np.int64), state=np.asarray(state),
        arrival_s=np.zeros(n), prompt_tokens=np.full(n, 64), generated_tokens=np.full(n, 8),
        n_preemptions=np.zeros(n, dtype=int), ttft_exp_s=np.ones(n), tds_exp_tok_s=np.full(n, 100.0),
        qoe_deficit=np.zeros(n), digest_last_s=np.zeros(n),
        kv_blocks_held=np.where(np.asarray(state) == RUNNING, 5, 0), block_size=16,
        kv_blocks_total=12, kv_blocks_free=kv_free, max_num_seqs=8, max_num_batched_tokens=4096,
        latency=_Latency())


def test_a_plan_of_finished_requests_is_replaced_at_once():
    andes = Andes(replan_interval_s=10.0)
    first = andes.schedule(_view(0.0, [1, 2, 3], [RUNNING, RUNNING, WAITING], kv_free=2))
    assert set(first.running.tolist()) <= {1, 2, 3} and first.running.size
    planned = set(andes._plan)
    # within the interval, every planned request has finished; 7 and 8 wait, memory is tight
    later = _view(0.1, [7, 8], [WAITING, RUNNING], kv_free=1)
    assert not planned & {7, 8}
    decision = andes.schedule(later)
    assert decision.running.size > 0, "Andes ran nobody while requests were live"
    assert andes._plan_time == 0.1 and andes._plan <= {7, 8}


def test_a_plan_with_live_requests_is_kept_within_the_interval():
    andes = Andes(replan_interval_s=10.0)
    andes.schedule(_view(0.0, [1, 2, 3], [RUNNING, RUNNING, WAITING], kv_free=2))
    plan, t = set(andes._plan), andes._plan_time
    andes.schedule(_view(0.1, [1, 2, 3], [RUNNING, RUNNING, WAITING], kv_free=2))
    assert andes._plan == plan and andes._plan_time == t
