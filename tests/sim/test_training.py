"""Training simulator: invariants (energy = integral of power, limits in range, determinism),
Zeus vs brute force on the data, Chase on the MISO trace, input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError, ScenarioError, TraceFormatError
from orrery.hwmodels.gpus import get_gpu
from orrery.sim.training import TrainingScenario, run_training
from orrery.workloads.training import (
    EPOCHS_TO_TARGET,
    epochs_to_target_table,
    load_epochs_to_target,
)

JOB = {"dataset": "imagenet", "network": "resnet50", "batch_size": 128, "epochs": 2}


def _sc(policy, **kw):
    d = {"policy": policy, "gpu": "v100", "workload": dict(JOB)}
    d.update(kw)
    return TrainingScenario.from_dict(d)


@settings(max_examples=15, deadline=None)
@given(policy=st.sampled_from(["max_power", "zeus_power_limit", "chase"]), eta=st.floats(0, 1),
       gpu=st.sampled_from(["v100", "a40"]), noise=st.floats(0, 0.2), seed=st.integers(0, 99))
def test_energy_is_integral_of_power_and_limits_stay_in_range(policy, eta, gpu, noise, seed):
    wl = dict(JOB, time_noise=noise)
    sc = TrainingScenario.from_dict({"policy": policy, "policy_params": {"eta": eta} if policy != "max_power" else {},
                                     "gpu": gpu, "workload": wl, "seed": seed})
    r = run_training(sc)
    t = r.table
    dur = t.t_end_s - t.t_start_s
    assert np.allclose(t.energy_j, t.power_w * dur)
    assert np.isclose(r.metrics["energy_j"], t.energy_j.sum())
    assert np.isclose(r.metrics["time_s"], dur.sum())
    assert np.all(t.t_start_s.to_numpy()[1:] == pytest.approx(t.t_end_s.to_numpy()[:-1]))
    spec = get_gpu(gpu)
    assert t.power_limit_w.between(spec.power_limit_min_w, spec.power_limit_max_w).all()
    assert np.isclose(r.metrics["carbon_g"], t.carbon_g.sum())


def test_same_seed_same_result():
    a = run_training(_sc("chase", seed=3, workload=dict(JOB, time_noise=0.1)))
    b = run_training(_sc("chase", seed=3, workload=dict(JOB, time_noise=0.1)))
    pd.testing.assert_frame_equal(a.table, b.table)
    # NaN (a metric that does not apply) compares equal to NaN here
    pd.testing.assert_series_equal(pd.Series(a.metrics), pd.Series(b.metrics))
    c = run_training(_sc("chase", seed=4, workload=dict(JOB, time_noise=0.1)))
    assert c.metrics["energy_j"] != a.metrics["energy_j"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_savings_compare_against_max_power_under_the_same_noise(seed):
    """Common random numbers: staying at the maximum limit saves exactly nothing, whatever the
    step-time noise drew."""
    noisy = dict(JOB, time_noise=0.1)
    m = run_training(_sc("max_power", seed=seed, workload=noisy)).metrics
    assert m["energy_saving_vs_max_pct"] == pytest.approx(0.0, abs=1e-9)
    assert m["slowdown_vs_max_pct"] == pytest.approx(0.0, abs=1e-9)


def test_pipeline_energy_counts_blocking_power_for_every_gpu():
    r = run_training(TrainingScenario.from_dict({"policy": "perseus", "gpu": "a100", "workload": {
        "kind": "pipeline", "n_microbatches": 4, "data_parallel": 2, "iterations": 3}}))
    t = r.table
    assert np.allclose(t.busy_s + t.blocking_s, r.metrics["iteration_time_s"])
    assert np.allclose(t.energy_j, t.compute_energy_j + 84.0 * t.blocking_s)
    assert np.isclose(r.metrics["energy_j"], t.energy_j.sum() * 3)


def _zeus_data_costs(shared_data, gpu, key, eta):
    df = pd.read_csv(shared_data / "gpu" / f"zeus_power_limit_sweep_{gpu}.csv")
    ds, net, b, opt = key.split("/")
    g = df[(df.dataset == ds) & (df.network == net) & (df.batch_size == int(b[1:])) & (df.optimizer == opt)]
    g = g.groupby("power_limit")[["time_per_epoch", "average_power"]].mean()
    pmax = g.index.max()
    return {pl: eta * r.time_per_epoch * r.average_power + (1 - eta) * pmax * r.time_per_epoch for pl, r in g.iterrows()}


@pytest.mark.parametrize("gpu,key", [("v100", "imagenet/resnet50/b128/adadelta"),
                                     ("a40", "imagenet/resnet50/b128/adadelta"),
                                     ("v100", "cifar100/shufflenetv2/b1024/adadelta"),
                                     ("a40", "squad/bert_base_uncased/b32/adamw")])
def test_zeus_choice_within_2pct_of_brute_force_on_data(shared_data, gpu, key):
    """Zeus on the real sweep (read at run time, power_model = 'measured') picks a limit whose
    cost on the data is within 2% of the best limit found by brute force over the data."""
    ds, net, b, opt = key.split("/")
    sweep = shared_data / "gpu" / f"zeus_power_limit_sweep_{gpu}.csv"
    sc = TrainingScenario.from_dict({"policy": "zeus_power_limit", "gpu": gpu, "workload": {
        "dataset": ds, "network": net, "batch_size": int(b[1:]), "optimizer": opt, "epochs": 3,
        "power_model": "measured", "power_data_paths": {gpu: str(sweep)}}})
    r = run_training(sc)
    costs = _zeus_data_costs(shared_data, gpu, key, 0.5)
    chosen = r.metrics["final_power_limit_w"]
    assert costs[chosen] <= min(costs.values()) * 1.02
    assert r.metrics["energy_saving_vs_max_pct"] > 0


def test_measured_power_model_reads_the_sweep_and_fit_is_the_default(shared_data):
    job = dict(JOB, power_model="measured")
    meas = run_training(_sc("max_power", workload=job))  # default file: shared:gpu/zeus_power_limit_sweep_v100.csv
    costs = _zeus_data_costs(shared_data, "v100", "imagenet/resnet50/b128/adadelta", 1.0)  # eta=1: energy/epoch
    assert np.isclose(meas.metrics["energy_j"], costs[250] * JOB["epochs"])  # exact at a measured limit
    fit = run_training(_sc("max_power"))
    assert fit.metrics["energy_j"] != meas.metrics["energy_j"]
    assert abs(fit.metrics["energy_j"] / meas.metrics["energy_j"] - 1) < 0.1
    # the batch-size optimiser (all sizes of the workload) runs on the measured sweep as well
    r = run_training(TrainingScenario.from_dict({
        "policy": "zeus_batch_size", "gpu": "v100",
        "workload": {"dataset": "cifar100", "network": "shufflenetv2", "batch_size": 1024, "power_model": "measured"},
        "recurrence": {"n_recurrences": 3}}))
    assert r.metrics["energy_j"] > 0


def test_measured_power_model_input_errors(tmp_path):
    with pytest.raises(ScenarioError, match="power_model = 'measured'"):
        _sc("max_power", workload=dict(JOB, power_data_paths={"v100": "x.csv"}))
    with pytest.raises(ScenarioError, match="unknown GPU family"):
        _sc("max_power", workload=dict(JOB, power_model="measured", power_data_paths={"tpu": "x.csv"}))
    with pytest.raises(OrreryInputError, match="not found"):
        run_training(_sc("max_power", workload=dict(JOB, power_model="measured",
                                                    power_data_paths={"v100": str(tmp_path / "none.csv")})))
    bad = tmp_path / "sweep.csv"
    bad.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch\nimagenet,resnet50,128,adadelta,100,5\n")
    with pytest.raises(TraceFormatError, match="missing columns"):
        run_training(_sc("max_power", workload=dict(JOB, power_model="measured", power_data_paths={"v100": str(bad)})))
    bad.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
                   + "".join(f"imagenet,resnet50,128,adadelta,{pl},5,{'x' if pl == 150 else 90}\n" for pl in (100, 125, 150, 175)))
    with pytest.raises(TraceFormatError, match="line 4"):
        run_training(_sc("max_power", workload=dict(JOB, power_model="measured", power_data_paths={"v100": str(bad)})))
    bad.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
                   "imagenet,resnet50,128,adadelta,100,5,90\n")
    with pytest.raises(TraceFormatError, match="at least 4"):
        run_training(_sc("max_power", workload=dict(JOB, power_model="measured", power_data_paths={"v100": str(bad)})))


def test_chase_on_miso_saves_carbon_at_small_time_cost(shared_data):
    common = {"gpu": "v100", "workload": {"dataset": "imagenet", "network": "resnet50", "batch_size": 128},
              "carbon": {"trace": str(shared_data / "carbon" / "chase_miso_2022-10.csv")}}
    base = run_training(TrainingScenario.from_dict({"policy": "max_power", **common}))
    ch = run_training(TrainingScenario.from_dict({"policy": "chase", **common}))
    assert ch.metrics["carbon_g"] <= 0.92 * base.metrics["carbon_g"]
    assert ch.metrics["time_s"] <= 1.05 * base.metrics["time_s"]
    assert ch.metrics["forecast_mape_pct"] < 5
    assert ch.metrics["persistence_mape_pct"] < 5


def test_zeus_batch_size_converges_to_oracle():
    r = run_training(TrainingScenario.from_dict({
        "policy": "zeus_batch_size", "gpu": "v100",
        "workload": {"dataset": "cifar100", "network": "shufflenetv2", "batch_size": 1024},
        "recurrence": {"n_recurrences": 25}}))
    assert r.metrics["last5_cost_over_oracle"] < 1.1
    assert r.table.batch_size.nunique() > 1  # it explored


def test_bad_scenarios_fail_clearly():
    with pytest.raises(ScenarioError, match="gpu"):
        TrainingScenario.from_dict({"policy": "max_power", "gpu": "tpu9"})
    with pytest.raises(ScenarioError, match="straggler_pipelines"):
        TrainingScenario.from_dict({"policy": "perseus", "workload": {"kind": "pipeline", "straggler_pipelines": [3]}})
    with pytest.raises(OrreryInputError, match="workload"):
        run_training(_sc("max_power", workload=dict(JOB, batch_size=7)))
    with pytest.raises(OrreryInputError, match="not found"):
        run_training(_sc("max_power", carbon={"trace": "/nonexistent/ci.csv"}))


def test_committed_epochs_table_matches_csv(shared_data):
    t = epochs_to_target_table(load_epochs_to_target(shared_data / "gpu" / "zeus_epochs_to_target.csv"))
    t = {k: {b: e for b, e in v.items() if np.isfinite(e)} for k, v in t.items()}
    assert t == EPOCHS_TO_TARGET


def test_a_job_shorter_than_the_profiling_phase_is_reported_as_such():
    """Zeus profiles 7 limits x profile_steps; a job that ends first never chose a limit."""
    job = dict(JOB, epochs=3, steps_per_epoch=500)  # 1,500 steps; profiling: 10 + 7 x 40 by default
    done = run_training(_sc("zeus_power_limit", workload=job)).metrics
    assert done["ended_while_profiling"] == 0.0
    short = run_training(_sc("zeus_power_limit", workload=job, policy_params={"profile_steps": 1000})).metrics
    assert short["ended_while_profiling"] == 1.0
    assert run_training(_sc("max_power", workload=job)).metrics["ended_while_profiling"] == 0.0


def test_transfer_power_model_runs_a_new_workload_from_its_max_limit_measurement():
    """A workload measured once at the GPU's maximum limit: max_power reproduces the anchor,
    Zeus saves energy by lowering the limit, and any catalog GPU works (H100: a borrowed shape)."""
    job = {"dataset": "mine", "network": "mynet", "epochs": 3, "steps_per_epoch": 500,
           "power_model": "transfer", "anchor_time_per_epoch_s": 600.0, "anchor_power_w": 230.0}
    base = run_training(_sc("max_power", workload=job)).metrics
    assert base["time_s"] == pytest.approx(3 * 600.0)
    assert base["avg_power_w"] == pytest.approx(230.0)
    zeus = run_training(_sc("zeus_power_limit", workload=job)).metrics
    assert zeus["final_power_limit_w"] < 250.0 and zeus["energy_saving_vs_max_pct"] > 0
    h100 = run_training(_sc("zeus_power_limit", gpu="h100", workload=dict(job, anchor_power_w=600.0))).metrics
    assert 200.0 <= h100["final_power_limit_w"] <= 700.0
    with pytest.raises(ValueError, match="anchor_time_per_epoch_s"):
        _sc("max_power", workload=dict(job, anchor_power_w=None))
