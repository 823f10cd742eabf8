"""The real training loop runs the simulator's energy policies; decisions are only recorded."""

from __future__ import annotations

import math

import pytest

from orrery.policies.registry import make_policy
from orrery.realbackend.nvml import GPUActuator
from orrery.realbackend.serving import NO_GPU_ENERGY
from orrery.realbackend.training import RealTrainingConfig, run_real_training
from orrery.sim.training import TrainingScenario

CFG = RealTrainingConfig(device="cpu", steps=40, batch_size=16, hidden=32, layers=2)


def scn(policy: str, **params) -> TrainingScenario:
    return TrainingScenario.from_dict({"policy": policy, "policy_params": params, "gpu": "a100",
                                       "carbon": {"trace": "constant:300"}}, "t")


def test_zeus_profiles_power_limits_recorded_not_applied(fake_nvml_cls):
    nv = fake_nvml_cls(allow_setters=False)
    act = GPUActuator(allow_writes=False, nvml=nv)
    run = run_real_training(scn("zeus_power_limit", warmup_steps=2, profile_steps=2, step_w=100.0), CFG, actuator=act)
    assert run.metrics["steps"] == 40
    limits = [a.value for a in act.log if a.what == "power_limit_w"]
    assert limits[:5] == [400.0, 400.0, 300.0, 200.0, 100.0]  # warm-up, then max -> min
    assert not any(a.applied for a in act.log) and nv.calls == []
    assert run.info["energy_source"] == NO_GPU_ENERGY and math.isnan(run.metrics["energy_j"])
    assert (run.table.time_s > 0).all() and run.table.steps.sum() == 40
    assert run.info["policy_class"] == f"{type(make_policy('energy', 'zeus_power_limit', {})).__module__}.ZeusPowerLimit"


@pytest.mark.parametrize("policy", ["max_power", "chase"])
def test_other_energy_policies_run(policy):
    run = run_real_training(scn(policy), RealTrainingConfig(device="cpu", steps=10, batch_size=8, hidden=16, layers=1))
    assert run.metrics["steps"] == 10 and run.metrics["actions_applied"] == 0


def test_writes_go_through_the_fake_and_are_restored(fake_nvml):
    with GPUActuator(allow_writes=True, nvml=fake_nvml) as act:
        run_real_training(scn("max_power"), RealTrainingConfig(device="cpu", steps=4, batch_size=8, hidden=16,
                                                                  layers=1), actuator=act)
        assert act.log and all(a.applied for a in act.log)
    assert fake_nvml.limit_mw == 700_000
