"""Every policy orrery ships, in every domain, passes its domain's contract (no hand-kept lists).

The list comes from the registry: a new policy file is checked the moment it registers.
"""

from __future__ import annotations

import pytest

from orrery.policies.check import PolicyContractError, check_policy
from orrery.policies.registry import (
    PolicyInputError,
    available_domains,
    get_contract,
    get_policy_class,
    make_policy,
    register,
    shipped_policies,
)
from orrery.policies.serving.base import ServingDecision, ServingPolicy

SHIPPED = [(d, n) for d in available_domains() for n in shipped_policies(d)]


@pytest.mark.parametrize(("domain", "name"), SHIPPED, ids=[f"{d}/{n}" for d, n in SHIPPED])
def test_every_shipped_policy_passes_its_contract(domain, name):
    done = check_policy(domain, get_policy_class(domain, name))
    assert "deterministic" in done and "registered under its domain" in done


def test_every_domain_has_a_contract_and_policies():
    assert {"serving", "fl", "fedtrans", "energy", "resilience"} <= set(available_domains())
    for d in available_domains():
        assert get_contract(d).domain == d and shipped_policies(d), d


class _Abstract(ServingPolicy):
    """Forgets `schedule`."""


def test_make_policy_names_the_missing_abstract_methods():
    register("serving", "_test_abstract")(_Abstract)
    with pytest.raises(PolicyInputError, match=r"_Abstract.*is abstract.*does not implement schedule"):
        make_policy("serving", "_test_abstract")


class _Misfiled(ServingPolicy):
    def schedule(self, view):
        return ServingDecision(view.ids[:0])


class _BadMode(ServingPolicy):
    def schedule(self, view):
        return ServingDecision(view.ids[:0], preempt_mode="drop")


def test_check_policy_rejects_a_policy_registered_under_an_unknown_domain():
    register("servng", "_test_misfiled")(_Misfiled)
    with pytest.raises(PolicyContractError, match=r"registered under 'servng', which is not a policy domain"):
        check_policy("serving", _Misfiled)


def test_check_policy_reports_each_problem_once():
    with pytest.raises(PolicyContractError) as err:
        check_policy("serving", _BadMode)
    text = str(err.value)
    assert text.count("preempt_mode 'drop'") == 1 and "views 0, 1" in text  # once, naming its views
