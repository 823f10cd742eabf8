"""Resilience policies: registered names and bad parameters (conformance: tests/policies/test_conformance.py)."""

from __future__ import annotations

import pytest

from orrery.policies.registry import PolicyInputError, list_policies, make_policy


def test_registered_and_bad_params():
    assert {"varuna", "bamboo", "oobleck"} <= set(list_policies()["resilience"])
    with pytest.raises(PolicyInputError):
        make_policy("resilience", "oobleck", {"f": -1})
    with pytest.raises(PolicyInputError):
        make_policy("resilience", "varuna", {"nope": 1})
