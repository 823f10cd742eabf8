"""Domain registry: which scenario type and run function each domain has.

A domain module (`sim/serving.py`, ...) calls `register_domain(...)` at import time. The
study runner only ever talks to domains through this registry, so it works for all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from orrery.core.errors import UnknownNameError
from orrery.sim.scenario import Scenario

# Domain name -> module that registers it (imported on first use).
DOMAIN_MODULES: dict[str, str] = {
    "serving": "orrery.sim.serving",
    "fl": "orrery.sim.fl",
    "training": "orrery.sim.training",
    "resilience": "orrery.sim.resilience",
    "fl_feasibility": "orrery.sim.fl_feasibility",
    "fedtrans": "orrery.sim.fedtrans",
    "cluster_serving": "orrery.sim.cluster_serving",
}

Direction = Literal["higher", "lower"]


@dataclass
class RunResult:
    """What one run returns.

    `metrics`: scalar results (floats), named with units; `table`: the primary per-entity
    table (one row per request, job, iteration...); `series`: further small tables (time
    series) by name. All of it lands in the run's Parquet file.
    """

    metrics: dict[str, float]
    table: pd.DataFrame
    series: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    name: str
    scenario_type: type[Scenario]
    run: Callable[[Scenario], RunResult]
    # metric name -> which direction is better
    metrics: dict[str, Direction]
    # plots(out_dir, summary_df, runs) -> list of written PNG paths: a callable, or a
    # "module:function" string resolved by experiments (so a simulator need not import plotting)
    plots: Callable | str | None = None
    description: str = ""
    # the policies/<package> whose policies this domain runs (default: the domain's name)
    policy_domain: str = ""
    # check(scenario): raise OrreryInputError for anything `run` would reject as input (unknown
    # catalog names, unreadable or malformed data files, impossible hardware), cheaply and
    # without running; `orrery validate` calls it for every group so that what passes validate
    # does not fail on input in the run
    check: Callable[[Scenario], None] | None = None

    @property
    def policies(self) -> str:
        return self.policy_domain or self.name


_DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    if domain.scenario_type.domain != domain.name:
        raise ValueError(
            f"scenario type {domain.scenario_type.__name__} declares domain "
            f"{domain.scenario_type.domain!r}, registered as {domain.name!r}"
        )
    _DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain:
    if name not in _DOMAINS:
        module = DOMAIN_MODULES.get(name)
        if module is None:
            raise UnknownNameError("domain", name, list(DOMAIN_MODULES))
        importlib.import_module(module)
    return _DOMAINS[name]


def available_domains() -> list[str]:
    """Domains whose modules import (a domain still under construction is skipped)."""
    names = []
    for name, module in DOMAIN_MODULES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name == module:
                continue
            raise
        names.append(name)
    return names


def registered_domains() -> dict[str, Domain]:
    """Domains registered so far (shipped ones once imported, plus plug-ins)."""
    return dict(_DOMAINS)


def run_scenario(scenario: Scenario) -> RunResult:
    return get_domain(scenario.domain).run(scenario)
