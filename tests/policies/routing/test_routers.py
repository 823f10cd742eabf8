"""Routers: every shipped router passes check_policy; each picks what its rule says."""

import numpy as np
import pytest

from orrery.policies.check import PolicyContractError, check_policy
from orrery.policies.registry import get_policy_class, list_policies, make_policy
from orrery.policies.routing.base import RouterPolicy, RoutingDecision, sample_views
from orrery.policies.routing.qoe_aware import expected_qoe

ROUTERS = ["least_outstanding_tokens", "power_of_two", "qoe_aware", "round_robin"]


def test_shipped_routers_registered():
    assert sorted(list_policies()["routing"]) == ROUTERS


@pytest.mark.parametrize("name", ROUTERS)
def test_contract(name):
    assert "deterministic" in check_policy("routing", get_policy_class("routing", name))


def test_contract_catches_out_of_range_router():
    class Bad(RouterPolicy):
        def route(self, view):
            return RoutingDecision(view.n_replicas)

    with pytest.raises(PolicyContractError, match="out of range"):
        check_policy("routing", Bad)


def test_round_robin_cycles():
    v = sample_views(np.random.default_rng(1))[3]
    rr = make_policy("routing", "round_robin")
    got = [rr.route(v).replica for _ in range(2 * v.n_replicas)]
    assert got == list(range(v.n_replicas)) * 2


def test_least_outstanding_and_power_of_two_pick_lighter():
    views = sample_views(np.random.default_rng(2))
    lot = make_policy("routing", "least_outstanding_tokens", {"normalize": False})
    p2 = make_policy("routing", "power_of_two", {"d": 64})  # d >= replicas: sees every replica
    for v in views[1:]:
        assert v.outstanding_tokens[lot.route(v).replica] == v.outstanding_tokens.min()
        use = (v.kv_blocks_used + v.waiting_prompt_tokens / 16) / v.kv_blocks_total
        assert use[p2.route(v).replica] == pytest.approx(use.min())


def test_qoe_aware_avoids_a_loaded_replica():
    v = sample_views(np.random.default_rng(3))[5]
    r = make_policy("routing", "qoe_aware")
    k = r.route(v).replica
    heavy = int(np.argmax(v.waiting_prompt_tokens))
    if v.n_replicas > 1 and v.waiting_prompt_tokens[heavy] > 20000:
        assert k != heavy


def test_expected_qoe_bounds():
    q = expected_qoe(np.array([0.5, 3.0, 30.0]), np.array([0.05, 0.05, 1.0]), 1.0, 4.8, 200)
    assert q[0] == 1.0 and 0 < q[2] < q[1] < 1.0
