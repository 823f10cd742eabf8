"""Study specs: a hypothesis, independent variables, a control group, treatments and seeds.

A study TOML (format in docs/CONVENTIONS.md) is validated by pydantic before anything runs;
errors name the file, the key and what was expected. `Study.expand()` turns it into run specs,
one per (group, seed). `validate_setup()` applies the rigour rules of DESIGN ("Rigorous
studies"): each independent variable really changes the scenario, control and treatments
differ only in the independent variables, every metric is one the domain declares, every
data file exists and parses, every policy exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orrery.core.config import describe_validation_error
from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.core.files import sha256_file
from orrery.sim.scenario import Scenario, read_toml

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_VARIABLES = {"seed", "case"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Spec):
    name: str = Field(..., description="study name; also the default results folder")
    domain: str
    description: str = ""
    hypothesis: str = Field(..., min_length=1)
    seeds: int | list[int] = Field(5, description="a count (seeds 0..n-1) or an explicit list")
    metrics: list[str] = Field(..., min_length=1, description="dependent metrics")
    control: dict[str, Any] = Field(..., description="independent-variable values of the control")
    treatments: list[dict[str, Any]] | None = None
    test: Literal["welch", "mannwhitney"] = "welch"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("must be letters, digits, '_', '.', '-' (it names a folder)")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_type(cls, v: Any) -> Any:
        ok = (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in v)
        )
        if not ok:
            raise ValueError("expected a seed count (integer >= 1) or a list of distinct integers >= 0")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError("a seed count must be >= 1")
        else:
            if not v:
                raise ValueError("the seed list must not be empty")
            if any(s < 0 for s in v):
                raise ValueError("seeds must be >= 0")
            if len(set(v)) != len(v):
                raise ValueError("seeds must be distinct")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("metrics must be distinct")
        return v

    @field_validator("control")
    @classmethod
    def _control(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("the control group needs at least one independent-variable value")
        return flatten(v)

    @field_validator("treatments")
    @classmethod
    def _treatments(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one treatment, or leave the key out (all other groups)")
        return [flatten(t) for t in v]


class CaseSpec(_Spec):
    name: str
    set: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    optional: bool = Field(
        False, description="skip this case (with a note) when a data file it names is missing"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("must be letters, digits, '_', '.', '-'")
        return v

    @field_validator("set")
    @classmethod
    def _set(cls, v: dict[str, Any]) -> dict[str, Any]:
        return flatten(v)


class StudySpec(_Spec):
    """The whole TOML file."""

    study: StudySection
    scenario: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    cases: list[CaseSpec] = Field(default_factory=list)
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("variables")
    @classmethod
    def _variables(cls, v: dict[str, Any]) -> dict[str, list]:
        flat = flatten(v)
        for path, values in flat.items():
            if not isinstance(values, list):
                raise ValueError(f"variable {path!r} must be a list of values, got {values!r}")
            if not values:
                raise ValueError(f"variable {path!r} has no values")
            if len({canon(x) for x in values}) != len(values):
                raise ValueError(f"variable {path!r} lists a value twice: {values!r}")
        return flat

    @field_validator("runs")
    @classmethod
    def _runs(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for i, entry in enumerate(v):
            entry = dict(entry)
            extra = entry.pop("set", {})
            if not isinstance(extra, dict):
                raise ValueError(f"runs[{i}].set must be a table of overrides")
            values = flatten(entry)
            if not values:
                raise ValueError(f"runs[{i}] sets no independent variable")
            out.append({"values": values, "set": flatten(extra)})
        return out

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: flatten(s) for k, s in v.items()}

    @model_validator(mode="after")
    def _shape(self) -> StudySpec:
        if self.variables and self.runs:
            raise ValueError("give either [variables] (a grid) or [[runs]] (explicit combinations), not both")
        if not self.variables and not self.runs:
            raise ValueError("no independent variables: add [variables] (a grid) or [[runs]]")
        if self.runs:
            keys = [tuple(sorted(r["values"])) for r in self.runs]
            if len(set(keys)) != 1:
                raise ValueError(
                    "every [[runs]] entry must set the same independent variables; got "
                    + "; ".join(", ".join(k) for k in sorted(set(keys)))
                )
        names = [c.name for c in self.cases]
        if len(set(names)) != len(names):
            raise ValueError(f"case names must be distinct, got {names}")
        bad = RESERVED_VARIABLES & set(self.variable_names)
        if bad:
            raise ValueError(
                f"{sorted(bad)} cannot be an independent variable (seeds are replicates: "
                "use [study] seeds; cases: use [[cases]])"
            )
        return self

    @property
    def variable_names(self) -> list[str]:
        if self.variables:
            return list(self.variables)
        return list(self.runs[0]["values"]) if self.runs else []


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> dotted paths (`{"a": {"b": 1}}` -> `{"a.b": 1}`); lists are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def canon(value: Any) -> str:
    """A canonical text for equality of TOML values (1 and 1.0 stay distinct on purpose)."""
    return json.dumps(value, sort_keys=True, default=str)


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return s or "x"


def short_name(path: str) -> str:
    return path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: which group, which seed, which fully resolved scenario."""

    run_id: str
    group: str  # readable group label, e.g. "policy=andes,workload.rate_rps=2.0,case=bursty"
    values: dict[str, Any]  # independent-variable values + "policy" (+ "case")
    seed: int
    scenario: Scenario
    scenario_hash: str

    @property
    def scenario_dict(self) -> dict[str, Any]:
        return self.scenario.model_dump(mode="json")


@dataclass
class Group:
    label: str
    values: dict[str, Any]  # independent variables (dotted) + "case" when cases exist
    extra: dict[str, Any]  # [[runs]].set overrides
    case: str | None
    role: Literal["control", "treatment", "other"] = "other"
    control: str | None = None  # label of the matched control group (treatments)
    runs: list[RunSpec] = field(default_factory=list)


@dataclass
class Study:
    """A loaded, expanded study: groups (control groups first) and their run specs."""

    spec: StudySpec
    source: str
    scale: str | None
    seeds: list[int]
    domain: Any  # sim.domains.Domain
    base: Scenario
    groups: list[Group]
    skipped_cases: dict[str, str] = field(default_factory=dict)  # case -> missing file
    unrun_groups: list[str] = field(default_factory=list)  # grid points neither control nor a named treatment

    @property
    def name(self) -> str:
        return self.spec.study.name

    @property
    def variables(self) -> list[str]:
        return self.spec.variable_names

    @property
    def has_cases(self) -> bool:
        return bool(self.spec.cases)

    @property
    def metric_directions(self) -> dict[str, str]:
        return {m: self.domain.metrics.get(m, "higher") for m in self.spec.study.metrics}

    def runs(self) -> list[RunSpec]:
        return [r for g in self.groups for r in g.runs]

    def group(self, label: str) -> Group:
        return next(g for g in self.groups if g.label == label)

    def describe(self) -> dict[str, Any]:
        """What the manifest and the report need to recompute statistics without the TOML."""
        s = self.spec.study
        return {
            "name": s.name,
            "domain": s.domain,
            "description": s.description,
            "hypothesis": s.hypothesis,
            "source": self.source,
            "scale": self.scale,
            "seeds": self.seeds,
            "metrics": self.metric_directions,
            "variables": self.variables,
            "control": s.control,
            "cases": [c.name for c in self.spec.cases if c.name not in self.skipped_cases],
            "skipped_cases": self.skipped_cases,
            "test": s.test,
            "groups": [
                {"label": g.label, "values": g.values, "role": g.role, "control": g.control}
                for g in self.groups
            ],
        }


def resolve_study_path(name_or_path: str | Path) -> Path:
    """A path, or the name of a shipped study (`andes_qoe` -> experiments/studies/andes_qoe.toml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix != ".toml" and len(p.parts) == 1:
        shipped = STUDIES_DIR / f"{p.name}.toml"
        if shipped.is_file():
            return shipped
    known = sorted(x.stem for x in STUDIES_DIR.glob("*.toml")) if STUDIES_DIR.is_dir() else []
    raise OrreryInputError(
        f"study not found: {name_or_path} (not a file, nor a shipped study; shipped studies: "
        f"{', '.join(known) or '(none)'})"
    )


def anchor_data_paths(data: Any, base_dir: Path, key: str = "") -> Any:
    """Relative data-file paths in a study (`trace_path = "traces/x.csv"`) made absolute against
    the study file's folder, not the current directory: a study means the same files wherever
    it is run from. `shared:` paths, absolute paths and `~` paths are left alone."""
    if isinstance(data, dict):
        return {k: anchor_data_paths(v, base_dir, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [anchor_data_paths(v, base_dir, key) for v in data]
    if isinstance(data, str) and is_data_key(key, data):
        text = data.strip()
        if text and not text.startswith(("shared:", "~")) and not Path(text).is_absolute():
            return str((base_dir / text).resolve())
    return data


def load_spec(path: str | Path) -> tuple[StudySpec, str]:
    p = resolve_study_path(path)
    data = read_toml(p)
    data = {k: (v if k == "study" else anchor_data_paths(v, p.resolve().parent)) for k, v in data.items()}
    try:
        return StudySpec.model_validate(data), str(p)
    except ValidationError as err:
        raise ScenarioError(describe_validation_error(err, str(p), what="study")) from None


def load_study(
    path: str | Path, *, scale: str | None = None, seeds: int | None = None, max_runs: int | None = None
) -> Study:
    """Load, validate the spec and expand it into groups and run specs (no setup checks yet).
    `max_runs`: refuse (before building anything) a study whose grid expands to more runs."""
    spec, source = load_spec(path)
    return expand(spec, source, scale=scale, seeds=seeds, max_runs=max_runs)


def _get_domain(name: str, source: str):
    from orrery.sim.domains import DOMAIN_MODULES, get_domain

    try:
        return get_domain(name)
    except ModuleNotFoundError as err:
        raise OrreryInputError(
            f"{source}: key 'study.domain' = {name!r}: the domain's module "
            f"{DOMAIN_MODULES.get(name)!r} is not available ({err})"
        ) from None
    except OrreryInputError as err:
        raise OrreryInputError(f"{source}: key 'study.domain': {err}") from None


def _build(base: Scenario, updates: dict[str, Any], source: str, what: str) -> Scenario:
    if not updates:
        return base
    try:
        return base.with_updates(updates, source=f"{source} ({what})")
    except OrreryInputError as err:
        raise ScenarioError(str(err)) from None


def expand(
    spec: StudySpec, source: str, *, scale: str | None = None, seeds: int | None = None,
    max_runs: int | None = None,
) -> Study:
    s = spec.study
    domain = _get_domain(s.domain, source)
    stype = domain.scenario_type

    base_data = dict(spec.scenario)
    base = stype.from_dict(base_data, source=f"{source} [scenario]")
    if scale is not None:
        if scale not in spec.scales:
            raise OrreryInputError(
                f"{source}: no scale {scale!r}; the study defines: "
                f"{', '.join(sorted(spec.scales)) or '(none)'}"
            )
        base = _build(base, spec.scales[scale], source, f"[scales.{scale}]")

    if seeds is not None:
        if seeds < 1:
            raise OrreryInputError(f"--seeds must be >= 1, got {seeds}")
        seed_list = list(range(seeds))
    elif isinstance(s.seeds, int):
        seed_list = list(range(s.seeds))
    else:
        seed_list = list(s.seeds)

    names = spec.variable_names
    if max_runs is not None:
        check_size(spec, source, len(seed_list), max_runs)
    # combinations of independent-variable values, each with its extra overrides
    if spec.variables:
        combos: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]
        for path, values in spec.variables.items():
            combos = [({**c, path: v}, e) for c, e in combos for v in values]
    else:
        combos = [(r["values"], r["set"]) for r in spec.runs]
        seen = set()
        for c, _ in combos:
            key = canon(c)
            if key in seen:
                raise ScenarioError(f"{source}: [[runs]] lists the combination {c} twice")
            seen.add(key)

    # control / treatments refer to independent variables by value
    ctrl = s.control
    for k, v in ctrl.items():
        if k not in names:
            raise ScenarioError(
                f"{source}: key 'study.control': {k!r} is not an independent variable "
                f"(the variables are: {', '.join(names)})"
            )
        allowed = {canon(c[k]) for c, _ in combos}
        if canon(v) not in allowed:
            raise ScenarioError(
                f"{source}: key 'study.control': {k} = {v!r} is not among the values of "
                f"that variable ({', '.join(sorted(allowed))})"
            )
    treatments = s.treatments
    if treatments is not None:
        for i, t in enumerate(treatments):
            if set(t) != set(ctrl):
                raise ScenarioError(
                    f"{source}: key 'study.treatments[{i}]': a treatment sets the same variables "
                    f"as the control ({', '.join(sorted(ctrl))}), got {', '.join(sorted(t)) or '(none)'}"
                )
            if all(canon(t[k]) == canon(ctrl[k]) for k in ctrl):
                raise ScenarioError(f"{source}: key 'study.treatments[{i}]': equals the control {ctrl}")

    def ctrl_key(values: dict[str, Any]) -> str:
        return canon({k: values[k] for k in ctrl})

    control_key = canon(dict(ctrl))
    treat_keys = None if treatments is None else {canon(dict(t)) for t in treatments}
    matched_treatments: set[str] = set()
    skipped: dict[str, str] = {}
    for c in spec.cases:
        missing = _missing_data_file(c.set) if c.optional else None
        if missing:
            skipped[c.name] = missing
    cases = [c for c in spec.cases if c.name not in skipped] or [None]
    if spec.cases and cases == [None]:
        raise ScenarioError(f"{source}: every case is optional and misses its data: {skipped}")
    groups: list[Group] = []
    unrun: list[str] = []
    for case in cases:
        for values, extra in combos:
            key = ctrl_key(values)
            role: Literal["control", "treatment"] | None = None
            if key == control_key:
                role = "control"
            elif treat_keys is None or key in treat_keys:
                role = "treatment"
                matched_treatments.add(key)
            gvalues = dict(values)
            if case is not None:
                gvalues["case"] = case.name
            label = ",".join(f"{k}={_show(v)}" for k, v in gvalues.items())
            if role is None:  # neither control nor a named treatment: not run (listed for the user)
                unrun.append(label)
                continue
            groups.append(Group(label, gvalues, extra, case.name if case else None, role))
    if treat_keys is not None:
        for i, t in enumerate(treatments or []):
            if canon(dict(t)) not in matched_treatments:
                raise ScenarioError(
                    f"{source}: key 'study.treatments[{i}]' = {t}: no group has these values"
                )
    if not any(g.role == "treatment" for g in groups):
        raise ScenarioError(f"{source}: the study has no treatment group (only the control {ctrl})")

    # match each treatment to the control with the same other variables and case
    blocking = [n for n in names if n not in ctrl]
    controls = {
        (canon({k: g.values[k] for k in blocking}), g.case): g.label
        for g in groups
        if g.role == "control"
    }
    for g in groups:
        if g.role == "treatment":
            k = (canon({b: g.values[b] for b in blocking}), g.case)
            g.control = controls.get(k)
            if g.control is None:
                raise ScenarioError(
                    f"{source}: treatment group {g.label} has no control group with the same "
                    f"values of {', '.join(blocking) or 'the other variables'}"
                    + (" and case" if g.case else "")
                )
    groups.sort(key=lambda g: g.role != "control")  # control groups run first (stable)

    case_sets = {c.name: c.set for c in spec.cases}
    for g in groups:
        what = f"group {g.label}"
        sc = _build(base, {**g.extra, **{k: v for k, v in g.values.items() if k != "case"}}, source, what)
        if g.case is not None:
            sc = _build(sc, case_sets[g.case], source, f"[[cases]] {g.case}")
        policy = sc.policy
        g.values = {**g.values, "policy": g.values.get("policy", policy)}
        gslug = slug("-".join(_show(v) for v in g.values.values()))[:80]
        for seed in seed_list:
            scs = sc.with_updates({"seed": seed}, source=f"{source} ({what}, seed {seed})")
            h = scs.stable_hash()
            g.runs.append(RunSpec(f"{gslug}-s{seed}-{h[:8]}", g.label, dict(g.values), seed, scs, h))
    return Study(spec, source, scale, seed_list, domain, base, groups, skipped, unrun)


def check_size(spec: StudySpec, source: str, n_seeds: int, max_runs: int) -> int:
    """The most runs the study can expand to (grid points x cases x seeds); a clear error,
    before anything is built, when that exceeds `max_runs`."""
    import math

    n_points = math.prod(len(v) for v in spec.variables.values()) if spec.variables else len(spec.runs)
    n_cases = max(1, len(spec.cases))
    total = n_points * n_cases * n_seeds
    if total > max_runs:
        raise ScenarioError(
            f"{source}: the study expands to {total:,} runs ({n_points:,} grid points"
            + (f" x {n_cases} cases" if spec.cases else "") + f" x {n_seeds} seeds), more than "
            f"--max-runs {max_runs:,}; shrink [variables] or pass a larger --max-runs"
        )
    return total


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


# ----------------------------------------------------------------------------- setup validation


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
    """A scenario key naming a data file: `..._path`, `...path`, or any `shared:` value."""
    if not isinstance(value, str) or not value:
        return False
    last = key.rsplit(".", 1)[-1]
    return last.endswith("_path") or last == "path" or value.startswith("shared:")


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
    return SetupReport(study.name, checks, files)
