"""What a finished study's statistics, tables and reports need to know about the study, typed.

`Study.describe()` builds a `StudyDescription`; the manifest stores its `to_dict()` (JSON), and
`orrery report` rebuilds it with `from_dict()` to recompute everything without the TOML. One
meaning of *group* throughout: a point of the study's design, named by its `label`
(`policy=andes,workload.rate_rps=2.0`); its `values` are the same as a dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALPHA = 0.05  # the conventional significance level; stats.ALPHA is this value
DEFAULT_CORRECTION = "bh"  # Benjamini-Hochberg over the study's comparisons (= stats.DEFAULT_CORRECTION)


@dataclass(frozen=True)
class GroupDescription:
    """One group: its label, its variable values, its role and (treatments) its control's label."""

    label: str
    values: dict[str, Any]
    role: str = "other"  # "control" | "treatment" | "other"
    control: str | None = None


@dataclass(frozen=True)
class StudyDescription:
    """A study as the statistics and reports see it (no scenarios, no domain objects)."""

    name: str
    domain: str
    metrics: dict[str, str]  # metric -> "higher" | "lower" (which direction is better)
    variables: list[str]
    groups: tuple[GroupDescription, ...]
    hypothesis: str = ""
    description: str = ""
    source: str = ""
    scale: str | None = None
    seeds: list[int] = field(default_factory=list)
    control: dict[str, Any] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)
    skipped_cases: dict[str, str] = field(default_factory=dict)
    test: str = "welch"
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    correction: str = DEFAULT_CORRECTION

    def with_stats(self, alpha: float | None = None, correction: str | None = None) -> StudyDescription:
        """The same study with another alpha and/or multiple-comparison correction."""
        return dataclasses.replace(
            self,
            alpha=self.alpha if alpha is None else float(alpha),
            correction=correction or self.correction,
        )

    def group(self, label: str) -> GroupDescription:
        for g in self.groups:
            if g.label == label:
                return g
        raise KeyError(f"study {self.name!r} has no group {label!r}")

    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON form."""
        d = dataclasses.asdict(self)
        d["groups"] = [dataclasses.asdict(g) for g in self.groups]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyDescription:
        """From a manifest's `study` entry (older manifests lack some keys: their defaults apply)."""
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["groups"] = tuple(
            GroupDescription(label=g["label"], values=dict(g.get("values") or {}), role=g.get("role", "other"),
                             control=g.get("control"))  # fmt: skip
            for g in d.get("groups", [])
        )
        for k in ("alpha", "correction", "test"):
            if kw.get(k) is None:
                kw.pop(k, None)
        return cls(**kw)
