"""Study specs: parsing errors, expansion, and one failing study per setup-validation rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import BASE_STUDY

from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.experiments.study import load_study, resolve_study_path, validate_setup


def load(write_study, text=BASE_STUDY, **kw):
    return load_study(write_study(text), **kw)


def test_expansion_groups_runs_and_ids(write_study):
    study = load(write_study, BASE_STUDY.replace('policy = ["base", "fast"]',
                 'policy = ["base", "fast"]\n"workload.rate_rps" = [1.0, 2.0]'))  # fmt: skip
    assert [g.role for g in study.groups] == ["control", "control", "treatment", "treatment"]
    runs = study.runs()
    assert len(runs) == 4 * 3
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", r.run_id) for r in runs)
    assert runs[0].values == {"policy": "base", "workload.rate_rps": 1.0}
    assert runs[0].scenario.workload.rate_rps == 1.0 and runs[0].seed == 0
    fast = study.group("policy=fast,workload.rate_rps=2.0")
    assert fast.control == "policy=base,workload.rate_rps=2.0"
    # stable: the same file expands to the same run ids
    again = load(write_study, BASE_STUDY.replace('policy = ["base", "fast"]',
                 'policy = ["base", "fast"]\n"workload.rate_rps" = [1.0, 2.0]'))  # fmt: skip
    assert [r.run_id for r in again.runs()] == [r.run_id for r in runs]
    report = validate_setup(study)
    assert len(report.checks) == 5


def test_seeds_scales_cases_and_explicit_runs(write_study):
    text = BASE_STUDY.replace("seeds = 3", "seeds = [4, 7]") + """
[[cases]]
name = "long"
set = { "workload.n_requests" = 30 }

[[cases]]
name = "short"
set = { workload = { n_requests = 5 } }

[scales.big]
"workload.n_requests" = 50
"""
    study = load(write_study, text)
    assert study.seeds == [4, 7]
    assert {g.values["case"] for g in study.groups} == {"long", "short"}
    assert len(study.runs()) == 2 * 2 * 2
    short = [r for r in study.runs() if r.values["case"] == "short"]
    assert all(r.scenario.workload.n_requests == 5 for r in short)
    assert load(write_study, text, seeds=2).seeds == [0, 1]
    assert load(write_study, text, scale="big").base.workload.n_requests == 50
    with pytest.raises(OrreryInputError, match="no scale 'huge'.*big"):
        load(write_study, text, scale="huge")

    explicit = BASE_STUDY.replace('[variables]\npolicy = ["base", "fast"]\n', """
[[runs]]
policy = "base"

[[runs]]
policy = "fast"
set = { policy_params = {} }
""")
    study = load(write_study, explicit)
    assert [g.values["policy"] for g in study.groups] == ["base", "fast"]
    validate_setup(study)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("hypothesis = ", "hypotesis = "), r"missing required key 'study.hypothesis'; unknown key 'study.hypotesis'"),
        (("seeds = 3", "seeds = 0"), r"study.seeds = 0: a seed count must be >= 1"),
        (("seeds = 3", 'seeds = "three"'), r"study.seeds = 'three': expected a seed count"),
        (('control = { policy = "base" }', 'control = { gpu = "a100" }'), r"'gpu' is not an independent variable"),
        (('control = { policy = "base" }', 'control = { policy = "slow" }'), r"policy = 'slow' is not among the values"),
        (('policy = ["base", "fast"]', 'policy = "base"'), r"must be a list of values"),
        (('policy = ["base", "fast"]', 'seed = [1, 2]'), r"cannot be an independent variable"),
        (('policy = ["base", "fast"]', 'policy = ["base", "fast"]\n"workload.colour" = [1, 2]'),
         r"unknown key 'workload.colour'"),
        (("[scenario]", "[scenario]\nhorizon_s = -1"), r"horizon_s = -1"),
    ],
)
def test_spec_errors_name_file_key_and_expectation(write_study, change, message):
    path = write_study(BASE_STUDY.replace(*change))
    with pytest.raises(OrreryInputError) as err:
        load_study(path)
    assert str(path) in str(err.value)
    assert re.search(message, str(err.value)), str(err.value)


def test_rule_variable_must_change_the_scenario(write_study):
    # a case that overrides the independent variable makes it ineffective
    text = BASE_STUDY.replace('policy = ["base", "fast"]',
                              'policy = ["base", "fast"]\n"workload.rate_rps" = [1.0, 2.0]') + """
[[cases]]
name = "pinned"
set = { "workload.rate_rps" = 3.0 }
"""  # fmt: skip
    with pytest.raises(ScenarioError, match=r"variable 'workload.rate_rps' does not change the scenario.*case 'pinned'"):
        validate_setup(load(write_study, text))
    # two values that validate to the same scenario (int 1 and float 1.0 of a float field)
    text = BASE_STUDY.replace('policy = ["base", "fast"]',
                              'policy = ["base", "fast"]\n"workload.rate_rps" = [1, 1.0]')  # fmt: skip
    with pytest.raises(ScenarioError, match=r"'workload.rate_rps' does not change the scenario"):
        validate_setup(load(write_study, text))


def test_rule_control_and_treatment_differ_only_in_variables(write_study):
    text = BASE_STUDY.replace('[variables]\npolicy = ["base", "fast"]\n', """
[[runs]]
policy = "base"

[[runs]]
policy = "fast"
set = { "workload.n_requests" = 50 }
""")
    with pytest.raises(ScenarioError, match=r"differs from its control .* outside the independent variables.*workload.n_requests: 20 \(control\) vs 50"):
        validate_setup(load(write_study, text))


def test_rule_metrics_are_declared_by_the_domain(write_study):
    text = BASE_STUDY.replace('"throughput_rps"]', '"qoe"]')
    with pytest.raises(ScenarioError, match=r"'qoe' not produced by domain 'toy'; it declares: latency_s"):
        validate_setup(load(write_study, text))


def test_rule_policies_exist(write_study):
    text = BASE_STUDY.replace('policy = ["base", "fast"]', 'policy = ["base", "turbo"]')
    with pytest.raises(ScenarioError, match=r"unknown toy policy 'turbo'; known: alias_of_base, base, fast"):
        validate_setup(load(write_study, text))


def test_rule_data_files_exist_and_parse(write_study, tmp_path):
    missing = tmp_path / "nope.csv"
    text = BASE_STUDY.replace("[scenario]", f'[scenario]\ntrace_path = "{missing}"')
    with pytest.raises(ScenarioError, match=r"scenario key 'trace_path'.*data file not found"):
        validate_setup(load(write_study, text))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    text = BASE_STUDY.replace("[scenario]", f'[scenario]\ntrace_path = "{bad}"')
    with pytest.raises(OrreryInputError, match=r"scenario key 'trace_path'.*bad.json does not parse"):
        validate_setup(load(write_study, text))
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n")
    text = BASE_STUDY.replace("[scenario]", f'[scenario]\ntrace_path = "{good}"')
    report = validate_setup(load(write_study, text))
    assert list(report.data_files) == [str(good)] and len(report.data_files[str(good)]) == 64


def test_rule_treatments_need_a_matching_group(write_study):
    text = BASE_STUDY.replace('control = { policy = "base" }',
                              'control = { policy = "base" }\ntreatments = [{ policy = "alias_of_base" }]')  # fmt: skip
    with pytest.raises(ScenarioError, match=r"treatments\[0\].*no group has these values"):
        load(write_study, text)


def test_grid_points_outside_control_and_treatments_are_listed_not_run(write_study):
    text = BASE_STUDY.replace('policy = ["base", "fast"]', 'policy = ["base", "fast", "alias_of_base"]')
    text = text.replace('control = { policy = "base" }',
                        'control = { policy = "base" }\ntreatments = [{ policy = "fast" }]')  # fmt: skip
    study = load(write_study, text)
    assert [g.values["policy"] for g in study.groups] == ["base", "fast"]
    assert study.unrun_groups == ["policy=alias_of_base"]


def test_shipped_study_names_resolve(tmp_path):
    with pytest.raises(OrreryInputError, match="study not found: no_such_study"):
        resolve_study_path("no_such_study")


def _no_data_anywhere(tmp_path, monkeypatch):
    """Every place `shared:` names resolve to is empty: $ORRERY_DATA, ../shared/data, the cache."""
    import orrery.traces.datastore as ds

    monkeypatch.setenv("ORRERY_DATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("ORRERY_SHARED_DATA", raising=False)
    monkeypatch.delenv("ORRERY_AUTO_FETCH", raising=False)
    monkeypatch.setenv("ORRERY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ds, "SHARED_DIR", tmp_path / "no-shared")


def test_optional_case_is_skipped_when_its_data_is_missing(tmp_path, monkeypatch):
    from orrery.experiments.study import load_study

    _no_data_anywhere(tmp_path, monkeypatch)
    study = load_study("oobleck")
    assert {"p3", "g4dn"} <= set(study.skipped_cases)  # every optional case with a shared: trace
    assert all(g.case not in study.skipped_cases for g in study.groups)
    assert study.describe().skipped_cases["p3"].startswith("shared:")


def test_a_missing_required_data_file_fails_validation(tmp_path, monkeypatch):
    from orrery.core.errors import ScenarioError
    from orrery.experiments.study import load_study, validate_setup

    src = (tmp_path / "s.toml")
    text = (Path(__file__).resolve().parents[2] / "experiments/studies/oobleck.toml").read_text()
    src.write_text(text.replace("optional = true", "optional = false"))
    _no_data_anywhere(tmp_path, monkeypatch)
    with pytest.raises(ScenarioError, match="data file not found"):
        validate_setup(load_study(src))


def test_validate_instantiates_policies_with_their_params(tmp_path):
    """A typo in policy_params is caught by `validate`, naming the group and the parameter."""
    from orrery.core.errors import ScenarioError
    from orrery.experiments.study import STUDIES_DIR, load_study, validate_setup

    text = (STUDIES_DIR / "serving_quick.toml").read_text()
    src = tmp_path / "typo.toml"
    src.write_text(text.replace('[scenario]\npolicy = "vllm_fcfs"', '[scenario]\npolicy = "vllm_fcfs"\npolicy_params = { horizn_s = 1.0 }'))
    with pytest.raises(ScenarioError, match=r"group policy=.*no parameter\(s\) 'horizn_s'"):
        validate_setup(load_study(src))
    report = validate_setup(load_study(STUDIES_DIR / "serving_quick.toml"))
    assert any("pass check_policy" in c for c in report.checks)
