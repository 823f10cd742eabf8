"""Backend-neutral policies, one file per policy, grouped by domain.

A policy module imports only the standard library, numpy, scipy, networkx (and scikit-learn
for Chase): never simpy, torch or pynvml. That is what lets the simulator and the real backend
drive the very same policy object.
"""

from orrery.policies.registry import (
    PolicyInputError,
    get_policy_class,
    list_policies,
    make_policy,
    register,
)

__all__ = ["PolicyInputError", "get_policy_class", "list_policies", "make_policy", "register"]
