"""The serving replica state machine shared by the simulator and the real engine."""

from __future__ import annotations

import numpy as np
import pytest

from orrery.policies.serving.base import RUNNING, SWAPPED, WAITING, ServingDecision
from orrery.sim.serving_replica import FINISHED, ReplicaState, RequestState
from orrery.sim.serving_scenario import QoESpec
from orrery.workloads.serving import Requests


class _Policy:
    def __init__(self):
        self.finished: list[tuple[int, float]] = []

    def on_finish(self, rid, now):
        self.finished.append((rid, now))


def replica(prompts, outputs, total_blocks=64, swap_cap_bytes=1e9):
    n = len(prompts)
    reqs = Requests(np.zeros(n), np.asarray(prompts), np.asarray(outputs))
    r = RequestState(reqs, QoESpec(), np.random.default_rng(0))
    rs = ReplicaState(r, block_size=16, total_blocks=total_blocks, max_num_seqs=8,
                      max_num_batched_tokens=4096, swap_cap_bytes=swap_cap_bytes, kv_bytes_per_token=10.0,
                      latency=None)
    for i in range(n):
        rs.add(i)
    return r, rs


def step(rs, running, mode="recompute", now=0.0):
    view = rs.view(now)
    dec = ServingDecision(np.asarray(running, dtype=np.int64), preempt_mode=mode)
    return rs.apply(view, dec, rs.chosen(view, dec))


def test_admit_decode_finish_keeps_kv_accounting():
    r, rs = replica([20, 40], [2, 1])
    s = step(rs, [0, 1])
    assert s.kind == "prefill" and s.ctx_tokens == 60 and list(s.run) == [0, 1]
    assert rs.admitted == 2 and rs.used_blocks == 2 + 3  # ceil(21/16) + ceil(41/16)
    done = rs.deliver(s.run, 1.0)
    assert list(done) == [1] and r.first_token_s.tolist() == [1.0, 1.0]
    pol = _Policy()
    rs.finish(done, 1.0, pol)
    assert pol.finished == [(1, 1.0)] and r.state[1] == FINISHED and rs.live == [0]
    assert rs.used_blocks == 2 and r.held([1], rs.block)[0] == 0
    s = step(rs, [0])
    assert s.kind == "decode" and s.ctx_tokens == 21 and rs.used_blocks == 2


def test_swap_preemption_goes_to_host_in_order_while_it_fits():
    r, rs = replica([100, 500, 10], [5, 5, 5], swap_cap_bytes=1200.0)
    step(rs, [0, 1, 2])
    rs.deliver(np.array([0, 1, 2]), 1.0)
    s = step(rs, [], mode="swap")  # preempt all three: 1010 B fit, then 5010 B does not
    assert list(s.preempted) == [0, 1, 2] and s.swapped_out.tolist() == [True, False, False]
    assert r.state.tolist() == [SWAPPED, WAITING, WAITING] and rs.used_blocks == 0
    assert s.swap_out_bytes == 1010.0 and rs.preemptions == 3 and r.n_preempt.tolist() == [1, 1, 1]
    s = step(rs, [0])  # swap 0 back in (it runs a decode step)
    assert list(s.swapped_in) == [0] and s.kind == "decode" and r.state[0] == RUNNING
    assert rs.swap_used_bytes == 0.0 and rs.swap_bytes == 2020.0


def test_overflowing_the_kv_cache_is_an_error():
    _, rs = replica([100, 100], [5, 5], total_blocks=8)
    with pytest.raises(RuntimeError, match="exceed capacity"):
        step(rs, [0, 1])


def test_view_reports_the_replica():
    r, rs = replica([20, 40], [2, 1])
    v = rs.view(3.0)
    assert v.now_s == 3.0 and list(v.ids) == [0, 1] and (v.state == WAITING).all()
    assert v.kv_blocks_free == 64 and v.block_size == 16 and v.max_num_seqs == 8


def test_lazy_view_fields_equal_the_request_state():
    r, rs = replica([20, 40, 60], [5, 5, 5])
    step(rs, [0, 1])  # admit two
    r.qoe.deliver(np.array([0, 1]), 1.5)
    v = rs.view(2.0)
    ids = v.ids
    for name, want in [("arrival_s", r.arrival_s[ids]), ("n_preemptions", r.n_preempt[ids]),
                       ("ttft_exp_s", r.ttft[ids]), ("tds_exp_tok_s", r.tds[ids]),
                       ("qoe_deficit", r.qoe.deficit[ids]), ("digest_last_s", r.arrival_s[ids] + r.qoe.digest_last_s[ids]),
                       ("kv_blocks_held", r.held(ids, rs.block))]:
        assert np.array_equal(getattr(v, name), want), name
    assert v.digest_last_s is v.digest_last_s  # gathered once, then cached
    with pytest.raises(AttributeError):
        _ = v.no_such_field


def test_the_view_gives_absolute_digest_times_as_andes_reads_them():
    """The tracker keeps digest times relative to arrival; the view (documented absolute) and
    Andes' lost-area estimate must see absolute times, or a request that arrived after t = 0
    looks as if its client had read every token already (a bug found in session 4)."""
    from orrery.policies.serving.qoe import lost_area

    reqs = Requests(np.array([100.0, 100.0]), np.array([20, 20]), np.array([50, 50]))
    r = RequestState(reqs, QoESpec(), np.random.default_rng(0))
    rs = ReplicaState(r, block_size=16, total_blocks=64, max_num_seqs=8, max_num_batched_tokens=4096,
                      swap_cap_bytes=1e9, kv_bytes_per_token=10.0, latency=None)
    rs.add(0)
    rs.add(1)
    step(rs, [0, 1], now=100.0)
    for k in range(10):  # ten tokens in 0.1 s: far faster than the reader (tds ~ 4.8 tok/s)
        r.qoe.deliver(np.array([0]), 101.0 + 0.01 * k)
    v = rs.view(101.2)
    assert v.digest_last_s[0] > 101.2 and v.digest_last_s[0] == pytest.approx(101.0 + 9 / r.tds[0])
    assert v.digest_last_s[1] == -np.inf
    # the lost area if request 0 waits: its buffered tokens cover the next seconds
    lost_abs = lost_area(101.2, 2.0, np.inf, v.arrival_s, v.ttft_exp_s, v.tds_exp_tok_s,
                         r.qoe.delivered[v.ids], v.digest_last_s)  # tokens delivered to the tracker
    assert np.allclose(r.qoe.lost_area_if(np.array([0, 1]), 101.2, 2.0, np.inf), lost_abs)
    assert lost_abs[0] == 0.0 < lost_abs[1]


def test_a_swap_in_next_to_a_prefill_holds_its_blocks_at_once():
    # a prefill runs only the admitted requests; one swapped in beside it has its KV copied back
    # into GPU blocks in that same iteration, so the accounting (and the next view's free
    # blocks) counts them then, not at its next decode step
    r, rs = replica([100, 30, 20], [5, 5, 5], swap_cap_bytes=1e6)
    step(rs, [0, 1])
    rs.deliver(np.array([0, 1]), 1.0)
    step(rs, [1], mode="swap")  # 0 goes to host memory (context 101 tokens)
    assert r.state[0] == SWAPPED and r.held([0], rs.block)[0] == 0
    used_before = rs.used_blocks
    s = step(rs, [0, 1, 2])  # swap 0 in while 2 is admitted: a prefill of 2 alone
    assert s.kind == "prefill" and list(s.run) == [2] and list(s.swapped_in) == [0]
    assert r.held([0], rs.block)[0] == 7  # ceil(101 / 16)
    assert rs.used_blocks == used_before + 7 + 2  # + request 2's ceil(21 / 16)
    assert rs.view(2.0).kv_blocks_free == 64 - rs.used_blocks
    s = step(rs, [0, 1, 2])  # its first decode step adds only the block its new token needs
    assert s.kind == "decode" and r.held([0], rs.block)[0] == 7
    rs.deliver(s.run, 3.0)  # (blocks follow the contexts between iterations)
    assert rs.used_blocks == int(r.held([0, 1, 2], rs.block).sum())
