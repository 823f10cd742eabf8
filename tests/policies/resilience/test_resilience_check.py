"""Every shipped resilience policy passes the domain's conformance checker."""

from __future__ import annotations

import pytest

from orrery.policies.check import check_policy
from orrery.policies.registry import PolicyInputError, get_policy_class, list_policies, make_policy


@pytest.mark.parametrize("name", ["varuna", "bamboo", "oobleck"])
def test_policy_conforms(name):
    done = check_policy("resilience", get_policy_class("resilience", name))
    assert "deterministic" in done


def test_registered_and_bad_params():
    assert {"varuna", "bamboo", "oobleck"} <= set(list_policies()["resilience"])
    with pytest.raises(PolicyInputError):
        make_policy("resilience", "oobleck", {"f": -1})
    with pytest.raises(PolicyInputError):
        make_policy("resilience", "varuna", {"nope": 1})
