"""`check_policy`: validate any policy plug-in against its domain's contract.

In the spirit of Gymnasium's environment checker: it instantiates the policy with its defaults,
probes it with the domain's sample views and reports every broken promise at once.
"""

from __future__ import annotations

import ast
import copy
import inspect
from pathlib import Path

import numpy as np

from orrery.core.errors import PolicyInputError
from orrery.policies.registry import available_domains, get_contract

# modules a policy must not import (itself or any submodule): backends and the layers above policies
FORBIDDEN_IMPORTS = ("simpy", "torch", "pynvml", "orrery.sim", "orrery.realbackend", "orrery.experiments")


class PolicyContractError(AssertionError):
    """A policy broke its domain's contract; the message lists every problem."""


def forbidden_imports(cls: type) -> list[str]:
    """Top-level packages a policy's module imports that a policy must not."""
    try:
        src = Path(inspect.getsourcefile(cls) or "").read_text()
    except (OSError, TypeError):
        return []
    found = set()
    for node in ast.walk(ast.parse(src)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            if any(n == f or n.startswith(f + ".") for f in FORBIDDEN_IMPORTS):
                found.add(n)
    return sorted(found)


def check_policy(domain: str, policy: type | object, *, seed: int = 0) -> list[str]:
    """Check `policy` (a class or an instance) against `domain`'s contract.

    Returns the list of checks performed; raises `PolicyContractError` listing every problem
    once (a problem seen on several sample views is listed once, with the views it occurred on).
    """
    cls = policy if isinstance(policy, type) else type(policy)
    problems: list[str] = []
    done: list[str] = []
    registered = getattr(cls, "policy_domain", None)
    if registered is not None and registered != domain:
        try:
            get_contract(registered)
        except PolicyInputError:
            problems.append(f"{cls.__name__} is registered under {registered!r}, which is not a policy "
                            f"domain (known: {', '.join(available_domains())})")
        else:
            problems.append(f"{cls.__name__} is registered under domain {registered!r}, not {domain!r}")
    contract = get_contract(domain)
    done.append("registered under its domain")

    if not issubclass(cls, contract.base):
        problems.append(f"{cls.__name__} does not subclass {contract.base.__name__}")
    done.append("subclasses the domain base")
    bad = forbidden_imports(cls)
    if bad:
        problems.append(f"{cls.__name__}'s module imports {bad}; policies must stay backend-neutral")
    done.append("imports no backend module")
    if inspect.isabstract(cls):
        problems.append(f"{cls.__name__} is abstract: {sorted(cls.__abstractmethods__)}")
        raise PolicyContractError("; ".join(problems))

    def fresh():
        if isinstance(policy, type):
            return cls()
        return copy.deepcopy(policy)

    try:
        a, b = fresh(), fresh()
    except Exception as err:  # noqa: BLE001 - reported, not swallowed
        problems.append(f"cannot instantiate {cls.__name__} with defaults: {err!r}")
        raise PolicyContractError("; ".join(problems)) from err
    done.append("instantiates with defaults")

    views = contract.sample_views(np.random.default_rng(seed))
    drive = contract.drive or (lambda p, vs: [p.schedule(v) for v in vs])
    try:
        da = drive(a, views)
        db = drive(b, copy.deepcopy(views))
    except Exception as err:  # noqa: BLE001
        problems.append(f"{cls.__name__} raised on a sample view: {err!r}")
        raise PolicyContractError("; ".join(problems)) from err
    done.append(f"decides on {len(views)} sample views")
    seen: dict[str, list[int]] = {}
    for i, (v, d) in enumerate(zip(views, da, strict=True)):
        for p in contract.validate(v, d):
            seen.setdefault(p, []).append(i)
    for p, where in seen.items():
        label = f"view {where[0]}" if len(where) == 1 else f"views {', '.join(map(str, where))}"
        problems.append(f"{label}: {p}")
    done.append("every decision is valid for its view")
    if repr(da) != repr(db):
        problems.append(f"{cls.__name__} is not deterministic: same views gave different decisions")
    done.append("deterministic")
    if contract.promises is not None:
        try:
            problems.extend(contract.promises(fresh, copy.deepcopy(views)))
        except Exception as err:  # noqa: BLE001
            problems.append(f"{cls.__name__} raised while its promises were checked: {err!r}")
        done.append("keeps what it declares of itself")
    if problems:
        raise PolicyContractError(f"{cls.__name__} ({domain}): " + "; ".join(dict.fromkeys(problems)))
    return done
