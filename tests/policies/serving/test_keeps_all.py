"""The `keeps_all_that_fit` promise: a policy that sets it returns every live request whenever
all of them run, there are at most max_num_seqs and their next step fits in the KV cache, and
its `kept_all` hook does to its state what that `schedule` call does (the simulator calls the
hook instead of `schedule` then)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.policies.check import PolicyContractError, check_policy
from orrery.policies.registry import make_policy, shipped_policies
from orrery.policies.serving.andes import Andes
from orrery.policies.serving.base import RUNNING, ServingView, keeps_all_without_asking
from orrery.policies.serving.common import keeps_everyone
from orrery.policies.serving.vllm_fcfs import VLLMFCFS


class _Latency:
    kv_bytes_per_token = 1.0

    def decode_time_s(self, batch_size, context_tokens):
        return 0.02 + 1e-3 * np.asarray(batch_size, dtype=float) + 1e-7 * np.asarray(context_tokens, dtype=float)

    def prefill_time_s(self, n_tokens, n_seqs=1, context_tokens=0):
        return 1e-4 * n_tokens

    def swap_time_s(self, n_bytes):
        return 1e-9 * np.asarray(n_bytes, dtype=float)


def _view(now_s, prompt, generated, kv_total, max_seqs, tds, block=16) -> ServingView:
    n = len(prompt)
    prompt, generated = np.asarray(prompt, dtype=np.int64), np.asarray(generated, dtype=np.int64)
    held = -(-(prompt + generated) // block)
    return ServingView(
        now_s=now_s, ids=np.arange(100, 100 + n, dtype=np.int64), state=np.full(n, RUNNING, dtype=np.int8),
        arrival_s=np.zeros(n), prompt_tokens=prompt, generated_tokens=generated,
        n_preemptions=np.zeros(n, dtype=int), ttft_exp_s=np.ones(n), tds_exp_tok_s=np.asarray(tds, dtype=float),
        qoe_deficit=np.zeros(n), digest_last_s=np.zeros(n), kv_blocks_held=held, block_size=block,
        kv_blocks_total=kv_total, kv_blocks_free=kv_total - int(held.sum()), max_num_seqs=max_seqs,
        max_num_batched_tokens=4096, latency=_Latency())


PROMISING = [n for n in shipped_policies("serving") if keeps_all_without_asking(make_policy("serving", n, {}))]


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from(PROMISING),
    ctx=st.lists(st.tuples(st.integers(1, 3000), st.integers(1, 500)), min_size=1, max_size=40),
    slack=st.integers(-20, 50),
    max_seqs=st.integers(1, 64),
    tds=st.sampled_from([3.3, 4.8, 100.0]),
)
def test_keeps_everyone_when_all_run_and_fit(policy, ctx, slack, max_seqs, tds):
    prompt, generated = zip(*ctx, strict=True)
    need = sum((p + g + 16) // 16 for p, g in ctx)
    view = _view(1.0, prompt, generated, kv_total=max(need + slack, 1), max_seqs=max_seqs, tds=[tds] * len(ctx))
    pol = make_policy("serving", policy, {})
    assert keeps_all_without_asking(pol)
    dec = pol.schedule(view)
    if keeps_everyone(view):
        assert dec.running.tolist() == view.ids.tolist()
    fits = len(ctx) <= max_seqs and need <= view.kv_blocks_total
    assert keeps_everyone(view) == fits


def test_andes_kept_all_clears_the_plan_as_schedule_does():
    andes = Andes(replan_interval_s=10.0)
    andes._plan, andes._plan_time = {1, 2}, 0.0
    andes.schedule(_view(0.1, [64, 64], [8, 8], kv_total=100, max_seqs=8, tds=[4.8, 4.8]))
    assert andes._plan == set()
    andes._plan = {1, 2}
    andes.kept_all(0.1)
    assert andes._plan == set() and andes._plan_time == 0.0


def test_a_subclass_that_replaces_schedule_is_asked():
    class Mine(VLLMFCFS):
        def schedule(self, view):
            return super().schedule(view)

    class Promised(Mine):
        keeps_all_that_fit = True

    assert keeps_all_without_asking(VLLMFCFS())
    assert not keeps_all_without_asking(Mine())
    assert keeps_all_without_asking(Promised())
    # shipped policies that do not promise it are always asked
    for name in shipped_policies("serving"):
        pol = make_policy("serving", name, {})
        assert keeps_all_without_asking(pol) == (name in ("andes", "vllm_fcfs"))


def test_the_contract_checker_holds_every_policy_to_its_promise():
    assert set(PROMISING) >= {"andes", "vllm_fcfs"}

    class Drops(VLLMFCFS):  # promises to keep everyone, then drops the newest
        keeps_all_that_fit = True

        def schedule(self, view):
            dec = super().schedule(view)
            return type(dec)(dec.running[:-1], dec.preempt_mode) if dec.running.size > 1 else dec

    with pytest.raises(PolicyContractError, match="did not keep every running request"):
        check_policy("serving", Drops)

    class Counts(VLLMFCFS):  # schedule changes state that kept_all (the default no-op) does not
        keeps_all_that_fit = True

        def __init__(self):
            super().__init__()
            self.n = 0

        def schedule(self, view):
            self.n += 1
            dec = super().schedule(view)
            return type(dec)(dec.running, "swap" if self.n % 2 else "recompute")

    with pytest.raises(PolicyContractError, match="kept_all left it deciding otherwise"):
        check_policy("serving", Counts)
    assert "keeps what it declares of itself" in check_policy("serving", VLLMFCFS)
