"""Study specs: a hypothesis, independent variables, a control group, treatments and seeds.

A study TOML (format in docs/CONVENTIONS.md) is validated by pydantic before anything runs;
errors name the file, the key and what was expected. `Study.expand()` turns it into run specs,
one per (group, seed). `validate_setup()` applies the rigour rules of DESIGN ("Rigorous
studies"): each independent variable really changes the scenario, control and treatments
differ only in the independent variables, every metric is one the domain declares, every
data file exists and parses, every policy exists.

The study code lives along its seams: `schema.py` (the file's pydantic models), `expansion.py`
(groups and runs) and `setup.py` (the rigour checks); this module is the one place to import
them from.
"""

from __future__ import annotations

from orrery.experiments.expansion import (
    STUDIES_DIR,
    Group,
    RunSpec,
    Study,
    anchor_data_paths,
    check_size,
    expand,
    load_spec,
    load_study,
    resolve_study_path,
)
from orrery.experiments.schema import (
    RESERVED_VARIABLES,
    SLUG_RE,
    CaseSpec,
    ClaimSpec,
    StudySection,
    StudySpec,
    canon,
    flatten,
    short_name,
    slug,
)
from orrery.experiments.setup import (
    SetupReport,
    check_data_file,
    data_paths,
    flat_dump,
    is_data_key,
    policy_domain_of,
    resolve_data_path,
    validate_setup,
)

__all__ = [
    "RESERVED_VARIABLES", "SLUG_RE", "STUDIES_DIR", "CaseSpec", "ClaimSpec", "Group", "RunSpec", "SetupReport", "Study",
    "StudySection", "StudySpec", "anchor_data_paths", "canon", "check_data_file", "check_size", "data_paths",
    "expand", "flat_dump", "flatten", "is_data_key", "load_spec", "load_study", "policy_domain_of",
    "resolve_data_path", "resolve_study_path", "short_name", "slug", "validate_setup",
]
