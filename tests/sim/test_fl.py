import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orrery.core.errors import ScenarioError
from orrery.policies.registry import shipped_policies
from orrery.sim.domains import get_domain
from orrery.sim.engine import Simulation
from orrery.sim.fl import FLScenario, build_availability, build_population, run_fl
from orrery.traces.devices import eligible_mask


def tiny(policy="venn", seed=0, n_jobs=4, n_devices=1500, **jobs):
    return FLScenario.from_dict({
        "policy": policy, "seed": seed, "horizon_s": 86400.0, "record_assignments": True,
        "population": {"n_devices": n_devices, "recheckin_s": 600.0},
        "jobs": {"n_jobs": n_jobs, "mean_interarrival_s": 1200.0, "participants_min": 5,
                 "participants_max": 60, "rounds_min": 2, "rounds_max": 15,
                 "requirements": ["req1", "req2", "req3", "req4", "ram_gb >= 6"], **jobs},
    })


def check_invariants(scn, res):
    asg = res.series["assignments"]
    rounds = res.series["rounds"]
    tab = res.table
    assert len(asg) > 0
    # rebuild the population and availability from the same named streams
    sim = Simulation(scn.seed)
    pop = build_population(scn.population, sim.rng["hardware"])
    av = build_availability(scn.population, scn.horizon_s, sim.rng["availability"])
    dev = asg["device"].to_numpy()
    job = asg["job_id"].to_numpy()
    req = tab.set_index("job_id").loc[job, "requirement"].to_numpy()
    # no job ever receives an ineligible or unavailable device
    for r in np.unique(req):
        sel = req == r
        assert eligible_mask(pop, r)[dev[sel]].all(), r
    assert av.is_available(dev, asg["t_assign_s"].to_numpy()).all()
    # a device works for at most one job at a time
    closes = rounds.set_index(["job_id", "round"])["t_close_s"]
    key = list(zip(asg["job_id"], asg["round"], strict=True))
    t_close = np.array([closes.get(k, math.inf) for k in key])
    free_at = np.minimum(asg["busy_until_s"].to_numpy(), t_close)
    df = pd.DataFrame({"dev": dev, "t": asg["t_assign_s"].to_numpy(), "free": free_at}).sort_values(["dev", "t"])
    same = df["dev"].to_numpy()[1:] == df["dev"].to_numpy()[:-1]
    assert (df["t"].to_numpy()[1:][same] >= df["free"].to_numpy()[:-1][same] - 1e-9).all()
    # responses per round never exceed devices assigned; rounds never exceed the job's rounds
    assert (rounds["responses"] <= rounds["assigned"]).all()
    per_round = asg.groupby(["job_id", "round"]).size()
    assert (rounds.set_index(["job_id", "round"])["assigned"] == per_round.loc[closes.index]).all()
    assert (tab["completed_rounds"] <= tab["rounds"]).all()
    done = np.isfinite(tab["finish_s"])
    assert (tab.loc[done, "completed_rounds"] == tab.loc[done, "rounds"]).all()


@pytest.mark.parametrize("policy", shipped_policies("fl"))
def test_invariants_each_policy(policy):
    scn = tiny(policy)
    res = run_fl(scn)
    check_invariants(scn, res)
    assert res.metrics["jobs_completed"] >= 1


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(shipped_policies("fl")),
       n_jobs=st.integers(1, 6), overcommit=st.floats(1.0, 2.0))
def test_invariants_property(seed, policy, n_jobs, overcommit):
    scn = tiny(policy, seed=seed, n_jobs=n_jobs, n_devices=800).with_updates({"rounds.overcommit": overcommit})
    check_invariants(scn, run_fl(scn))


def test_same_seed_identical_results():
    a, b = run_fl(tiny("random", seed=7)), run_fl(tiny("random", seed=7))
    assert a.metrics == b.metrics or all(
        (x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.metrics.values(), b.metrics.values(), strict=True))
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.series["assignments"], b.series["assignments"])
    c = run_fl(tiny("random", seed=8))
    assert not a.table["finish_s"].equals(c.table["finish_s"])


def test_deadline_aborts_rounds():
    # work so large that no device answers before the deadline: every round aborts
    res = run_fl(tiny("fifo", work_units_min=1e6, work_units_max=1e6, n_jobs=1))
    assert res.metrics["jobs_completed"] == 0
    assert res.metrics["abort_fraction"] == 1.0


def test_domain_registered_and_bad_input():
    d = get_domain("fl")
    assert d.scenario_type is FLScenario and d.metrics["jct_mean_s"] == "lower"
    with pytest.raises(ScenarioError, match="participants_min"):
        FLScenario.from_dict({"policy": "venn", "jobs": {"participants_min": 10, "participants_max": 5}})
    with pytest.raises(ScenarioError, match="requirements"):
        FLScenario.from_dict({"policy": "venn", "jobs": {"requirements": ["battery > 3"]}})


def test_plots(tmp_path):
    class R:
        def __init__(self, res, pol):
            self.values, self.scenario, self.metrics = {"policy": pol}, {"policy": pol}, res.metrics
            self.table, self.series = res.table, res.series
    runs = [R(run_fl(tiny(p)), p) for p in ("random", "venn")]
    from orrery.experiments.plots import resolve_plot_hook

    paths = resolve_plot_hook(get_domain("fl"))(tmp_path, pd.DataFrame(), runs)
    assert len(paths) == 2 and all(p.stat().st_size > 0 for p in paths)


def test_feasibility_small():
    from orrery.sim.fl_feasibility import FLFeasibilityScenario, run_fl_feasibility

    scn = FLFeasibilityScenario.from_dict({
        "horizon_s": 86400.0, "population": {"n_devices": 2000},
        "plan": {"rounds": 5, "participants": 20, "requirement": "req1"},
        "thresholds": {"max_wall_time_s": 1.0},
    })
    r = run_fl_feasibility(scn)
    m = r.metrics
    assert m["rounds_completed"] == 5 and m["round_time_p50_s"] > 0
    assert m["bytes_up_total"] <= m["bytes_down_total"]
    assert m["server_concurrent_clients_max"] <= 26  # ceil(1.3 * 20) devices per round
    assert len(r.series["participation_by_hour"]) > 0
    assert not r.table.set_index("check").loc["wall time to finish (s)", "ok"] and m["go"] == 0.0
