"""Benchmark: the deployment search of the shipped plan `experiments/plans/azure_conv.toml`:
the one-hour Azure LLM conversation trace (19,366 requests), 576 configurations (H100, A100,
L4 x TP 1-8 x 1-16 replicas x 2 schedulers x 3 power limits) under mean QoE >= 0.95 and
p99 TTFT <= 5 s. Prints configurations simulated vs pruned; target <= 10 minutes wall on a
2-core machine.

    python benchmarks/plan_search.py [--jobs 2] [--duration-s 3600] [--out DIR] [--budget-s S]

`--duration-s` replays only the trace's first seconds (for a quick look; the target is for the
whole hour). The results folder is a fresh temporary one unless `--out` is given (then a re-run
resumes and simulates nothing). `--budget-s` starts no simulation after S wall seconds (the
points not reached are counted as unvisited; with `--out` a re-run goes on from there). The last
line is one JSON object with wall and CPU seconds (user + system, workers included) and the
machine's load average (`uptime`) at the start and the end: on shared cores the CPU seconds are
the comparable figure (wall <= 10 min needs the two cores to itself: CPU <= 1200 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from orrery.experiments.plan import PLANS_DIR, load_plan, search
from orrery.sim.scenario import read_toml

TARGET_WALL_S = 600.0
ROOT = Path(__file__).resolve().parents[1]
# the shared data folder beside the checkout (a main checkout) or two levels up (a worktree)
TRACES = [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plan", default=str(PLANS_DIR / "azure_conv.toml"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--duration-s", type=float, default=None, help="replay only this much of the trace")
    ap.add_argument("--out", default=None)
    ap.add_argument("--budget-s", type=float, default=None, help="start no simulation after this many seconds")
    a = ap.parse_args()
    trace_dir = next((t for t in TRACES if t.is_dir()), None)
    if "ORRERY_DATA" not in os.environ and trace_dir is not None:
        os.environ["ORRERY_DATA"] = str(trace_dir.resolve())
    raw = read_toml(a.plan)
    if a.duration_s:
        raw.setdefault("trace", {})["duration_s"] = a.duration_s
    plan = load_plan(raw, source=a.plan)
    if a.duration_s:
        plan.name += f" (first {a.duration_s:g} s of the trace)"
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="plan_search_"))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cpu0 = _cpu_s()
    res = search(plan, out, jobs=a.jobs, budget_s=a.budget_s)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    c = res.counts
    print(f"{c['configurations']} configurations: {c['simulated']} simulated, {c['twinned']} settled by a "
          f"twin's run (Andes = vLLM-FCFS throughout), {c['stopped_early']} of them stopped early, "
          f"{c['pruned']} pruned without simulating, {c['resumed']} resumed; {c['feasible']} feasible, "
          f"{c['pareto']} on the Pareto front, {c['unvisited']} not reached; wall {wall:.1f} s, CPU {cpu:.1f} s")
    by_reason = res.points[res.points["status"] == "pruned"]["reason_kind"].value_counts().to_dict()
    print("pruned by:", by_reason)
    for o, r in res.best.items():
        print(f"best {o}: {r['key']} ({r['cost_usd_per_h']:.2f} $/h, {r['energy_j'] / 3.6e6:.2f} kWh, "
              f"{r['carbon_g'] / 1e3:.3f} kg CO2, QoE {r['qoe_mean']:.3f})")
    print(f"results in {out}")
    print(json.dumps({
        "benchmark": "plan_search", "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "configurations": c["configurations"], "simulated": c["simulated"], "twinned": c["twinned"],
        "stopped_early": c["stopped_early"], "pruned": c["pruned"],
        "pruned_by": by_reason, "resumed": c["resumed"], "unvisited": c["unvisited"],
        "feasible": c["feasible"], "pareto": c["pareto"],
        "pareto_set": [r["key"] for r in res.pareto.to_dict("records")],
        "trace_s": a.duration_s or "full", "jobs": a.jobs,
        "load_avg_1m": [round(load0[0], 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
        "target_wall_s": TARGET_WALL_S,
        "met": bool(wall <= TARGET_WALL_S and not a.duration_s and not c["unvisited"] and not c["resumed"]),
        # the same target in CPU seconds (two cores for the target's wall time): load-independent
        "met_cpu": bool(cpu <= 2 * TARGET_WALL_S and not a.duration_s and not c["unvisited"] and not c["resumed"]),
    }))


if __name__ == "__main__":
    main()
