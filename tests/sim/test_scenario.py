"""Scenario base: TOML in, clear errors, stable hash."""

import pytest

from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.sim.serving import ServingScenario


def test_toml_roundtrip_and_stable_hash(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('policy = "andes"\nseed = 3\n[workload]\nrate_rps = 2.0\nn_requests = 10\n')
    a = ServingScenario.from_toml(p)
    b = ServingScenario.from_dict({"seed": 3, "policy": "andes", "workload": {"n_requests": 10, "rate_rps": 2.0}})
    assert a.stable_hash() == b.stable_hash()
    assert len(a.stable_hash()) == 16
    assert a.with_updates({"workload.rate_rps": 3.0}).stable_hash() != a.stable_hash()
    assert a.with_updates({"seed": 4}).stable_hash() != a.stable_hash()


def test_error_names_field_value_and_source(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('policy = "andes"\n[workload]\nrate_rps = -2.0\nn_requests = 10\n')
    with pytest.raises(ScenarioError) as e:
        ServingScenario.from_toml(p)
    msg = str(e.value)
    assert "bad.toml" in msg and "workload.rate_rps" in msg and "-2.0" in msg and "greater than 0" in msg


def test_unknown_key_and_missing_key():
    with pytest.raises(ScenarioError, match="unknown key 'hardwre'"):
        ServingScenario.from_dict({"policy": "andes", "hardwre": {}})
    with pytest.raises(ScenarioError, match="missing required key 'policy'"):
        ServingScenario.from_dict({})


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("policy = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        ServingScenario.from_toml(p)
    with pytest.raises(OrreryInputError, match="file not found"):
        ServingScenario.from_toml(tmp_path / "nope.toml")


def test_scenarios_are_immutable():
    s = ServingScenario.from_dict({"policy": "andes"})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        s.seed = 5
