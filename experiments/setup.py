"""A study's setup checks (DESIGN, "Rigorous studies"): each independent variable really
changes the scenario, control and treatments differ only in the independent variables, every
metric is one the domain declares, every policy exists, takes its parameters and passes its
domain's contract, and every data file exists and parses (with its sha256 for the manifest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.core.files import sha256_file
from orrery.experiments.schema import canon, flatten
from orrery.sim.scenario import Scenario, read_toml

if TYPE_CHECKING:
    from orrery.experiments.expansion import Group, RunSpec, Study


@dataclass
class SetupReport:
    study: str
    checks: list[str]
    data_files: dict[str, str]  # resolved path -> sha256

    def lines(self) -> list[str]:
        return [f"ok: {c}" for c in self.checks]


def flat_dump(sc: Scenario) -> dict[str, Any]:
    return flatten(sc.model_dump(mode="json"))


def _allowed_diff(path: str, variables: list[str]) -> bool:
    if path == "name":
        return True
    for v in variables:
        if path == v or path.startswith(v + "."):
            return True
        if v == "policy" and (path == "policy_params" or path.startswith("policy_params.")):
            return True  # a policy's parameters belong to the policy treatment
    return False


def policy_domain_of(domain: Any) -> str:
    """The policies/<package> a domain's scenarios name their policies in."""
    return domain.policies


def resolve_data_path(value: str) -> Path:
    """A data path as scenarios give it (`shared:llm/x.csv` or a plain path); may not exist."""
    from orrery.traces.paths import data_path

    return data_path(value)


def check_data_file(path: Path) -> None:
    """Raise if a data file is unreadable as its extension says (csv, json, toml, parquet)."""
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            import pandas as pd

            pd.read_csv(path, nrows=200)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".toml"):
            read_toml(path)
        elif name.endswith(".parquet"):
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        else:
            path.read_bytes()[:1]
    except OrreryInputError:
        raise
    except Exception as err:  # noqa: BLE001 - reported to the user with the file name
        raise OrreryInputError(f"data file {path} does not parse: {err}") from None


def is_data_key(key: str, value: Any) -> bool:
    """A scenario key naming a data file: `..._path`, `...path`, `hw_params` (a fitted-parameter
    file, so its hash is part of the run key), or any `shared:` value."""
    if not isinstance(value, str) or not value:
        return False
    last = key.rsplit(".", 1)[-1]
    return last.endswith("_path") or last in ("path", "hw_params") or value.startswith("shared:")


def data_paths(sc: Scenario) -> dict[str, str]:
    """Scenario fields (dotted field -> value) that name a data file."""
    return {k: v for k, v in flat_dump(sc).items() if is_data_key(k, v)}


def _missing_data_file(overrides: dict[str, Any]) -> str | None:
    """The first data file named in `overrides` that does not exist (None: all present)."""
    for key, value in overrides.items():
        if is_data_key(key, value) and not resolve_data_path(value).is_file():
            return value
    return None


def validate_setup(study: Study) -> SetupReport:
    """Check the study's design before anything runs; raise `ScenarioError` naming the rule."""
    src, checks = study.source, []
    names = study.variables
    first_seed = study.seeds[0]

    def run0(g: Group) -> RunSpec:
        return next(r for r in g.runs if r.seed == first_seed)

    # 1. metrics the domain declares
    declared = study.domain.metrics
    unknown = [m for m in study.spec.study.metrics if m not in declared]
    if unknown:
        raise ScenarioError(
            f"{src}: key 'study.metrics': {', '.join(map(repr, unknown))} not produced by domain "
            f"{study.domain.name!r}; it declares: {', '.join(sorted(declared))}"
        )
    checks.append(f"metrics {', '.join(study.spec.study.metrics)} are declared by domain {study.domain.name}")

    # 2. every independent variable changes the scenario
    by_case: dict[str | None, list[Group]] = {}
    for g in study.groups:
        by_case.setdefault(g.case, []).append(g)
    for case, gs in by_case.items():
        # linear in the groups: distinct groups must give distinct scenarios; a collision
        # between two groups that differ in one variable names that variable
        seen: dict[str, Group] = {}
        for g in gs:
            h = run0(g).scenario_hash
            a = seen.get(h)
            if a is None:
                seen[h] = g
                continue
            differ = [n for n in names if canon(a.values[n]) != canon(g.values[n])]
            if len(differ) == 1:
                var = differ[0]
                raise ScenarioError(
                    f"{src}: independent variable {var!r} does not change the scenario: "
                    f"{var} = {a.values[var]!r} and {g.values[var]!r} give the same "
                    f"scenario (hash {h})"
                    + (f" in case {case!r} (the case overrides it?)" if case else "")
                    + "; check the dotted path and the values"
                )
            raise ScenarioError(
                f"{src}: groups {a.label} and {g.label} produce the same scenario "
                f"(hash {h}): the independent variables do not change it"
            )
    checks.append(f"each independent variable ({', '.join(names)}) changes the scenario hash")

    # 3. control and treatment differ only in the independent variables
    by_label = {g.label: g for g in study.groups}
    for g in study.groups:
        if g.role != "treatment":
            continue
        c = by_label[g.control or ""]
        ft, fc = flat_dump(run0(g).scenario), flat_dump(run0(c).scenario)
        diff = sorted(k for k in set(ft) | set(fc) if canon(ft.get(k)) != canon(fc.get(k)))
        bad = [k for k in diff if not _allowed_diff(k, names)]
        if bad:
            shown = "; ".join(f"{k}: {fc.get(k)!r} (control) vs {ft.get(k)!r}" for k in bad[:5])
            raise ScenarioError(
                f"{src}: treatment {g.label} differs from its control {c.label} outside the "
                f"independent variables ({', '.join(names)}): {shown}; declare it as a variable "
                "or make it a constant"
            )
    checks.append("control and treatments differ only in the independent variables")

    # 4. policies exist, take their parameters and keep their domain's contract
    from orrery.policies.check import PolicyContractError, check_policy
    from orrery.policies.registry import PolicyInputError, get_contract, make_policy

    pdom = policy_domain_of(study.domain)
    try:
        get_contract(pdom)
        contract = True
    except PolicyInputError:  # a plug-in domain without a contract: instantiate only
        contract = False
    tried: set[tuple[str, str]] = set()
    for r in study.runs():
        pol, params = r.scenario.policy, r.scenario.policy_params
        if (pol, canon(params)) in tried:
            continue
        tried.add((pol, canon(params)))
        try:
            policy = make_policy(pdom, pol, params)
        except PolicyInputError as err:
            raise ScenarioError(f"{src}: group {r.group}: {err}") from None
        if contract:
            try:
                check_policy(pdom, policy)
            except PolicyContractError as err:
                raise ScenarioError(f"{src}: group {r.group}: policy {pol!r} with policy_params "
                                    f"{params} breaks the {pdom} contract: {err}") from None
    checks.append(f"policies exist in domain {pdom}, take their policy_params"
                  + (" and pass check_policy" if contract else ""))

    # 5. data files exist and parse
    files: dict[str, str] = {}
    seen_values: set[str] = set()
    for r in study.runs():
        for key, value in data_paths(r.scenario).items():
            if value in seen_values:
                continue
            seen_values.add(value)
            try:
                p = resolve_data_path(value)
            except OrreryInputError as err:
                raise ScenarioError(f"{src}: scenario key {key!r} = {value!r}: {err}") from None
            if not p.is_file():
                raise ScenarioError(f"{src}: scenario key {key!r} = {value!r}: data file not found ({p})")
            try:
                check_data_file(p)
            except OrreryInputError as err:
                raise ScenarioError(f"{src}: scenario key {key!r}: {err}") from None
            files[str(p)] = sha256_file(p)
    checks.append(f"{len(files)} data file(s) exist and parse")

    # 6. every group's scenario passes what its run checks as input (the domain's `check` hook:
    # catalog names, hardware fit, data files parsed whole), so what passes validate does not
    # fail on input in the run. Seeds do not change inputs: one run per group.
    check = getattr(study.domain, "check", None)
    if check is not None:
        first_seed = study.seeds[0]
        for g in study.groups:
            sc = next(r for r in g.runs if r.seed == first_seed).scenario
            try:
                check(sc)
            except (OrreryInputError, PolicyInputError) as err:
                raise ScenarioError(f"{src}: group {g.label}: {' '.join(str(err).split())}") from None
        checks.append("every group's scenario builds: hardware, workload and data files as its run reads them")
    return SetupReport(study.name, checks, files)
