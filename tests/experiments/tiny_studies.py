"""CI-sized versions of the shipped studies: the grid trimmed to the control and one treatment
(first non-optional case), two seeds, and each domain's heaviest knobs turned down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orrery.experiments.study import STUDIES_DIR, StudySpec, expand, flatten
from orrery.sim.scenario import read_toml

SHIPPED = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))

# scenario overrides per shipped study (dotted paths) that keep one run well under a second
TINY: dict[str, dict[str, Any]] = {
    "andes_qoe": {"workload.duration_s": 20.0},
    "azure_week": {"workload.duration_s": 20.0},
    "serving_quick": {"workload.duration_s": 20.0},
    "venn_jct": {"population.n_devices": 1500, "jobs.n_jobs": 4, "jobs.rounds_min": 2, "jobs.rounds_max": 4,
                 "jobs.participants_min": 5, "jobs.participants_max": 30, "horizon_s": 172800.0},
    "fl_feasibility": {"population.n_devices": 2000, "plan.rounds": 5, "plan.participants": 20,
                       "horizon_s": 172800.0},
    "fedtrans": {"train.rounds": 2, "population.n_devices": 30, "train.participants": 6,
                 "data.test_samples": 10, "train.eval_every": 1},
    "chase": {"workload.epochs": 0.3},
    "oobleck": {"model.global_batch": 128, "trace.n_intervals": 3},
    "perseus": {"workload.iterations": 5},
    "zeus": {"workload.epochs": 1.0},
}


def _trim_values(values: list, keep: Any) -> list:
    others = [v for v in values if v != keep]
    return ([keep] if keep in values else []) + others[: 2 - (keep in values)]


def tiny_study(name: str, seeds: int = 2):
    """The study, trimmed and scaled down (a study without a TINY entry runs its own scenario:
    add one when it is slow)."""
    path = STUDIES_DIR / f"{name}.toml"
    data = read_toml(path)
    control = flatten(data["study"]["control"])
    data["study"].pop("treatments", None)
    if "variables" in data:
        variables = flatten(data["variables"])
        data["variables"] = {
            k: (_trim_values(v, control[k]) if k in control else v[:1]) for k, v in variables.items()
        }
    if "runs" in data:
        runs = data["runs"]
        ctrl = [r for r in runs if all(flatten(r).get(k) == v for k, v in control.items())]
        data["runs"] = ctrl[:1] + [r for r in runs if r not in ctrl][:1]
    if data.get("cases"):
        data["cases"] = [c for c in data["cases"] if not c.get("optional")][:1]
    scenario = data.setdefault("scenario", {})
    for dotted, value in TINY.get(name, {}).items():
        node = scenario
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    spec = StudySpec.model_validate(data)
    return expand(spec, f"{path} (tiny)", seeds=seeds)


def run_tiny(name: str, out: Path):
    """Run the tiny study into `out` and write its tables, report.md and report.html (no PNGs:
    the PNG plots have their own tests, and matplotlib would dominate the time)."""
    from orrery.experiments.report import write_result
    from orrery.experiments.runner import run_study

    study = tiny_study(name)
    return run_study(study, out, jobs=1, writer=lambda res: write_result(res, png=False))
