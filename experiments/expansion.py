"""A study's expansion: the spec, loaded and validated, becomes groups (control, treatments,
others) and their runs, one per (group, seed), each a fully resolved scenario.

A *group* is one point of the study's design: a value for each independent variable (and the
case, when cases exist); its `label` is the readable `policy=andes,workload.rate_rps=2.0,...`
text, its `values` the same as a dict, and the runs of a group differ only in their seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from orrery.core.config import describe_validation_error
from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.experiments.description import GroupDescription, StudyDescription
from orrery.experiments.schema import StudySpec, _show, canon, slug
from orrery.experiments.setup import _missing_data_file, is_data_key
from orrery.sim.scenario import Scenario, read_toml

STUDIES_DIR = Path(__file__).resolve().parent / "studies"


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
    alpha: float | None = None  # overrides [study] alpha (`--alpha`)
    correction: str | None = None  # overrides [study] correction (`--correction`)

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

    def describe(self) -> StudyDescription:
        """What the manifest and the report need to recompute statistics without the TOML."""
        s = self.spec.study
        return StudyDescription(
            name=s.name,
            domain=s.domain,
            description=s.description,
            hypothesis=s.hypothesis,
            source=self.source,
            scale=self.scale,
            seeds=list(self.seeds),
            metrics=self.metric_directions,
            variables=list(self.variables),
            control=s.control,
            cases=[c.name for c in self.spec.cases if c.name not in self.skipped_cases],
            skipped_cases=dict(self.skipped_cases),
            test=s.test,
            claims={m: c.model_dump(exclude_none=True) for m, c in s.claims.items()},
            alpha=s.alpha if self.alpha is None else self.alpha,
            correction=self.correction or s.correction,
            groups=tuple(GroupDescription(g.label, g.values, g.role, g.control) for g in self.groups),
        )


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


