"""Sweep overhead: 200 tiny runs through the local process pool and through a Dask LocalCluster.

The framework's overhead per run is the study's wall time (validation, dispatch, Parquet
encoding, atomic writes, manifest, statistics, plots and report) minus the time the domain's
own `run` needs for the same scenarios, per run, with the parallel capacity counted:
overhead = (wall_s * workers - bare_s) / runs. Uses the toy domain of the experiments tests.
Target: under 50 ms per run locally.

    python benchmarks/sweep_overhead.py [--jobs N] [--runs-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "experiments"))
os.environ.setdefault("ORRERY_PLUGINS", "orrery_toy_domain")

import orrery_toy_domain  # noqa: E402,F401 - registers the toy domain

from orrery.experiments.report import write_result  # noqa: E402
from orrery.experiments.runner import run_study  # noqa: E402
from orrery.experiments.study import load_study  # noqa: E402

TARGET_MS = 50.0
STUDY = """
[study]
name = "sweep_overhead"
domain = "toy"
hypothesis = "fast lowers latency"
seeds = 10
metrics = ["latency_s", "throughput_rps"]
control = { policy = "base" }

[scenario]
policy = "base"
workload = { n_requests = 50 }

[variables]
policy = ["base", "fast"]
"workload.rate_rps" = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5]
"""


def bare_seconds(study) -> float:
    """The domain's own run time for every execution the study makes (runs + repro re-runs)."""
    scenarios = [r.scenario for r in study.runs()] + [g.runs[0].scenario for g in study.groups]
    t0 = time.perf_counter()
    for sc in scenarios:
        study.domain.run(sc)
    return time.perf_counter() - t0


def measure(study, out: Path, workers: int, **kw) -> dict:
    t0 = time.perf_counter()
    res = run_study(study, out, writer=write_result, **kw)
    wall = time.perf_counter() - t0
    assert res.executed == len(study.runs()) and res.manifest["reproducibility"]["ok"]
    return {"wall_s": round(wall, 3), "run_phase_s": res.manifest["wall_s"], "runs_per_s": round(len(study.runs()) / wall, 1), "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.toml"
        path.write_text(STUDY)
        study = load_study(path)
        n = len(study.runs())
        bare = bare_seconds(study)
        print(f"{n} runs; domain run time alone: {bare:.3f} s ({bare / n * 1e3:.2f} ms/run)")

        inproc = measure(study, Path(tmp) / "inproc", 1, jobs=1)
        pool = measure(study, Path(tmp) / "pool", args.jobs, jobs=args.jobs)
        t0 = time.perf_counter()
        dask = measure(study, Path(tmp) / "dask", args.jobs, dask="local", jobs=args.jobs)
        dask["incl_cluster_start_s"] = round(time.perf_counter() - t0, 3)
        for name, r in (("in-process", inproc), ("local pool", pool), ("dask local", dask)):
            r["overhead_ms_per_run"] = round((r["wall_s"] * r["workers"] - bare) / n * 1e3, 2)
            print(f"{name:11s}: {r['wall_s']:.2f} s, {r['runs_per_s']:.0f} runs/s, "
                  f"overhead {r['overhead_ms_per_run']:.1f} ms/run ({r['workers']} workers)")  # fmt: skip
    overhead = pool["overhead_ms_per_run"]
    print(json.dumps({
        "benchmark": "sweep_overhead",
        "runs": n,
        "bare_ms_per_run": round(bare / n * 1e3, 2),
        "inprocess": inproc,
        "local_pool": pool,
        "dask_local": dask,
        "overhead_ms_per_run": overhead,
        "target_overhead_ms": TARGET_MS,
        "met": overhead < TARGET_MS,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
