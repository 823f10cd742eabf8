"""Benchmark: the whole one-hour Azure LLM conversation trace (19,366 requests) on 4 replicas
under Andes. Prints wall time, simulated requests/s and iterations/s; target under 15 s.

    python benchmarks/serving_scale.py [--policy andes] [--model llama-3.1-8b] [--gpu h100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orrery.sim.serving import ServingScenario, run_serving

TRACE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "llm" / "azure_llm_2023_conv.csv"
TARGET_WALL_S = 15.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policy", default="andes")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--trace", default=str(TRACE.resolve()))
    ap.add_argument("--no-fast-forward", action="store_true",
                    help="one simulation event per iteration (no macro steps; about 12x slower)")
    a = ap.parse_args()
    scn = ServingScenario.from_dict({
        "policy": a.policy,
        "replicas": a.replicas,
        "dispatcher": "least_loaded",
        "check_decisions": False,
        "fast_forward": not a.no_fast_forward,
        "hardware": {"gpu": a.gpu, "model": a.model},
        "workload": {"arrival": "trace", "trace_path": a.trace, "lengths": "trace",
                     "max_total_tokens": 8192},
    })
    t0 = time.perf_counter()
    res = run_serving(scn)
    wall = time.perf_counter() - t0
    m = res.metrics
    print(f"{int(m['n_requests'])} requests, {int(m['iterations'])} iterations on {a.replicas} x "
          f"{a.model} / {a.gpu} under {a.policy}: wall {wall:.2f} s")
    print(f"simulated {m['n_requests'] / wall:.0f} requests/s, {m['iterations'] / wall:.0f} iterations/s; "
          f"mean QoE {m['qoe_mean']:.3f}, throughput {m['throughput_tok_s']:.0f} tok/s")
    print(json.dumps({
        "benchmark": "serving_scale", "wall_s": round(wall, 2), "requests": int(m["n_requests"]),
        "iterations": int(m["iterations"]), "requests_per_s": round(m["n_requests"] / wall, 1),
        "iterations_per_s": round(m["iterations"] / wall, 1), "target_wall_s": TARGET_WALL_S,
        "met": wall < TARGET_WALL_S,
    }))


if __name__ == "__main__":
    main()
