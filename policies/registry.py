"""Policy registry: `@register("serving", "andes")` on a class is all it takes to add a policy.

Each domain package (`policies/<domain>/`) imports its modules on first use, so a policy file
registers itself. A domain also registers a `Contract` (its base class, sample views and a
decision validator), which `policies.check.check_policy` uses to validate any plug-in.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orrery.core.errors import PolicyInputError

__all__ = ["Contract", "PolicyInputError", "get_contract", "get_policy_class", "list_policies",
           "make_policy", "register", "register_contract", "shipped_policies"]

DOMAIN_PACKAGES = ("serving", "fl", "fedtrans", "energy", "resilience", "routing")


@dataclass(frozen=True)
class Contract:
    """What a domain promises its policies and demands of them.

    base: the abstract policy class; sample_views(rng) -> list of views to probe a policy with;
    validate(view, decision) -> list of problems (empty when the decision is valid);
    drive(policy, views) -> list of decisions (default: `policy.schedule(v)` for each view);
    promises(fresh, views) -> list of problems with what a policy declares of itself (flags a
    backend relies on), given `fresh()`, which makes a new policy as the checker does.
    """

    domain: str
    base: type
    sample_views: Callable[[Any], list]
    validate: Callable[[Any, Any], list[str]]
    drive: Callable[[Any, list], list] | None = None
    promises: Callable[[Callable[[], Any], list], list[str]] | None = None


_POLICIES: dict[str, dict[str, type]] = {}
_CONTRACTS: dict[str, Contract] = {}
_LOADED: set[str] = set()


def register(domain: str, name: str) -> Callable[[type], type]:
    """Class decorator: register a policy class under (domain, name)."""

    def deco(cls: type) -> type:
        existing = _POLICIES.setdefault(domain, {}).get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"policy {domain}/{name} registered twice ({existing} and {cls})")
        _POLICIES[domain][name] = cls
        cls.policy_name = name
        cls.policy_domain = domain
        return cls

    return deco


def register_contract(contract: Contract) -> Contract:
    _CONTRACTS[contract.domain] = contract
    return contract


def load_domain(domain: str) -> None:
    """Import every module of `policies/<domain>/` so their decorators run."""
    if domain in _LOADED:
        return
    if domain in _POLICIES and domain not in DOMAIN_PACKAGES:  # a plug-in registered in code
        _LOADED.add(domain)
        return
    try:
        pkg = importlib.import_module(f"orrery.policies.{domain}")
    except ModuleNotFoundError as err:
        if err.name == f"orrery.policies.{domain}":
            raise PolicyInputError(
                f"unknown policy domain {domain!r}; known: {', '.join(available_domains())}"
            ) from None
        raise
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"orrery.policies.{domain}.{info.name}")
    _LOADED.add(domain)


def available_domains() -> list[str]:
    out = []
    for d in DOMAIN_PACKAGES:
        try:
            importlib.import_module(f"orrery.policies.{d}")
        except ModuleNotFoundError:
            continue
        out.append(d)
    return out


def get_policy_class(domain: str, name: str) -> type:
    load_domain(domain)
    try:
        return _POLICIES[domain][name]
    except KeyError:
        known = ", ".join(sorted(_POLICIES.get(domain, {}))) or "(none)"
        raise PolicyInputError(f"unknown {domain} policy {name!r}; known: {known}") from None


def make_policy(domain: str, name: str, params: dict[str, Any] | None = None) -> Any:
    """Instantiate a policy, turning bad parameters into a clear `PolicyInputError`."""
    cls = get_policy_class(domain, name)
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PolicyInputError(f"{domain} policy {name!r} ({cls.__qualname__}) is abstract: it does not "
                               f"implement {missing}")
    params = dict(params or {})
    sig = inspect.signature(cls)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters and not accepts_kwargs]
    if unknown:
        allowed = [p for p in sig.parameters if p != "self"]
        raise PolicyInputError(
            f"{domain} policy {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(allowed) or '(none)'}"
        )
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise PolicyInputError(f"{domain} policy {name!r}: bad parameters {params}: {err}") from None


def get_contract(domain: str) -> Contract:
    load_domain(domain)
    try:
        return _CONTRACTS[domain]
    except KeyError:
        raise PolicyInputError(f"policy domain {domain!r} registered no contract") from None


def shipped_policies(domain: str) -> list[str]:
    """Names of the policies orrery itself ships in `domain` (plug-ins and test doubles left out)."""
    load_domain(domain)
    return sorted(n for n, c in _POLICIES.get(domain, {}).items() if c.__module__.startswith("orrery.policies."))


def list_policies() -> dict[str, list[str]]:
    """Registered policy names by domain (loads every domain package present)."""
    for d in available_domains():
        load_domain(d)
    return {d: sorted(names) for d, names in sorted(_POLICIES.items())}
