"""Deployment search: same Pareto set and best points as exhaustive simulation on a 60-point
space; resume without re-simulating; bad input exits 2 naming the field."""

import json
import math

import pandas as pd
import pytest

from orrery.core.errors import OrreryInputError
from orrery.experiments.cli import main
from orrery.experiments.plan import load_plan, search
from orrery.sim.cluster_serving import CLUSTER_METRICS


def plan_dict(**over):
    d = {
        "plan": {"name": "tiny", "model": "llama-2-13b", "objectives": ["cost", "energy", "carbon"]},
        "trace": {"arrival": "poisson", "rate_rps": 4.0, "n_requests": 20, "max_total_tokens": 2048},
        "space": {"gpu": ["a100", "h100", "l4"], "tp": [1, 2], "replicas": {"min": 1, "max": 5},
                  "scheduler": ["vllm_fcfs", "andes"], "max_num_seqs": [8]},
        "constraints": {"qoe_mean_min": 0.97, "ttft_p99_s_max": 2.0},
        "scenario": {"carbon_trace": "synthetic:US-CAL-CISO"},
    }
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_search_matches_exhaustive_on_60_points():
    # the carbon trace's hour changes 3 s into the runs: the time-resolved carbon floor is at work
    plan = load_plan(plan_dict(scenario={"carbon_start_s": 3597.0}))
    assert len(plan.points) == 60
    fast = search(plan, jobs=2, check_every_s=1.0)  # two workers: monitors also read the live feasible set
    full = search(plan, jobs=1, prune=False)
    # Llama-2-13B's weights do not fit one L4: never simulated, in either mode
    assert full.counts["simulated"] == 50 and full.counts["pruned"] == 10
    assert fast.counts["stopped_early"] > 0
    assert full.counts["feasible"] > 0 and full.counts["infeasible"] > 0
    assert sorted(fast.pareto["key"]) == sorted(full.pareto["key"])
    assert {o: r["key"] for o, r in fast.best.items()} == {o: r["key"] for o, r in full.best.items()}
    # every pruned or stopped point is indeed not on the exhaustive Pareto front
    skipped = set(fast.points.loc[fast.points["status"].isin(["pruned", "stopped"]), "key"])
    assert not skipped & set(full.pareto["key"])
    # Andes points settled by their vLLM-FCFS sibling's run (Andes never under pressure there):
    # every metric equals Andes' own simulation, bit for bit
    f, g = fast.points.set_index("key"), full.points.set_index("key")
    twins = f[(f["twin_of"].fillna("") != "") & (f["status"] != "stopped")]
    assert fast.counts["twinned"] > 0 and len(twins) > 0
    assert all(k.split("/")[4] == "andes" for k in twins.index)
    for k in twins.index:
        for m in CLUSTER_METRICS:
            assert _same(float(f.loc[k, m]), float(g.loc[k, m])), (k, m)
    # the analytic floors that prune by dominance are below every simulated energy and carbon
    from orrery.experiments.plan import _span_intensity, analytic, trace_demand

    dem = trace_demand(plan)
    span_ci, min_ci = _span_intensity(plan, dem)
    assert span_ci > min_ci
    pts = {p.key: p for p in plan.points}
    ran = g[g["status"].isin(["feasible", "infeasible"])]
    for k, row in ran.iterrows():
        b = analytic(plan, pts[k], dem, min_ci, {}, span_ci)
        assert b.energy_floor_j <= row["energy_j"] and b.carbon_floor_g <= row["carbon_g"], k


def test_monitor_floors_hold_at_every_check():
    """The monitor's energy and carbon floors, at every check of a run, are below the run's final
    energy and carbon (runs that cross an hour of the carbon trace; one overloaded)."""
    from orrery.experiments.plan import Monitor, _span_intensity, analytic, trace_demand
    from orrery.sim.cluster_serving import simulate_cluster

    plan = load_plan(plan_dict(scenario={"carbon_start_s": 3597.0}))
    dem = trace_demand(plan)
    span_ci, min_ci = _span_intensity(plan, dem)
    checked = 0
    for key in ("A100-SXM4-80GB/tp1/x1/b8/vllm_fcfs/least_outstanding_tokens/pl1",
                "H100-SXM5-80GB/tp1/x3/b8/andes/least_outstanding_tokens/pl1",
                "L4/tp2/x2/b8/vllm_fcfs/least_outstanding_tokens/pl1"):
        p = next(q for q in plan.points if q.key == key)
        b = analytic(plan, p, dem, min_ci, {}, span_ci)
        mon = Monitor([], ["cost_usd_per_h", "energy_j", "carbon_g"], [], b.cost_usd_per_h, b)
        seen = []

        def record(prog, mon=mon, seen=seen):
            seen.append(mon.lower_bounds(prog))

        res, stopped = simulate_cluster(plan.scenario(p), monitor=record, check_every_s=0.5)
        assert stopped is None and len(seen) >= 3
        for lb in seen:
            assert lb["energy_j"] <= res.metrics["energy_j"] and lb["carbon_g"] <= res.metrics["carbon_g"], key
        checked += 1
        # the floors close in: the last check is within 40 % of the final carbon
        assert seen[-1]["carbon_g"] >= 0.6 * res.metrics["carbon_g"]
    assert checked == 3


def test_andes_twin_not_used_when_andes_decides_otherwise():
    """Under KV pressure Andes' knapsack picks its own running set: the vLLM-FCFS run's shadow
    sees it, and the Andes point is simulated on its own (its result differs, so a twin would
    have been wrong)."""
    d = plan_dict(trace={"arrival": "poisson", "rate_rps": 20.0, "n_requests": 60, "max_total_tokens": 2048},
                  space={"gpu": ["l4"], "tp": [2], "replicas": [1], "scheduler": ["vllm_fcfs", "andes"],
                         "max_num_seqs": [64]},
                  constraints={"qoe_mean_min": 0.0, "ttft_p99_s_max": 1e9})
    plan = load_plan(d)
    fast = search(plan, jobs=1, check_every_s=1.0)
    full = search(plan, jobs=1, prune=False)
    assert fast.counts["simulated"] == 2 and fast.counts["twinned"] == 0
    f, g = fast.points.set_index("key"), full.points.set_index("key")
    fcfs, andes = (k for k in sorted(f.index, key=lambda k: "andes" in k))
    assert f.loc[fcfs, "qoe_mean"] != f.loc[andes, "qoe_mean"]
    for k in (fcfs, andes):
        for m in ("qoe_mean", "energy_j", "carbon_g", "ttft_p99_s"):
            assert f.loc[k, m] == g.loc[k, m], (k, m)


def test_monitor_takes_up_feasible_points_published_later(tmp_path):
    from orrery.experiments.plan import Monitor

    path = tmp_path / "feasible.json"
    mon = Monitor([], ["cost_usd_per_h", "energy_j"], [], 1.0, None, str(path))
    mon._refresh()  # no file yet: nothing known
    assert mon.feasible == []
    path.write_text(json.dumps([["a", {"cost_usd_per_h": 1.0, "energy_j": 5.0, "carbon_g": 1.0}]]))
    mon._refresh()
    assert [k for k, _ in mon.feasible] == ["a"]
    path.write_text("{not json")  # a torn file is ignored, what was known stays
    mon._refresh()
    assert [k for k, _ in mon.feasible] == ["a"]


def test_resume_and_outputs(tmp_path):
    d = plan_dict(space={"gpu": ["h100"], "tp": [1], "replicas": [1, 2, 3], "scheduler": ["vllm_fcfs"]})
    plan = load_plan(d)
    first = search(plan, tmp_path, jobs=2, check_every_s=1.0)  # local process pool
    for f in ("points.csv", "pareto.csv", "pareto.png", "rejections.csv", "summary.json", "points.jsonl"):
        assert (tmp_path / f).is_file(), f
    n = first.counts["simulated"]
    assert n >= 1
    again = search(plan, tmp_path, jobs=1, check_every_s=1.0)
    assert again.counts["simulated"] == 0 and again.counts["resumed"] == n
    assert list(again.pareto["key"]) == list(first.pareto["key"])
    # an interrupted run: only the first point was stored
    lines = (tmp_path / "points.jsonl").read_text().splitlines()
    (tmp_path / "points.jsonl").write_text(lines[0] + "\n" + '{"cut')
    third = search(plan, tmp_path, jobs=1, check_every_s=1.0)
    assert third.counts["resumed"] == 1 and third.counts["simulated"] == n - 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"]["configurations"] == 3


def _toml(d) -> str:
    out = []
    for table, body in d.items():
        out.append(f"[{table}]")
        for k, v in body.items():
            out.append(f"{k} = {json.dumps(v) if not isinstance(v, dict) else _inline(v)}")
    return "\n".join(out) + "\n"


def _inline(v: dict) -> str:
    return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(x)}" for k, x in v.items()) + "}"


@pytest.mark.parametrize("over, field", [
    ({"space": {"gpu": ["h100", "z9000"]}}, "space.gpu[1]"),
    ({"plan": {"model": "gpt-9"}}, "plan.model"),
    ({"space": {"tp": [1, 3]}}, "space.tp[1]"),
    ({"constraints": {"cost_usd_per_h_max": 0.01}}, "space/constraints"),
    ({"scenario": {"prices_usd_per_gpu_h": {"h100": -2.0}}}, "scenario.prices_usd_per_gpu_h"),
    ({"constraints": {"qoe_avg_min": 0.9}}, "constraints.qoe_avg_min"),
    ({"space": {"ep": [1, 2]}}, "space.ep[1]"),  # llama-2-13b is dense: no expert parallelism
])
def test_bad_input_exit_2_naming_the_field(tmp_path, capsys, over, field):
    p = tmp_path / "p.toml"
    p.write_text(_toml(plan_dict(**over)))
    assert main(["plan", str(p), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 2
    assert field in capsys.readouterr().err


def test_trace_without_requests(tmp_path, capsys):
    csv = tmp_path / "empty.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    d = plan_dict()
    d["trace"] = {"path": str(csv)}
    p = tmp_path / "p.toml"
    p.write_text(_toml(d))
    assert main(["plan", str(p), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 2
    assert "trace" in capsys.readouterr().err


def test_cli_plan_runs(tmp_path, capsys):
    d = plan_dict(space={"gpu": ["a100"], "tp": [1], "replicas": [1, 2], "scheduler": ["vllm_fcfs"]})
    p = tmp_path / "p.toml"
    p.write_text(_toml(d))
    assert main(["plan", str(p), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 configurations" in out
    t = pd.read_csv(tmp_path / "o" / "points.csv")
    assert set(t["status"]) <= {"feasible", "infeasible", "pruned", "stopped"}
    assert all(math.isfinite(x) for x in t["cost_usd_per_h"])


def test_cli_plan_budget_must_be_positive(tmp_path, capsys):
    d = plan_dict(space={"gpu": ["a100"], "tp": [1], "replicas": [1], "scheduler": ["vllm_fcfs"]})
    p = tmp_path / "p.toml"
    p.write_text(_toml(d))
    assert main(["plan", str(p), "--out", str(tmp_path / "o"), "--budget-s", "0"]) == 2
    assert "--budget-s" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_shipped_plan_loads_and_prunes_by_capacity(shared_data, monkeypatch):
    from orrery.experiments.plan import Point, analytic, trace_demand

    monkeypatch.setenv("ORRERY_DATA", str(shared_data))
    plan = load_plan("azure_conv")
    assert len(plan.points) >= 500
    d = trace_demand(plan)
    assert d.n == 19366 and 3400 < d.span_s <= 3600
    tiny = analytic(plan, Point("L4", 1, 1, 1, 256, "vllm_fcfs", "least_outstanding_tokens", 1.0), d, 50.0, {})
    big = analytic(plan, Point("H100-SXM5-80GB", 1, 1, 4, 256, "vllm_fcfs", "least_outstanding_tokens", 1.0), d, 50.0, {})
    assert tiny.work_s > d.deadline_span_s + plan.capacity_slack_s > big.work_s  # one L4 cannot keep up
    assert len(plan.points) >= 100 and plan.constraints
    with pytest.raises(OrreryInputError):
        load_plan({"space": {}})


def test_expert_parallelism_in_a_moe_plan():
    """A MoE model's plan takes ep: tp x ep pairs that vLLM cannot run (tp > 1, ep != tp) are
    pruned as invalid parallelism, ep = 2 on tp = 1 is a 2-GPU replica (cost counts both)."""
    from orrery.experiments.plan import Point, analytic, trace_demand

    d = plan_dict(plan={"model": "qwen3-30b-a3b"},
                  space={"gpu": ["h100"], "tp": [1, 2], "ep": [1, 2, 4], "replicas": [1], "scheduler": ["vllm_fcfs"]})
    plan = load_plan(d)
    assert len(plan.points) == 6
    dem = trace_demand(plan)
    by = {(p.tp, p.ep): analytic(plan, p, dem, 50.0, {}) for p in plan.points}
    assert by[(1, 2)].problem is None and by[(1, 2)].n_gpus == 2
    assert by[(2, 2)].problem is None and by[(2, 2)].n_gpus == 2
    assert by[(1, 2)].cost_usd_per_h == pytest.approx(2 * by[(1, 1)].cost_usd_per_h)
    assert by[(2, 4)].problem.startswith("invalid parallelism") and "ep=4" in by[(2, 4)].problem
    p = Point("H100-SXM5-80GB", 1, 2, 1, 8, "vllm_fcfs", "least_outstanding_tokens", 1.0)
    assert "/ep2/" in p.key and plan.scenario(p).n_gpus == 2


def test_time_budget_leaves_points_unvisited():
    plan = load_plan(plan_dict(space={"gpu": ["h100"], "tp": [1], "replicas": [1, 2], "scheduler": ["vllm_fcfs"]}))
    res = search(plan, jobs=1, budget_s=0.0)
    assert res.counts["simulated"] == 0 and res.counts["unvisited"] == 2
    assert set(res.points["status"]) == {"unvisited"} and res.pareto.empty
