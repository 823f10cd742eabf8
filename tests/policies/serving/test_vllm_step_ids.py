"""`vllm_step_ids`: the ids `vllm_step` runs, as the policies' decisions carry them; the view's
own ids array when an admission runs every live request (the simulator then reads the decision
as "everyone" without comparing ids), else a fresh array."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.policies.serving.base import RUNNING, WAITING, sample_views
from orrery.policies.serving.common import vllm_step, vllm_step_ids


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_ids_are_the_masked_ids_and_the_views_own_when_everyone_runs(seed):
    views = sample_views(np.random.default_rng(seed), 24)
    for view in views:
        expected = view.ids[vllm_step(view)]
        got = vllm_step_ids(view)
        assert got.tolist() == expected.tolist()
        if got is view.ids:
            assert expected.size == view.ids.size
        elif got.size:
            assert not np.shares_memory(got, view.ids)  # (a fresh array: never a view of the ids)


def test_an_admission_next_to_a_running_batch_gives_the_views_ids():
    views = [v for v in sample_views(np.random.default_rng(3), 200)
             if (v.state == RUNNING).any() and (v.state == WAITING).any()
             and vllm_step(v).all()]
    assert views, "no sample view admits every waiting request"
    for view in views:
        assert vllm_step_ids(view) is view.ids
