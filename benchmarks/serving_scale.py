"""Benchmark: LLM serving at scale under Andes.

Default: the whole one-hour Azure LLM conversation trace (19,366 requests) replayed on 4
replicas; target <= 15 s wall. With `--requests N`: N requests with the trace's request mix
(prompt/output lengths resampled from it) and Poisson arrivals at `--rate-per-replica` times
`--replicas` requests/s (busy but not overloaded replicas); target for 1M requests on 32
replicas: <= 120 s wall and <= 4 GiB. Prints wall and CPU time, peak memory, simulated
requests/s and iterations/s (per core: the simulator is single-threaded).

    python benchmarks/serving_scale.py                                   # one hour, 4 replicas
    python benchmarks/serving_scale.py --requests 1000000 --replicas 32  # a million requests
    python benchmarks/serving_scale.py --scaling 10000,100000,1000000 --replicas 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from orrery.sim.serving import ServingScenario, run_serving

TRACE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "llm" / "azure_llm_2023_conv.csv"
TARGET_WALL_S = 15.0  # the one-hour trace on 4 replicas
TARGET_SCALE_WALL_S = 120.0  # 1M requests on 32 replicas (issue 20)
TARGET_SCALE_GIB = 4.0
# Poisson arrivals per replica that keep a replica of llama-3.1-8b on an H100 busy (batches of
# tens, KV cache mostly under Andes' trigger) without overload (mean QoE stays near 1): the
# conversation trace itself offers 1.35 requests/s per replica on 4 replicas.
RATE_PER_REPLICA_RPS = 8.0


def scenario(a: argparse.Namespace, n_requests: int | None) -> ServingScenario:
    if n_requests is None:  # the trace as recorded
        workload = {"arrival": "trace", "trace_path": a.trace, "lengths": "trace"}
    else:
        workload = {"arrival": "poisson", "rate_rps": a.rate_per_replica * a.replicas,
                    "n_requests": n_requests, "trace_path": a.trace, "lengths": "trace"}
    workload["max_total_tokens"] = 8192
    return ServingScenario.from_dict({
        "policy": a.policy,
        "replicas": a.replicas,
        "dispatcher": "least_loaded",
        "check_decisions": False,
        "fast_forward": not a.no_fast_forward,
        "seed": a.seed,
        "hardware": {"gpu": a.gpu, "model": a.model},
        "workload": workload,
    })


def measure(a: argparse.Namespace, n_requests: int | None) -> dict:
    scn = scenario(a, n_requests)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_serving(scn)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB
    m = res.metrics
    n, iters = int(m["n_requests"]), int(m["iterations"])
    print(f"{n} requests, {iters} iterations on {a.replicas} x {a.model} / {a.gpu} under {a.policy}: "
          f"wall {wall:.2f} s (cpu {cpu:.2f} s), peak {peak_gib:.2f} GiB", file=sys.stderr)
    print(f"simulated {n / cpu:.0f} requests/s, {iters / cpu:.0f} iterations/s per core; mean QoE "
          f"{m['qoe_mean']:.3f}, {m['preemptions_per_request']:.3f} preemptions/request, "
          f"throughput {m['throughput_tok_s']:.0f} tok/s, {m['sim_time_s']:.0f} s simulated",
          file=sys.stderr)
    return {"requests": n, "replicas": a.replicas, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "peak_gib": round(peak_gib, 3), "iterations": iters,
            "requests_per_s": round(n / wall, 1), "iterations_per_s": round(iters / wall, 1),
            "requests_per_cpu_s": round(n / cpu, 1), "iterations_per_cpu_s": round(iters / cpu, 1),
            "qoe_mean": round(m["qoe_mean"], 4), "sim_time_s": round(m["sim_time_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="andes")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--requests", type=int, default=None,
                    help="N requests of the trace's mix at Poisson arrivals (default: replay the trace)")
    ap.add_argument("--rate-per-replica", type=float, default=RATE_PER_REPLICA_RPS,
                    help="with --requests: arrivals per second per replica")
    ap.add_argument("--scaling", default=None,
                    help="comma-separated request counts: one fresh process each, a wall-time table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace", default=str(TRACE.resolve()))
    ap.add_argument("--no-fast-forward", action="store_true",
                    help="one simulation event per iteration (no macro steps; much slower)")
    a = ap.parse_args()
    if a.scaling:
        rows = []
        for n in (int(x) for x in a.scaling.split(",")):
            cmd = [sys.executable, __file__, "--requests", str(n), "--replicas", str(a.replicas),
                   "--rate-per-replica", str(a.rate_per_replica), "--policy", a.policy,
                   "--model", a.model, "--gpu", a.gpu, "--seed", str(a.seed), "--trace", a.trace]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{r['requests']:>9} requests: wall {r['wall_s']:8.2f} s, cpu {r['cpu_s']:8.2f} s, "
                  f"{r['wall_s'] / r['requests'] * 1e6:7.1f} us/request, peak {r['peak_gib']:.2f} GiB",
                  file=sys.stderr)
        print(json.dumps({"benchmark": "serving_scale_scaling", "rows": rows}))
        return
    out = measure(a, a.requests)
    # met: the targets in wall seconds (a quiet machine); met_cpu: the same in CPU seconds (the
    # simulator is single-threaded, so on a loaded machine CPU time is what it would take)
    if a.requests is None:
        out.update(target_wall_s=TARGET_WALL_S, met=out["wall_s"] <= TARGET_WALL_S,
                   met_cpu=out["cpu_s"] <= TARGET_WALL_S)
    else:
        fits = out["peak_gib"] <= TARGET_SCALE_GIB
        out.update(target_wall_s=TARGET_SCALE_WALL_S, target_gib=TARGET_SCALE_GIB,
                   met=out["wall_s"] <= TARGET_SCALE_WALL_S and fits,
                   met_cpu=out["cpu_s"] <= TARGET_SCALE_WALL_S and fits)
    print(json.dumps({"benchmark": "serving_scale", **out}))


if __name__ == "__main__":
    main()
