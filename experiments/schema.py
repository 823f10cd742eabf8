"""The study file's schema: `[study]`, `[scenario]`, `[variables]`, `[[cases]]`, `[[runs]]`,
`[scales.*]`, validated by pydantic (errors through `core.config.describe_validation_error`),
plus the value helpers every study module uses (dotted paths, canonical text, slugs).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_VARIABLES = {"seed", "case"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClaimSpec(_Spec):
    """What the hypothesis claims for one metric, treatment vs control (tested by stats)."""

    kind: Literal["difference", "superiority", "noninferiority", "equivalence"] = Field(
        ..., description="difference (two-sided), superiority (better by >= margin), "
        "noninferiority (not worse by > margin), equivalence (within margin, TOST)"
    )
    margin_pct: float | None = Field(None, ge=0, description="margin in % of the control's mean")
    margin: float | None = Field(None, ge=0, description="margin in the metric's own unit")
    factor: float | None = Field(None, ge=1, description="superiority: better by this factor (2 = 2x)")

    @model_validator(mode="after")
    def _one_margin(self) -> ClaimSpec:
        given = [k for k in ("margin_pct", "margin", "factor") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of margin_pct, margin, factor; got {', '.join(given)}")
        if self.factor is not None and self.kind != "superiority":
            raise ValueError("factor is for superiority claims; use margin_pct or margin")
        if self.kind in ("noninferiority", "equivalence") and not given:
            raise ValueError(f"a {self.kind} claim needs margin_pct or margin")
        if self.kind == "difference" and given:
            raise ValueError("a difference claim has no margin (use superiority)")
        return self


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
    claims: dict[str, ClaimSpec] = Field(
        default_factory=dict, description="metric -> claim (default: a two-sided difference)"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level after correction")
    correction: Literal["none", "bh", "holm"] = Field(
        "bh", description="multiple-comparison correction over treatments x metrics"
    )

    @model_validator(mode="after")
    def _claims_name_metrics(self) -> StudySection:
        unknown = [m for m in self.claims if m not in self.metrics]
        if unknown:
            raise ValueError(f"claims for {unknown} name no metric of the study ({', '.join(self.metrics)})")
        return self

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


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


# ----------------------------------------------------------------------------- setup validation


