"""Policy registry and the contract checker."""

import numpy as np
import pytest

from orrery.policies.check import PolicyContractError, check_policy
from orrery.policies.registry import PolicyInputError, get_policy_class, list_policies, make_policy
from orrery.policies.serving.base import ServingDecision, ServingPolicy


def test_serving_policies_registered():
    names = list_policies()["serving"]
    assert {"vllm_fcfs", "round_robin", "andes"} <= set(names)


def test_unknown_policy_and_bad_params():
    with pytest.raises(PolicyInputError, match="unknown serving policy 'fifo'.*andes"):
        get_policy_class("serving", "fifo")
    with pytest.raises(PolicyInputError, match="no parameter.*'horizon'.*horizon_s"):
        make_policy("serving", "andes", {"horizon": 1})
    with pytest.raises(PolicyInputError, match="bad parameters"):
        make_policy("serving", "andes", {"horizon_s": -1})


class _Greedy(ServingPolicy):
    """Runs everything: breaks KV capacity on full views."""

    def schedule(self, view):
        return ServingDecision(view.ids.copy())


class _Random(ServingPolicy):
    def __init__(self):
        self.rng = np.random.default_rng()

    def schedule(self, view):
        k = int(self.rng.integers(0, 2)) if view.ids.size else 0
        return ServingDecision(view.ids[:k])


def test_checker_catches_capacity_violation_and_nondeterminism():
    with pytest.raises(PolicyContractError, match="KV blocks|max_num_seqs"):
        check_policy("serving", _Greedy)
    with pytest.raises(PolicyContractError, match="not deterministic"):
        check_policy("serving", _Random)


def test_checker_catches_wrong_base_class():
    class NotAPolicy:
        def schedule(self, view):
            return ServingDecision(view.ids[:0])

    with pytest.raises(PolicyContractError, match="does not subclass"):
        check_policy("serving", NotAPolicy)
