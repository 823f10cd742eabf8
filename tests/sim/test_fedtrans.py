"""Multi-model FL emulation: invariants, determinism, FedTrans growth, plots, bad input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orrery.sim.fedtrans as ft  # registers the domain (until sim/domains.py lists it)
from orrery.core.errors import ScenarioError
from orrery.policies.fedtrans.base import CostModel, MultiModelDecision, MultiModelPolicy
from orrery.policies.registry import get_policy_class, load_domain, register, shipped_policies
from orrery.sim.domains import registered_domains

POLICIES = shipped_policies("fedtrans")
GROW = {"min_rounds": 1, "patience": 1, "plateau_tol": 10.0, "eval_min_rounds": 1}  # grow every round


def tiny(policy="fedtrans", seed=0, rounds=4, params=None, **over):
    scn = ft.FedTransScenario.from_dict({
        "policy": policy, "policy_params": params or {}, "seed": seed, "horizon_s": 3 * 86400.0,
        "population": {"n_devices": 40, "recheckin_s": 600.0},
        "data": {"mean_samples": 20, "test_samples": 10},
        "model": {"widths": [4, 4], "max_width": 16, "max_depth": 2, "max_models": 5},
        "train": {"rounds": rounds, "participants": 5, "eval_every": 2, "local_epochs": 1},
    })
    return scn.with_updates(over) if over else scn


def check_invariants(scn, res):
    asg = res.series["assignments"]
    if len(asg) == 0:  # too few phones can hold any model the policy trains: nothing runs, nothing is spent
        assert res.metrics["rounds_completed"] == 0 and res.metrics["cost_device_s"] == 0
        assert res.metrics["cost_flops"] == 0 and len(res.series["rounds"]) == 0
        return
    # no client ever trains a model its device cannot hold
    assert (asg["train_mem_bytes"] <= asg["device_mem_bytes"]).all()
    models = res.series["models"].set_index("model_id")
    assert np.allclose(models.loc[asg["model_id"], "train_mem_bytes"].to_numpy(), asg["train_mem_bytes"])
    # responses only from devices that answered by the close; success needs enough of them
    rounds = res.series["rounds"]
    assert (rounds["responses"] <= rounds["assigned"]).all()
    assert (rounds["t_close_s"] >= rounds["t_full_s"]).all()
    assert res.metrics["rounds_completed"] == rounds["success"].sum() <= scn.train.rounds
    # a device works on one assignment at a time
    a = asg.merge(rounds[["round", "attempt", "t_close_s"]], on=["round", "attempt"])
    free = np.minimum(a["resp_s"], a["t_close_s"])
    df = pd.DataFrame({"c": a["client"], "t": a["t_assign_s"], "free": free}).sort_values(["c", "t"])
    same = df["c"].to_numpy()[1:] == df["c"].to_numpy()[:-1]
    assert (df["t"].to_numpy()[1:][same] >= df["free"].to_numpy()[:-1][same] - 1e-9).all()
    # costs are spent and served clients hold the model they are evaluated on
    assert res.metrics["cost_device_s"] > 0 and res.metrics["cost_flops"] > 0 and res.metrics["cost_bytes_up"] > 0
    t = res.table
    served = t["model_id"] >= 0
    mem = models.loc[t.loc[served, "model_id"], "train_mem_bytes"].to_numpy()
    assert (mem <= t.loc[served, "train_mem_bytes_avail"].to_numpy()).all()
    assert np.isfinite(t.loc[served, "accuracy"]).all() and ((t["accuracy"] >= 0) | ~served).all()


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_runs(policy):
    scn = tiny(policy, rounds=3)
    res = ft.run_fedtrans(scn)
    assert len(res.series["assignments"]) > 0
    check_invariants(scn, res)
    assert res.metrics["rounds_completed"] == 3


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(POLICIES), mem=st.floats(0.005, 0.2))
def test_invariants_property(seed, policy, mem):
    scn = tiny(policy, seed=seed, rounds=3, params=GROW if policy == "fedtrans" else None,
               **{"devices.train_mem_fraction": mem})
    check_invariants(scn, ft.run_fedtrans(scn))


def test_fedtrans_grows_models_function_preserving_and_assigns_capable_clients():
    res = ft.run_fedtrans(tiny("fedtrans", rounds=6, params=GROW))
    models = res.series["models"]
    assert res.metrics["transforms"] >= 2 and set(models["op"]) - {"root"} <= {"widen", "deepen"}
    assert (models["emu_params"].diff().dropna() > 0).all()  # each derived model is bigger
    asg = res.series["assignments"]
    assert asg["model_id"].nunique() >= 2
    check_invariants(tiny("fedtrans", rounds=6, params=GROW), res)


def test_same_seed_same_result():
    a, b = ft.run_fedtrans(tiny(seed=3, params=GROW)), ft.run_fedtrans(tiny(seed=3, params=GROW))
    assert a.metrics == b.metrics
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.series["assignments"], b.series["assignments"])
    c = ft.run_fedtrans(tiny(seed=4, params=GROW))
    assert not a.table["accuracy"].equals(c.table["accuracy"])


def test_fedavg_large_serves_only_capable_clients_and_costs_more():
    mem = {"devices.train_mem_fraction": 0.012}  # the starting model fits every phone, the largest does not
    small, large = ft.run_fedtrans(tiny("fedavg", **mem)), ft.run_fedtrans(tiny("fedavg_large", **mem))
    assert small.metrics["served_fraction"] == 1.0
    assert large.metrics["served_fraction"] < 1.0
    assert large.metrics["cost_flops"] > small.metrics["cost_flops"]
    assert large.metrics["cost_bytes_up"] > small.metrics["cost_bytes_up"]


def test_eligibility_and_digits_cnn():
    scn = tiny("tiered", rounds=2, requirement="ram_gb >= 6", **{"data.dataset": "digits", "model.kind": "cnn"})
    res = ft.run_fedtrans(scn)
    check_invariants(scn, res)
    assert (res.table.loc[res.series["assignments"]["client"].unique(), "ram_gb"] >= 6).all()


class _Overload(MultiModelPolicy):
    """Gives every client a model far too big for a phone (the executor must refuse)."""

    def schedule(self, view):
        from orrery.policies.fedtrans.base import NewModel

        if view.purpose == "eval" or len(view.models) > 1:
            return MultiModelDecision()
        big = view.models[0].arch.widen(0, view.max_width).deepen(0)
        return MultiModelDecision(assign={c.client_id: view.next_model_id for c in view.clients},
                                  new_models=(NewModel("fresh", arch=big),))


def test_executor_refuses_a_device_overload():
    load_domain("fedtrans")  # load the shipped policies first, then add this test-only one
    register("fedtrans", "_test_overload")(_Overload)
    assert get_policy_class("fedtrans", "fedtrans")
    with pytest.raises(RuntimeError, match="needing"):
        ft.run_fedtrans(tiny("_test_overload", **{"devices.train_mem_fraction": 0.0001}))


def test_domain_registration_bad_input_and_cost_model():
    d = registered_domains()["fedtrans"]
    assert d.policies == "fedtrans" and d.metrics["acc_mean"] == "higher"
    with pytest.raises(ScenarioError, match="widths"):
        ft.FedTransScenario.from_dict({"policy": "fedavg", "model": {"widths": [4], "depths": [1, 1]}})
    with pytest.raises(ScenarioError, match="leaf_train"):
        ft.FedTransScenario.from_dict({"policy": "fedavg", "data": {"dataset": "leaf"}})
    with pytest.raises(ScenarioError, match="alpha"):
        ft.FedTransScenario.from_dict({"policy": "fedavg", "data": {"alpha": 0}})
    cm = CostModel(scale=10.0, batch_size=4)
    from orrery.policies.fedtrans.base import ArchSpec

    a = ArchSpec("mlp", (3,), 2, ((4, 1),))
    assert a.n_params() == 3 * 4 + 4 + 4 * 2 + 2
    assert cm.update_bytes(a) == 10 * 4 * a.n_params()
    assert cm.train_flops_per_sample(a) == 10 * 3 * 2 * (3 * 4 + 4 * 2)


def test_leaf_dataset_runs(tmp_path):
    from orrery.workloads.fl_data import write_leaf

    g = np.random.default_rng(0)
    write_leaf(tmp_path / "train.json", {f"u{i}": (g.random((12, 6)), g.integers(0, 4, 12)) for i in range(40)})
    scn = tiny("fedavg", rounds=2, **{"data.dataset": "leaf", "data.leaf_train": str(tmp_path / "train.json")})
    res = ft.run_fedtrans(scn)
    assert res.metrics["rounds_completed"] == 2 and res.metrics["served_fraction"] == 1.0


def test_plots(tmp_path):
    class R:
        def __init__(self, res, pol):
            self.values, self.scenario, self.metrics = {"policy": pol, "data.dataset": "teacher"}, {"policy": pol}, res.metrics
            self.table, self.series = res.table, res.series

    runs = [R(ft.run_fedtrans(tiny(p, rounds=2)), p) for p in ("fedavg", "fedtrans")]
    from orrery.experiments.plotting import fedtrans_plots

    paths = fedtrans_plots(tmp_path, pd.DataFrame(), runs)
    assert len(paths) == 2 and all(p.stat().st_size > 0 for p in paths)
